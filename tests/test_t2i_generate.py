"""t2i generate: T2I-CompBench's seeds, a manifest instead of file-name prompts, resuming, refusing a
different run. Tiny random pipelines built offline and loaded back through the real folder path."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.t2i.lineage import find_runs, read_run_images, read_run_manifest


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from densecaption.t2i.pipelines import init_random_pipeline

    return init_random_pipeline("sd21", tmp_path_factory.mktemp("sd21") / "model", seed=0)


def run(*args: str):
    return CliRunner().invoke(build_app(), ["t2i", "generate", *args])


def prompts_file(tmp_path, lines, crlf=True):
    path = tmp_path / "prompts.txt"
    path.write_bytes(("\r\n" if crlf else "\n").join(lines).encode())
    return path


def test_seeds_manifest_and_rows(tmp_path, tiny_sd):
    prompts = prompts_file(tmp_path, ["a red cube_and a ball", "a blue bench"])
    out = tmp_path / "run"
    res = run("--model", str(tiny_sd), "--prompts", str(prompts), "--category", "color", "--out", str(out),
              "--images-per-prompt", "3", "--steps", "2", "--batch-size", "2")
    assert res.exit_code == 0, res.output
    assert "random weights" in res.output
    manifest = read_run_manifest(out)
    assert manifest["model"] == str(tiny_sd) and manifest["weights"] == "random" and manifest["family"] == "sd21"
    assert manifest["category"] == "color" and manifest["lora"] is None and manifest["caption_set"] is None
    assert manifest["prompts"]["count"] == 2 and manifest["generation"]["steps"] == 2
    rows = read_run_images(out)
    assert [(r["prompt_index"], r["image_index"], r["seed"]) for r in rows] == \
        [(p, i, 42 + i) for p in range(2) for i in range(3)]
    assert rows[0]["prompt"] == "a red cube_and a ball"  # no prompt recovery from file names
    assert all((out / r["file"]).is_file() for r in rows)
    assert find_runs(out) == [out]


def test_resume_regenerates_only_what_is_missing_identically(tmp_path, tiny_sd):
    prompts = prompts_file(tmp_path, ["a cat", "a dog"], crlf=False)
    out = tmp_path / "run"
    args = ["--model", str(tiny_sd), "--prompts", str(prompts), "--out", str(out), "--images-per-prompt", "2",
            "--steps", "2"]
    assert run(*args).exit_code == 0
    rows = read_run_images(out)
    before = {r["file"]: (out / r["file"]).read_bytes() for r in rows}
    # As if killed: the last image was written but its row not, and the row before it is torn.
    (out / rows[-1]["file"]).unlink()
    lines = (out / "images.jsonl").read_text().splitlines()
    (out / "images.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:10])
    res = run(*args)
    assert res.exit_code == 0, res.output
    assert "1 generated, 3 already there" in res.output
    after = {r["file"]: (out / r["file"]).read_bytes() for r in read_run_images(out)}
    assert after == before  # seed 42 + i per image: the regenerated image is the same


def test_batching_keeps_each_images_seed(tmp_path, tiny_sd):
    prompts = prompts_file(tmp_path, ["a cat", "a dog"])
    outs = []
    for batch in ("1", "4"):
        out = tmp_path / f"b{batch}"
        assert run("--model", str(tiny_sd), "--prompts", str(prompts), "--out", str(out), "--images-per-prompt",
                   "2", "--steps", "2", "--batch-size", batch).exit_code == 0
        outs.append(out)
    import numpy as np
    from PIL import Image

    for row in read_run_images(outs[0]):
        a = np.asarray(Image.open(outs[0] / row["file"]), dtype=float)
        b = np.asarray(Image.open(outs[1] / row["file"]), dtype=float)
        assert np.abs(a - b).max() <= 2  # same seeds; batched kernels may differ in the last bits


def test_a_different_run_is_refused(tmp_path, tiny_sd):
    prompts = prompts_file(tmp_path, ["a cat"])
    out = tmp_path / "run"
    base = ["--model", str(tiny_sd), "--prompts", str(prompts), "--out", str(out), "--images-per-prompt", "1",
            "--steps", "2"]
    assert run(*base).exit_code == 0
    res = run(*base, "--seed", "7")
    assert res.exit_code == 2 and "different generation run" in res.output and "seed" in res.output
    res = run(*base, "--seed", "7", "--overwrite")
    assert res.exit_code == 0
    assert read_run_images(out)[0]["seed"] == 7


def test_compbench_dir_writes_one_run_per_category(tmp_path, tiny_sd):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "color_val.txt").write_bytes(b"a green bench and a blue bowl\r\na red car\r\n")
    (bench / "spatial_val.txt").write_text("a dog on the left of a cat\n")
    out = tmp_path / "gen"
    res = run("--model", str(tiny_sd), "--compbench-dir", str(bench), "--category", "color", "--category",
              "spatial", "--out", str(out), "--images-per-prompt", "1", "--steps", "1")
    assert res.exit_code == 0, res.output
    runs = find_runs(out)
    assert [r.name for r in runs] == ["color", "spatial"]
    assert [read_run_manifest(r)["category"] for r in runs] == ["color", "spatial"]
    assert len(read_run_images(runs[0])) == 2


@pytest.mark.parametrize("args, message", [
    ([], "either --prompts"),
    (["--compbench-dir", "."], "needs --category"),
    (["--compbench-dir", ".", "--category", "colour"], "unknown T2I-CompBench category 'colour'"),
])
def test_bad_input(tmp_path, args, message):
    res = run("--model", "sd21", "--out", str(tmp_path / "o"), *args)
    assert res.exit_code == 2 and message in res.output


def test_unknown_model_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prompts = prompts_file(tmp_path, ["a cat"])
    res = run("--model", str(tmp_path / "nothing-here"), "--prompts", str(prompts), "--out", str(tmp_path / "o"))
    assert res.exit_code in (1, 2) and "Traceback" not in res.output


def test_manifest_json_is_plain(tmp_path, tiny_sd):
    prompts = prompts_file(tmp_path, ["a cat"])
    out = tmp_path / "run"
    assert run("--model", str(tiny_sd), "--prompts", str(prompts), "--out", str(out), "--images-per-prompt", "1",
               "--steps", "1").exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "densecaption.t2i-images" and manifest["seed"] == 42

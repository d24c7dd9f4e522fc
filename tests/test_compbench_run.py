"""``t2i compbench`` end to end: fake generation runs scored with tiny random models (BLIP VQA, OWL-ViT, CLIP)
and OpenCV's real face detector, result files per the contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from densecaption.cli.compbench import compbench
from densecaption.errors import DataError, UserError
from densecaption.evaluation.compbench.run import find_runs, read_image_records, run_compbench
from densecaption.evaluation.compbench.scorers import CompbenchSettings
from densecaption.models.hf_backend import init_random_hf_clip
from densecaption.models.tiny_blip import init_random_blip_vqa
from densecaption.models.tiny_detector import init_random_owlvit
from tests.test_compbench_models import composed_photo

COMPLEX = ["The red hat was on top of the brown coat rack.", "A man walks a brown dog.",
           "A man walks a brown dog next to a tree."]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {"vqa": str(init_random_blip_vqa(root / "blip")), "owl": f"owlvit:{init_random_owlvit(root / 'owl')}",
            "clip": f"hf:{init_random_hf_clip('ViT-B-32', root / 'clip', tiny=True)}"}


def compbench_dir(root: Path) -> Path:
    """A stand-in for T2I-CompBench's dataset folder with the helper lists."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "complex_val.txt").write_text("\r\n".join(COMPLEX) + "\r\n")
    (root / "complex_val_spatial.txt").write_text(COMPLEX[0] + "\r\n")
    (root / "complex_val_action.txt").write_text(COMPLEX[1] + "\r\n")
    (root / "complex_val_spatialaction.txt").write_text(COMPLEX[2])
    (root / "new_objects.txt").write_text("cat - cats\ndog - dogs\nman - men\n")
    return root


def make_run(folder: Path, prompts: list[str], *, category: str | None, images: list[Image.Image] | None = None,
             per_prompt: int = 2, model: str = "tiny-gen", weights: str = "random", lora: str | None = None,
             prompts_file: str = "prompts.txt") -> Path:
    """A generation run folder as `t2i generate` writes it (contract: manifest.json, images.jsonl, images/)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for p, prompt in enumerate(prompts):
        for i in range(per_prompt):
            file = f"images/{p:05d}_{i:02d}.png"
            image = images[p] if images else Image.new("RGB", (64, 64), ((40 * p + 90 * i) % 256, 120, 30 * i))
            image.save(folder / file)
            lines.append(json.dumps({"file": file, "prompt": prompt, "prompt_index": p, "image_index": i,
                                     "seed": 42 + i}))
    (folder / "images.jsonl").write_text("\n".join(lines) + "\n")
    lora_record = {"kind": "densecaption.t2i-lora", "caption_set": {"name": "set-a"}} if lora else None
    manifest = {"kind": "densecaption.t2i-images", "format_version": 1, "model": model, "family": "pixart-alpha",
                "weights": weights, "lora": lora, "lora_record": lora_record,
                "caption_set": lora_record["caption_set"] if lora_record else None, "category": category,
                "prompts": {"file": prompts_file, "sha256": "0" * 64, "count": len(prompts)},
                "images_per_prompt": per_prompt, "seed": 42,
                "generation": {"steps": 2, "guidance_scale": 4.5, "height": 64, "width": 64, "scheduler": "x"},
                "versions": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def settings(models, **kw) -> CompbenchSettings:
    base = dict(vqa_model=models["vqa"], detector=models["owl"], clip_model=models["clip"], threshold=0.0,
                spacy_model="en_core_web_sm", device="cpu", batch_size=3)
    return CompbenchSettings(**{**base, **kw})


def test_all_categories_end_to_end(tmp_path, models):
    bench = compbench_dir(tmp_path / "compbench")
    gen = tmp_path / "gen"
    make_run(gen / "color", ["a green bench and a blue bowl", "a red cat"], category="color")
    make_run(gen / "shape", ["a round bowl"], category="shape")
    make_run(gen / "spatial", ["a cat on the left of a dog"], category="spatial")
    make_run(gen / "non_spatial", ["A woman is holding a yoga mat."], category="non_spatial")
    make_run(gen / "complex", COMPLEX, category="complex", per_prompt=1, prompts_file=str(bench / "complex_val.txt"))
    make_run(gen / "numeracy", ["two cats and a dog", "three men"], category="numeracy")
    make_run(gen / "3d", ["a dog in front of a desk"], category="3d_spatial")
    make_run(gen / "nocat", ["a red cat"], category=None)
    out = tmp_path / "results"
    notes, stages = [], []
    outcomes = run_compbench(gen, out, settings=settings(models, compbench_dir=str(bench)), notify=notes.append,
                             progress=lambda name, total: stages.append((name, total)) or (lambda n: None))
    scored = {(o.category, o.mode): o for o in outcomes if o.status == "scored"}
    assert set(scored) == {("color", "blip-vqa"), ("shape", "blip-vqa"), ("spatial", "spatial-owlvit"),
                           ("non_spatial", "clip"), ("complex", "3-in-1"), ("numeracy", "numeracy-owlvit")}
    assert any("3d_spatial" in n and "not supported" in n for n in notes)
    assert any("nocat" in n and "--category" in n for n in notes)
    assert ("color color blip-vqa", 4) in stages

    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([
        "t2i-compbench_tiny-gen_color_blip-vqa.json", "t2i-compbench_tiny-gen_color_blip-vqa.per-image.jsonl",
        "t2i-compbench_tiny-gen_shape_blip-vqa.json", "t2i-compbench_tiny-gen_shape_blip-vqa.per-image.jsonl",
        "t2i-compbench_tiny-gen_spatial_spatial-owlvit.json",
        "t2i-compbench_tiny-gen_spatial_spatial-owlvit.per-image.jsonl",
        "t2i-compbench_tiny-gen_non-spatial_clip.json", "t2i-compbench_tiny-gen_non-spatial_clip.per-image.jsonl",
        "t2i-compbench_tiny-gen_complex_3-in-1.json", "t2i-compbench_tiny-gen_complex_3-in-1.per-image.jsonl",
        "t2i-compbench_tiny-gen_numeracy_numeracy-owlvit.json",
        "t2i-compbench_tiny-gen_numeracy_numeracy-owlvit.per-image.jsonl"])

    color = json.loads((out / "t2i-compbench_tiny-gen_color_blip-vqa.json").read_text())
    assert color["task"] == "t2i-compbench" and color["model"] == "tiny-gen" and color["lora"] is None
    assert color["split"] == "color" and color["mode"] == "blip-vqa"
    assert color["weights"] == "random" and color["generator_weights"] == "random"
    assert color["scorers"]["blip-vqa"]["weights"] == "random"
    assert color["counts"] == {"score": 4} and 0.0 <= color["metrics"]["score"] <= 1.0
    assert color["data"] == str(gen / "color") and len(color["data_sha256"]) == 64
    assert color["lineage"]["images"] == str((gen / "color").resolve())
    rows = [json.loads(line) for line in (out / color["per_image"]).read_text().splitlines()]
    assert [r["file"] for r in rows] == ["images/00000_00.png", "images/00000_01.png", "images/00001_00.png",
                                         "images/00001_01.png"]
    assert [q["question"] for q in rows[0]["questions"]] == ["a green bench?", "a blue bowl?"]
    product = rows[0]["questions"][0]["p_yes"] * rows[0]["questions"][1]["p_yes"]
    assert rows[0]["score"] == pytest.approx(product)
    assert color["metrics"]["score"] == pytest.approx(sum(r["score"] for r in rows) / 4)
    assert {"prompt", "prompt_index", "image_index", "seed"} <= set(rows[0])

    cx = json.loads((out / "t2i-compbench_tiny-gen_complex_3-in-1.json").read_text())
    assert set(cx["scorers"]) == {"blip-vqa", "spatial-owlvit", "clip"}
    cx_rows = [json.loads(line) for line in (out / cx["per_image"]).read_text().splitlines()]
    assert [r["prompt_type"] for r in cx_rows] == ["spatial", "action", "spatial-action"]
    r0, r1, r2 = cx_rows
    assert r0["score"] == pytest.approx((r0["spatial"] + r0["attribute"]) / 2)
    assert r1["score"] == pytest.approx((r1["action"] + r1["attribute"]) / 2)
    assert r2["score"] == pytest.approx((r2["attribute"] + r2["spatial"] + r2["action"]) / 3)
    assert r0["parts"]["spatial-owlvit"]["objects"] == ["hat", "coat"]
    assert r1["parts"]["clip"]["text"] == "A man walks a dog ."

    num = json.loads((out / "t2i-compbench_tiny-gen_numeracy_numeracy-owlvit.json").read_text())
    num_rows = [json.loads(line) for line in (out / num["per_image"]).read_text().splitlines()]
    assert num_rows[0]["objects"] == [{"name": "cat", "count": 2}, {"name": "dog", "count": 1}]
    assert num_rows[2]["objects"] == [{"name": "person", "count": 3}]

    # Again: every result is kept, nothing recomputed; --overwrite scores again into the same files.
    again = run_compbench(gen, out, settings=settings(models, compbench_dir=str(bench)))
    assert {o.status for o in again if o.mode} == {"kept"}
    assert {o.path for o in again if o.mode} == {o.path for o in outcomes if o.mode}
    forced = run_compbench(gen, out, settings=settings(models, compbench_dir=str(bench)), categories=["color"],
                           overwrite=True)
    forced = [o for o in forced if o.mode]
    assert [o.status for o in forced] == ["scored"] and forced[0].path == scored[("color", "blip-vqa")].path
    assert len(list(out.iterdir())) == 12


def test_other_images_do_not_overwrite(tmp_path, models):
    """Same generator, category and scorer but other images: a second file (and per-image file) beside."""
    out = tmp_path / "results"
    a = make_run(tmp_path / "a", ["a red cat"], category="color")
    b = make_run(tmp_path / "b", ["a blue cat"], category="color")
    first = run_compbench(a, out, settings=settings(models))[0]
    second = run_compbench(b, out, settings=settings(models))[0]
    assert Path(first.path).name == "t2i-compbench_tiny-gen_color_blip-vqa.json"
    assert Path(second.path).name == "t2i-compbench_tiny-gen_color_blip-vqa-2.json"
    assert (out / "t2i-compbench_tiny-gen_color_blip-vqa-2.per-image.jsonl").is_file()
    assert json.loads(Path(second.path).read_text())["per_image"] == "t2i-compbench_tiny-gen_color_blip-vqa-2" \
                                                                     ".per-image.jsonl"
    # with a LoRA, the name says so
    c = make_run(tmp_path / "c", ["a red cat"], category="color", lora="runs/lora-a/lora")
    third = run_compbench(c, out, settings=settings(models))[0]
    assert Path(third.path).name == "t2i-compbench_tiny-gen_runs-lora-a-lora_color_blip-vqa.json"
    lineage = json.loads(Path(third.path).read_text())["lineage"]
    assert lineage["caption_set"] == {"name": "set-a"} and lineage["lora_record"]["kind"] == "densecaption.t2i-lora"


def test_real_face_detector_on_a_composed_photo(tmp_path, models):
    """OpenCV's real cascades: the astronaut's face left, chelsea the cat right."""
    photo = composed_photo()
    run = make_run(tmp_path / "run", ["a woman on the left of a cat", "a cat on the left of a woman",
                                      "a woman on the right of a cat"], category="spatial",
                   images=[photo] * 3, per_prompt=1, weights="pretrained")
    out = tmp_path / "results"
    [outcome] = run_compbench(run, out, settings=settings(models, detector="opencv-haar", threshold=0.5))
    result = json.loads(Path(outcome.path).read_text())
    assert result["mode"] == "spatial-opencv-haar" and result["weights"] == "pretrained"
    assert Path(outcome.path).name == "t2i-compbench_tiny-gen_spatial_spatial-opencv-haar.json"
    rows = [json.loads(line) for line in (out / result["per_image"]).read_text().splitlines()]
    assert rows[0]["objects"] == ["person", "cat"] and rows[0]["relation"] == "on the left of"
    assert rows[0]["first"] is not None and rows[0]["first"]["box"][0] < 512  # the face was found
    if rows[0]["last"] is None:
        pytest.skip("OpenCV's cat cascade did not find chelsea here")
    assert rows[0]["score"] == pytest.approx(1.0)  # 0.25 + 0.25 + 0.5 * 1
    assert rows[1]["score"] == pytest.approx(0.5) and rows[1]["position"] == 0.0  # wrong side: 0.5, not floored
    assert rows[2]["score"] == pytest.approx(0.5)
    assert result["metrics"]["score"] == pytest.approx(2 / 3)


def test_category_option_and_filters(tmp_path, models):
    run = make_run(tmp_path / "run", ["a red cat"], category=None)
    out = tmp_path / "results"
    assert [o.status for o in run_compbench(run, out, settings=settings(models))] == ["skipped"]
    [o] = run_compbench(run, out, settings=settings(models), category="texture")
    assert o.status == "scored" and o.category == "texture" and Path(o.path).name.endswith("_texture_blip-vqa.json")
    assert run_compbench(run, out, settings=settings(models), category="texture", categories=["color"]) == []
    with pytest.raises(UserError, match="unknown T2I-CompBench category"):
        run_compbench(run, out, settings=settings(models), categories=["colour"])


def test_numeracy_without_object_list_is_a_clear_error(tmp_path, models):
    run = make_run(tmp_path / "run", ["two cats"], category="numeracy", prompts_file=str(tmp_path / "nowhere.txt"))
    with pytest.raises(UserError, match="--compbench-dir"):
        run_compbench(run, tmp_path / "out", settings=settings(models))
    (tmp_path / "bench").mkdir()
    with pytest.raises(UserError, match="new_objects.txt"):
        run_compbench(run, tmp_path / "out", settings=settings(models, compbench_dir=str(tmp_path / "bench")))


def test_bad_runs_name_file_and_line(tmp_path):
    with pytest.raises(UserError, match="not a generation run"):
        find_runs(tmp_path)
    run = make_run(tmp_path / "run", ["a red cat"], category="color")
    (run / "images.jsonl").write_text('{"file": "images/00000_00.png", "prompt": "a", "prompt_index": 0, '
                                      '"image_index": 0, "seed": 42}\n{"file": "images/x.png"\n')
    with pytest.raises(DataError, match=r"images.jsonl line 2: not valid JSON"):
        read_image_records(run)
    (run / "images.jsonl").write_text('{"file": "images/x.png", "prompt": "a", "prompt_index": 0, '
                                      '"image_index": 0}\n')
    with pytest.raises(DataError, match=r"line 1: image .*x.png does not exist"):
        read_image_records(run)
    (run / "images.jsonl").write_text('{"file": "images/00000_00.png", "prompt": "a", "prompt_index": "0", '
                                      '"image_index": 0}\n')
    with pytest.raises(DataError, match=r"line 1: \"prompt_index\""):
        read_image_records(run)
    (run / "manifest.json").write_text('{"kind": "other"}')
    with pytest.raises(DataError, match="manifest.json: not a generation run manifest"):
        run_compbench(run, tmp_path / "out", settings=CompbenchSettings())


def test_cli(tmp_path, models):
    app = typer.Typer()
    app.command()(compbench)
    app.command("other")(lambda: None)  # two commands: typer keeps `compbench` as a subcommand
    gen = tmp_path / "gen"
    make_run(gen / "color", ["a red cat"], category="color")
    make_run(gen / "3d", ["a dog in front of a desk"], category="3d_spatial")
    out = tmp_path / "results"
    args = ["compbench", "--images", str(gen), "--out", str(out), "--vqa-model", models["vqa"], "--detector",
            models["owl"], "--clip-model", models["clip"], "--categories", "color,3d_spatial", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "random weights" in result.output and "color" in result.output
    assert (out / "t2i-compbench_tiny-gen_color_blip-vqa.json").is_file()
    assert "kept" in CliRunner().invoke(app, args).output
    bad = CliRunner().invoke(app, ["compbench", "--images", str(gen), "--out", str(out), "--detector", "yolo:x"])
    assert bad.exit_code == 2 and "unknown detector kind 'yolo'" in bad.output and "Traceback" not in bad.output
    help_text = CliRunner().invoke(app, ["compbench", "--help"]).output
    assert "opencv-haar" in help_text and "3-in-1" in help_text

"""The shipped recipes: each validates and is documented; demo variants run end to end on the sample with tiny
random models; a runner killed inside a training step and run again ends with the outputs of an uninterrupted
run; a second run finds every step done. (The engine itself: tests/test_recipes_engine.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app

SHIPPED = ("c4t2i-table2", "c4t2i-table3", "dci-table2", "dci-table3")
ROOT = Path(__file__).resolve().parents[1]


def run(*args: object):
    result = CliRunner().invoke(build_app(), ["run", *map(str, args)])
    errors = "\n".join(line for line in result.output.splitlines() if "error" in line.lower())
    assert result.exit_code == 0, errors + "\n" + result.output[-2000:]
    return result


def plan(name: str, out: Path, *extra: str) -> dict:
    return json.loads(run(name, "--scale", "demo", "--out", out, "--dry-run", "--json", *extra).stdout)


def statuses(name: str, out: Path) -> dict[str, str]:
    return {s["id"]: s["status"] for s in plan(name, out)["steps"]}


def test_every_shipped_recipe_is_listed_and_documented():
    listed = CliRunner().invoke(build_app(), ["ls", "recipes"]).stdout.splitlines()
    assert [line.split()[0] for line in listed] == sorted(SHIPPED)
    docs = (ROOT / "docs" / "recipes.md").read_text()
    for name in SHIPPED:
        assert f"`{name}`" in docs


def test_full_variants_carry_the_published_settings(tmp_path):
    def argv(name: str, step: str) -> list[str]:
        found = json.loads(run(name, "--out", tmp_path / name, "--dry-run", "--json").stdout)
        return next(s["argv"] for s in found["steps"] if s["id"] == step)

    def value(args: list[str], option: str) -> str:
        return args[args.index(option) + 1]

    clip = argv("dci-table3", "train-pick1-nl1-rand")  # DCI section 5: batch 32, lr 5e-5, up to 10 epochs
    assert (value(clip, "--batch-size"), value(clip, "--lr"), value(clip, "--epochs")) == ("32", "5e-05", "10")
    assert (value(clip, "--captions"), value(clip, "--neg-loss"), value(clip, "--batching")) == ("pick1", "bce", "rand")
    pixart = argv("c4t2i-table2", "train-p0.5_k2")  # Captions4T2I: PixArt-alpha, 10 epochs, batch 32, lr 1e-4
    assert (value(pixart, "--model"), value(pixart, "--epochs"), value(pixart, "--batch-size"),
            value(pixart, "--lr")) == ("pixart-alpha", "10", "32", "0.0001")
    sdxl = argv("c4t2i-table3", "train-llava-sdxl")  # Table 3: 100,000 iterations, batch 8, lr 1e-4
    assert (value(sdxl, "--model"), value(sdxl, "--max-steps"), value(sdxl, "--batch-size"),
            value(sdxl, "--lr")) == ("sdxl", "100000", "8", "0.0001")
    caption = argv("c4t2i-table3", "caption-llava")
    assert (value(caption, "--prompt"), value(caption, "--max-tokens")) == ("Describe the image concisely", "77")
    probe = argv("c4t2i-table3", "precision-uform")  # 1,000 seeded captions per captioner
    assert (value(probe, "--sample"), value(probe, "--seed")) == ("1000", "0")
    full = json.loads(run("dci-table3", "--out", tmp_path / "d", "--dry-run", "--json").stdout)
    trains = [s for s in full["steps"] if s["id"].startswith("train-")]
    assert len(trains) == 18  # Table 4: {First, Pick1, Pick5} x NL {9, 1, 0} x {Rand, ImgGroup}
    assert {s["id"] for s in full["steps"] if s["id"].startswith("aro-")} == \
        {"aro-" + s["id"].removeprefix("train-") for s in trains}


def test_dci_table2_demo_runs_end_to_end_and_a_second_run_skips_every_step(tmp_path):
    out = tmp_path / "run"
    run("dci-table2", "--scale", "demo", "--out", out)
    results = sorted(p.parent.name for p in (out / "results").rglob("sdci_*.json"))
    assert results == ["tiny-flava", "tiny-hf-clip", "tiny-open-clip"]
    report = (out / "report" / "table2.txt").read_text()
    assert report.count("(weights: random)") == 3 and "published (DCI paper" in report
    assert set(statuses("dci-table2", out).values()) == {"done"}
    again = run("dci-table2", "--scale", "demo", "--out", out)
    assert "skipping 6 step(s) already done" in again.output


@pytest.fixture(scope="module")
def table3_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("c4t2i-table3") / "whole"
    run("c4t2i-table3", "--scale", "demo", "--out", out)
    return out


def test_c4t2i_table3_demo_builds_tables_3_and_4(table3_run):
    table3 = (table3_run / "report" / "table3.txt").read_text()
    rows = [line for line in table3.splitlines() if line.startswith("| hf:") and "tiny-llava" in line]
    assert len(rows) >= 2 and all(line.count("(random)") == 2 for line in rows[:2])  # sd21 and sdxl cells
    assert "| LLaVA | 0.3838 | 0.3652 |" in table3
    table4 = (table3_run / "report" / "table4.txt").read_text()
    assert "tiny-llava-a (weights: random)" in table4 and "tiny-llava-b (weights: random)" in table4
    for name in ("tiny-llava-a", "tiny-llava-b"):  # the bridge: caption output -> a set train t2i took
        manifest = json.loads((table3_run / "sets" / name / "manifest.json").read_text())
        assert name in json.dumps(manifest) and "Describe the image concisely" in json.dumps(manifest)
        for generator in ("sd21", "sdxl"):
            assert (table3_run / "train" / f"{name}-{generator}" / "lora").is_dir()


def lora_weights(path: Path) -> tuple[dict, dict[str, bytes]]:
    """A LoRA file's metadata and tensor bytes (safetensors writes its metadata keys in no fixed order, so
    two equal files can differ in bytes)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata(), {k: f.get_tensor(k).numpy().tobytes() for k in sorted(f.keys())}


def outputs(out: Path) -> dict[str, object]:
    """What a run produced, comparable across run folders: LoRA weights, the bytes of captions and sets, and
    the metrics of every score (result files also hold times and their own paths)."""
    found: dict[str, object] = {}
    for path in sorted(out.rglob("*")):
        rel = str(path.relative_to(out))
        if not path.is_file() or ".recipe" in path.parts:
            continue
        if path.suffix == ".safetensors" and "/lora/" in f"/{rel}":
            found[rel] = lora_weights(path)
        elif rel.startswith("scores/") and path.suffix == ".json" and not path.name.endswith("per-image.json"):
            doc = json.loads(path.read_text())  # its file name holds the run folder's path: key by content
            found[f"scores/{path.parent.name}/{doc.get('split')}/{doc.get('mode')}"] = doc.get("metrics")
        elif (rel.startswith("captions/") and path.name == "captions.jsonl") or \
                (rel.startswith("sets/") and path.name == "metadata.jsonl"):
            found[rel] = path.read_bytes().replace(str(out).encode(), b"OUT")  # the captioner's path
    return found


def test_a_runner_killed_inside_a_training_step_finishes_equal_to_an_uninterrupted_run(table3_run):
    killed = table3_run.parent / "killed"
    marker = killed / ".recipe" / "steps" / "train-tiny-llava-a-sdxl.started.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "densecaption", "run", "c4t2i-table3", "--scale", "demo",
                             "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 600
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # inside the step: loading the pipeline, encoding captions or training
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = statuses("c4t2i-table3", killed)
    assert before["train-tiny-llava-a-sd21"] == "done" and before["train-tiny-llava-a-sdxl"] == "resume"
    assert before["score-tiny-llava-b-sdxl"] == "run"
    resumed = run("c4t2i-table3", "--scale", "demo", "--out", killed)
    assert "--resume latest" in resumed.output  # the killed step was continued, not started blind
    assert set(statuses("c4t2i-table3", killed).values()) == {"done"}
    got, want = outputs(killed), outputs(table3_run)
    assert got.keys() == want.keys() and len([k for k in want if k.endswith(".safetensors")]) == 4
    assert got == want

"""From caption sets exported by `compose` to the Table 2 report, through the CLI, with tiny random models:
train t2i -> t2i generate (with the LoRA) -> t2i compbench -> report t2i. The report must place each score
by the caption set recorded along the way, not by folder names."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app

# Our own small prompt files in the official layout (one per category the paper averages).
PROMPTS = {
    "color": "a green bench and a blue bowl\r\n",
    "shape": "a round clock and a square table\r\n",
    "texture": "a fluffy towel and a metallic spoon\r\n",
    "spatial": "a dog on the left of a cat\r\n",
    "non_spatial": "a man is riding a bicycle\r\n",
}


def cli(*args: str) -> str:
    res = CliRunner().invoke(build_app(), list(args))
    assert res.exit_code == 0, f"{args}: {res.output}"
    return res.output


@pytest.mark.slow
def test_caption_sets_to_table2(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bench = tmp_path / "compbench"
    bench.mkdir()
    for category, text in PROMPTS.items():
        (bench / f"{category}_val.txt").write_bytes(text.encode())
    cli("compose", "grid", "--data", "sample", "--split", "train", "--precisions", "0,1", "--submasks", "0,1",
        "--out", str(tmp_path / "sets"))
    cli("models", "init-random", "pixart-alpha", str(tmp_path / "pixart"), "--backend", "diffusers")
    cli("models", "init-random", "blip-vqa", str(tmp_path / "blip"), "--backend", "hf")
    cli("models", "init-random", "owlvit", str(tmp_path / "owl"), "--backend", "hf")
    cli("models", "init-random", "ViT-B-32", str(tmp_path / "clip"), "--tiny")
    # Folder names say nothing about the sets: the lineage must carry it.
    for n, point in enumerate(["p0_k1", "p1_k0"]):
        cli("train", "t2i", "--captions", str(tmp_path / "sets" / point), "--model", str(tmp_path / "pixart"),
            "--out", str(tmp_path / f"train{n}"), "--epochs", "1", "--batch-size", "4", "--validation-every", "0")
        cli("t2i", "generate", "--model", str(tmp_path / "pixart"), "--lora", str(tmp_path / f"train{n}" / "lora"),
            "--compbench-dir", str(bench), *[a for c in PROMPTS for a in ("--category", c)],
            "--out", str(tmp_path / f"gen{n}"), "--images-per-prompt", "1", "--steps", "2", "--height", "32",
            "--width", "32")
        cli("t2i", "compbench", "--images", str(tmp_path / f"gen{n}"), "--out", str(tmp_path / "scores"),
            "--vqa-model", str(tmp_path / "blip"), "--detector", f"owlvit:{tmp_path / 'owl'}",
            "--clip-model", f"open_clip:local-dir:{tmp_path / 'clip'}")
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "scores").glob("*.json"))]
    assert len(results) == 10 and {r["weights"] for r in results} == {"random"}
    by_point = {}
    for r in results:
        config = r["lineage"]["caption_set"]["config"]
        by_point.setdefault((config["precision"], config["submasks"]), {})[r["split"]] = r["metrics"]["score"]
    assert sorted(by_point) == [(0.0, 1), (1.0, 0)]
    report = cli("report", "t2i", str(tmp_path / "scores"), "--format", "csv", "--heatmap",
                 str(tmp_path / "fig.png"))
    lines = [line for line in report.splitlines() if not line.startswith("heatmap:")]
    averages = {(float(r["precision"]), int(r["submasks"])): float(r["score"])
                for r in csv.DictReader(lines) if r["category"] == "average"}
    for point, scores in by_point.items():
        assert averages[point] == pytest.approx(sum(scores.values()) / 5)
    assert (tmp_path / "fig.png").is_file()

"""``quality recall|precision --sample`` and ``report captioners`` (Captions4T2I Table 4)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from typer.testing import CliRunner

from benchmarks.fake_server import FakeChatServer
from densecaption.cli import build_app
from densecaption.quality.captions import CaptionRecord, sample_records
from tests.test_quality_faithscore import caption_file, fake_quality  # noqa: F401  (caption_file: a fixture)


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def records(ids):
    return [CaptionRecord(id=i, text=f"caption of {i}", image=i) for i in ids]


def test_sample_is_keyed_by_caption_not_line_order():
    ids = [f"{i:03d}.jpg" for i in range(50)]
    chosen, info = sample_records(records(ids), 10, seed=3)
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    again, _ = sample_records(records(shuffled), 10, seed=3)
    assert sorted(r.id for r in chosen) == sorted(r.id for r in again)  # the same captions, whatever the order
    assert [r.id for r in chosen] == sorted(r.id for r in chosen)  # kept in file order
    assert info == {"n": 10, "seed": 3, "in_file": 50, "key": "caption id (its image file)", "used": 10,
                    "all": False}
    more, _ = sample_records(records(ids), 20, seed=3)
    assert {r.id for r in chosen} <= {r.id for r in more}  # a larger sample keeps the smaller one's picks
    other, _ = sample_records(records(ids), 10, seed=4)
    assert {r.id for r in other} != {r.id for r in chosen}
    everything, info = sample_records(records(ids[:5]), 1000, seed=0)
    assert len(everything) == 5 and info["all"] is True and info["used"] == 5
    assert sample_records(records(ids), None, 0) == (records(ids), None)


def _seed_picking(names: set[str], ids: list[str]) -> int:
    """The first seed whose sample of len(names) is exactly ``names``."""
    return next(s for s in range(200) if {r.id for r in sample_records(records(ids), len(names), s)[0]} == names)


def test_sampled_precision_and_recall_pick_the_same_captions_and_make_one_row(caption_file, tmp_path):  # noqa: F811
    path, images = caption_file
    seed = _seed_picking({"horse.jpg", "clock.jpg"}, ["horse.jpg", "clock.jpg", "camera.jpg", "missing.jpg"])
    with FakeChatServer(fake_quality) as server:
        url = f"openai:{server.url}#fake"
        result = invoke("quality", "precision", "--captions", path, "--images", images, "--llm", url, "--vlm", url,
                        "--out", tmp_path / "precision.json", "--sample", "2", "--seed", seed, "--no-recall",
                        "--max-retries", "0")
    assert result.exit_code == 0, result.output
    precision = json.loads((tmp_path / "precision.json").read_text())
    assert sorted(o["id"] for o in precision["outcomes"]) == ["clock.jpg", "horse.jpg"]
    assert precision["sample"]["n"] == 2 and precision["captions_in_file"] == 4
    # by hand (tests/test_quality_faithscore.py): horse 6 of 8 facts verified, clock 2 of 3; each has one of two
    # descriptive sub-sentences fully verified -> instance (6/8 + 2/3) / 2 = 0.7083, sentence 1/2
    assert abs(precision["instance"] - (6 / 8 + 2 / 3) / 2) < 1e-12 and precision["sentence"] == 0.5
    recall = invoke("quality", "recall", "--captions", path, "--out", tmp_path / "recall.json", "--sample", "2",
                    "--seed", seed)
    assert recall.exit_code == 0, recall.output
    counted = json.loads((tmp_path / "recall.json").read_text())
    assert sorted(c["id"] for c in counted["per_caption"]) == ["clock.jpg", "horse.jpg"]
    report = invoke("report", "captioners", tmp_path / "precision.json", tmp_path / "recall.json", "--format", "json")
    assert report.exit_code == 0, report.output
    (row,) = json.loads(report.output)
    assert row["captioner"] == "captioner-x" and row["captions"] == 2 and row["sample_n"] == 2
    assert row["entities"] == counted["summary"]["entities"]["mean"]  # the recall result fills the column
    assert abs(row["faithscore"] - (6 / 8 + 2 / 3) / 2) < 1e-12


def result(measure: str, captioner: str, sha: str, **extra) -> dict:
    base = {"measure": measure, "captioner": captioner, "captions_file_sha256": sha,
            "sample": {"n": 1000, "seed": 0, "all": False}}
    return {**base, **extra}


def precision_result(captioner, sha, instance, **extra):
    cats = {"ENTITY": {"facts": 4, "verified": 3, "precision": 3 / 4}, "COLOR": {"facts": 2, "verified": 1,
                                                                                 "precision": 1 / 2}}
    return result("modified FaithScore", captioner, sha, scored=3, instance=instance, sentence=0.5,
                  per_category=cats, entities_per_caption=4.25, weights={"llm": "pretrained", "vlm": "pretrained"},
                  **extra)


def write(folder: Path, name: str, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data))
    return folder / name


def test_rows_per_captioner_and_data_never_pooled(tmp_path):
    write(tmp_path / "r", "a.json", precision_result("llava", "a" * 64, 0.9))
    write(tmp_path / "r", "b.json", precision_result("llava", "b" * 64, 0.7, captioner_weights="random"))
    write(tmp_path / "r", "c.json", result("recall", "blip", "c" * 64, summary={"captions": 5,
                                                                                 "entities": {"mean": 2.2}}))
    write(tmp_path / "r", "other.json", {"task": "sdci"})  # not a quality result: left alone in a folder
    out = invoke("report", "captioners", tmp_path / "r", "--paper")
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if line.startswith("| ") and "---" not in line][1:]
    # llava on two captions files: two rows (0.900 and 0.700), never their mean 0.800
    assert lines[0].startswith("| blip | 5 | 2.20 |")
    assert lines[1] == ("| llava | 3 | 4.25 | 0.900 | 0.500 | 0.750 |  | 0.500 |  |  |  |  | aaaaaaaaaaaa, "
                        "sample 1000, seed 0 |")
    assert lines[2].startswith("| llava (weights: random) | 3 | 4.25 | 0.700 |") and "bbbbbbbbbbbb" in lines[2]
    assert "0.800" not in out.output
    assert lines[3].startswith("| LLaVA (published) |  | 4.90 | 0.911 |") and len(lines) == 6
    write(tmp_path / "r", "a2.json", precision_result("llava", "a" * 64, 0.5))
    conflict = invoke("report", "captioners", tmp_path / "r")
    assert conflict.exit_code == 2 and "two precision results for llava on the same data" in conflict.output
    csv_out = invoke("report", "captioners", tmp_path / "r" / "b.json", "--format", "csv")
    header, row = csv_out.output.splitlines()
    assert header.split(",")[-5:] == ["captions_sha256", "sample_n", "sample_seed", "weights", "files"]
    assert "b" * 64 in row and "pretrained;random" in row
    empty = invoke("report", "captioners", tmp_path / "r" / "other.json")
    assert empty.exit_code == 2 and "not a `quality precision` or `quality recall` result" in empty.output


# ------------------------------------------------------------------------------------------ report t2i, Table 3
CATEGORIES5 = ("color", "shape", "texture", "spatial", "non_spatial")


def bridged_set(captioner: str, captions_sha: str) -> dict:
    return {"kind": "densecaption.caption-set", "captioner": {"model": captioner, "weights": "pretrained"},
            "config": {"from": "captions"}, "data": {"sha256": captions_sha},
            "image_set": {"count": 4, "sha256": "f" * 64}}


def compbench(captioner, sha, family, lora, scores, weights="pretrained") -> list[dict]:
    lineage = {"caption_set": bridged_set(captioner, sha), "lora_record": {"family": family}}
    return [{"task": "t2i-compbench", "model": f"/models/{family}", "lora": lora, "weights": weights, "split": c,
             "mode": "blip-vqa", "metrics": {"score": s}, "counts": {"score": 4}, "lineage": lineage}
            for c, s in zip(CATEGORIES5, scores)]


def test_table3_rows_by_captioner_columns_by_generator_never_pooled(tmp_path):
    from densecaption.reports.t2i import captioners_markdown, collect_captioners

    results = (compbench("llava", "a" * 64, "sd21", "l1", [0.1, 0.2, 0.3, 0.4, 0.5])  # 1.5 / 5 = 0.30
               + compbench("llava", "a" * 64, "sdxl", "l2", [0.2, 0.7, 0.2, 0.2, 0.7])  # 2.0 / 5 = 0.40
               + compbench("llava", "a" * 64, "sd21", "l3", [0.5, 0.5, 0.5, 0.5, 0.5])  # another LoRA: 0.50
               + compbench("llava", "b" * 64, "sd21", "l4", [0.0, 0.1, 0.2, 0.3, 0.4])  # other data: 1.0 / 5 = 0.20
               + compbench("blip", "a" * 64, "sd21", "l5", [0.4, 0.4, 0.4, 0.4, 0.4], weights="random"))
    rows = collect_captioners(results)
    got = [(r.captioner, r.data.split(",")[0], {g: round(c.average(), 10) for g, c in r.cells.items()}) for r in rows]
    assert got == [("blip", "captions data aaaaaaaaaaaa", {"sd21": 0.4}),
                   ("llava", "captions data aaaaaaaaaaaa", {"sd21": 0.3, "sdxl": 0.4}),
                   ("llava", "captions data aaaaaaaaaaaa", {"sd21": 0.5}),  # the second LoRA: its own row
                   ("llava", "captions data bbbbbbbbbbbb", {"sd21": 0.2})]  # other data: its own row
    text = captioners_markdown(rows, paper=True)
    assert "| Captioner | sd21 | sdxl | Data |" in text
    assert "| blip | 0.4000 (random) |  | captions data aaaaaaaaaaaa, images 4 (ffffffffffff) |" in text
    assert "| llava | 0.3000 | 0.4000 | captions data aaaaaaaaaaaa" in text
    assert "| LLaVA | 0.3838 | 0.3652 |" in text
    for n, r in enumerate(results):
        (tmp_path / f"r{n}.json").write_text(json.dumps(r))
    out = invoke("report", "t2i", tmp_path)
    assert out.exit_code == 0, out.output
    assert "Table 3: captioner x generator" in out.output and "Positive sentences" not in out.output


def test_table2_cells_of_different_data_are_separate_tables(tmp_path):
    from densecaption.reports.t2i import collect, to_markdown

    def point_result(category, score, sha):
        cset = {"kind": "densecaption.caption-set", "config": {"precision": 1.0, "submasks": 2},
                "data": {"sha256": sha}, "image_set": {"count": 8, "sha256": sha}}
        return {"task": "t2i-compbench", "model": "gen", "lora": "x", "weights": "pretrained", "split": category,
                "mode": "blip-vqa", "metrics": {"score": score}, "lineage": {"caption_set": cset}}

    cells = collect([point_result("color", 0.2, "1" * 64), point_result("color", 0.6, "2" * 64)])
    assert sorted(c.score("color") for c in cells) == [0.2, 0.6]  # not one cell of 0.4
    text = to_markdown(cells)
    assert "Data of every cell: captions data 111111111111, images 8 (111111111111)" in text
    assert "Data of every cell: captions data 222222222222" in text

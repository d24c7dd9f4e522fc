"""``masks from-sam`` and ``masks extract`` end to end: SA-1B-format records and a tiny random SAM in, DCI
skeletons out that the reader loads, ``data validate`` accepts (warning: not annotated) and ``data show`` draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.dci import DCIDataset
from densecaption.masks.rle import decode_rle, encode_rle, rle_area

HEIGHT, WIDTH = 100, 120


def box(t: int, l: int, b: int, r: int) -> np.ndarray:
    m = np.zeros((HEIGHT, WIDTH), dtype=bool)
    m[t:b, l:r] = True
    return m


def sa1b_record(name: str, masks: list[np.ndarray]) -> dict:
    """An SA-1B-format record of ``masks``: RLE segmentation, area, XYWH bbox, scores."""
    anns = []
    for m in masks:
        ys, xs = np.nonzero(m)
        anns.append({"segmentation": encode_rle(m), "area": int(m.sum()),
                     "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                     "predicted_iou": 0.9, "stability_score": 0.95, "point_coords": [[0.0, 0.0]],
                     "crop_box": [0, 0, WIDTH, HEIGHT]})
    return {"image": {"image_id": 1, "file_name": name, "width": WIDTH, "height": HEIGHT}, "annotations": anns}


@pytest.fixture(scope="module")
def sa1b(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sa1b")
    # whole photo 12000 px; left and right halves 6000 px each; the top of the left half 3000 px (< 5000)
    masks = [box(0, 0, 50, 60), box(0, 0, 100, 120), box(0, 60, 100, 120), box(0, 0, 100, 60)]
    (folder / "sa_1.json").write_text(json.dumps(sa1b_record("sa_1.jpg", masks)))
    Image.fromarray(np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8)).save(folder / "sa_1.jpg")
    return folder


def test_rle_round_trips():
    rng = np.random.default_rng(0)
    m = rng.random((7, 5)) > 0.5
    rle = encode_rle(m)
    assert (decode_rle(rle) == m).all() and rle_area(rle) == int(m.sum())
    assert (decode_rle(json.loads(json.dumps(rle))) == m).all()  # counts survive JSON as a string
    # uncompressed counts run down columns: 6 off, 2 on, 3 off, 2 on, 22 off in a 5 x 7 mask
    plain = {"size": [5, 7], "counts": [6, 2, 3, 2, 22]}
    expected = np.zeros((5, 7), dtype=bool)
    expected[1:3, 1] = True  # flat (column-major) 6, 7 -> column 1, rows 1-2
    expected[1:3, 2] = True  # flat 11, 12 -> column 2, rows 1-2
    assert (decode_rle(plain) == expected).all() and rle_area(plain) == 4
    with pytest.raises(ValueError):
        decode_rle({"size": [5, 7], "counts": [6, 2]})


def test_from_sam_writes_a_skeleton_that_validates_and_draws(sa1b, tmp_path):
    runner, app, out = CliRunner(), build_app(), tmp_path / "skel"
    result = runner.invoke(app, ["masks", "from-sam", str(sa1b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "sa_1-mask.json").read_text())
    assert (doc["image"], doc["width"], doc["height"], doc["short_caption"], doc["extra_caption"]) == \
        ("sa_1.jpg", WIDTH, HEIGHT, "", "")
    # whole 0; its children by (top, left): left half 1 (its top quarter 2 is under 5000 px), right half 3
    assert list(doc["mask_data"]) == ["1", "3", "0"] and doc["mask_keys"] == ["0", "1", "3"]
    assert doc["mask_data"]["0"]["requirements"] == [1, 3] and doc["mask_data"]["1"]["requirements"] == [2]
    assert [doc["mask_data"][k]["area"] for k in ("0", "1", "3")] == [12000, 6000, 6000]
    assert (out / "photos" / "sa_1.jpg").is_file()
    record = DCIDataset.open(out).read("sa_1-mask.json")
    assert record.mask_pixels(3).sum() == 6000 and record.masks[3].parent == 0

    checked = runner.invoke(app, ["data", "validate", str(out), "--json"])
    assert checked.exit_code == 0, checked.output
    findings = json.loads(checked.stdout)["findings"]
    assert {f["severity"] for f in findings} == {"warning"}
    assert any("not annotated yet" in f["reason"] for f in findings)
    shown = runner.invoke(app, ["data", "show", str(out), "sa_1.jpg", "--out", str(tmp_path / "sa_1.png")])
    assert shown.exit_code == 0, shown.output
    assert Image.open(tmp_path / "sa_1.png").size[0] > 0

    again = runner.invoke(app, ["masks", "from-sam", str(sa1b), "--out", str(out)])
    assert again.exit_code == 0 and "0 skeleton(s) written, 1 already there" in again.output


def test_from_sam_lists_bad_records_and_goes_on(sa1b, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.json").write_text("{not json")
    record = sa1b_record("sa_2.jpg", [box(0, 0, 100, 120)])
    record["annotations"][0]["segmentation"]["size"] = [10, 10]
    (bad / "sa_2.json").write_text(json.dumps(record))
    result = CliRunner().invoke(build_app(), ["masks", "from-sam", str(sa1b / "sa_1.json"), str(bad),
                                              "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "not valid JSON" in result.output and "/annotations/0/segmentation" in result.output
    assert "1 skeleton(s) written" in result.output
    assert not (tmp_path / "o" / "sa_2-mask.json").exists()
    run = json.loads((tmp_path / "o" / "masks-run.json").read_text())
    assert [f["file"] for f in run["failed"]] == ["broken.json", "sa_2-mask.json"]


def test_from_sam_reference_mode_drops_a_disjoint_twin(tmp_path):
    # two separate 6000 px halves with a gap between their boxes: the release's corner test fails, xor is 0
    folder = tmp_path / "in"
    folder.mkdir()
    masks = [box(0, 0, 100, 55), box(0, 65, 100, 120)]  # 5500 px each, boxes 10 px apart
    (folder / "sa_3.json").write_text(json.dumps(sa1b_record("sa_3.jpg", masks)))
    runner = CliRunner()
    for mode, count in (("default", 2), ("dci-reference", 1)):
        out = tmp_path / mode
        assert runner.invoke(build_app(), ["masks", "from-sam", str(folder), "--out", str(out), "--mode", mode]).exit_code == 0
        assert len(json.loads((out / "sa_3-mask.json").read_text())["mask_data"]) == count


def test_bad_mode_is_one_error_line(sa1b, tmp_path):
    result = CliRunner().invoke(build_app(), ["masks", "from-sam", str(sa1b), "--out", str(tmp_path), "--mode", "x"])
    assert result.exit_code == 2 and "--mode 'x'" in result.output


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny-sam"
    result = CliRunner().invoke(build_app(), ["models", "init-random", "sam", str(out), "--backend", "hf"])
    assert result.exit_code == 0, result.output
    return out


def test_extract_with_a_tiny_random_sam(tiny_sam, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.png"):
        pixels = np.zeros((48, 64, 3), dtype=np.uint8)
        pixels[10:40, 20:50] = rng.integers(100, 255, 3)  # a square with edges for the Canny pass
        Image.fromarray(pixels).save(photos / name)
    out = tmp_path / "out"
    args = ["masks", "extract", "--images", str(photos), "--sam", f"hf:{tiny_sam}", "--out", str(out),
            "--points-per-side", "3", "--pred-iou-thresh", "-1", "--stability-thresh", "0",
            "--min-region-area", "0", "--min-area", "0", "--device", "cpu"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert "random SAM weights" in result.output
    assert sorted(p.name for p in out.glob("*-mask.json")) == ["a-mask.json", "b-mask.json"]
    run = json.loads((out / "masks-run.json").read_text())
    assert run["weights"] == "random" and run["settings"]["points_per_side"] == 3
    record = DCIDataset.open(out).read("a-mask.json")
    assert (record.width, record.height, record.image) == (64, 48, "a.jpg")
    assert record.masks  # thresholds off: random logits still give masks, drawn at the photo's size
    assert all(record.mask_pixels(i).shape == (48, 64) for i in record.masks)
    checked = CliRunner().invoke(build_app(), ["data", "validate", str(out)])
    assert checked.exit_code == 0, checked.output
    again = CliRunner().invoke(build_app(), args)
    assert "0 skeleton(s) written, 2 already there" in again.output


def test_extract_lists_a_broken_photo_and_out_must_be_a_folder(tiny_sam, sa1b, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    runner = CliRunner()
    result = runner.invoke(build_app(), ["masks", "extract", "--images", str(photos), "--sam", f"hf:{tiny_sam}",
                                         "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 1 and "failed broken-mask.json" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "broken-mask.json").exists()
    (tmp_path / "file").write_text("x")
    blocked = runner.invoke(build_app(), ["masks", "from-sam", str(sa1b), "--out", str(tmp_path / "file")])
    assert blocked.exit_code == 2 and "error:" in blocked.output and "Traceback" not in blocked.output
    wrong = runner.invoke(build_app(), ["masks", "extract", "--images", str(photos), "--sam", "open_clip:ViT-B-32",
                                        "--out", str(tmp_path / "o2")])
    assert wrong.exit_code == 2 and "hf:ID_OR_DIR" in wrong.output


def test_reference_mode_sizes_masks_by_their_stated_area(tmp_path):
    from densecaption.masks.io import read_sam_record, sam_record_masks

    doc = sa1b_record("sa_4.jpg", [box(0, 0, 100, 60)])  # 6000 px
    doc["annotations"][0]["area"] = 5999  # what SAM's record says (here one less than the pixels)
    doc["annotations"][0]["predicted_iou"], doc["annotations"][0]["stability_score"] = 0.9, 0.5
    (tmp_path / "sa_4.json").write_text(json.dumps(doc))
    record = read_sam_record(tmp_path / "sa_4.json")
    (fixed,), (ref,) = sam_record_masks(record), sam_record_masks(record, "dci-reference")
    assert (fixed.size, ref.size, fixed.pixels) == (6000, 5999, 6000)
    assert fixed.score == pytest.approx(0.9 * 0.5 ** 2)  # predicted IoU x stability^2 = 0.225


def test_sam2_loads_through_the_same_path(tmp_path):
    import random

    from densecaption.masks.sam import SamRunner, SamSettings, photo_masks
    from densecaption.models.tiny_sam import init_random_sam2

    folder = init_random_sam2(tmp_path / "tiny-sam2")
    runner = SamRunner.load(f"hf:{folder}")
    assert runner.sam2 and runner.weights == "random"
    image = np.zeros((40, 56, 3), dtype=np.uint8)
    image[8:30, 10:40] = 200
    off = SamSettings(points_per_side=2, pred_iou_thresh=-1, stability_thresh=0, min_region_area=0)
    masks = photo_masks(runner, image, "dci-reference", off, rng=random.Random(0))
    assert masks and all(m.bottom <= 40 and m.right <= 56 and m.pixels > 0 for m in masks)

def test_skeleton_folder_is_annotated_into_a_record_that_validates(sa1b, tmp_path):
    """``masks from-sam`` -> ``annotate`` (its API) -> an official record: the two tools meet on the folder."""
    from fastapi.testclient import TestClient

    from densecaption.data.validate import validate_dataset
    from densecaption.web.annotate import AnnotateConfig, create_annotate_app

    skel, out = tmp_path / "skel", tmp_path / "dci"
    assert CliRunner().invoke(build_app(), ["masks", "from-sam", str(sa1b), "--out", str(skel)]).exit_code == 0
    client = TestClient(create_annotate_app(AnnotateConfig(skel, out)))
    task = client.get("/api/task/sa_1").json()
    assert task["order"] == [3, 1, 0] and task["photo_ok"]  # descending idx: every mask after its descendants
    masks = {str(i): {"label": f"part {i}", "caption": f"the part {i}."} for i in task["order"]}
    saved = client.put("/api/task/sa_1", json={"short_caption": "A grey photo.", "extra_caption": "All grey.",
                                                "masks": masks, "step": len(task["order"]) + 1})
    assert saved.status_code == 200, saved.text
    assert client.post("/api/task/sa_1/finish").json()["file"] == "annotations/sa_1-data.json"
    report = validate_dataset(out)
    # the one warning is the release's own quirk: mask 2 (under 5,000 px) stays in its parent's requirements
    assert [(f.pointer, f.severity) for f in report.findings] == [("/mask_data/1/requirements", "warning")]
    record = DCIDataset.open(out).read("sa_1-data.json")
    assert (record.image, record.masks[3].label, record.masks[0].caption) == ("sa_1.jpg", "part 3", "the part 0.")

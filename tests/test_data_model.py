"""Reader, writer, mask tree, subcrops, sDCI entry filters and the assembled summarisation texts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densecaption.data.dci import DCIDataset, DCIWriter, image_to_json
from densecaption.data.findings import RecordError, SkipLog
from densecaption.data.schema import Box, DCIImage
from densecaption.data.sdci import EntryFilter, sdci_entries
from densecaption.data.subcrop import cut, grey_background, subcrop_box
from densecaption.data.text import image_text, mask_text
from densecaption.errors import UserError
from tests.conftest import make_doc, mask_entry, write_dataset


def test_round_trip_equal_objects_and_json(tmp_path, tiny_dataset):
    ds = DCIDataset.open(tmp_path)
    first = ds.read("1-data.json")
    DCIWriter(tmp_path / "copy").write(first)
    again = DCIDataset.open(tmp_path / "copy").read("1-data.json")
    assert again == first
    original = json.loads((tiny_dataset / "complete" / "1-data.json").read_text())
    written = json.loads((tmp_path / "copy" / "densely_captioned_images" / "complete" / "1-data.json").read_text())
    assert written == original
    assert list(written["mask_data"]) == list(original["mask_data"])
    annotations = json.loads((tmp_path / "copy" / "densely_captioned_images" / "annotations" / "1-data.json")
                             .read_text())
    assert "summaries" not in annotations and annotations["mask_data"] == original["mask_data"]


def test_round_trip_keeps_unknown_keys_and_bare_strings(tmp_path):
    doc = make_doc()
    doc["summaries"]["base"] = "just one string"
    doc["crowd_worker"] = "w7"
    doc["mask_data"]["2"]["extra_field"] = [1, 2]
    write_dataset(tmp_path, {"1-data.json": doc})
    record = DCIDataset.open(tmp_path).read("1-data.json")
    assert record.summaries["base"] == ["just one string"]
    assert image_to_json(record) == doc


def test_accepts_root_or_inner_folder(tmp_path, tiny_dataset):
    assert DCIDataset.open(tmp_path).root == DCIDataset.open(tiny_dataset).root == tiny_dataset


def test_masks_are_not_decoded_while_reading(tmp_path, tiny_dataset, monkeypatch):
    import densecaption.data.schema as schema

    calls = []
    monkeypatch.setattr(schema, "decode_mask_png", lambda b64: calls.append(b64))
    record = DCIDataset.open(tmp_path).read("1-data.json")
    assert calls == [] and isinstance(record.masks[1].outer_mask, str)


def test_iteration_streams_one_file_at_a_time(tmp_path):
    docs = {f"{i}-data.json": make_doc() for i in range(5)}
    write_dataset(tmp_path, docs)
    ds = DCIDataset.open(tmp_path)
    reads = []
    original = ds.read
    ds.read = lambda f: reads.append(f) or original(f)
    it = ds.iter_images("test")
    next(it)
    assert reads == ["0-data.json"]
    assert len(list(it)) == 4 and len(reads) == 5


def test_decode_matches_written_pixels(tmp_path, tiny_dataset):
    record = DCIDataset.open(tmp_path).read("1-data.json")
    mask = record.masks[2].decode()
    assert mask.shape == (300, 400) and mask.sum() == 100 * 100
    assert mask[60, 50] and not mask[59, 50] and not mask[60, 150]


def test_children_skip_dropped_masks():
    doc = make_doc()
    doc["mask_data"]["1"]["requirements"] = [2, 99]
    from densecaption.data.dci import parse_image

    record, findings = parse_image(doc, "x.json")
    assert record.children(1) == [2]
    assert record.children(-1) == [1, 3]
    assert [f.severity for f in findings] == ["warning"]


# ---------------------------------------------------------------------------------------------- subcrops
@pytest.mark.parametrize("box, size, expected", [
    # 100x50 box in the middle: pad int(15.0)=15 and int(7.5)=7
    (Box(100, 100, 200, 150), (400, 300), Box(85, 93, 215, 157)),
    # touching the top-left corner: clamped at 0
    (Box(0, 5, 40, 45), (400, 300), Box(0, 0, 46, 51)),
    # touching the bottom-right corner: clamped to the image size
    (Box(350, 250, 400, 300), (400, 300), Box(343, 243, 400, 300)),
    # tiny box: int(0.15 * 6) = 0, no padding at all
    (Box(10, 10, 16, 13), (400, 300), Box(10, 10, 16, 13)),
    # the whole image
    (Box(0, 0, 400, 300), (400, 300), Box(0, 0, 400, 300)),
])
def test_subcrop_box(box, size, expected):
    assert subcrop_box(box, *size) == expected


def test_cut_takes_rows_then_columns_with_exclusive_ends():
    pixels = np.arange(5 * 6).reshape(5, 6)
    assert cut(pixels, Box(1, 2, 4, 5)).tolist() == [[13, 14, 15], [19, 20, 21], [25, 26, 27]]


def test_grey_background_formula():
    pixels = np.array([[[0, 30, 255], [90, 91, 92]]], dtype=np.uint8)
    mask = np.array([[True, False]])
    out = grey_background(pixels, mask)
    assert out[0, 0].tolist() == [0, 30, 255]
    assert out[0, 1].tolist() == [90 // 3 + 84, 91 // 3 + 84, 92 // 3 + 84] == [114, 114, 114]


# ----------------------------------------------------------------------------------------------- filters
def _record(doc=None) -> DCIImage:
    from densecaption.data.dci import parse_image

    record, _ = parse_image(doc or make_doc(), "1-data.json")
    return record


def test_sdci_entries_default_filter():
    entries = sdci_entries(_record(), size=(400, 300))
    assert [e.key for e in entries] == ["base", "m-1-sc"]
    assert entries[0].crop == Box(0, 0, 400, 300)
    assert entries[1].crop == subcrop_box(Box(10, 20, 250, 270), 400, 300) == Box(0, 0, 286, 300)
    assert entries[1].negatives["swaps"] == ["box the red"]
    assert entries[1].clip_scores["sum"] == 28.0


def test_filter_box_threshold_is_inclusive_on_both_sides():
    doc = make_doc()
    doc["mask_data"]["3"] = mask_entry(3, -1, [], (0, 0, 224, 223), (400, 300))
    doc["mask_data"]["2"]["bounds"] = {"topLeft": {"x": 0, "y": 0}, "bottomRight": {"x": 224, "y": 224}}
    doc["summaries"]["m-2-sc"] = ["x"]
    doc["summaries"]["m-3-sc"] = ["y"]
    keys = [e.key for e in sdci_entries(_record(doc), size=(400, 300))]
    assert keys == ["base", "m-1-sc", "m-2-sc"]  # 224x224 kept, 224x223 dropped, file order


def test_filter_options():
    doc = make_doc()
    doc["mask_data"]["1"]["mask_quality"] = 2
    record = _record(doc)
    assert [e.key for e in sdci_entries(record, size=(400, 300))] == ["base", "m-1-sc"]  # reference keeps q2
    assert [e.key for e in sdci_entries(record, EntryFilter(drop_quality=frozenset({2})), size=(400, 300))] == [
        "base"]
    no_sum = make_doc()
    del no_sum["summaries"]["m-1-sc"]
    assert [e.key for e in sdci_entries(_record(no_sum), size=(400, 300))] == ["base"]
    unfiltered = EntryFilter(min_box=0, require_summaries=False)
    assert [e.key for e in sdci_entries(_record(no_sum), unfiltered, size=(400, 300))] == [
        "base", "m-1-sc", "m-2-sc", "m-3-sc"]
    bare = make_doc()
    del bare["summaries"]
    assert sdci_entries(_record(bare), size=(400, 300)) == []


# ------------------------------------------------------------------------------------------------- texts
def test_image_text_lists_masks_in_file_order_by_quality():
    doc = make_doc()
    doc["mask_data"]["2"]["mask_quality"] = 2
    assert image_text(_record(doc)) == ("A red box.\nA red box on a grey floor."
                                        "\nThe following can also be seen in the image:\n"
                                        "box: a red box\nfloor")


def test_image_text_without_mask_lines():
    doc = make_doc()
    for m in doc["mask_data"].values():
        m["mask_quality"] = 2
    assert image_text(_record(doc)) == "A red box.\nA red box on a grey floor."


def test_mask_text_walks_descendants_and_does_not_enter_quality_2():
    size = (400, 300)
    doc = make_doc()
    doc["mask_data"] = {
        "1": mask_entry(1, -1, [2, 4, 77], (0, 0, 300, 300), size, "table", "a wooden table"),
        "2": mask_entry(2, 1, [3], (0, 0, 100, 100), size, "cup", "a cup", quality=2),
        "3": mask_entry(3, 2, [], (0, 0, 50, 50), size, "handle", "its handle"),
        "4": mask_entry(4, 1, [5], (100, 0, 200, 100), size, "plate", "a plate"),
        "5": mask_entry(5, 4, [], (100, 0, 150, 50), size, "crumb", "", quality=1),
    }
    doc["mask_keys"] = list(doc["mask_data"])
    del doc["summaries"], doc["negatives"], doc["clip_scores"]
    record = _record(doc)
    assert mask_text(record, 1) == ("This is an image of table. a wooden table"
                                    "\nThe following can also be seen in the image:\nplate: a plate\ncrumb")
    assert mask_text(record, 3) == "This is an image of handle. its handle"


def test_skip_log_strict_raises_and_lenient_counts(tmp_path):
    write_dataset(tmp_path, {"a-data.json": make_doc(), "b-data.json": "{", "c-data.json": make_doc()})
    ds = DCIDataset.open(tmp_path)
    log = SkipLog()
    assert [r.file for r in ds.iter_images("test", log)] == ["a-data.json", "c-data.json"]
    assert len(log.skipped) == 1 and log.skipped[0].findings[0].file == "complete/b-data.json"
    with pytest.raises(RecordError):
        list(ds.iter_images("test", SkipLog(strict=True)))


def test_find_by_file_id_or_photo(tmp_path):
    write_dataset(tmp_path, {"7-data.json": make_doc(image="sa_42.jpg"), "8-data.json": make_doc(image="b.jpg")})
    ds = DCIDataset.open(tmp_path)
    assert ds.find("7-data.json") == ds.find("7-data") == ds.find("7") == ds.find("sa_42.jpg") == "7-data.json"
    with pytest.raises(UserError, match="no record 'sa_0.jpg'"):
        ds.find("sa_0.jpg")

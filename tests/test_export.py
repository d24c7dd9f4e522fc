"""``data export`` and ``load_dci(...).to_hf()``: tables read back with ``datasets`` equal the records."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.dci import DCIDataset
from densecaption.data.sdci import sdci_entries


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    for fmt in ("hf", "parquet"):
        result = CliRunner().invoke(build_app(), ["data", "export", "sample", str(out / fmt), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert "wrote 13 records and 57 sDCI entries" in result.output
    return out


def summaries_of(row) -> dict:
    return {s["key"]: s["texts"] for s in row["summaries"]}


def negatives_of(row) -> dict:
    out: dict = {}
    for n in row["negatives"]:
        out.setdefault(n["key"], {})[n["kind"]] = n["texts"]
    return out


def scores_of(row) -> dict:
    out: dict = {}
    for s in row["clip_scores"]:
        out.setdefault(s["key"], {})[s["name"]] = s["value"]
    return out


def check_records(rows, dataset: DCIDataset) -> None:
    from densecaption.masks.rle import decode_rle

    assert [r["file"] for r in rows] == dataset.files()
    for row in rows:
        record = dataset.read(row["file"])
        assert row["image"]["bytes"] == record.photo_path.read_bytes()
        assert (row["short_caption"], row["extra_caption"]) == (record.short_caption, record.extra_caption)
        assert summaries_of(row) == record.summaries
        assert negatives_of(row) == (record.negatives or {})
        assert scores_of(row) == (record.clip_scores or {})
        assert [m["idx"] for m in row["masks"]] == list(record.masks)
        for m in row["masks"]:
            assert np.array_equal(decode_rle(m["rle"]), record.mask_pixels(m["idx"]))
            mask = record.masks[m["idx"]]
            assert (m["label"], m["caption"], m["quality"], m["parent"]) == (mask.label, mask.caption, mask.quality,
                                                                             mask.parent)


def check_entries(rows, dataset: DCIDataset) -> None:
    expected = [e for file in dataset.files() for e in sdci_entries(dataset.read(file))]
    assert len(rows) == len(expected)
    for row, e in zip(rows, expected):
        assert (row["file"], row["key"], row["mask_idx"]) == (e.image_file, e.key, e.mask_idx)
        assert row["crop"] == [e.crop.x0, e.crop.y0, e.crop.x1, e.crop.y1]
        assert row["summaries"] == e.summaries
        assert {n["kind"]: n["texts"] for n in row["negatives"]} == e.negatives
        assert {s["name"]: s["value"] for s in row["clip_scores"]} == (e.clip_scores or {})


def test_hf_folder_reads_back_with_load_from_disk(exported):
    from datasets import Image, load_from_disk

    dataset = DCIDataset.open("sample")
    records = load_from_disk(str(exported / "hf" / "records"))
    assert isinstance(records.features["image"], Image)
    first = records[0]["image"]  # decoded as a PIL image
    assert first.size == (records[0]["width"], records[0]["height"])
    check_records(records.cast_column("image", Image(decode=False)).to_list(), dataset)
    check_entries(load_from_disk(str(exported / "hf" / "entries")).to_list(), dataset)


def test_parquet_reads_back_with_load_dataset(exported, tmp_path):
    from datasets import Image, load_dataset

    dataset = DCIDataset.open("sample")
    records = load_dataset("parquet", data_files=str(exported / "parquet" / "records.parquet"), split="train",
                           cache_dir=str(tmp_path))
    check_records(records.cast_column("image", Image(decode=False)).to_list(), dataset)
    entries = load_dataset("parquet", data_files=str(exported / "parquet" / "entries.parquet"), split="train",
                           cache_dir=str(tmp_path))
    check_entries(entries.to_list(), dataset)


def test_load_dci_to_hf(tiny_dataset, tmp_path):
    import densecaption

    cache = str(tmp_path / "cache")
    records = densecaption.load_dci(tiny_dataset).to_hf(cache_dir=cache)
    assert records["file"] == ["1-data.json"]
    assert summaries_of(records[0]) == {"base": ["a red box on a floor", "a box"], "m-1-sc": ["the red box", "a box"]}
    # make_doc's masks: 1 (240x250 box, kept), 2 (100x100), 3 (100x100): one mask entry besides the base;
    # mask 1's crop pads 0.15 x 240 = 36 px and 0.15 x 250 = 37.5 -> 37 px: (10-36, 20-37)-(250+36, 270+37),
    # clamped to the 400x300 photo: (0, 0)-(286, 300).
    entries = densecaption.load_dci(tiny_dataset).to_hf(table="entries", cache_dir=cache)
    assert entries["key"] == ["base", "m-1-sc"]
    assert entries["crop"] == [[0, 0, 400, 300], [0, 0, 286, 300]]


def test_rle_of_a_hand_made_mask():  # the encoding export uses
    from pycocotools import mask as coco_mask

    from densecaption.masks.rle import encode_rle as rle

    # [[0 1 1]
    #  [0 1 0]] read column by column: 0 0 | 1 1 | 1 0 -> runs of 2 zeros, 3 ones, 1 zero; area 3; the box
    # spans columns 1-2 and rows 0-1: x 1, y 0, width 2, height 2.
    encoded = rle(np.array([[0, 1, 1], [0, 1, 0]], dtype=bool))
    assert encoded["size"] == [2, 3]
    coco = {"size": encoded["size"], "counts": encoded["counts"].encode()}
    assert int(coco_mask.area(coco)) == 3
    assert coco_mask.toBbox(coco).tolist() == [1.0, 0.0, 2.0, 2.0]


def test_existing_output_is_refused_without_overwrite(exported):
    result = CliRunner().invoke(build_app(), ["data", "export", "sample", str(exported / "hf")])
    assert result.exit_code == 2 and "--overwrite" in result.output

"""The bundled sample: clean, rich enough for every later command, and written out intact."""

from __future__ import annotations

import filecmp

import pytest
from PIL import Image
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.dci import DCIDataset
from densecaption.data.sample import sample_dir
from densecaption.data.schema import BASE_KEY, NEGATIVE_KINDS, mask_key
from densecaption.data.sdci import sdci_entries
from densecaption.data.validate import validate_dataset
from densecaption.tokens import ClipTokenCounter


@pytest.fixture(scope="module")
def records():
    return list(DCIDataset.open("sample").iter_images())


def test_validates_without_errors_or_warnings():
    report = validate_dataset("sample")
    assert report.findings == [], [str(f) for f in report.findings]
    assert report.files_checked == 2 * len(DCIDataset.open("sample").files())


def test_size_and_splits(records):
    ds = DCIDataset.open("sample")
    assert len(records) >= 10
    assert len(ds.files("test")) >= 8 and ds.files("train") and ds.files("valid")
    assert len({r.image for r in records}) == len(records)


def test_mask_trees(records):
    for r in records:
        assert len(r.masks) >= 4, r.file
        assert any(m.parent != -1 for m in r.masks.values()), f"{r.file}: one level only"
        assert all(m.area >= 5000 for m in r.masks.values()), r.file
    big = [sum(1 for m in r.masks.values() if m.box.width >= 224 and m.box.height >= 224) for r in records]
    assert max(big) > 7
    assert {m.quality for r in records for m in r.masks.values()} == {0, 1, 2}


def test_summaries_negatives_and_scores(records):
    count = ClipTokenCounter()
    for r in records:
        entries = sdci_entries(r)
        big = {mask_key(m.idx) for m in r.masks.values() if m.box.width >= 224 and m.box.height >= 224}
        assert {e.key for e in entries} == {BASE_KEY} | big, r.file
        for e in entries:
            assert len(e.summaries) >= 5, (r.file, e.key)
            want = 3 if e.is_base else 1
            assert {k: len(v) for k, v in e.negatives.items()} == {k: want for k in NEGATIVE_KINDS}, (r.file, e.key)
            texts = e.summaries + [t for v in e.negatives.values() for t in v]
            assert all(count(t) <= 77 for t in texts), (r.file, e.key)
            assert not set(e.summaries[:1]) & {t for v in e.negatives.values() for t in v}
            names = {"sum"} | {f"{k}_{i}" for k, v in e.negatives.items() for i in range(len(v))}
            assert set(e.clip_scores) == names, (r.file, e.key)


def test_readme_labels_random_scores_and_licences():
    text = (sample_dir() / "README.md").read_text()
    assert "random" in text and "licence" in text.lower()


def test_sample_command_writes_an_identical_copy(tmp_path):
    runner = CliRunner()
    result = runner.invoke(build_app(), ["data", "sample", str(tmp_path)])
    assert result.exit_code == 0, result.output
    cmp = filecmp.dircmp(sample_dir() / "densely_captioned_images", tmp_path / "densely_captioned_images")
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files
    again = runner.invoke(build_app(), ["data", "sample", str(tmp_path)])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_show_draws_a_png(tmp_path, records):
    out = tmp_path / "show.png"
    result = CliRunner().invoke(build_app(), ["data", "show", "sample", records[0].id, "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.size[0] >= 600 and im.size[1] >= 400
    missing = CliRunner().invoke(build_app(), ["data", "show", "sample", "nope", "--out", str(out)])
    assert missing.exit_code == 2 and "no record 'nope'" in missing.output

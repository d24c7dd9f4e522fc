"""`data stats`: Table 1 rows on a constructed dataset against values counted by hand."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.dci import DCIDataset
from densecaption.data.stats import compute_stats
from densecaption.tokens import ClipTokenCounter
from tests.conftest import make_doc, write_dataset


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture
def two_images(tmp_path):
    bare = make_doc()
    del bare["summaries"], bare["negatives"], bare["clip_scores"]
    write_dataset(tmp_path, {"a-data.json": make_doc(), "b-data.json": bare},
                  splits={"train": ["b-data.json"], "test": ["a-data.json"]})
    return DCIDataset.open(tmp_path)


def test_rows_by_hand_with_a_word_counter(two_images):
    # Whole-image text: "A red box." (3) "A red box on a grey floor." (7) "The following ... image:" (9)
    #   "box: a red box" (4) "lid: the lid" (3) "floor" (1) = 27 words.
    # Mask texts: box 9 + 9 + lid line 3 = 21; lid 8; floor (quality 1, empty caption) 6.
    # Summaries of a: base 6 + 2 = 8, m-1-sc 3 + 2 = 5.
    rows = {r.dataset: r for r in compute_stats(two_images.iter_images(), words)}
    assert (rows["DCI"].imgs, rows["DCI"].caps, rows["DCI"].tokens) == (2, 2, 54)
    assert (rows["DCI_sub"].imgs, rows["DCI_sub"].caps, rows["DCI_sub"].tokens) == (8, 8, 124)
    assert rows["DCI_sub"].toks_per_cap == rows["DCI_sub"].toks_per_img == 15.5
    assert (rows["sDCI"].imgs, rows["sDCI"].caps, rows["sDCI"].tokens) == (1, 2, 8)
    assert (rows["sDCI"].toks_per_cap, rows["sDCI"].toks_per_img) == (4.0, 8.0)
    assert (rows["sDCI_sub"].imgs, rows["sDCI_sub"].caps, rows["sDCI_sub"].tokens) == (2, 4, 13)
    assert (rows["sDCI_sub"].toks_per_cap, rows["sDCI_sub"].toks_per_img) == (3.25, 6.5)


def test_one_split(two_images):
    rows = {r.dataset: r for r in compute_stats(two_images.iter_images("train"), words)}
    assert rows["DCI"].imgs == 1 and rows["sDCI"].imgs == 0 and rows["sDCI"].toks_per_cap == 0.0


def test_clip_token_count_includes_start_and_end():
    count = ClipTokenCounter()
    assert count("") == 2
    assert count("a photo of a cat") == 7
    assert count("A  Photo of a CAT.") == 8  # case and spaces folded; the full stop is a token
    assert count.fits("word " * 75) and not count.fits("word " * 76)


def test_cli_stats_json_with_real_clip_tokens(two_images):
    result = CliRunner().invoke(build_app(), ["data", "stats", str(two_images.root), "--split", "test", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["dataset"]: r for r in json.loads(result.stdout)["rows"]}
    # "a red box on a floor" = 6 words + 2, "a box" = 2 + 2, "the red box" = 3 + 2
    assert (rows["sDCI"]["caps"], rows["sDCI"]["tokens"], rows["sDCI"]["toks_per_cap"]) == (2, 12, 6.0)
    assert (rows["sDCI_sub"]["imgs"], rows["sDCI_sub"]["tokens"], rows["sDCI_sub"]["toks_per_img"]) == (2, 21, 10.5)


def test_cli_stats_unknown_split(two_images):
    result = CliRunner().invoke(build_app(), ["data", "stats", str(two_images.root), "--split", "nope"])
    assert result.exit_code == 2 and "no split 'nope'" in result.output

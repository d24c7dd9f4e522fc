"""ARO on its mini-set (benchmarks/compositional_minisets.py) with ColourModel, whose scores are worked out by
hand there: crops, the tie rules, excluded relations, pairs under 25 items, missing photos, --sets."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from benchmarks.compositional_minisets import ColourModel, aro_mini
from densecaption.cli import build_app
from densecaption.errors import UserError
from densecaption.evaluation.benchmarks.aro import excluded_relations, vg_metric
from densecaption.evaluation.run import evaluate


@pytest.fixture(scope="module")
def aro_dir(tmp_path_factory):
    return aro_mini(tmp_path_factory.mktemp("aro"))


def test_the_157_symmetric_relations_ship_with_the_package():
    names = excluded_relations()
    assert len(names) == 157 and "beside" in names and "on" not in names


def test_vg_metric_macro_mean_drops_excluded_and_small_labels():
    # labels a: 1 of 2 right (0.5), b: 0 of 1, c: excluded. Mean (0.5 + 0) / 2 = 25 %, over 3 items.
    value, items, per = vg_metric(["a", "a", "b", "c"], [True, False, False, True], excluded=frozenset({"c"}))
    assert (value, items) == (25.0, 3) and per["c"] == {"accuracy": 100.0, "items": 1, "kept": False}
    # min_items=2 keeps only a: 50 %.
    assert vg_metric(["a", "a", "b"], [True, False, True], min_items=2)[:2] == (50.0, 2)


def test_all_four_sets_by_hand(aro_dir):
    result = evaluate("aro", ColourModel(), aro_dir)
    # VG-R: on 1/2, holding 0/1 -> (50 + 0) / 2; beside excluded; the gone.jpg item skipped.
    # VG-A: red_blue 20/25 = 80; big_small (2 items) dropped.
    # Order: captions "red" (all options equal: a tie, right), "a red" (its within-trigram shuffle with seed 1
    # is "red a", which scores 2 against the caption's 1: wrong), "blue" (all 0: right) -> 2 of 3.
    assert result.metrics["vg_relation"] == 25.0 and result.counts["vg_relation"] == 3
    assert result.metrics["vg_attribution"] == 80.0 and result.counts["vg_attribution"] == 25
    assert result.metrics["coco_order"] == pytest.approx(200 / 3) and result.counts["coco_order"] == 3
    assert result.metrics["flickr30k_order"] == pytest.approx(200 / 3) and result.counts["flickr30k_order"] == 3
    assert result.extra["missing_images"] == {"vg_relation": 1, "vg_attribution": 0, "coco_order": 1,
                                              "flickr30k_order": 0}
    assert result.extra["vg_attribution_by_label"]["big_small"]["kept"] is False
    assert result.extra["seed"] == 1 and result.weights == "random"
    # two.jpg's two crops, grey.jpg, and the two Order photos: 5 unique crops, each encoded once.
    assert result.extra["encoded_images"] == 5


def test_sets_choose_a_subset_and_a_missing_file_is_named(aro_dir, tmp_path):
    result = evaluate("aro", ColourModel(), aro_dir, sets=("vg_relation",))
    assert result.metrics["vg_relation"] == 25.0 and math.isnan(result.metrics["coco_order"])
    assert result.counts["coco_order"] == 0
    with pytest.raises(UserError, match="coco_karpathy_test.json"):
        evaluate("aro", ColourModel(), aro_dir, sets=("coco_order",), coco_dir=str(tmp_path))
    with pytest.raises(UserError, match="--sets"):
        evaluate("aro", ColourModel(), aro_dir, sets=("nope",))


def test_cli_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(build_app(), ["bench", "aro", "--data", str(tmp_path / "none"), "--model",
                                              "open_clip:ViT-B-32", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.output.strip().startswith("error:")
    assert "data fetch aro" in result.output

"""VL-CheckList on its mini-set with ColourModel: POS[0] vs NEG[0], strict >, 4-decimal file accuracies,
first N entries with a photo, and DCI's aggregation (worked out in benchmarks/compositional_minisets.py)."""

from __future__ import annotations

import pytest

from benchmarks.compositional_minisets import ColourModel, vlc_mini
from densecaption.evaluation.run import evaluate


@pytest.fixture(scope="module")
def vlc_root(tmp_path_factory):
    return vlc_mini(tmp_path_factory.mktemp("vlc"))


def test_dci_aggregation_by_hand(vlc_root):
    result = evaluate("vlchecklist", ColourModel(), vlc_root)
    m = result.metrics
    # Object/Size/large: dataset vg = mean(vg_obj 0.5, vg_subj 1.0) = 0.75, swig 0.0, hake has no entry.
    assert m["object_size_large"] == pytest.approx(37.5)
    # Attribute/color: vg 2/3 rounded to 0.6667, vaw 1.0 -> 0.83335.
    assert m["attribute_color"] == pytest.approx(83.335)
    assert m["object"] == pytest.approx(100 * (0.375 + 5) / 6)
    assert m["attribute"] == pytest.approx(100 * (0.83335 + 4) / 5)
    assert m["relation"] == 100.0
    assert result.counts["object_size_large"] == 4 and result.counts["object"] == 9
    assert result.extra["file_accuracy"]["corpus/v1/Attribute/color/vg.yaml"] == 0.6667
    assert result.extra["files_without_items"] == ["corpus/v1/Object/Size/large/hake.yaml"]
    assert result.extra["missing_images"]["corpus/v1/Object/Size/large/hake.yaml"] == 1


def test_first_entries_with_a_photo(vlc_root):
    # max_items=1: vg_obj keeps only its first (right) entry -> vg 1.0, swig 0.0: large = 50.
    # Attribute/color vg keeps [right]: 1.0 -> color 100.
    result = evaluate("vlchecklist", ColourModel(), vlc_root, max_items=1)
    assert result.metrics["object_size_large"] == pytest.approx(50.0)
    assert result.metrics["attribute_color"] == pytest.approx(100.0)

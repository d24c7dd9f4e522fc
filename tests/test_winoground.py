"""Winoground on its mini-set with ColourModel (scores worked out in benchmarks/compositional_minisets.py)."""

from __future__ import annotations

import pytest

from benchmarks.compositional_minisets import ColourModel, winoground_mini
from densecaption.errors import UserError
from densecaption.evaluation.run import evaluate


def test_text_image_group_by_hand(tmp_path):
    root = winoground_mini(tmp_path / "wg")
    result = evaluate("winoground", ColourModel(), root)
    # Item 1 right on all three; item 2 fails text (0 > 2) and image (a tie); item 3 ties: 1 of 3 each.
    assert result.metrics == pytest.approx({"text": 100 / 3, "image": 100 / 3, "group": 100 / 3})
    assert result.counts == {"text": 3, "image": 3, "group": 3}
    # The parquet file itself works as --data too.
    direct = evaluate("winoground", ColourModel(), str(next((tmp_path / "wg").rglob("*.parquet"))))
    assert direct.metrics == result.metrics and direct.data_sha256 == result.data_sha256


def test_no_parquet(tmp_path):
    with pytest.raises(UserError, match="parquet"):
        evaluate("winoground", ColourModel(), str(tmp_path))

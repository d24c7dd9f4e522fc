"""SugarCrepe on its mini-set with ColourModel (scores worked out in benchmarks/compositional_minisets.py)."""

from __future__ import annotations

import pytest

from benchmarks.compositional_minisets import ColourModel, sugarcrepe_mini
from densecaption.errors import UserError
from densecaption.evaluation.run import evaluate


def test_seven_tasks_and_mean_by_hand(tmp_path):
    result = evaluate("sugarcrepe", ColourModel(), sugarcrepe_mini(tmp_path / "sc"))
    # add_obj: right + a tie on the grey photo (strict >: wrong) = 50; replace_obj: right + wrong = 50;
    # swap_att: right + a missing photo (skipped) = 100 over 1; the rest 100. Mean (50 + 50 + 500) / 7.
    assert result.metrics == pytest.approx({"add_obj": 50.0, "add_att": 100.0, "replace_obj": 50.0,
                                            "replace_att": 100.0, "replace_rel": 100.0, "swap_obj": 100.0,
                                            "swap_att": 100.0, "mean": 600 / 7})
    assert result.counts["add_obj"] == 2 and result.counts["swap_att"] == 1 and result.counts["mean"] == 9
    assert result.extra["missing_images"]["swap_att"] == 1
    assert result.extra["encoded_images"] == 3  # photos 1, 2, 3 once each


def test_missing_file_or_images_folder(tmp_path):
    root = sugarcrepe_mini(tmp_path / "sc")
    with pytest.raises(UserError, match="--images"):
        evaluate("sugarcrepe", ColourModel(), root, images=str(tmp_path / "nowhere"))
    (tmp_path / "sc" / "swap_obj.json").unlink()
    with pytest.raises(UserError, match="swap_obj.json"):
        evaluate("sugarcrepe", ColourModel(), root)

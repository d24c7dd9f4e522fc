"""``train t2i``: the text-window warning, ``--max-text-length auto``, ``--on-truncation`` and ``--max-steps``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.errors import UserError
from densecaption.t2i.pipelines import LORA_RECORD, init_random_pipeline
from densecaption.training.t2i import TrainT2IConfig, planned_steps, train_t2i
from densecaption.training.t2i_data import auto_window, window_warning
from tests.test_train_t2i import constructed_set, offline  # noqa: F401  (offline: autouse fixture)


@pytest.fixture(scope="module")
def sd21(tmp_path_factory) -> str:
    return str(init_random_pipeline("sd21", tmp_path_factory.mktemp("t2i-window") / "sd21"))


@pytest.fixture(scope="module")
def long_set(tmp_path_factory) -> Path:
    """4 images; CLIP tokens 82, 32, 92, 82 (see constructed_set): 3 captions over 77, 4 subcaptions cut."""
    return constructed_set(tmp_path_factory.mktemp("long") / "set")


def small(captions: Path, model: str, out: Path, **kw) -> TrainT2IConfig:
    base = dict(epochs=1, batch_size=2, lr=1e-2, resolution=64, validation_steps=2, validation_every=0)
    return TrainT2IConfig(captions=str(captions), model=model, out=str(out), **{**base, **kw})


def test_auto_window_and_planned_steps_by_hand():
    assert auto_window(130, 120, 512) == 130  # longer than the default, within the maximum: what it needs
    assert auto_window(40, 120, 512) == 120  # never below the pipeline's own window
    assert auto_window(600, 120, 512) == 512  # capped at the maximum
    assert auto_window(92, 77, 77) == 77  # a fixed window stays
    assert planned_steps(10, None, 3) == (10, 30)  # 10 epochs x 3 batches
    assert planned_steps(10, 7, 3) == (3, 7)  # ceil(7 / 3) = 3 epochs, stopping at step 7
    assert planned_steps(1, 6, 3) == (2, 6)  # --max-steps overrides --epochs


def test_warning_block_names_the_counts_and_the_way_out():
    truncation = {"used": {"limit": 120, "captions": 100, "captions_truncated": 47, "subcaptions_cut": 61,
                           "base_cut": 0}}
    text = window_warning(truncation, family="pixart-alpha", encoder="T5", needed=180, longest=512, fixed=False)
    assert text.splitlines() == [
        "47 of 100 captions are cut at 120 T5 tokens; 61 subcaptions lost (the set's recall)",
        "--max-text-length 180 (or auto) keeps every caption (the longest has 180 tokens; pixart-alpha takes up "
        "to 512)"]
    fixed = window_warning(truncation, family="sd21", encoder="CLIP", needed=180, longest=77, fixed=True)
    assert "no longer window exists" in fixed
    beyond = window_warning(truncation, family="pixart-alpha", encoder="T5", needed=600, longest=512, fixed=False)
    assert "even pixart-alpha's maximum window, 512, cuts some" in beyond
    none = {"used": {**truncation["used"], "captions_truncated": 0}}
    assert window_warning(none, family="sd21", encoder="CLIP", needed=70, longest=77, fixed=True) is None


def test_max_steps_stops_exactly_and_resume_keeps_counting(sd21, long_set, tmp_path):
    out = tmp_path / "run"
    # 4 images at batch 2: 2 steps per epoch; --max-steps 3 overrides --epochs 1: 2 epochs, stop at step 3
    warnings = []
    lora = train_t2i(small(long_set, sd21, out, max_steps=3), log=lambda r: warnings.append(r.get("warning")))
    steps = [r["step"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == [1, 2, 3]
    record = json.loads((lora / LORA_RECORD).read_text())
    assert record["max_steps"] == 3 and record["steps"] == 3 and record["epochs"] == 2
    assert record["config"]["max_steps"] == 3
    # the window warning: a, c, d over 77 CLIP tokens; a and d lose 1 subcaption each, c both: 4
    shown = next(w for w in warnings if w)
    assert shown.startswith("3 of 4 captions are cut at 77 CLIP tokens; 4 subcaptions lost")
    assert "fixed 77-token window" in shown
    window = json.loads((out / "truncation.json").read_text())["window"]
    assert window["keeps_every_caption"] == 92 and window["used"] == 77 and window["fixed"] is True
    train_t2i(small(long_set, sd21, out, max_steps=5, resume="latest"))  # from the checkpoint at step 3
    steps = [r["step"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5]
    assert json.loads((lora / LORA_RECORD).read_text())["steps"] == 5


def test_on_truncation_error_stops_before_training(sd21, long_set, tmp_path):
    with pytest.raises(UserError, match="3 of 4 captions are cut at 77 CLIP tokens"):
        train_t2i(small(long_set, sd21, tmp_path / "run", on_truncation="error"))
    assert not (tmp_path / "run" / "log.jsonl").exists()
    result = CliRunner().invoke(build_app(), ["train", "t2i", "--captions", str(long_set), "--model", sd21,
                                              "--out", str(tmp_path / "cli"), "--max-text-length", "auto",
                                              "--on-truncation", "error", "--resolution", "64"])
    assert result.exit_code == 2 and "error: --on-truncation error" in result.output
    bad = CliRunner().invoke(build_app(), ["train", "t2i", "--captions", str(long_set), "--model", sd21,
                                           "--out", str(tmp_path / "bad"), "--max-text-length", "long"])
    assert bad.exit_code == 2 and "a number of tokens or 'auto'" in bad.output

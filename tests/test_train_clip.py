"""CLIP fine-tuning end to end on the sample with tiny random models: every knob, loss falls, kill and
resume, two processes under accelerate, and the adapter in `bench sdci`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.training.clip import ClipTrainConfig, train_clip

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-clip")
    assert CliRunner().invoke(build_app(), ["models", "init-random", "ViT-B-32", str(out), "--tiny"]).exit_code == 0
    return f"open_clip:local-dir:{out}"


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-hf")
    result = CliRunner().invoke(build_app(), ["models", "init-random", "ViT-B-32", str(out), "--tiny",
                                              "--backend", "hf"])
    assert result.exit_code == 0, result.output
    return f"hf:{out}"


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def run(cfg: ClipTrainConfig) -> list[dict]:
    train_clip(cfg)
    return [json.loads(line) for line in (Path(cfg.out) / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("knobs", [
    {"captions": "first", "batching": "rand", "neg_loss": "bce"},
    {"captions": "pick1", "batching": "imggroup", "neg_loss": "negclip"},
    {"captions": "pickN", "pick_n": 3, "batching": "imggroup", "neg_loss": "none", "negative_kind": "any"},
], ids=["first-rand-bce", "pick1-imggroup-negclip", "pickN-imggroup-none"])
def test_each_knob_trains_and_writes_an_adapter(tiny, tmp_path, knobs):
    cfg = ClipTrainConfig(data="sample", model=tiny, out=str(tmp_path), epochs=1, batch_size=4, **knobs)
    log = run(cfg)
    steps = [r for r in log if "loss" in r]
    assert steps and all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    assert ("neg" in steps[0]) == (knobs["neg_loss"] == "bce")
    assert any("valid_all_scm" in r for r in log)
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert {"q_proj", "k_proj", "v_proj", "out_proj", "c_fc", "c_proj"} <= set(config["target_modules"])


def test_training_loss_falls(tiny, tmp_path):
    cfg = ClipTrainConfig(data="sample", model=tiny, out=str(tmp_path), split="test", valid_split=None, epochs=6,
                          batch_size=8, lr=3e-3, lora_r=8, lora_dropout=0.0, neg_loss="none")
    log = run(cfg)
    by_epoch: dict[int, list[float]] = {}
    for r in log:
        by_epoch.setdefault(r["epoch"], []).append(r["loss"])
    first, last = sum(by_epoch[0]) / len(by_epoch[0]), sum(by_epoch[5]) / len(by_epoch[5])
    assert last < 0.8 * first, (first, last)


def test_hf_clip_trains_too(tiny_hf, tmp_path):
    cfg = ClipTrainConfig(data="sample", model=tiny_hf, out=str(tmp_path), epochs=1, batch_size=4)
    assert any("loss" in r for r in run(cfg))
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert "fc1" in config["target_modules"] and config["bias"] == "lora_only"


def _cli(*args: str, env: dict | None = None, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    command = (launcher or [sys.executable]) + ["-m", "densecaption", "train", "clip", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_kill_and_resume_ends_with_the_same_weights(tiny, tmp_path):
    common = ["--data", "sample", "--model", tiny, "--epochs", "2", "--batch-size", "4", "--captions", "pick1",
              "--checkpoint-every", "2", "--valid-split", ""]
    whole = _cli(*common, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = _cli(*common, "--out", str(tmp_path / "resumed"), "--stop-after-steps", "3")
    assert killed.returncode == 137 and not (tmp_path / "resumed" / "adapter").exists()
    resumed = _cli(*common, "--out", str(tmp_path / "resumed"), "--resume", "latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = adapter_weights(tmp_path / "whole" / "adapter"), adapter_weights(tmp_path / "resumed" / "adapter")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logged = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged))  # the repeated step after the checkpoint is logged once


def test_resume_without_checkpoint_is_a_clear_error(tiny, tmp_path):
    result = CliRunner().invoke(build_app(), ["train", "clip", "--data", "sample", "--model", tiny, "--out",
                                              str(tmp_path), "--resume", "latest"])
    assert result.exit_code == 2 and "no complete checkpoint" in result.output
    bad = CliRunner().invoke(build_app(), ["train", "clip", "--data", "sample", "--model", tiny, "--out",
                                           str(tmp_path), "--batching", "shuffle"])
    assert bad.exit_code == 2 and "--batching 'shuffle'" in bad.output


def test_two_processes_and_the_adapter_in_bench(tiny, tmp_path):
    launcher = [str(Path(sys.executable).parent / "accelerate"), "launch", "--num_processes", "2",
                "--num_machines", "1", "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    result = _cli("--data", "sample", "--model", tiny, "--epochs", "1", "--batch-size", "2", "--batching",
                  "imggroup", "--out", str(tmp_path / "run"), launcher=launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    adapter = tmp_path / "run" / "adapter"
    assert (adapter / "adapter_model.safetensors").exists()
    bench = CliRunner().invoke(build_app(), ["bench", "sdci", "--data", "sample", "--model", tiny, "--lora",
                                             str(adapter), "--out", str(tmp_path / "results"), "--device", "cpu"])
    assert bench.exit_code == 0, bench.output
    record = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert record["lora"] == str(adapter) and record["counts"]["all_scm"] == 44

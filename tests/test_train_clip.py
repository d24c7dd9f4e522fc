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
from tests.http_files import closed_port

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
    missing = tmp_path / "checkpoints" / "step-0000009"
    result = CliRunner().invoke(build_app(), ["train", "clip", "--data", "sample", "--model", tiny, "--out",
                                              str(tmp_path), "--resume", str(missing)])
    assert result.exit_code == 2 and "no complete checkpoint" in result.output
    # 'latest' with no complete checkpoint yet (killed before the first one) starts over instead
    from densecaption.training.run_state import STATE_FILE, nothing_to_resume
    assert nothing_to_resume(tmp_path, "latest") and not nothing_to_resume(tmp_path, None)
    missing.mkdir(parents=True)
    assert nothing_to_resume(tmp_path, "latest")  # a checkpoint folder without its state file is not complete
    (missing / STATE_FILE).write_text("{}")
    assert not nothing_to_resume(tmp_path, "latest")
    bad = CliRunner().invoke(build_app(), ["train", "clip", "--data", "sample", "--model", tiny, "--out",
                                           str(tmp_path), "--batching", "shuffle"])
    assert bad.exit_code == 2 and "--batching 'shuffle'" in bad.output


def test_two_processes_and_the_adapter_in_bench(tiny, tmp_path):
    launcher = [str(Path(sys.executable).parent / "accelerate"), "launch", "--num_processes", "2",
                "--num_machines", "1", "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(closed_port())]  # not torchrun's default 29500: files run in parallel
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


# ------------------------------------------------------------------ adapters refuse another base model
def _init_random(out: Path, arch: str = "ViT-B-32", *extra: str) -> str:
    result = CliRunner().invoke(build_app(), ["models", "init-random", arch, str(out), "--tiny", *extra])
    assert result.exit_code == 0, result.output
    return f"open_clip:local-dir:{out}"


@pytest.fixture(scope="module")
def trained_run(tiny, tmp_path_factory) -> Path:
    """A finished one-epoch run on the tiny model (no validation), for tests that only read it or copy it."""
    out = tmp_path_factory.mktemp("trained-run")
    train_clip(ClipTrainConfig(data="sample", model=tiny, out=str(out), split="test", valid_split=None, epochs=1,
                               batch_size=16, lora_dropout=0.0))
    return out


def test_adapter_records_its_base_model(tiny, trained_run):
    record = json.loads((trained_run / "adapter" / "densecaption_adapter.json").read_text())
    assert record["base"]["spec"] == tiny
    assert len(record["base"]["architecture"]) == 64 and len(record["base"]["weights"]) == 64


def test_adapter_is_refused_on_another_base_model(tiny, trained_run, tmp_path):
    from densecaption.errors import UserError
    from densecaption.models.registry import load_model

    adapter = str(trained_run / "adapter")
    patch16 = _init_random(tmp_path / "b16", "ViT-B-16")  # same layer widths: peft alone would apply it
    reseeded = _init_random(tmp_path / "seed1", "ViT-B-32", "--seed", "1")
    bench = CliRunner().invoke(build_app(), ["bench", "sdci", "--data", "sample", "--model", patch16, "--lora",
                                             adapter, "--out", str(tmp_path / "results"), "--device", "cpu"])
    assert bench.exit_code == 2, bench.output
    assert "another architecture" in bench.output and repr(tiny) in bench.output.replace("\n", "")
    assert not list((tmp_path / "results").glob("*.json"))
    with pytest.raises(UserError, match="same architecture with other weights"):
        load_model(reseeded, device="cpu", lora=adapter)
    same = CliRunner().invoke(build_app(), ["bench", "sdci", "--data", "sample", "--model", tiny, "--lora",
                                            adapter, "--out", str(tmp_path / "results"), "--device", "cpu"])
    assert same.exit_code == 0, same.output
    assert json.loads(next((tmp_path / "results").glob("*.json")).read_text())["lora"] == adapter


def test_adapter_without_record_loads_if_every_weight_finds_its_layer(tiny, trained_run, tmp_path):
    import shutil

    from safetensors.torch import save_file

    from densecaption.errors import UserError
    from densecaption.models.registry import load_model

    plain = tmp_path / "plain"  # as adapters made elsewhere (e.g. DCI's released ones): peft files only
    shutil.copytree(trained_run / "adapter", plain)
    (plain / "densecaption_adapter.json").unlink()
    assert load_model(tiny, device="cpu", lora=str(plain)).lora == str(plain)

    stray = tmp_path / "stray"  # weights for layers this model does not have: peft would skip them silently
    shutil.copytree(plain, stray)
    weights = adapter_weights(plain)
    save_file({k.replace("transformer.resblocks.", "transformer.blocks."): v for k, v in weights.items()},
              str(stray / "adapter_model.safetensors"))
    with pytest.raises(UserError, match="match no layer of this model"):
        load_model(tiny, device="cpu", lora=str(stray))

    partial = tmp_path / "partial"  # a LoRA layer of this model without weights in the adapter
    shutil.copytree(plain, partial)
    save_file({k: v for k, v in weights.items() if ".resblocks.1.attn.q_proj.lora_B" not in k},
              str(partial / "adapter_model.safetensors"))
    with pytest.raises(UserError, match="not in the adapter"):
        load_model(tiny, device="cpu", lora=str(partial))


# ------------------------------------------------------------------ one run per folder
def test_rerun_without_resume_is_refused_and_overwrite_starts_over(tiny, trained_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    log_before = (out / "log.jsonl").read_text()
    args = ["train", "clip", "--data", "sample", "--model", tiny, "--out", str(out), "--split", "test",
            "--valid-split", "", "--epochs", "1", "--batch-size", "16", "--lora-dropout", "0"]
    again = CliRunner().invoke(build_app(), args)
    assert again.exit_code == 2
    assert "--resume latest" in again.output and "--overwrite" in again.output
    assert (out / "log.jsonl").read_text() == log_before
    both = CliRunner().invoke(build_app(), args + ["--overwrite", "--resume", "latest"])
    assert both.exit_code == 2 and "exclude each other" in both.output

    stale = out / "checkpoints" / "step-9999999"
    stale.mkdir()
    over = CliRunner().invoke(build_app(), args + ["--overwrite"])
    assert over.exit_code == 0, over.output
    assert not stale.exists()
    assert (out / "log.jsonl").read_text() == log_before  # the same run again, logged once, not appended


def test_a_second_run_into_the_same_folder_fails_at_once(tiny, tmp_path):
    from densecaption.files import lock_or_fail

    out = tmp_path / "run"
    out.mkdir()
    lock = lock_or_fail(out, "this training run")  # as a run in progress holds it
    try:
        result = CliRunner().invoke(build_app(), ["train", "clip", "--data", "sample", "--model", tiny, "--out",
                                                  str(out), "--epochs", "1"])
    finally:
        lock.release()
    assert result.exit_code == 2 and "another run is writing" in result.output
    assert not (out / "log.jsonl").exists()


# ------------------------------------------------------------------ records that fail to parse
def test_bad_records_are_counted_and_strict_stops(tiny, tmp_path):
    from tests.conftest import make_doc, write_dataset

    data = write_dataset(tmp_path / "data", {"1-good.json": make_doc(), "2-bad.json": "{not json"})
    args = ["train", "clip", "--data", str(data), "--model", tiny, "--split", "test", "--valid-split", "",
            "--epochs", "1", "--batch-size", "2"]
    lenient = CliRunner().invoke(build_app(), args + ["--out", str(tmp_path / "lenient")])
    assert lenient.exit_code == 0, lenient.output
    assert "2-bad.json" in lenient.output and "1 record(s) skipped" in lenient.output
    strict = CliRunner().invoke(build_app(), args + ["--out", str(tmp_path / "strict"), "--strict"])
    assert strict.exit_code == 1 and "2-bad.json" in strict.output
    assert not (tmp_path / "strict" / "adapter").exists()

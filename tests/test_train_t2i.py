"""Text-to-image LoRA training end to end with tiny random pipelines: PixArt-alpha and SD 2.1 train on a
caption set from `compose set`, the LoRA loads back and changes the images; kill and resume end with the
same weights; texts are encoded once per unique caption; truncation counts match hand-computed ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from densecaption.captionsets.build import data_info, write_one
from densecaption.captionsets.compose import CaptionSetConfig
from densecaption.captionsets.source import prepare_dataset
from densecaption.cli import build_app
from densecaption.data.dci import DCIDataset
from densecaption.data.findings import SkipLog
from densecaption.errors import UserError
from densecaption.t2i import pipelines
from densecaption.t2i.families import FAMILIES
from densecaption.t2i.pipelines import LORA_KIND, LORA_RECORD, init_random_pipeline, load_pipeline
from densecaption.training.t2i import CHECKPOINT_LORA, TrainT2IConfig, train_t2i
from densecaption.training.t2i_data import pipeline_tokenizer, read_captions, truncation_report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import, so patch it too


@pytest.fixture(scope="module")
def caption_set(tmp_path_factory) -> Path:
    """The sample's train split as a caption set (P=1, K=2), as `compose set` writes it."""
    out = tmp_path_factory.mktemp("set") / "p1_k2"
    dataset = DCIDataset.open("sample")
    config = CaptionSetConfig(precision=1, submasks=2)
    prepared = prepare_dataset(dataset, "train", config, SkipLog(strict=True))
    write_one(prepared, config, out, ["folder", "jsonl"], data_info(dataset, "train"), [], overwrite=False)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("t2i-models")
    return {name: str(init_random_pipeline(name, root / name)) for name in ("sd21", "pixart-alpha")}


def small(captions: Path | str, model: str, out: Path, **kw) -> TrainT2IConfig:
    base = dict(epochs=1, batch_size=2, lr=1e-2, resolution=64, validation_steps=2, validation_every=0)
    return TrainT2IConfig(captions=str(captions), model=model, out=str(out), **{**base, **kw})


def log_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def generate(pipe, family: str) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(FAMILIES.get(family).exact_size_kwargs)
    if family == "pixart-alpha":
        kwargs["clean_caption"] = False
    return pipe("a cat on a table", num_inference_steps=2, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(0), **kwargs).images


@pytest.mark.parametrize("family", ["sd21", "pixart-alpha"])
def test_trains_on_a_caption_set_and_the_lora_loads_back(caption_set, models, tmp_path, family):
    from peft.utils import get_peft_model_state_dict

    out = tmp_path / "run"
    lora = train_t2i(small(caption_set, models[family], out, validation_every=1))
    assert lora == out / "lora"
    record = json.loads((lora / LORA_RECORD).read_text())
    manifest_bytes = (caption_set / "manifest.json").read_bytes()
    assert record["kind"] == LORA_KIND and record["format_version"] == 1 and record["family"] == family
    assert record["model"] == models[family] and record["base_weights"] == "random"
    assert record["captions"] == str(caption_set) and record["caption_set"] == json.loads(manifest_bytes)
    import hashlib

    assert record["caption_set_manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()
    assert record["epochs"] == 1 and record["steps"] == 2  # 3 images, batch 2
    assert record["config"]["max_text_length"] == FAMILIES.get(family).max_text_length
    assert record["config"]["resolution"] == 64
    assert record["truncation"] == json.loads((out / "truncation.json").read_text())
    assert record["truncation"]["parts_from"] == "captions.jsonl" and record["truncation"]["used"]["captions"] == 3
    assert [r["step"] for r in log_of(out)] == [0, 1, 2]
    assert json.loads((out / "train_config.json").read_text())["model"] == models[family]
    shown = json.loads((out / "validation" / "epoch-001" / "prompts.json").read_text())
    first = (caption_set / "images" / "metadata.jsonl").read_text().splitlines()[0]
    assert shown["images"][0]["prompt"] == json.loads(first)["text"] and len(shown["images"]) == 2
    assert Image.open(out / "validation" / "epoch-001" / "00.png").size == (64, 64)

    base, _ = load_pipeline(models[family])
    tuned, resolved = load_pipeline(models[family], lora=lora)
    denoiser = getattr(tuned, FAMILIES.get(family).denoiser)
    adapter = "densecaption" if FAMILIES.get(family).lora_format == "diffusers" else "default"
    loaded = get_peft_model_state_dict(denoiser, adapter_name=adapter)
    trained = load_file(str(next((out / "checkpoints").glob("step-*")) / CHECKPOINT_LORA))
    assert loaded.keys() == trained.keys() and all(torch.equal(loaded[k], trained[k]) for k in trained)
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in trained.items())
    assert np.abs(generate(tuned, family) - generate(base, family)).max() > 1e-3


def test_kill_and_resume_ends_with_the_same_weights(caption_set, models, tmp_path):
    common = ["--captions", str(caption_set), "--model", models["sd21"], "--epochs", "2", "--batch-size", "1",
              "--resolution", "64", "--checkpoint-every", "2", "--validation-every", "0", "--lr", "0.01"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "densecaption", "train", "t2i", *common, *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)

    killed = cli("--out", str(tmp_path / "resumed"), "--stop-after-steps", "3")
    assert killed.returncode == 137, killed.stderr[-2000:]
    assert not (tmp_path / "resumed" / "lora").exists()
    resumed = cli("--out", str(tmp_path / "resumed"), "--resume", "latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "encoded 0 texts and 0 images" in resumed.stdout  # the caches of the killed run were reused
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): bit-equal sums need the same threads
    try:
        whole = train_t2i(small(caption_set, models["sd21"], tmp_path / "whole", epochs=2, batch_size=1,
                                checkpoint_every=2))
    finally:
        torch.set_num_threads(threads)
    a = load_file(str(whole / "pytorch_lora_weights.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "lora" / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logged = [r["step"] for r in log_of(tmp_path / "resumed") if "loss" in r]
    assert logged == list(range(1, 7))  # the steps after the checkpoint are logged once


def constructed_set(root: Path) -> Path:
    """A caption set whose parts have known CLIP token counts: "cat " * n is n tokens."""
    images = root / "images"
    images.mkdir(parents=True)
    captions = {"a": ["cat " * 40, "dog " * 30, "red " * 10],   # 80 content tokens: the last part is cut
                "b": ["cat " * 10, "dog " * 10, "red " * 10],   # 30: fits
                "c": ["cat " * 80, "dog " * 5, "red " * 5],     # 90: even the base summary is cut
                "d": ["cat " * 40, "dog " * 30, "red " * 10]}   # another image with caption a
    meta, rows = [], []
    rng = np.random.default_rng(0)
    for key, parts in captions.items():
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(images / f"{key}.png")
        text = " ".join(p.strip() for p in parts)
        meta.append({"file_name": f"{key}.png", "text": text, "image_id": key})
        rows.append({"image_id": key, "text": text, "parts": [{"text": p.strip()} for p in parts]})
    (images / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "manifest.json").write_text(json.dumps({"kind": "densecaption.caption-set", "format_version": 1,
                                                    "files": {"folder": "images", "jsonl": "captions.jsonl"}}))
    return root


def test_truncation_counts_match_hand_computed_ones(models, tmp_path):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(Path(models["sd21"]) / "tokenizer"))
    counter = pipeline_tokenizer(tokenizer, "clip", 77, lowercase=False)
    assert counter.count("cat " * 40) == 42 and counter.special == 2
    data = read_captions(str(constructed_set(tmp_path / "set")))
    assert data.parts_from == "captions.jsonl" and [len(r.parts) for r in data.rows] == [3, 3, 3, 3]
    given_images = read_captions(str(tmp_path / "set" / "images"))  # the set's image folder: still the set
    assert given_images.manifest == data.manifest and given_images.parts_from == "captions.jsonl"
    report = truncation_report(data.rows, counter, longer=(85, 100), parts_from=data.parts_from)
    used = report["used"]
    # a and d: 82 tokens, the third part ends at 80 > 75 content tokens; c: 92, every part ends past 75
    assert (used["captions"], used["captions_truncated"], used["subcaptions"], used["subcaptions_cut"],
            used["base_cut"], used["captions_with_cut_subcaption"]) == (4, 3, 8, 4, 1, 3)
    # at 85 (83 content tokens) only c is truncated, and only its two subcaptions are cut; at 100 nothing
    assert [(r["limit"], r["captions_truncated"], r["subcaptions_cut"], r["base_cut"]) for r in report["longer"]] \
        == [(85, 1, 2, 0), (100, 0, 0, 0)]
    assert report["summary"].startswith("truncation at 77 tokens (clip): 3/4 captions truncated, 4/8 subcaptions cut")

    bare = tmp_path / "bare"
    bare.mkdir()
    for item in (tmp_path / "set" / "images").iterdir():
        (bare / item.name).write_bytes(item.read_bytes())
    whole = read_captions(str(bare))
    assert whole.manifest is None and whole.parts_from is None and len(whole.rows) == 4
    report = truncation_report(whole.rows, counter, longer=(), parts_from=None)
    assert report["used"]["captions_truncated"] == 3 and report["used"]["subcaptions_cut"] is None


def test_texts_are_encoded_once_per_unique_caption(models, tmp_path, monkeypatch):
    seen: list[str] = []
    resolve = pipelines.resolve_model

    def counting_family(spec: str):
        """The model resolved as usual, its family's text encoding counting the texts it is given."""
        resolved = resolve(spec)
        training = resolved.family.training

        def counting(pipe, texts, *args):
            seen.extend(texts)
            return training.encode(pipe, texts, *args)

        return replace(resolved, family=replace(resolved.family, training=replace(training, encode=counting)))

    monkeypatch.setattr(pipelines, "resolve_model", counting_family)
    captions = constructed_set(tmp_path / "set")
    out = tmp_path / "run"
    train_t2i(small(captions, models["sd21"], out, batch_size=4, text_batch_size=2))
    assert len(seen) == 3 and len(set(seen)) == 3  # four images, three distinct captions, no prompts
    assert json.loads((out / "truncation.json").read_text())["used"]["subcaptions_cut"] == 4
    first = log_of(out)[0]
    assert (first["unique_texts"], first["encoded_texts"], first["encoded_images"]) == (3, 3, 4)
    seen.clear()
    train_t2i(small(captions, models["sd21"], out, batch_size=4, resume="latest"))
    resumed = [r for r in log_of(out) if "encoded_texts" in r][-1]
    assert seen == [] and resumed["encoded_texts"] == 0  # the cache on disk answered


def test_bad_inputs_are_clear_errors(caption_set, models, tmp_path):
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "manifest.json").write_text(json.dumps({"kind": "densecaption.caption-grid", "sets": []}))
    with pytest.raises(UserError, match="a grid of caption sets"):
        train_t2i(small(tmp_path / "grid", models["sd21"], tmp_path / "o"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text(json.dumps({"kind": "densecaption.t2i-images"}))
    with pytest.raises(UserError, match=r"other/manifest.json: not a caption-set manifest"):
        train_t2i(small(tmp_path / "other", models["sd21"], tmp_path / "o"))
    with pytest.raises(UserError, match="not a folder"):
        train_t2i(small(tmp_path / "missing", models["sd21"], tmp_path / "o"))
    with pytest.raises(UserError, match="--max-text-length 120: sd21 encodes at most 77"):
        train_t2i(small(caption_set, models["sd21"], tmp_path / "o", max_text_length=120))
    with pytest.raises(UserError, match="--resolution 40"):
        train_t2i(small(caption_set, models["sd21"], tmp_path / "o", resolution=40))
    with pytest.raises(UserError, match="--mixed-precision"):
        train_t2i(small(caption_set, models["sd21"], tmp_path / "o", mixed_precision="fp8"))


def test_cli_end_to_end(caption_set, models, tmp_path):
    out = tmp_path / "run"
    args = ["train", "t2i", "--captions", str(caption_set), "--model", models["pixart-alpha"], "--out", str(out),
            "--epochs", "1", "--batch-size", "3", "--resolution", "64", "--max-text-length", "64",
            "--validation-steps", "2", "--validation-prompts", "a red cat"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert "truncation at 64 tokens" in result.output and "at 256: 0" in result.output
    assert f"densecaption t2i generate --model {models['pixart-alpha']} --lora {out / 'lora'}" in result.output
    shown = json.loads((out / "validation" / "epoch-001" / "prompts.json").read_text())
    assert [i["prompt"] for i in shown["images"]] == ["a red cat"]
    again = CliRunner().invoke(build_app(), args)
    assert again.exit_code == 2 and "--resume latest" in again.output


def test_sdxl_trains_a_step(caption_set, tmp_path):
    model = str(init_random_pipeline("sdxl", tmp_path / "sdxl"))
    lora = train_t2i(small(caption_set, model, tmp_path / "run", batch_size=3))
    assert json.loads((lora / LORA_RECORD).read_text())["steps"] == 1
    pipe, _ = load_pipeline(model, lora=lora)
    assert generate(pipe, "sdxl").shape == (1, 64, 64, 3)

"""Text-to-image pipelines: resolving model specs, tiny random pipelines of every family (written, loaded
back through the real loading path, generating), and LoRA folders that do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.errors import UserError
from densecaption.models.weights import MARKER
from densecaption.t2i.families import FAMILIES, families
from densecaption.t2i.pipelines import LORA_KIND, LORA_RECORD, init_random_pipeline, load_pipeline, resolve_model


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import, so patch it too


@pytest.fixture(scope="module")
def random_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("t2i-models")
    return {name: init_random_pipeline(name, root / name, seed=1) for name in FAMILIES}


def test_family_names_resolve_to_their_hub_checkpoints():
    for family in families():
        name = family.name
        resolved = resolve_model(name)
        assert resolved.family is family and resolved.source == family.hub_id and resolved.weights == "pretrained"
        assert resolve_model(family.hub_id).family is family
    assert FAMILIES.get("pixart-alpha").max_text_length == 120 and FAMILIES.get("sd21").max_text_length == 77
    assert FAMILIES.get("pixart-alpha").lora_targets[:4] == ("to_k", "to_q", "to_v", "to_out.0")


def test_bad_specs_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="not a model family"):
        resolve_model("no such model!")
    with pytest.raises(UserError, match="no model_index.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(UserError, match="FluxPipeline"):
        resolve_model(str(tmp_path))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="a file"):
        resolve_model(str(tmp_path / "file.txt"))
    with pytest.raises(UserError, match="cannot read the hub model"):
        resolve_model("someone/unknown-pipeline")
    with pytest.raises(UserError, match=r"unknown text-to-image family 'dalle' \(known: pixart-alpha, sd21, sdxl\)"):
        init_random_pipeline("dalle", tmp_path / "x")
    with pytest.raises(UserError, match="unknown text-to-image family 'sd-21'; did you mean 'sd21'"):
        init_random_pipeline("sd-21", tmp_path / "x")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_random_pipeline_loads_back_and_generates(random_models, family):
    folder = random_models[family]
    marker = json.loads((folder / MARKER).read_text())
    assert marker["weights"] == "random" and marker["family"] == family and marker["test_tokenizer"] is True
    pipe, resolved = load_pipeline(str(folder))
    assert resolved.family.name == family and resolved.weights == "random"
    assert resolved.source == str(folder.resolve())
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(FAMILIES.get(family).exact_size_kwargs)
    if family == "pixart-alpha":
        kwargs["clean_caption"] = False
    images = [pipe("a red cat on a wooden table", num_inference_steps=2, height=64, width=64, output_type="np",
                   generator=torch.Generator().manual_seed(0), **kwargs).images for _ in range(2)]
    assert images[0].shape == (1, 64, 64, 3) and np.isfinite(images[0]).all()
    assert np.array_equal(images[0], images[1])  # same seed, same image


def test_pixart_test_tokenizer_is_t5_shaped(random_models):
    pipe, _ = load_pipeline(str(random_models["pixart-alpha"]))
    tok = pipe.tokenizer
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    ids = tok("a red cat on the table")["input_ids"]
    assert ids[-1] == 1 and 2 not in ids and len(ids) < 10
    assert len(tok) <= pipe.text_encoder.config.vocab_size


def test_lora_of_another_family_is_refused(random_models, tmp_path):
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / LORA_RECORD).write_text(json.dumps({"kind": LORA_KIND, "family": "sdxl", "model": "sdxl"}))
    with pytest.raises(UserError, match="trained for the 'sdxl' family"):
        load_pipeline(str(random_models["sd21"]), lora=lora)
    with pytest.raises(UserError, match="not a folder"):
        load_pipeline(str(random_models["sd21"]), lora=tmp_path / "missing")
    (lora / LORA_RECORD).unlink()
    with pytest.raises(UserError, match="pytorch_lora_weights.safetensors"):
        load_pipeline(str(random_models["sd21"]), lora=lora)
    with pytest.raises(UserError, match="adapter_config.json"):
        load_pipeline(str(random_models["pixart-alpha"]), lora=lora)


def test_models_init_random_diffusers_cli(tmp_path):
    out = tmp_path / "sd"
    result = CliRunner().invoke(build_app(), ["models", "init-random", "sd21", str(out), "--backend", "diffusers"])
    assert result.exit_code == 0, result.output
    assert f"--model {out}" in result.output and (out / "model_index.json").is_file()
    bad = CliRunner().invoke(build_app(), ["models", "init-random", "dalle", str(tmp_path / "x"), "--backend",
                                           "diffusers"])
    assert bad.exit_code == 2 and "unknown text-to-image family 'dalle'" in bad.output

"""BLIP and FLAVA through ``hf:``: tiny random folders written by their RANDOM_MODELS entries and loaded back
through ``load_model`` (the real path), held to the model contract, their scores checked against the
transformers model's own forward, and run on sDCI's sample (numbers labelled random)."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from densecaption.errors import UserError
from densecaption.models.base import EmbeddingModel, ImageTextModel
from densecaption.models.random_init import RANDOM_MODELS
from densecaption.models.registry import load_model

LONG_TEXT = "a dog sits on the grass under a tree " * 40  # 360 words: past the tiny models' 64 positions
TEXTS = ["a red dog", "two cats on a wooden table", "the sky"]
# spec suffix -> (random model entry, an EmbeddingModel?)
SPECS = {"blip-itm": ("blip-itm", "", False), "blip-itc": ("blip-itm", "#head=itc", True),
         "flava-itc": ("flava", "", True), "flava-itm": ("flava", "#head=itm", False)}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("scorers")
    return {name: str(RANDOM_MODELS.get(name)(name, root / name, seed=0)) for name in ("blip-itm", "flava")}


@pytest.fixture(scope="module")
def models(folders) -> dict[str, ImageTextModel]:
    return {key: load_model(f"hf:{folders[entry]}{suffix}", device="cpu")
            for key, (entry, suffix, _) in SPECS.items()}


def images() -> list[Image.Image]:
    return [Image.new("RGB", (40, 30), colour) for colour in ("red", "white", "navy")]


@pytest.mark.parametrize("key", SPECS)
def test_meets_the_model_contract(models, key):
    model, embedding = models[key], SPECS[key][2]
    assert isinstance(model, ImageTextModel) and model.weights == "random" and model.notes
    assert isinstance(model, EmbeddingModel) == embedding
    image_features, text_features = model.encode_images(images()), model.encode_texts(TEXTS)
    for features, n in ((image_features, 3), (text_features, len(TEXTS))):
        assert features.ndim == 2 and features.shape[0] == n and features.dtype == torch.float32
        assert torch.isfinite(features).all()
        if embedding:
            assert torch.allclose(features.norm(dim=-1), torch.ones(n), atol=1e-4)
    assert torch.equal(model.encode_images(images()), image_features)
    assert torch.equal(model.encode_texts(TEXTS), text_features)
    scores = model.similarity(image_features, text_features)
    assert scores.shape == (3, len(TEXTS)) and torch.isfinite(scores).all()
    # Pairs scored in any grouping give the same numbers (a pair scorer scores each pair on its own).
    assert torch.allclose(model.similarity(image_features[2:], text_features[1:2]), scores[2:, 1:2], atol=1e-5)
    before = model.truncated_texts
    model.encode_texts([LONG_TEXT, "a cat", LONG_TEXT + " again"])
    assert model.truncated_texts == before + 2


def test_blip_scores_are_transformers_own(models, folders):
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    net = BlipForImageTextRetrieval.from_pretrained(folders["blip-itm"]).eval()
    processor = BlipProcessor.from_pretrained(folders["blip-itm"])
    inputs = processor(images=images()[:1] * len(TEXTS), text=TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        itm = net(**inputs, use_itm_head=True).itm_score  # (texts, 2): [no match, match] logits
        itc = net(**inputs, use_itm_head=False).itm_score  # (1 image repeated, texts) cosines
    itm_model, itc_model = models["blip-itm"], models["blip-itc"]
    ours = itm_model.similarity(itm_model.encode_images(images()[:1]), itm_model.encode_texts(TEXTS))[0]
    assert torch.allclose(ours, itm[:, 1] - itm[:, 0], atol=1e-4)  # log-odds of "match"
    ours = itc_model.similarity(itc_model.encode_images(images()[:1]), itc_model.encode_texts(TEXTS))[0]
    assert torch.allclose(ours, itc[0], atol=1e-5)


def test_flava_contrastive_is_its_models_own(models, folders):
    from transformers import FlavaModel, FlavaProcessor

    net = FlavaModel.from_pretrained(folders["flava"]).eval()
    processor = FlavaProcessor.from_pretrained(folders["flava"])
    inputs = processor(images=images()[:1], text=TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        out = net(**inputs)
        image = torch.nn.functional.normalize(net.image_projection(out.image_embeddings[:, 0]), dim=-1)
        text = torch.nn.functional.normalize(net.text_projection(out.text_embeddings[:, 0]), dim=-1)
        expected = float(net.logit_scale.exp()) * float(image @ text.T)  # exp(logit_scale) * cosine
    model = models["flava-itc"]
    assert float(model.score(images()[:1], TEXTS[:1])) == pytest.approx(expected, abs=1e-4)


def test_bad_head_is_one_clear_error(folders):
    with pytest.raises(UserError, match="choose itm"):
        load_model(f"hf:{folders['blip-itm']}#head=both", device="cpu")
    with pytest.raises(UserError, match="unknown option"):
        load_model(f"hf:{folders['flava']}#heads=itm", device="cpu")


@pytest.mark.parametrize("key", ["blip-itm", "flava-itc"])
def test_runs_sdci(models, key, tmp_path):
    from densecaption.evaluation.run import evaluate
    from tests.conftest import make_doc, write_dataset

    # one constructed record (two sDCI entries, every negative kind, five summaries for Pick5) runs each of the
    # six sDCI tests through the pairwise path; the sample's 44 entries check nothing more, 30 s slower
    doc = make_doc()
    doc["summaries"]["base"] = ["a red box on a floor", "a box", "a red box", "a box on a grey floor", "the box"]
    result = evaluate("sdci", models[key], str(write_dataset(tmp_path, {"1-data.json": doc})), device="cpu")
    assert result.weights == "random" and result.extra["notes"]
    assert all(result.counts.values())  # every test had entries
    for value, count in zip(result.metrics.values(), result.counts.values()):
        assert count == 0 or (0.0 <= value <= 100.0 and not math.isnan(value))


def test_lora_adapter_reaches_zeroshot(folders, models, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import BlipForImageTextRetrieval

    from densecaption.evaluation.run import evaluate
    from tests.test_zeroshot import write_image_folder

    net = BlipForImageTextRetrieval.from_pretrained(folders["blip-itm"])
    config = LoraConfig(r=2, target_modules=["vision_proj", "text_proj"], init_lora_weights=False)
    get_peft_model(net, config).save_pretrained(tmp_path / "adapter")  # random B: the adapter changes features
    spec = f"hf:{folders['blip-itm']}#head=itc"
    adapted = load_model(spec, device="cpu", lora=str(tmp_path / "adapter"))
    plain = models["blip-itc"]
    assert not torch.allclose(adapted.encode_texts(TEXTS), plain.encode_texts(TEXTS))
    data = write_image_folder(tmp_path / "in")
    result = evaluate("zeroshot", spec, str(data), lora=str(tmp_path / "adapter"), device="cpu")
    assert result.lora == str(tmp_path / "adapter") and result.weights == "random"

"""Contract tests over every registry, parametrised by its entries: a new entry is tested as soon as it is
registered, and one registered by halves (a backend without a random model, a family without training
pieces, a category naming an unknown scorer) fails here.

Model backends: a tiny random model written through RANDOM_MODELS, loaded back with ``load_model`` (the real
path) and held to ``models/base.py``'s contract. Text-to-image families: a tiny random pipeline trains one
LoRA step and generates an image with it. The other registries: every entry resolves and says what it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densecaption.evaluation.compbench.models import DETECTORS, HFZeroShotDetector
from densecaption.evaluation.compbench.prompts import CATEGORIES, Category
from densecaption.evaluation.compbench.scorers import SCORERS
from densecaption.generation.backends import GENERATORS
from densecaption.models.base import EmbeddingModel, ImageTextModel
from densecaption.models.random_init import RANDOM_MODELS, backends
from densecaption.models.registry import BACKENDS, load_model
from densecaption.plugins import plugin_points
from densecaption.registry import Entry, Registry
from densecaption.t2i.families import FAMILIES, FamilyTraining, T2IFamily
from tests.test_train_t2i import constructed_set, generate, small

LONG_TEXT = "a dog sits on the grass under a tree " * 40  # 360 words: past every model's context
TEXTS = ["a red dog", "two cats on a wooden table", "the sky"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import, so patch it too


def random_model_for(prefix: str) -> Entry:
    """The random model that ``load_model`` loads with ``prefix``: every backend needs one."""
    entry = RANDOM_MODELS.find(lambda e: e.meta.get("model_spec", "").startswith(f"{prefix}:"))
    assert entry is not None, f"model backend {prefix!r} has no RANDOM_MODELS entry with a {prefix}: model_spec"
    return entry


# ------------------------------------------------------------------------------------------ model backends

def loadable_random_models() -> list[str]:
    """Every random model that ``load_model`` loads (one per backend at least, see ``random_model_for``)."""
    return [e.name for e in RANDOM_MODELS.entries() if "model_spec" in e.meta]


@pytest.mark.parametrize("prefix", BACKENDS.names())
def test_every_backend_has_a_random_model(prefix):
    assert random_model_for(prefix).name in loadable_random_models()


@pytest.fixture(scope="module", params=loadable_random_models())
def backend_model(request, tmp_path_factory) -> tuple[str, ImageTextModel]:
    entry = RANDOM_MODELS.entry(request.param)
    prefix = entry.meta["model_spec"].split(":")[0]
    arch = "ViT-B-32" if entry.meta["any_arch"] else entry.name
    folder = RANDOM_MODELS.get(entry.name)(arch, tmp_path_factory.mktemp(prefix) / "model", seed=0, tiny=True)
    return prefix, load_model(entry.meta["model_spec"].format(out=folder), device="cpu")


def images() -> list[Image.Image]:
    return [Image.new("RGB", (40, 30), colour) for colour in ("red", "white", "navy")]


def test_backend_meets_the_model_contract(backend_model):
    prefix, model = backend_model
    assert isinstance(model, ImageTextModel) and model.weights == "random" and model.lora is None
    if not BACKENDS.entry(prefix).meta["embedding"]:  # a backend that never embeds (lm:); hf: may not (BLIP ITM)
        assert not isinstance(model, EmbeddingModel)
    image_features, text_features = model.encode_images(images()), model.encode_texts(TEXTS)
    for features, n in ((image_features, 3), (text_features, len(TEXTS))):
        assert features.ndim == 2 and features.shape[0] == n and features.shape[1] >= 1
        assert features.dtype == torch.float32 and features.device.type == "cpu"
        assert torch.isfinite(features).all()
        if isinstance(model, EmbeddingModel):
            assert torch.allclose(features.norm(dim=-1), torch.ones(n), atol=1e-4)
    assert torch.equal(model.encode_images(images()), image_features)  # deterministic
    assert torch.equal(model.encode_texts(TEXTS), text_features)
    assert model.similarity(image_features, text_features).shape == (3, len(TEXTS))
    assert model.score(images()[:2], TEXTS).shape == (2, len(TEXTS))


def test_backend_counts_texts_past_its_context(backend_model):
    _, model = backend_model
    before = model.truncated_texts
    model.encode_texts(["a dog"])
    assert model.truncated_texts == before
    model.encode_texts([LONG_TEXT, "a cat", LONG_TEXT + " again"])
    assert model.truncated_texts == before + 2


def test_backend_metadata_gives_its_spec_form():
    for entry in BACKENDS.entries():
        assert entry.summary and entry.meta["spec"].startswith(f"{entry.name}:")
        assert isinstance(entry.meta["embedding"], bool) and callable(BACKENDS.get(entry.name))


# ----------------------------------------------------------------------------------------------- families

@pytest.fixture(scope="module")
def caption_set(tmp_path_factory) -> Path:
    return constructed_set(tmp_path_factory.mktemp("captions") / "set")


@pytest.mark.parametrize("name", FAMILIES.names())
def test_family_has_pipeline_and_training_pieces(name):
    import diffusers

    family = FAMILIES.get(name)
    assert isinstance(family, T2IFamily) and family.name == name and FAMILIES.entry(name).summary
    assert hasattr(diffusers, family.pipeline_class) and family.denoiser in ("unet", "transformer")
    assert family.lora_format in ("diffusers", "peft") and family.lora_targets and family.max_text_length > 0
    assert isinstance(family.training, FamilyTraining) and family.training.text_encoders
    assert callable(family.training.encode) and callable(family.training.forward)
    assert RANDOM_MODELS.entry(name).meta["backend"] == "diffusers"  # it has a random pipeline


@pytest.mark.parametrize("name", FAMILIES.names())
def test_family_trains_a_step_and_generates(name, caption_set, tmp_path):
    from densecaption.t2i.pipelines import LORA_RECORD, load_pipeline
    from densecaption.training.t2i import train_t2i

    model = str(RANDOM_MODELS.get(name)(name, tmp_path / "model", seed=0))
    lora = train_t2i(small(caption_set, model, tmp_path / "run", batch_size=4))
    record = json.loads((lora / LORA_RECORD).read_text())
    assert record["family"] == name and record["steps"] == 1 and record["base_weights"] == "random"
    pipe, resolved = load_pipeline(model, lora=lora)
    assert resolved.family is FAMILIES.get(name)
    for component in (*resolved.family.training.text_encoders, resolved.family.denoiser):
        assert getattr(pipe, component) is not None
    image = generate(pipe, name)
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()


# ------------------------------------------------------------------------------------- other registries

@pytest.mark.parametrize("name", RANDOM_MODELS.names())
def test_random_model_entry(name):
    entry = RANDOM_MODELS.entry(name)
    assert entry.summary and callable(RANDOM_MODELS.get(name))
    assert entry.meta["backend"] in backends() and "{out}" in entry.meta["usage"]
    assert isinstance(entry.meta["any_arch"], bool) and isinstance(entry.meta["always_tiny"], bool)
    if "model_spec" in entry.meta:
        assert entry.meta["model_spec"].split(":")[0] in BACKENDS
    if entry.meta["backend"] == "diffusers":
        assert name in FAMILIES


@pytest.mark.parametrize("name", DETECTORS.names())
def test_detector_entry(name):
    entry = DETECTORS.entry(name)
    assert entry.summary and callable(DETECTORS.get(name)) and isinstance(entry.meta["needs_model"], bool)
    assert entry.meta["spec"] == (f"{name}:ID_OR_DIR" if entry.meta["needs_model"] else name)
    if "query" in entry.meta:  # a transformers detector: its config type and how it is asked
        assert entry.meta["model_type"] and callable(getattr(HFZeroShotDetector, "_" + entry.meta["query"]))


@pytest.mark.parametrize("name", GENERATORS.names())
def test_generator_entry(name):
    entry = GENERATORS.entry(name)
    assert entry.summary and callable(GENERATORS.get(name)) and entry.meta["spec"].startswith(f"{name}:")


@pytest.mark.parametrize("name", SCORERS.names())
def test_scorer_entry(name):
    assert SCORERS.entry(name).summary and callable(SCORERS.get(name))
    assert any(name in CATEGORIES.get(c).scorers for c in CATEGORIES)  # some category is scored with it


@pytest.mark.parametrize("name", CATEGORIES.names())
def test_category_entry(name):
    entry, category = CATEGORIES.entry(name), CATEGORIES.get(name)
    assert entry.summary and isinstance(category, Category) and category.name == name
    assert tuple(entry.meta["scorers"]) == category.scorers
    assert all(scorer in SCORERS for scorer in category.scorers)
    assert category.scorers or category.note  # an unscored category says why


@pytest.mark.parametrize("group", plugin_points().names())
def test_plugin_group_imports_and_is_not_empty(group):
    points = plugin_points()
    registry = points.get(group)
    assert isinstance(registry, Registry) and len(registry) > 0 and points.entry(group).summary
    for entry in registry.entries():
        assert entry.summary, f"{group} {entry.name!r} has no summary"
        assert registry.get(entry.name) is not None


@pytest.mark.parametrize("name", plugin_points().get("recipes").names())
def test_shipped_recipe_validates_in_every_scale(name, tmp_path):
    from densecaption.recipes.catalog import find_recipe
    from densecaption.recipes.commands import command_tree
    from densecaption.recipes.plan import make_plan
    from densecaption.recipes.schema import load_recipe

    path, stem = find_recipe(name)
    recipe = load_recipe(path, expect_name=stem)  # its name equals its file name
    assert recipe.name == name and recipe.title and recipe.full.get("hardware") and recipe.full.get("time")
    tree = command_tree()
    for scale in ("full", "demo"):  # the published settings and the small variant on the sample
        assert scale in recipe.scale_names()
        plan = make_plan(recipe, scale, {}, tmp_path / scale, root=tree)
        assert plan.steps and all(p.status == "run" for p in plan.steps)

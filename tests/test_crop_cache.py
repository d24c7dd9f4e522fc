"""The crop cache gives exactly the model inputs a freshly decoded crop gives, fills only what is missing,
and feeds sDCI and training without changing a number."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.dci import DCIDataset
from densecaption.data.findings import SkipLog
from densecaption.evaluation.crop_cache import CropCache
from densecaption.evaluation.features import FeatureStore
from densecaption.evaluation.sdci import SdciConfig, collect_items, evaluate_sdci
from densecaption.training.data import EntryDataset, load_entries


@pytest.fixture(scope="module")
def model(tiny_clip_each):
    return tiny_clip_each


@pytest.fixture(scope="module")
def crops():
    runs = collect_items(DCIDataset.open("sample"), "test", SdciConfig(), SkipLog())
    return list(dict.fromkeys(it.crop for items in runs.values() for it in items))


def fresh(crop):
    with Image.open(crop.photo) as im:
        return im.convert("RGB").crop((crop.box.x0, crop.box.y0, crop.box.x1, crop.box.y1))


def test_cached_crops_give_the_fresh_tensors(model, crops, tmp_path):
    cache = CropCache.for_model(tmp_path, model)
    chosen = crops[:6]
    assert cache.fill(chosen, workers=1) == 6
    assert cache.fill(chosen) == 0  # nothing decoded twice
    assert cache.array(chosen[0]).dtype.name == "uint8" and cache.array(chosen[0]).shape == (224, 224, 3)
    for crop in chosen:
        assert torch.equal(model.pixel_values([cache.image(crop)]), model.pixel_values([fresh(crop)]))
    reopened = CropCache.for_model(tmp_path, model)  # a later run finds the finished shard
    assert len(reopened) == 6 and chosen[3] in reopened and crops[7] not in reopened


def test_sdci_and_training_read_the_cache_unchanged(model, tmp_path):
    ds = DCIDataset.open("sample")
    cache = CropCache.for_model(tmp_path, model)
    with_cache = evaluate_sdci(ds, model, store=FeatureStore(model, crop_cache=cache))
    assert len(cache) == with_cache.encoded_images
    assert with_cache.metrics == evaluate_sdci(ds, model).metrics
    entries, _ = load_entries(ds, "train")
    plain = EntryDataset(entries[:3], model)
    cached = EntryDataset(entries[:3], model, crop_cache=cache)
    cache.fill([cached.crop_key(i) for i in range(3)])
    for i in range(3):
        assert torch.equal(plain[i]["pixels"], cached[i]["pixels"])


def test_clip_scores_with_the_crop_cache_are_unchanged(model, tmp_path, monkeypatch):
    from densecaption.data.schema import DCIImage
    from densecaption.evaluation import crop_cache

    calls = {"image": 0, "open_photo": 0}
    image, open_photo = crop_cache.CropCache.image, DCIImage.open_photo

    def counted(name, real):
        def call(*args):
            calls[name] += 1
            return real(*args)
        return call

    monkeypatch.setattr(crop_cache.CropCache, "image", counted("image", image))
    monkeypatch.setattr(DCIImage, "open_photo", counted("open_photo", open_photo))
    runner, app = CliRunner(), build_app()
    assert runner.invoke(app, ["data", "sample", str(tmp_path / "in")]).exit_code == 0
    for extra in sorted((tmp_path / "in").glob("*/complete/*.json"))[3:]:  # three records keep the test short
        extra.unlink()
    common = ["data", "clip-scores", "--data", str(tmp_path / "in"), "--model", model.spec, "--device", "cpu"]
    scores = {}
    for name, extra in (("plain", []), ("cached", ["--crop-cache", str(tmp_path / "crops")])):
        before = dict(calls)
        result = runner.invoke(app, [*common, *extra, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        ds = DCIDataset.open(tmp_path / name)
        scores[name] = {f: ds.read(f).clip_scores for f in ds.all_files()}
    assert scores["plain"] == scores["cached"] and any(scores["plain"].values())
    assert before["image"] == 0 and calls["image"] > 0  # the cached run read its crops from the cache ...
    assert calls["open_photo"] == before["open_photo"]  # ... and decoded no photo while scoring

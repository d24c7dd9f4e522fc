"""The sDCI benchmark end to end on the sample: equal to a plain implementation, encoding at the floor,
result files, the report, the embedding cache and a 2-process run under accelerate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.naive_sdci import CountingModel, naive_sdci
from densecaption.cli import build_app
from densecaption.data.dci import DCIDataset
from densecaption.evaluation.features import FeatureStore
from densecaption.evaluation.results import read_results, result_name, slug, write_result
from densecaption.evaluation.sdci import METRICS, SdciConfig, evaluate_sdci
from densecaption.models.registry import load_model
from tests.http_files import closed_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    result = CliRunner().invoke(build_app(), ["models", "init-random", "ViT-B-32", str(out), "--tiny"])
    assert result.exit_code == 0, result.output
    return f"open_clip:local-dir:{out}"


@pytest.fixture(scope="module")
def model(tiny):
    return load_model(tiny, device="cpu")


class Counting:
    """Counts the items each encoder sees, passing everything else through."""

    def __init__(self, model):
        self.model, self.images, self.texts = model, 0, 0

    def encode_images(self, images):
        self.images += len(images)
        return self.model.encode_images(images)

    def encode_texts(self, texts):
        self.texts += len(texts)
        return self.model.encode_texts(texts)

    def similarity(self, a, b):
        return self.model.similarity(a, b)


def test_matches_the_plain_implementation_and_encodes_each_item_once(model):
    ds = DCIDataset.open("sample")
    counting = Counting(model)
    result = evaluate_sdci(ds, counting)
    naive = CountingModel(model)
    expected = naive_sdci(ds, naive)
    assert result.metrics == pytest.approx(expected, abs=0, nan_ok=True)
    # the floor: one encoder pass per unique crop and per unique text
    assert counting.images == result.encoded_images and counting.texts == result.encoded_texts
    crops = {(r.image, e.crop) for r in ds.iter_images("test") for e in _entries(r)}
    assert result.encoded_images == len(crops) < naive.images
    assert result.encoded_texts < naive.texts
    assert result.counts["base_neg"] == len(ds.files("test")) == 9
    assert result.counts["all_scm"] == result.counts["all_neg"] == result.counts["all_hard_negs"]


def _entries(record):
    from densecaption.data.sdci import sdci_entries

    return sdci_entries(record)


def test_image_group_mode_changes_only_scm(model):
    ds = DCIDataset.open("sample")
    ref = evaluate_sdci(ds, model)
    grouped = evaluate_sdci(ds, model, config=SdciConfig(mode="image-group"))
    for m in ("all_neg", "pick5_neg", "base_neg", "all_hard_negs"):
        assert grouped.metrics[m] == ref.metrics[m]
    assert grouped.counts == ref.counts


def test_embedding_cache_skips_encoding_on_a_second_run(model, tmp_path):
    ds = DCIDataset.open("sample")
    first = evaluate_sdci(ds, model, store=FeatureStore(model, cache_dir=tmp_path))
    second = evaluate_sdci(ds, model, store=FeatureStore(model, cache_dir=tmp_path))
    assert first.encoded_images > 0 and (second.encoded_images, second.encoded_texts) == (0, 0)
    assert second.metrics == pytest.approx(first.metrics, nan_ok=True)


def test_worker_processes_give_the_same_features(model):
    ds = DCIDataset.open("sample")
    base = evaluate_sdci(ds, model)
    workers = evaluate_sdci(ds, model, store=FeatureStore(model, num_workers=2))
    assert workers.metrics == base.metrics


def test_result_names_and_no_overwrite_of_another_run(tmp_path):
    assert slug("open_clip:ViT-B-32:openai") == "open-clip-vit-b-32-openai"
    assert result_name("sdci", "hf:org/Model_X", "/a/b", "test", "image-group") == \
        "sdci_hf-org-model_x_a-b_test_image-group.json".replace("model_x", "model-x")
    base = {"task": "sdci", "model": "m", "lora": None, "weights": "random", "data_sha256": "x", "split": "test",
            "mode": "reference", "config": {}, "metrics": {}}
    p1 = write_result(tmp_path, base)
    p2 = write_result(tmp_path, {**base, "metrics": {"a": 1}})  # same run again: replaced
    p3 = write_result(tmp_path, {**base, "data_sha256": "y"})  # other data: kept apart
    assert p1 == p2 and p3.name == "sdci_m_test_reference-2.json"
    assert len(read_results([tmp_path], task="sdci")) == 2


def test_cli_bench_and_report(tiny, tmp_path):
    runner = CliRunner()
    app = build_app()
    for mode in ("reference", "image-group"):
        result = runner.invoke(app, ["bench", "sdci", "--data", "sample", "--model", tiny, "--mode", mode,
                                     "--out", str(tmp_path), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert "weights: random" in result.output and "All Hard-Negs" in result.output
    files = sorted(tmp_path.glob("sdci_*.json"))
    assert [f.name.rsplit("_", 1)[-1] for f in files] == ["image-group.json", "reference.json"]
    record = json.loads(files[1].read_text())
    for key in ("task", "model", "lora", "weights", "data", "data_sha256", "split", "mode", "metrics", "counts",
                "versions", "runtime_s", "created", "encoded_images", "encoded_texts"):
        assert key in record
    assert set(record["metrics"]) == set(record["counts"]) == set(METRICS)

    md = runner.invoke(app, ["report", "sdci", str(tmp_path)])
    assert md.exit_code == 0 and "(weights: random)" in md.output and "All Hard-Negs" in md.output
    assert len(md.output.strip().splitlines()) == 4
    csv_out = runner.invoke(app, ["report", "sdci", str(tmp_path), "--format", "csv"]).output.splitlines()
    assert csv_out[0].split(",")[:3] == ["model", "lora", "weights"] and len(csv_out) == 3
    value = float(csv_out[2].split(",")[5])
    assert value == pytest.approx(record["metrics"]["all_scm"])


def test_cli_errors_are_one_line(tiny, tmp_path):
    runner = CliRunner()
    bad_mode = runner.invoke(build_app(), ["bench", "sdci", "--data", "sample", "--model", tiny, "--mode", "x"])
    assert bad_mode.exit_code == 2 and "--mode" in bad_mode.output
    bad_model = runner.invoke(build_app(), ["bench", "sdci", "--data", "sample", "--model", "open_clip:Nope"])
    assert bad_model.exit_code == 2 and "open_clip:Nope" in bad_model.output and "Traceback" not in bad_model.output
    bad_lora = runner.invoke(build_app(), ["bench", "sdci", "--data", "sample", "--model", tiny, "--lora",
                                           str(tmp_path)])
    assert bad_lora.exit_code == 2 and "adapter_config.json" in bad_lora.output
    empty = runner.invoke(build_app(), ["report", "sdci", str(tmp_path)])
    assert empty.exit_code == 2 and "no sdci result files" in empty.output


def test_two_processes_under_accelerate_match_one(tiny, tmp_path):
    launcher = Path(sys.executable).parent / "accelerate"
    common = ["bench", "sdci", "--data", "sample", "--model", tiny, "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "densecaption", *common, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert single.returncode == 0, single.stderr
    # on a machine without GPUs, --multi_gpu starts torchrun and the processes group over gloo
    # a port of its own: torchrun's default (29500) clashes with another file's run under pytest-xdist
    double = subprocess.run([str(launcher), "launch", "--num_processes", "2", "--num_machines", "1", "--multi_gpu",
                             "--mixed_precision", "no", "--dynamo_backend", "no",
                             "--main_process_port", str(closed_port()), "-m", "densecaption", *common,
                             "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=300)
    assert double.returncode == 0, double.stderr[-3000:]
    one = json.loads(next((tmp_path / "one").glob("*.json")).read_text())
    two_files = list((tmp_path / "two").glob("*.json"))
    assert len(two_files) == 1
    two = json.loads(two_files[0].read_text())
    assert two["processes"] == 2 and one["processes"] == 1
    assert two["metrics"] == one["metrics"] and two["counts"] == one["counts"]
    assert two["encoded_images"] == one["encoded_images"]


def test_data_without_clip_scores_is_explained_and_fails(tiny, tmp_path):
    from tests.conftest import make_doc, write_dataset

    doc = make_doc()
    del doc["clip_scores"]
    data = write_dataset(tmp_path / "d", {"1-data.json": doc, "2-data.json": doc})
    result = CliRunner().invoke(build_app(), ["bench", "sdci", "--data", str(data), "--model", tiny,
                                              "--device", "cpu", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "no sDCI test has an entry" in result.output and "2 of 2 records have no clip_scores" in result.output
    assert "data clip-scores" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_hard_kinds_option_reaches_the_result(tiny, tmp_path):
    from tests.conftest import make_doc, write_dataset

    doc = make_doc()
    doc["negatives"]["base"]["rule_swap"] = ["floor a red box on"]
    doc["clip_scores"]["base"]["rule_swap_0"] = 99.0
    data = str(write_dataset(tmp_path / "d", {"1-data.json": doc}))
    runner = CliRunner()
    for extra, folder in (([], "default"), (["--hard-kinds", "rule_swap"], "rules")):
        result = runner.invoke(build_app(), ["bench", "sdci", "--data", data, "--model", tiny, "--device", "cpu",
                                             "--out", str(tmp_path / folder), *extra])
        assert result.exit_code == 0, result.output
    default = read_results([tmp_path / "default"])[0]
    rules = read_results([tmp_path / "rules"])[0]
    assert default["config"]["hard_kinds"] == ["basic", "layout", "swaps"] and rules["config"]["hard_kinds"] == ["rule_swap"]
    assert default["counts"]["all_hard_negs"] == 2 and rules["counts"]["all_hard_negs"] == 1  # only base has one


def test_crop_cache_option_gives_the_same_numbers_and_is_read_back(tiny, tmp_path, monkeypatch):
    from densecaption.evaluation import crop_cache

    reads, decodes = [], []
    image, getitem = crop_cache.CropCache.image, crop_cache._DecodeDataset.__getitem__
    monkeypatch.setattr(crop_cache.CropCache, "image", lambda self, c: reads.append(c) or image(self, c))
    monkeypatch.setattr(crop_cache._DecodeDataset, "__getitem__", lambda self, i: decodes.append(i) or getitem(self, i))
    common = ["bench", "sdci", "--data", "sample", "--model", tiny, "--device", "cpu"]
    metrics = []
    for name, extra in (("plain", []), ("fill", ["--crop-cache", str(tmp_path / "crops")]),
                        ("read", ["--crop-cache", str(tmp_path / "crops")])):
        result = CliRunner().invoke(build_app(), [*common, *extra, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        record = json.loads(next((tmp_path / name).glob("sdci_*.json")).read_text())
        metrics.append(record["metrics"])
        if name == "fill":
            filled_photos, crops_read = len(decodes), len(reads)
            assert filled_photos > 0 and crops_read == record["encoded_images"]
    assert metrics[0] == metrics[1] == metrics[2]
    assert len(decodes) == filled_photos  # the second run decoded no photo ...
    assert len(reads) == 2 * crops_read  # ... and read every crop from the cache
    assert "--crop-cache" not in CliRunner().invoke(build_app(), ["bench", "winoground", "--help"]).output

"""The contract every registered benchmark meets: complete registration, a config the CLI can offer, and a
run on a constructed mini-set that gives a well-formed result, a result file, a `bench` command and a
`report` that reads it back. A new benchmark needs a mini-set builder below, else this test fails."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.evaluation.benchmark import Benchmark, BenchmarkOutput
from densecaption.evaluation.benchmarks import BENCHMARKS
from densecaption.evaluation.results import read_results, write_result
from densecaption.evaluation.run import evaluate
from tests.conftest import make_doc, write_dataset


def _sdci_mini(root: Path) -> str:
    """Two photos, each a base entry with five summaries (Pick5) and one kept mask."""
    first, second = make_doc(), make_doc(image="other.jpg")
    first["summaries"]["base"] = [f"a red box, view {i}" for i in range(5)]
    second["summaries"]["base"] = [f"a grey floor, view {i}" for i in range(5)]
    return str(write_dataset(root, {"a-data.json": first, "b-data.json": second}))


def _sdci_full_mini(root: Path) -> str:
    """sDCI's mini-set with one whole-image text past 77 tokens (the extra caption alone is 120)."""
    first, second = make_doc(), make_doc(image="other.jpg")
    first["extra_caption"] = "A red box on a grey floor. " * 15
    return str(write_dataset(root, {"a-data.json": first, "b-data.json": second}))


MINI_SETS: dict[str, Callable[[Path], str]] = {"sdci": _sdci_mini, "sdci-full": _sdci_full_mini}

from benchmarks.compositional_minisets import BUILDERS as _COMPOSITIONAL  # noqa: E402  ARO, SugarCrepe, VLC, Winoground

MINI_SETS.update(_COMPOSITIONAL)


def _image_folder_mini(root: Path) -> str:
    """ImageNet-style train/ and val/ with five class folders (top-5 needs five), two tiny photos each."""
    from tests.test_zeroshot import write_image_folder

    return str(write_image_folder(root))


MINI_SETS.update({"zeroshot": _image_folder_mini, "linear-probe": _image_folder_mini})


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("clip")
    made = CliRunner().invoke(build_app(), ["models", "init-random", "ViT-B-32", str(out), "--tiny"])
    assert made.exit_code == 0, made.output
    return f"open_clip:local-dir:{out}"


@pytest.mark.parametrize("name", BENCHMARKS.names())
def test_registration_is_complete(name):
    benchmark = BENCHMARKS.get(name)()
    assert isinstance(benchmark, Benchmark) and benchmark.name == name and BENCHMARKS.entry(name).summary
    assert benchmark.title and benchmark.metrics and len({m.key for m in benchmark.metrics}) == len(benchmark.metrics)
    assert dataclasses.is_dataclass(benchmark.config_class)
    assert benchmark.config_class.__dataclass_params__.frozen
    for f in dataclasses.fields(benchmark.config_class):
        assert f.metadata.get("help"), f"{name}: config field {f.name} has no help text"
    keys = {m.key for m in benchmark.metrics}
    for row in benchmark.published:
        assert set(row.metrics) <= keys and row.source
    assert name in MINI_SETS, f"{name}: add a mini-set builder to MINI_SETS"
    default = benchmark.make_config()
    json.dumps(benchmark.result_config(default))
    assert benchmark.mode(default)


@pytest.mark.parametrize("name", BENCHMARKS.names())
def test_runs_on_a_mini_set_and_reports(name, tiny_model, tmp_path):
    benchmark = BENCHMARKS.get(name)()
    data = MINI_SETS[name](tmp_path / "data")
    result = evaluate(name, tiny_model, data, device="cpu")
    assert result.task == name and result.weights == "random" and result.data == data
    assert list(result.metrics) == list(result.counts) == [m.key for m in benchmark.metrics]
    for key, value in result.metrics.items():
        assert result.counts[key] > 0, f"{name}: the mini-set gives {key} no entries"
        assert 0.0 <= value <= 100.0 and not math.isnan(value)
    path = write_result(tmp_path / "out", result)
    assert path.name.startswith(f"{name}_") and path.name.endswith(f"_{result.split}_{result.mode}.json")
    assert read_results([path], task=name)[0]["metrics"] == result.metrics

    runner = CliRunner()
    cli = runner.invoke(build_app(), ["bench", name, "--data", data, "--model", tiny_model, "--device", "cpu",
                                      "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 0, cli.output
    from_cli = read_results([tmp_path / "cli"], task=name)[0]  # the CLI's defaults are the API's
    assert from_cli["metrics"] == result.to_dict()["metrics"] and from_cli["config"] == result.config
    report = runner.invoke(build_app(), ["report", name, str(tmp_path / "cli"), "--paper"])
    assert report.exit_code == 0, report.output
    lines = report.output.strip().splitlines()
    assert len(lines) == 2 + 1 + len(benchmark.published)
    assert f"{data} @{result.data_sha256[:8]}" in lines[2] and "(weights: random)" in lines[2]


def test_nan_metrics_are_written_as_null(tmp_path):
    from densecaption.evaluation.results import EvalResult

    result = EvalResult(task="t", model="m", lora=None, weights="random", data="d", data_sha256="0" * 64,
                        split="test", mode="reference", config={}, metrics={"a": float("nan"), "b": 50.0},
                        counts={"a": 0, "b": 2})
    written = json.loads(write_result(tmp_path, result).read_text())
    assert written["metrics"] == {"a": None, "b": 50.0}
    assert isinstance(BenchmarkOutput({}, {}).extra, dict)

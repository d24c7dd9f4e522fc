"""Each compositional benchmark end to end through `bench` with the other model backends, each a tiny random
model written by `models init-random` and loaded through the real path: HF CLIP, the text-only `lm:` prior
(no photo decoded) and the BLIP ITM / FLAVA pairwise scorers. (open_clip runs in test_benchmark_contract.)"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from benchmarks.compositional_minisets import BUILDERS
from densecaption.cli import build_app
from densecaption.evaluation.results import read_results

ARGS = {"hf-clip": ["ViT-B-32", "--backend", "hf", "--tiny"], "lm": ["llama", "--backend", "lm"],
        "blip-itm": ["blip-itm", "--backend", "hf"], "flava": ["flava", "--backend", "hf"]}


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from densecaption.models.random_init import RANDOM_MODELS

    specs = {}
    for kind, args in ARGS.items():
        if kind in ("blip-itm", "flava") and kind not in RANDOM_MODELS.names():
            continue  # the pairwise scorers come with their own issue; they run once registered
        out = tmp_path_factory.mktemp(kind)
        made = CliRunner().invoke(build_app(), ["models", "init-random", args[0], str(out), *args[1:]])
        assert made.exit_code == 0, made.output
        specs[kind] = ("lm:" if kind == "lm" else "hf:") + str(out)
    return specs


# ARO, SugarCrepe and VL-CheckList score through one function (compositional.score_items), Winoground through
# its own loop: the pairwise scorers run one of each (ARO's 27-item sets cost BLIP ITM 13 s and test nothing
# more); HF CLIP and the lm: prior, whose no-photo rule is per benchmark, run all four.
CASES = [(name, kind) for kind in ("hf-clip", "lm") for name in BUILDERS] + [
    (name, kind) for kind in ("blip-itm", "flava") for name in ("sugarcrepe", "winoground")]


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_bench_runs_with_backend(name, kind, sets, models, tmp_path):
    if kind not in models:
        pytest.skip(f"{kind}: no random model registered")
    out = tmp_path / "out"
    result = CliRunner().invoke(build_app(), ["bench", name, "--data", sets[name], "--model", models[kind],
                                              "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    row = read_results([out], task=name)[0]
    assert row["weights"] == "random" and all(v > 0 for v in row["counts"].values())
    assert all(0.0 <= v <= 100.0 for v in row["metrics"].values())
    if kind == "lm" and name != "winoground":
        assert row["encoded_images"] == 0  # the language prior decodes no photo
    json.dumps(row)

"""``evaluate``: run any registered benchmark on a model and return its ``EvalResult`` (what ``bench TASK``
and the Python API both call)."""

from __future__ import annotations

import time
from typing import Any

from densecaption.evaluation.benchmark import Benchmark, BenchmarkData, RunContext
from densecaption.evaluation.results import EvalResult


def get_benchmark(task: str) -> Benchmark:
    """The registered benchmark ``task`` (an unknown name gets a did-you-mean error)."""
    from densecaption.evaluation.benchmarks import BENCHMARKS

    return BENCHMARKS.get(task)()


def evaluate(task: str, model: Any, data: Any, *, lora: str | None = None, split: str | None = None,
             device: str = "auto", context: RunContext | None = None, **config: Any) -> EvalResult:
    """Score ``model`` (a spec string, or a model already loaded with ``load_model``) on ``data`` (a path,
    ``'sample'``, or what the benchmark opens, e.g. a ``DCIDataset``) with the benchmark's ``config``
    settings. Under ``accelerate launch`` the work is sharded and every process returns the same result."""
    from densecaption.distributed import process_state
    from densecaption.models.registry import load_model

    benchmark = get_benchmark(task)
    cfg = benchmark.make_config(**config)
    started = time.perf_counter()
    state = process_state()
    context = context or RunContext()
    context.processes = state.num_processes if state else 1
    opened = data if isinstance(data, BenchmarkData) else benchmark.open(data, split or benchmark.default_split)
    if isinstance(model, str):
        spec, loaded = model, load_model(model, device=str(state.device) if state else device, lora=lora)
    else:
        spec, loaded = model.spec, model
        lora = getattr(model, "lora", None)
    output = benchmark.run(loaded, cfg, opened, context)
    from densecaption.data.minisets import constructed_label  # "PATH (constructed)" on a made-up mini-set

    return EvalResult(
        task=benchmark.name, model=spec, lora=lora, weights=loaded.weights, data=constructed_label(opened.path),
        data_sha256=opened.sha256, split=opened.split, mode=benchmark.mode(cfg, loaded), config=benchmark.result_config(cfg),
        metrics=output.metrics, counts=output.counts,
        extra={**output.extra, "truncated_texts": loaded.truncated_texts, "notes": list(loaded.notes),
               "processes": context.processes},
        runtime_s=round(time.perf_counter() - started, 3))

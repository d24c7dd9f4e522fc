"""The index of plug-in points: each group that ``densecaption ls GROUP`` lists, as a lazy registry target.

Adding a plug-in point means one registry in its stage's package and one line here; the contract tests
walk this index so that every registry's entries are exercised.
"""

from __future__ import annotations

from densecaption.registry import Registry


def plugin_points() -> Registry[Registry]:
    """Group name -> the registry it lists (each imported only when listed)."""
    points: Registry[Registry] = Registry("plug-in group")
    points.register("models", "densecaption.models.registry:BACKENDS",
                    summary="image-text model backends (the PREFIX of a model spec string)")
    points.register("benchmarks", "densecaption.evaluation.benchmarks:BENCHMARKS",
                    summary="benchmarks run by `bench TASK` and merged by `report TASK`")
    points.register("families", "densecaption.t2i.families:FAMILIES",
                    summary="text-to-image model families (train t2i, t2i generate)")
    points.register("detectors", "densecaption.evaluation.compbench.models:DETECTORS",
                    summary="object detectors for T2I-CompBench's spatial scoring")
    points.register("generators", "densecaption.generation.backends:GENERATORS",
                    summary="text generation backends (generate, caption, quality precision)")
    points.register("scorers", "densecaption.evaluation.compbench.scorers:SCORERS",
                    summary="T2I-CompBench scorers")
    points.register("categories", "densecaption.evaluation.compbench.prompts:CATEGORIES",
                    summary="T2I-CompBench prompt categories")
    points.register("random-models", "densecaption.models.random_init:RANDOM_MODELS",
                    summary="random-initialised models that `models init-random` writes")
    return points

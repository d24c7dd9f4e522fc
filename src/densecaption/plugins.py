"""The index of plug-in points: each group that ``densecaption ls GROUP`` lists, as a lazy registry target.

Adding a plug-in point means one registry in its stage's package and one line here; the contract tests
walk this index so that every registry's entries are exercised.
"""

from __future__ import annotations

from densecaption.registry import Registry


# group -> (registry target, summary)
_GROUPS: dict[str, tuple[str, str]] = {
    "models": ("densecaption.models.registry:BACKENDS",
               "image-text model backends (the PREFIX of a model spec string)"),
    "benchmarks": ("densecaption.evaluation.benchmarks:BENCHMARKS",
                   "benchmarks run by `bench TASK` and merged by `report TASK`"),
    "families": ("densecaption.t2i.families:FAMILIES", "text-to-image model families (train t2i, t2i generate)"),
    "detectors": ("densecaption.evaluation.compbench.models:DETECTORS",
                  "object detectors for T2I-CompBench's spatial and numeracy scoring"),
    "generators": ("densecaption.generation.backends:GENERATORS",
                   "text generation backends (generate, caption, quality precision)"),
    "scorers": ("densecaption.evaluation.compbench.scorers:SCORERS", "T2I-CompBench scorers"),
    "categories": ("densecaption.evaluation.compbench.prompts:CATEGORIES", "T2I-CompBench prompt categories"),
    "random-models": ("densecaption.models.random_init:RANDOM_MODELS",
                      "random-initialised models that `models init-random` writes"),
    "recipes": ("densecaption.recipes.catalog:RECIPES", "shipped recipes that `densecaption run NAME` runs"),
}


def plugin_points() -> Registry[Registry]:
    """Group name -> the registry it lists (each imported only when listed)."""
    points: Registry[Registry] = Registry("plug-in group")
    for name, (target, summary) in _GROUPS.items():
        points.register(name, target, summary=summary)
    return points

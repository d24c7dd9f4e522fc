"""densecaption: dense, region-aligned image captions (DCI, sDCI, Captions4T2I).

The public Python API is the same functions the CLI calls, imported on first use so that ``import
densecaption`` stays light:

- ``load_model(spec, *, lora=None, device="auto")``: an image-text model from a spec string
  (``open_clip:...``, ``hf:...``, ``lm:...``; ``densecaption ls models``).
- ``load_dci(path)``: a DCI dataset (a release folder, or ``"sample"`` for the bundled one).
- ``evaluate(task, model, data, **config)``: run a registered benchmark (``densecaption ls benchmarks``);
  returns an ``EvalResult`` (``write_result(out_dir, result)`` writes its JSON file).
- ``load_pipeline(spec, *, lora=None, device="cpu")``: a diffusers text-to-image pipeline of a registered
  family (``densecaption ls families``), with its LoRA applied.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "load_model": "densecaption.models.registry:load_model",
    "load_dci": "densecaption.data.dci:DCIDataset.open",
    "evaluate": "densecaption.evaluation.run:evaluate",
    "write_result": "densecaption.evaluation.results:write_result",
    "load_pipeline": "densecaption.t2i.pipelines:load_pipeline",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from densecaption.registry import import_target

        return import_target(_API[name])
    raise AttributeError(f"module 'densecaption' has no attribute {name!r}")

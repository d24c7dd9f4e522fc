"""Model spec strings (``prefix:target[#key=value...]``) and the registry of backends that load them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from densecaption.errors import UserError
from densecaption.models.base import ImageTextModel

# prefix -> "module:function"; imported only when a spec with that prefix is loaded.
BACKENDS: dict[str, str] = {
    "open_clip": "densecaption.models.open_clip_backend:load_open_clip",
    "hf": "densecaption.models.hf_backend:load_hf",
    "lm": "densecaption.models.lm_backend:load_lm",
}


@dataclass(frozen=True)
class ModelSpec:
    prefix: str
    target: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> "ModelSpec":
        head, _, tail = spec.partition("#")
        prefix, sep, target = head.partition(":")
        if not sep or not target:
            raise UserError(f"model spec {spec!r}: expected PREFIX:TARGET, with PREFIX one of "
                            f"{', '.join(sorted(BACKENDS))} (e.g. open_clip:ViT-B-32:openai)")
        options = {}
        for part in filter(None, tail.split("#")):
            key, eq, value = part.partition("=")
            if not eq:
                raise UserError(f"model spec {spec!r}: option {part!r} should be KEY=VALUE")
            options[key] = value
        return cls(prefix, target, options)


def load_model(spec: str, *, device: str = "auto", lora: str | None = None) -> ImageTextModel:
    """Load any registered model from its spec string, with a peft LoRA adapter folder if given."""
    parsed = ModelSpec.parse(spec)
    if parsed.prefix not in BACKENDS:
        raise UserError(f"model spec {spec!r}: unknown prefix {parsed.prefix!r} "
                        f"(known: {', '.join(sorted(BACKENDS))})")
    module, _, func = BACKENDS[parsed.prefix].partition(":")
    loader = getattr(importlib.import_module(module), func)
    if lora is not None and not (Path(lora).expanduser() / "adapter_config.json").is_file():
        raise UserError(f"--lora {lora}: not a peft adapter folder (no adapter_config.json)")
    model = loader(parsed, spec=spec, device=resolve_device(device), lora=lora)
    model.lora = lora
    return model


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device

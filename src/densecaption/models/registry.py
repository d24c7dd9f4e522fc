"""Model spec strings (``prefix:target[#key=value...]``) and the registry of backends that load them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from densecaption.errors import UserError
from densecaption.registry import Registry

if TYPE_CHECKING:
    from densecaption.models.base import ImageTextModel

# prefix -> loader(parsed, *, spec, device, lora) -> ImageTextModel; a backend's module is imported only when
# a spec with its prefix is loaded. Metadata: ``spec``, the form of its spec strings (for help texts), and
# ``embedding``, whether it is an ``EmbeddingModel`` (CLIP-style, what CLIP training and CLIPScore need).
BACKENDS: Registry = Registry("model backend")
BACKENDS.register("open_clip", "densecaption.models.open_clip_backend:load_open_clip",
                  summary="OpenCLIP models: a pretrained tag or checkpoint file, a local-dir folder, or a "
                          "Long-CLIP checkpoint",
                  spec="open_clip:ARCH[:TAG|FILE], open_clip:local-dir:DIR, open_clip:long-clip:FILE",
                  embedding=True)
BACKENDS.register("hf", "densecaption.models.hf_backend:load_hf",
                  summary="transformers CLIP-style dual encoders (CLIP, SigLIP) from a hub id or folder; BLIP "
                          "retrieval and FLAVA models as image-text scorers (hf:ID_OR_DIR#head=itm or itc)",
                  spec="hf:ID_OR_DIR", embedding=True)
BACKENDS.register("lm", "densecaption.models.lm_backend:load_lm",
                  summary="text-only language prior: a causal LM's mean token log-likelihood (ignores images)",
                  spec="lm:ID_OR_DIR[#gguf=FILE]", embedding=False)


def model_spec_help(*, embedding_only: bool = False, sep: str = ", ") -> str:
    """The spec forms of every backend (or of the CLIP-style ones), for help texts:
    ``open_clip:ARCH[:TAG|FILE], open_clip:local-dir:DIR, hf:ID_OR_DIR, lm:ID_OR_DIR[#gguf=FILE]``."""
    return sep.join(e.meta["spec"] for e in BACKENDS.entries() if e.meta["embedding"] or not embedding_only)


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
                            f"{BACKENDS.choices()} (e.g. open_clip:ViT-B-32:openai)")
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
        raise UserError(f"model spec {spec!r}: {BACKENDS.unknown_message(parsed.prefix)}")
    loader = BACKENDS.get(parsed.prefix)
    if lora is not None and not (Path(lora).expanduser() / "adapter_config.json").is_file():
        raise UserError(f"--lora {lora}: not a peft adapter folder (no adapter_config.json)")
    model = loader(parsed, spec=spec, device=resolve_device(device), lora=lora)
    model.lora = lora
    if lora is not None:
        from densecaption.models.lora import base_name_note

        note = base_name_note(lora, parsed.target.removeprefix("local-dir:"))
        model.notes = tuple(model.notes) + ((note,) if note else ())
    if "long" in parsed.options:  # texts past the window: truncate, native, chunk-mean, chunk-max
        from densecaption.models.long_text import with_long_mode

        model = with_long_mode(model, parsed.options["long"])
        model.lora = lora
    return model


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device

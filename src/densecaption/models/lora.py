"""Applying a peft LoRA adapter folder to a backend's torch module, refusing one made for another model.

peft applies an adapter to any module whose layer names match its config and silently skips saved weights
that match nothing, so an adapter trained on another base model would load as a no-op (or half of one) and
its results would carry the base model's numbers. Two checks stop that: ``train clip`` records the base
model's identity in ``densecaption_adapter.json`` (``base``: spec, and hashes of the parameter names and
shapes and of a few values of each parameter), compared before the adapter is applied; and every saved
adapter weight must land in a LoRA layer of the model (and every LoRA layer must get weights), which also
covers adapters made elsewhere (e.g. DCI's released ones) that carry no record. Weights that fit are not
enough for those: DCI's adapters (on HF CLIP ViT-B/32) fit ViT-B/16's layers too, so the base that peft
names in ``adapter_config.json`` (``base_model_name_or_path``: a known hub id or a local folder) has its
architecture settings compared with the model's (see docs/real-data.md).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from densecaption.errors import UserError

RECORD = "densecaption_adapter.json"
SAMPLED_VALUES = 16
"""Values per parameter that the weights hash reads: enough to tell two checkpoints apart, cheap to read."""


def base_identity(module: torch.nn.Module) -> dict[str, str]:
    """``architecture``: SHA-256 of each parameter's name and shape; ``weights``: SHA-256 of the first
    values of each parameter too (same architecture, other checkpoint). Buffers are left out: their presence
    changes between library versions."""
    arch, weights = hashlib.sha256(), hashlib.sha256()
    for name, param in module.named_parameters():
        arch.update(f"{name}:{tuple(param.shape)};".encode())
        weights.update(param.detach().reshape(-1)[:SAMPLED_VALUES].to("cpu", torch.float32).numpy().tobytes())
    return {"architecture": arch.hexdigest(), "weights": weights.hexdigest()}


def read_record(adapter_dir: str | Path) -> dict:
    """The adapter's ``densecaption_adapter.json`` ({} when absent: an adapter made elsewhere)."""
    path = Path(adapter_dir).expanduser() / RECORD
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"--lora {adapter_dir}: {RECORD} is not JSON ({e})") from None
    return record if isinstance(record, dict) else {}


def check_base(module: torch.nn.Module, adapter_dir: str | Path) -> None:
    """Refuse an adapter whose recorded base model is not ``module`` (nothing to check without a record)."""
    base = read_record(adapter_dir).get("base")
    if not isinstance(base, dict) or "architecture" not in base:
        return
    here = base_identity(module)
    differs = ("another architecture" if here["architecture"] != base["architecture"]
               else "the same architecture with other weights" if here["weights"] != base.get("weights") else None)
    if differs:
        raise UserError(f"--lora {adapter_dir}: the adapter was trained on --model {base.get('spec')!r} and this "
                        f"model is {differs}; load it onto that base model")


_TOWERS = ("vision_config", "text_config")
SHAPE_KEYS = ("projection_dim", *(f"{t}.{k}" for t in _TOWERS
                                  for k in ("hidden_size", "intermediate_size", "num_hidden_layers")))
"""Settings that change the LoRA weights' shapes or names: where they differ, ``check_applied`` decides."""
ARCHITECTURE_KEYS = ("model_type", *SHAPE_KEYS, *(f"{t}.{k}" for t in _TOWERS for k in (
    "num_attention_heads", "image_size", "patch_size", "vocab_size", "max_position_embeddings")))
"""Config settings that make two models different architectures (dotted: a key inside a tower's config)."""

KNOWN_BASES: dict[str, dict[str, Any]] = {
    # HF openai/clip-vit-base-patch32's config.json: the base of DCI's released adapters.
    "openai/clip-vit-base-patch32": {
        "model_type": "clip", "projection_dim": 512,
        "vision_config.hidden_size": 768, "vision_config.intermediate_size": 3072,
        "vision_config.num_hidden_layers": 12, "vision_config.num_attention_heads": 12,
        "vision_config.image_size": 224, "vision_config.patch_size": 32,
        "text_config.hidden_size": 512, "text_config.intermediate_size": 2048,
        "text_config.num_hidden_layers": 12, "text_config.num_attention_heads": 8,
        "text_config.vocab_size": 49408, "text_config.max_position_embeddings": 77,
    },
}


def architecture(config: dict[str, Any]) -> dict[str, Any]:
    """The ``ARCHITECTURE_KEYS`` a (transformers ``to_dict``) config has."""
    out = {}
    for key in ARCHITECTURE_KEYS:
        value: Any = config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            out[key] = value
    return out


def named_base(adapter_dir: str | Path) -> str | None:
    """peft's ``base_model_name_or_path`` of the adapter (None when absent or unreadable)."""
    try:
        config = json.loads((Path(adapter_dir).expanduser() / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    named = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    return named.strip() if isinstance(named, str) and named.strip() else None


def base_architecture(named: str) -> dict[str, Any] | None:
    """The architecture of a named base: a known hub id, or a local model folder; None when unknown here."""
    if named in KNOWN_BASES:
        return KNOWN_BASES[named]
    folder = Path(named).expanduser()
    if not (folder / "config.json").is_file():
        return None
    from transformers import AutoConfig

    try:
        return architecture(AutoConfig.from_pretrained(str(folder)).to_dict())
    except (OSError, ValueError):
        return None


def check_named_base(module: torch.nn.Module, adapter_dir: str | Path) -> None:
    """Refuse an adapter without the project's record whose peft-named base has the same layer shapes as
    ``module`` (a transformers model; others have no config to compare) but another architecture (patch size,
    image size, heads ...): its weights would load and mean nothing. Where the shapes differ, weights that
    still fit show the name is stale; ``check_applied`` and ``base_name_note`` deal with it."""
    named = named_base(adapter_dir)
    config = getattr(module, "config", None)
    if read_record(adapter_dir).get("base") or named is None or not hasattr(config, "to_dict"):
        return
    theirs = base_architecture(named)
    if theirs is None:
        return
    ours = architecture(config.to_dict())
    differs = [k for k in ARCHITECTURE_KEYS if k in theirs and k in ours and theirs[k] != ours[k]]
    if differs and not set(differs) & set(SHAPE_KEYS):
        shown = ", ".join(f"{k} {theirs[k]} vs {ours[k]}" for k in differs[:3])
        raise UserError(f"--lora {adapter_dir}: the adapter was trained on {named!r}, another architecture than "
                        f"this model ({shown}); load it onto that base model")


def check_applied(net, adapter_dir: str | Path) -> None:
    """Refuse when a saved adapter weight found no layer of ``net`` (peft skips those silently) or a LoRA
    layer of ``net`` got no saved weight. Loads the adapter's weights once more for peft's load report."""
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    result = set_peft_model_state_dict(net, load_peft_weights(str(adapter_dir), device="cpu"))
    unapplied = list(result.unexpected_keys)
    empty = [k for k in result.missing_keys if "lora_" in k]
    if unapplied:
        raise UserError(f"--lora {adapter_dir}: {len(unapplied)} adapter weight(s) match no layer of this model "
                        f"(e.g. {unapplied[0]}): the adapter was made for another model")
    if empty:
        raise UserError(f"--lora {adapter_dir}: {len(empty)} LoRA weight(s) of this model are not in the adapter "
                        f"(e.g. {empty[0]}): the adapter was made for another model")


def apply_lora(module: torch.nn.Module, adapter_dir: str | Path) -> torch.nn.Module:
    """The module with the adapter's weights merged in (inference only, so no extra cost per call), after
    checking that the adapter was made for this module (see the module docstring)."""
    from peft import PeftModel

    check_base(module, adapter_dir)
    check_named_base(module, adapter_dir)
    try:
        with warnings.catch_warnings():  # peft's warning of missing keys: check_applied says it in one line
            warnings.filterwarnings("ignore", message="Found missing adapter keys")
            net = PeftModel.from_pretrained(module, str(adapter_dir))
        check_applied(net, adapter_dir)
        return net.merge_and_unload()
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        raise UserError(f"--lora {adapter_dir}: the adapter does not fit this model ({e})") from e


def base_name_note(adapter_dir: str | Path, target: str) -> str | None:
    """A note when an adapter without the project's record names, in peft's ``base_model_name_or_path``,
    another base than ``target`` (the spec's id or folder). Only a note: local paths move, and the weights
    were already checked to fit."""
    if read_record(adapter_dir).get("base"):
        return None
    named = named_base(adapter_dir)
    if named is None:
        return None
    if Path(named.rstrip("/")).name == Path(target.rstrip("/")).name:
        return None
    return (f"LoRA {adapter_dir} names base model {named!r} in adapter_config.json, not {target!r}; its weights "
            f"fit this model's layers, but check it was trained on this model")

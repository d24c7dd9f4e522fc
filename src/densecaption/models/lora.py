"""Applying a peft LoRA adapter folder to a backend's torch module, refusing one made for another model.

peft applies an adapter to any module whose layer names match its config and silently skips saved weights
that match nothing, so an adapter trained on another base model would load as a no-op (or half of one) and
its results would carry the base model's numbers. Two checks stop that: ``train clip`` records the base
model's identity in ``densecaption_adapter.json`` (``base``: spec, and hashes of the parameter names and
shapes and of a few values of each parameter), compared before the adapter is applied; and every saved
adapter weight must land in a LoRA layer of the model (and every LoRA layer must get weights), which also
covers adapters made elsewhere (e.g. DCI's released ones) that carry no record.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

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
    try:
        config = json.loads((Path(adapter_dir).expanduser() / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    named = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(named, str) or not named.strip():
        return None
    if Path(named.rstrip("/")).name == Path(target.rstrip("/")).name:
        return None
    return (f"LoRA {adapter_dir} names base model {named!r} in adapter_config.json, not {target!r}; its weights "
            f"fit this model's layers, but check it was trained on this model")

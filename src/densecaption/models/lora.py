"""Applying a peft LoRA adapter folder to a backend's torch module."""

from __future__ import annotations

from pathlib import Path

import torch

from densecaption.errors import UserError


def apply_lora(module: torch.nn.Module, adapter_dir: str | Path) -> torch.nn.Module:
    """The module with the adapter's weights merged in (inference only, so no extra cost per call)."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(module, str(adapter_dir)).merge_and_unload()
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        raise UserError(f"--lora {adapter_dir}: the adapter does not fit this model ({e})") from e

"""Whether this process is one of several started by ``accelerate launch`` (or torchrun)."""

from __future__ import annotations

import os


def process_state():
    """accelerate's ``PartialState`` when several processes run, else None (a plain single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    # Without a GPU, several processes still form a group (gloo): the CPU launch of the same command.
    return PartialState(cpu=not torch.cuda.is_available())

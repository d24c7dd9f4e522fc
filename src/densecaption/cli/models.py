"""``densecaption models ...``: model folders for tests and demos."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from densecaption.cli._common import guarded, out_console
from densecaption.models.random_init import RANDOM_MODELS, arch_help, backends, find_random_model, \
    usage_examples

app = typer.Typer(help="Make and inspect model folders.", no_args_is_help=True)

# The --backend choices: every backend a registered random model is written for.
Backend = Enum("Backend", {b: b for b in backends()}, type=str)


@app.command("init-random")
@guarded
def init_random(
    arch: Annotated[str, typer.Argument(help=f"What to write: {arch_help()}. CLIP sizes follow the open_clip "
                                             "architecture (--tiny shrinks them); the others are always tiny. "
                                             "See `densecaption ls random-models`.")],
    out: Annotated[Path, typer.Argument(help="Folder to write; the line printed says how to load it (e.g. "
                                             f"{usage_examples()}).")],
    backend: Annotated[Backend, typer.Option(help="The library whose folder is written (see ARCH).")]
    = Backend("open_clip"),
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
    tiny: Annotated[bool, typer.Option(help="Shrink widths and depths to a few layers (fast tests).")] = False,
):
    """Write a random-initialised model with the marker that labels its results ``weights: random``."""
    entry = find_random_model(arch, backend.value)
    folder = RANDOM_MODELS.get(entry.name)(arch, out, seed=seed, tiny=tiny)
    wrote = entry.meta.get("wrote", f"({backend.value})")
    usage = entry.meta["usage"].format(out=folder)
    out_console().print(f"wrote random {arch} {wrote} to {folder}; load it as {usage}", highlight=False)

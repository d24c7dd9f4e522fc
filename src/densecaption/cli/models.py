"""``densecaption models ...``: model folders for tests and demos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from densecaption.cli._common import guarded, out_console

app = typer.Typer(help="Make and inspect model folders.", no_args_is_help=True)


@app.command("init-random")
@guarded
def init_random(
    arch: Annotated[str, typer.Argument(help="open_clip architecture, e.g. ViT-B-32.")],
    out: Annotated[Path, typer.Argument(help="Folder to write (load it as open_clip:local-dir:OUT).")],
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
    tiny: Annotated[bool, typer.Option(help="Shrink widths and depths to a few layers (fast tests).")] = False,
):
    """Write a random-initialised model with the marker that labels its results ``weights: random``."""
    from densecaption.models.open_clip_backend import init_random_open_clip

    folder = init_random_open_clip(arch, out, seed=seed, tiny=tiny)
    out_console().print(f"wrote random {arch} to {folder}; load it as open_clip:local-dir:{folder}")

"""``densecaption view`` and ``densecaption annotate``: the local web app (FastAPI on uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from densecaption.cli._common import err_console, guarded, out_console, progress_bar

HostOpt = Annotated[str, typer.Option(help="Address to listen on. The default serves this machine only; "
                                           "anything else lets other machines read (and, for annotate, write).")]
PortOpt = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")]


def _serve(app, host: str, port: int, what: str) -> None:
    import uvicorn

    from densecaption.web.common import is_loopback

    if not is_loopback(host):
        err_console().print(f"[yellow]warning:[/] listening on {host}: every machine that can reach it can "
                            f"use this {what}; there is no login", highlight=False)
    shown = f"[{host}]" if ":" in host else host
    out_console().print(f"{what} at http://{shown}:{port}/  (Ctrl+C stops)", highlight=False)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    except SystemExit as e:  # uvicorn exits when it cannot bind
        raise typer.Exit(1) from e


@guarded
def view(
    path: Annotated[str, typer.Argument(help="A DCI folder (the root or its densely_captioned_images/), or "
                                             "'sample' for the bundled sample.")],
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Where the index cache goes (default: "
                                                           "$XDG_CACHE_HOME/densecaption/view).")] = None,
):
    """Browse a DCI dataset in the browser: an index (filter by split, search captions and labels) and one
    page per record with mask outlines that light up, the mask tree, the description linked to its masks
    and the sDCI summaries, negatives and clip_scores.

    The first start reads every record once and caches a small index, so later starts open at once.
    """
    from densecaption.web.common import served_hosts
    from densecaption.web.index import default_cache_dir
    from densecaption.web.view import ViewConfig, create_view_app

    config = ViewConfig(path, cache_dir=cache_dir or default_cache_dir(), allowed_hosts=served_hosts(host))
    with progress_bar("indexing records") as tick:
        app = create_view_app(config, progress=tick)
    _serve(app, host, port, "explorer")


@guarded
def annotate(
    skeletons: Annotated[Path, typer.Argument(help="Folder of skeleton records (<photo>-mask.json from "
                                                   "`masks extract`/`masks from-sam`, or any record with mask_data).")],
    out: Annotated[Path, typer.Option("--out", help="DCI folder to write finished records to "
                                                    "(annotations/, photos/, splits.json).")],
    photos: Annotated[Optional[Path], typer.Option(help="Folder of the photos (default: beside the skeletons, "
                                                        "or photos/ there or one level up).")] = None,
    split: Annotated[str, typer.Option(help="Split of splits.json that finished records join.")] = "train",
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
):
    """Annotate photos in DCI's three stages: a standard caption, then every mask (leaves first: a label and
    a description, or low quality, or bad), then the overall description.

    Every change is saved as you type, so a reload or a restarted server resumes where you stopped. A
    finished photo is written as DCI_DIR/annotations/<stem>-data.json, which `data validate` and every
    other command read.
    """
    from densecaption.files import remove_stale_temps, writable_folder
    from densecaption.web.annotate import AnnotateConfig, create_annotate_app
    from densecaption.web.common import served_hosts

    app = create_annotate_app(AnnotateConfig(skeletons, out, photos, split, served_hosts(host)))
    writable_folder(out)
    remove_stale_temps(out)
    _serve(app, host, port, "annotation tool")

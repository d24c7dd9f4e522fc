"""The ``densecaption`` command: one typer app with a sub-app per pipeline stage."""

from __future__ import annotations

import typer

from densecaption.cli import bench, caption, compose, data, generate, ls, models, quality, report, t2i, train
from densecaption.cli import web
from densecaption.cli import run
from densecaption.cli import masks


def build_app() -> typer.Typer:
    app = typer.Typer(name="densecaption", no_args_is_help=True, pretty_exceptions_enable=False,
                      help="Dense, region-aligned image captions: DCI data, the sDCI benchmark, caption sets, "
                           "CLIP and text-to-image fine-tuning.")
    app.add_typer(data.app, name="data")
    app.add_typer(models.app, name="models")
    app.add_typer(bench.build_app(), name="bench")
    app.add_typer(report.build_app(), name="report")
    app.add_typer(generate.app, name="generate")
    app.command("caption")(caption.caption)
    app.add_typer(compose.app, name="compose")
    app.add_typer(quality.app, name="quality")
    app.add_typer(train.app, name="train")
    app.add_typer(t2i.app, name="t2i")
    app.add_typer(masks.app, name="masks")
    app.command("ls")(ls.ls)
    app.command("view")(web.view)
    app.command("annotate")(web.annotate)
    app.command("run")(run.run)
    return app


def main() -> None:
    build_app()()

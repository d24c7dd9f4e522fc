"""``densecaption report ...``: tables merged from result files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from densecaption.cli._common import guarded
from densecaption.errors import UserError

app = typer.Typer(help="Merge result files into tables.", no_args_is_help=True)


@app.command()
@guarded
def sdci(
    paths: Annotated[list[Path], typer.Argument(help="Result files or folders holding them.")],
    fmt: Annotated[str, typer.Option("--format", help="md or csv.")] = "md",
):
    """One table of sDCI results, like the DCI paper's Table 10 (random/unknown weights labelled)."""
    from densecaption.evaluation.results import read_results
    from densecaption.reports.sdci import rows, to_csv, to_markdown

    if fmt not in ("md", "csv"):
        raise UserError(f"--format {fmt!r}: choose md or csv")
    results = read_results(paths, task="sdci")
    if not results:
        raise UserError(f"no sdci result files in {', '.join(map(str, paths))}")
    table = rows(results)
    typer.echo(to_markdown(table) if fmt == "md" else to_csv(table), nl=False)

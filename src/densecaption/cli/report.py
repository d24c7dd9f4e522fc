"""``densecaption report ...``: tables merged from result files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from densecaption.cli._common import guarded
from densecaption.errors import UserError


def build_app() -> typer.Typer:
    """``report TASK`` for every registered benchmark, and ``report t2i`` (Captions4T2I's Table 2)."""
    from densecaption.evaluation.benchmarks import BENCHMARKS

    app = typer.Typer(help="Merge result files into tables.", no_args_is_help=True)
    for entry in BENCHMARKS.entries():
        benchmark = BENCHMARKS.get(entry.name)()
        app.command(entry.name, help=f"One table of {benchmark.title} results (random/unknown weights labelled; "
                                     f"a data column names the data each run used).")(report_command(benchmark))
    app.command("t2i")(t2i)
    app.command("long-text")(long_text)
    app.command("table3")(table3)
    app.command("captioners")(captioners)
    return app


@guarded
def captioners(
    paths: Annotated[list[Path], typer.Argument(help="`quality precision` and `quality recall` result files, or "
                                                     "folders holding them.")],
    paper: Annotated[bool, typer.Option(help="Add the published Table 4 rows (LLaVA, BLIP, uform).")] = False,
    fmt: Annotated[str, typer.Option("--format", help="md, csv or json.")] = "md",
):
    """Captions4T2I's Table 4: one row per captioner and data: captions probed, entities per caption, modified
    FaithScore (instance and sentence level) and precision per fact category, random weights labelled, the
    data of every row named (captions file sha256, --sample N and seed); different data never pooled."""
    from densecaption.reports.captioners import read_quality_results, rows, to_csv, to_json, to_markdown

    if fmt not in ("md", "csv", "json"):
        raise UserError(f"--format {fmt!r}: choose md, csv or json")
    results = read_quality_results(paths)
    if not results:
        raise UserError(f"no quality precision or recall results in {', '.join(map(str, paths))}")
    table = rows(results, paper=paper)
    typer.echo({"md": to_markdown, "csv": to_csv, "json": to_json}[fmt](table), nl=False)


def report_command(benchmark):
    """The ``report TASK`` command of one benchmark."""

    @guarded
    def command(
        paths: Annotated[list[Path], typer.Argument(help="Result files or folders holding them.")],
        fmt: Annotated[str, typer.Option("--format", help="md or csv.")] = "md",
        paper: Annotated[bool, typer.Option(help="Add the benchmark's published rows to compare with.")] = False,
    ):
        from densecaption.evaluation.results import read_results
        from densecaption.reports.benchmark import rows, to_csv, to_markdown

        if fmt not in ("md", "csv"):
            raise UserError(f"--format {fmt!r}: choose md or csv")
        results = read_results(paths, task=benchmark.name)
        if not results:
            raise UserError(f"no {benchmark.name} result files in {', '.join(map(str, paths))}")
        table = rows(benchmark, results, paper=paper)
        typer.echo(to_markdown(benchmark, table) if fmt == "md" else to_csv(benchmark, table), nl=False)

    command.__name__ = benchmark.name
    return command


@guarded
def long_text(
    paths: Annotated[list[Path], typer.Argument(help="sdci-full and sdci result files or folders holding them.")],
    fmt: Annotated[str, typer.Option("--format", help="md (two tables) or csv (the first table).")] = "md",
):
    """sDCI (summaries) beside sdci-full (full texts) per model, with the share of full texts the model's
    window cut, then SCM accuracy by full-text length: what summarising costs and what long context buys."""
    from densecaption.evaluation.results import read_results
    from densecaption.reports.long_text import side_by_side, to_csv, to_markdown

    if fmt not in ("md", "csv"):
        raise UserError(f"--format {fmt!r}: choose md or csv")
    results = read_results(paths, task="sdci-full") + read_results(paths, task="sdci")
    if not any(r["task"] == "sdci-full" for r in results):
        raise UserError(f"no sdci-full result files in {', '.join(map(str, paths))}")
    rows = side_by_side(results)
    typer.echo(to_markdown(rows) if fmt == "md" else to_csv(rows), nl=False)


@guarded
def table3(
    paths: Annotated[list[Path], typer.Argument(help="aro and vlchecklist result files or folders holding them.")],
    fmt: Annotated[str, typer.Option("--format", help="md or csv.")] = "md",
    paper: Annotated[bool, typer.Option(help="Add DCI's published Table 3 rows below.")] = False,
):
    """DCI's Table 3: ARO (VG-R, VG-A, COCO, Flickr) beside VL-CheckList (Object, Attribute, Relation), one row
    per model and LoRA adapter, random weights labelled."""
    from densecaption.evaluation.results import read_results
    from densecaption.reports.table3 import rows, to_csv, to_markdown

    if fmt not in ("md", "csv"):
        raise UserError(f"--format {fmt!r}: choose md or csv")
    results = read_results(paths, task="aro") + read_results(paths, task="vlchecklist")
    if not results:
        raise UserError(f"no aro or vlchecklist result files in {', '.join(map(str, paths))}")
    table = rows(results, paper=paper)
    typer.echo(to_markdown(table) if fmt == "md" else to_csv(table), nl=False)


@guarded
def t2i(
    paths: Annotated[list[Path], typer.Argument(help="t2i compbench result files or folders holding them.")],
    fmt: Annotated[str, typer.Option("--format", help="md or csv (long form, one row per score).")] = "md",
    heatmap: Annotated[Optional[Path], typer.Option(help="Also draw the average as a precision x submasks "
                                                         "heatmap PNG (the paper's Figure 1).")] = None,
    paper: Annotated[bool, typer.Option(help="Add the published Table 2 (PixArt-alpha) and, with synthetic-caption "
                                             "runs, Table 3 below.")] = False,
):
    """Captions4T2I's Table 2 from T2I-CompBench results: each score placed by the precision and number of
    submasks of the caption set its LoRA was trained on (recorded lineage), with the five-category average.
    Runs of sets bridged from synthetic captions (`compose from-captions`) form Table 3: captioner x generator.
    Every table names its data; runs on different data never share a cell."""
    from densecaption.evaluation.results import read_results
    from densecaption.reports.t2i import captioner_of, captioners_csv, captioners_markdown, collect, \
        collect_captioners, heatmap as draw_heatmap, to_csv, to_markdown

    if fmt not in ("md", "csv"):
        raise UserError(f"--format {fmt!r}: choose md or csv")
    results = read_results(paths, task="t2i-compbench")
    if not results:
        raise UserError(f"no t2i-compbench result files in {', '.join(map(str, paths))}")
    cells = collect([r for r in results if captioner_of(r) is None])
    table3 = collect_captioners(results)
    parts = []
    if cells:
        parts.append(to_markdown(cells, paper=paper) if fmt == "md" else to_csv(cells))
    if table3:
        parts.append(captioners_markdown(table3, paper=paper) if fmt == "md" else captioners_csv(table3))
    typer.echo("\n".join(parts), nl=False)
    if heatmap is not None:
        written = draw_heatmap(cells, heatmap)
        typer.echo(f"heatmap: {written}", err=True)

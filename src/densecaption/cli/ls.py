"""``densecaption ls [GROUP]``: what is registered at each plug-in point (``densecaption.plugins``)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from densecaption.cli._common import guarded
from densecaption.plugins import plugin_points
from densecaption.registry import Registry


def _rows(registry: Registry) -> list[dict[str, Any]]:
    """One JSON object per entry: name, summary and its metadata (read without importing the entry)."""
    return [{"name": e.name, "summary": e.summary, **e.meta} for e in registry.entries()]


def _lines(registry: Registry, indent: str = "") -> list[str]:
    return [f"{indent}{e.name}  {e.summary}".rstrip() for e in registry.entries()]


@guarded
def ls(
    group: Annotated[Optional[str], typer.Argument(
        help=f"One plug-in group: {plugin_points().choices()}. Default: every group.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {group: [{name, summary, ...metadata}]} as "
                                                         "JSON instead of text.")] = False,
):
    """List what is registered: model backends, benchmarks, text-to-image families, detectors, ...

    With GROUP, one line per entry: its name, two spaces, its summary. Without, every group (a line with the
    group's name and summary) followed by its entries, indented by two spaces. Listing loads no model code.
    """
    points = plugin_points()
    names = [points.entry(group).name] if group is not None else list(points.names())
    registries = {name: points.get(name) for name in names}
    if as_json:
        typer.echo(json.dumps({name: _rows(reg) for name, reg in registries.items()}, indent=1,
                              ensure_ascii=False, default=str))
        return
    if group is not None:
        lines = _lines(registries[group])
    else:
        blocks = [[f"{name}  {points.entry(name).summary}", *_lines(reg, "  ")] for name, reg in registries.items()]
        lines = [line for i, block in enumerate(blocks) for line in ([""] if i else []) + block]
    typer.echo("\n".join(lines))

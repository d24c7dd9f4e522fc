"""``densecaption run RECIPE``: a paper table's experiment as one resumable command (docs/recipes.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from densecaption.cli._common import err_console, guarded

if TYPE_CHECKING:
    from densecaption.recipes.plan import Plan
    from densecaption.recipes.runner import Outcome


@guarded
def run(
    recipe: Annotated[str, typer.Argument(help="A shipped recipe's name (see `densecaption ls recipes`) or a "
                                               "recipe YAML file.")],
    scale: Annotated[str, typer.Option(help="full: the paper's published settings (default); demo: the "
                                            "recipe's small variant on the bundled sample with tiny models.")]
    = "full",
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<recipe>-<scale>): every step's "
                                                     "outputs, .recipe/ (stamps, log) and report/.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="KEY=VALUE overriding a recipe variable, VALUE read as YAML (e.g. --set epochs=2, "
                      "--set 'precisions=[0, 1]'); repeatable.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print each step's status (done, run, resume, "
                                                            "stale, missing), command line and reason, and "
                                                            "what the full variant needs; write nothing.")]
    = False,
    only: Annotated[Optional[list[str]], typer.Option(
        help="Run only these steps (ids or shell patterns such as 'train-*'; repeatable), then the reports; "
             "refused when a step they read from is not done yet.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The dry-run listing, or the final summary, as JSON "
                                                         "on stdout (the commands' own output goes to stderr).")]
    = False,
):
    """Run a recipe: the steps of a paper table's experiment, in the order their data needs, then its report.

    A step whose stamp matches its command line and inputs, and whose outputs exist, is skipped; a step
    that was killed continues (steps that cannot resume start over); a step whose options or inputs
    changed runs again, and so does everything that reads its outputs. Run it again after a kill, a failure
    or a changed --set: only what is needed runs. Under `accelerate launch -m densecaption run ...` the steps
    marked `shards` run in every process.

    Example: densecaption run c4t2i-table2 --scale demo --dry-run
    """
    from densecaption.recipes.catalog import find_recipe
    from densecaption.recipes.commands import command_tree
    from densecaption.recipes.plan import make_plan, parse_sets
    from densecaption.recipes.runner import Runner, StepFailed, select
    from densecaption.recipes.schema import load_recipe

    path, expect = find_recipe(recipe)
    loaded = load_recipe(path, expect_name=expect)
    root = command_tree()
    plan = make_plan(loaded, scale, parse_sets(set_ or []), out, root=root)
    chosen = select(plan, tuple(only or ()))
    if dry_run:
        _show_plan(plan, chosen, as_json)
        return
    runner = Runner(plan, root, as_json=as_json)
    try:
        runner.run(chosen)
    except StepFailed:
        if runner.main:
            _summary(plan, runner.outcomes, as_json, ok=False)
        raise
    if runner.main:
        _summary(plan, runner.outcomes, as_json, ok=True)


def _step_row(planned) -> dict[str, Any]:
    step = planned.step
    return {"id": step.id, "status": planned.status, "reason": planned.reason,
            "command": step.command_line(resuming=planned.resuming), "argv": list(step.full_argv(
                resuming=planned.resuming)), "inputs": list(step.inputs), "outputs": list(step.outputs),
            "needs": list(planned.needs), "shards": step.shards, "resumable": step.resumable}


def _show_plan(plan: "Plan", chosen, as_json: bool) -> None:
    recipe = plan.recipe
    reports = [{"id": r.id, "command": r.command_line(), "file": str(plan.state.report_path(r.id))}
               for r in plan.reports]
    if as_json:
        typer.echo(json.dumps({"recipe": recipe.name, "title": recipe.title, "scale": plan.scale,
                               "out": str(plan.out), "full": dict(recipe.full), "vars": dict(plan.vars),
                               "steps": [_step_row(p) for p in chosen], "reports": reports},
                              indent=1, ensure_ascii=False, default=str))
        return
    lines = [f"{recipe.name} ({plan.scale}): {recipe.title}", f"run folder: {plan.out}"]
    if recipe.full:
        lines.append("full variant needs: " + ", ".join(f"{k} {v}" for k, v in recipe.full.items()))
    counts = {s: sum(p.status == s for p in chosen) for s in ("done", "run", "resume", "stale", "missing")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" of {len(chosen)} steps")
    for p in chosen:
        lines += [f"{p.status:<8}{p.id}  {p.step.command_line(resuming=p.resuming)}", f"        {p.reason}"]
    lines += [f"{'report':<8}{r['id']}  {r['command']}  -> {r['file']}" for r in reports]
    typer.echo("\n".join(lines))


def _summary(plan: "Plan", outcomes: list["Outcome"], as_json: bool, *, ok: bool) -> None:
    """The table of steps (status, seconds) on stderr, and where the reports are; JSON on stdout with --json."""
    from rich.table import Table

    reports = {o.id: str(plan.state.report_path(o.id)) for o in outcomes if o.status == "report"}
    if as_json:
        typer.echo(json.dumps({"recipe": plan.recipe.name, "scale": plan.scale, "out": str(plan.out), "ok": ok,
                               "steps": [{"id": o.id, "status": o.status, "seconds": round(o.seconds, 3)}
                                         for o in outcomes], "reports": reports}, indent=1, ensure_ascii=False))
        return
    table = Table(title=f"{plan.recipe.name} ({plan.scale})")
    for column in ("step", "status", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for o in outcomes:
        table.add_row(o.id, o.status, f"{o.seconds:.1f}" if o.status not in ("done", "not run") else "")
    console = err_console()
    console.print(table)
    if reports:
        console.print("reports: " + ", ".join(reports.values()), highlight=False)

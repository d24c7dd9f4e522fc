"""Shared pieces of the command-line interface: consoles, error handling, progress bars, skip reporting."""

from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, \
    TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from densecaption.data.findings import RecordError, SkipLog
from densecaption.errors import UserError

F = TypeVar("F", bound=Callable)


def out_console() -> Console:
    return Console(soft_wrap=True)


def err_console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def guarded(func: F) -> F:
    """Turn user errors into one red line and an exit code (1 for bad data, 2 for bad input)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as e:
            err_console().print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err_console().print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


class RateColumn(ProgressColumn):
    """Items per second."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f}/s" if speed else "-/s")


class Ticker:
    """What ``progress_bar`` yields: call it to advance, ``set_total`` once the size is known."""

    def __init__(self, progress: Progress, task):
        self._progress, self._task = progress, task

    def __call__(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def set_total(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)


@contextmanager
def progress_stages(enabled: bool = True) -> Iterator[Callable[[str, int | None], Ticker]]:
    """Rich progress bars with rate and ETA on stderr, one per stage: yields ``stage(name, total)``.
    Hidden when stderr is not a terminal or ``enabled`` is false (e.g. on non-main processes)."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console(), transient=True,
                        disable=not (enabled and sys.stderr.isatty()))
    with progress:
        yield lambda name, total=None: Ticker(progress, progress.add_task(name, total=total))


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Ticker]:
    """One progress bar (see ``progress_stages``)."""
    with progress_stages() as stage:
        yield stage(description, total)


def skip_log(strict: bool) -> SkipLog:
    """A ``SkipLog`` that prints one warning line per skipped record."""
    console = err_console()

    def warn(error: RecordError) -> None:
        console.print(f"[yellow]skipped[/] {error}", highlight=False)

    return SkipLog(strict=strict, on_skip=warn)


def report_skips(log: SkipLog) -> None:
    if log.skipped:
        err_console().print(f"[yellow]{len(log.skipped)} record(s) skipped[/] "
                            "(run `densecaption data validate` for details, or --strict to stop at the first)")

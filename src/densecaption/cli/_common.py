"""Shared pieces of the command-line interface: consoles, error handling, progress bars, skip reporting."""

from __future__ import annotations

import errno
import functools
import os
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, \
    TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from densecaption.data.findings import RecordError, SkipLog
from densecaption.errors import UserError, os_error_line

F = TypeVar("F", bound=Callable)


class _OutConsole(Console):
    """Plain lines are not wrapped (paths stay whole to copy), but tables fit the terminal: their titles and
    cells wrap (see ``fit_table``)."""

    def print(self, *objects, soft_wrap: bool | None = None, **kwargs) -> None:
        tables = [o for o in objects if isinstance(o, Table)]
        for table in tables:
            fit_table(table)
        super().print(*objects, soft_wrap=False if tables and soft_wrap is None else soft_wrap, **kwargs)


def fit_table(table: Table) -> Table:
    """Let every cell wrap and fold instead of ending in an ellipsis, so a narrow terminal never cuts a number
    (or a path) short: it runs on over lines instead."""
    for column in table.columns:
        column.overflow = "fold"
    return table


def out_console() -> Console:
    return _OutConsole(soft_wrap=True)


def err_console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def guarded(func: F) -> F:
    """Turn user errors and operating-system errors (a path that cannot be read or written, a full disk)
    into one red ``error:`` line and an exit code (1 for bad data or a failed run, 2 for bad input)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as e:
            err_console().print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(e.exit_code) from None
        except OSError as e:
            err_console().print(f"[bold red]error:[/] {escape(os_error_line(e))}", highlight=False)
            raise typer.Exit(os_error_code(e)) from None
        except KeyboardInterrupt:
            err_console().print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


# errors of the machine rather than of a path the user gave: the run failed, as bad data fails it (exit 1)
_RUN_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EMFILE, errno.ENFILE})


def os_error_code(e: OSError) -> int:
    """2 when a path cannot be used (permission denied, read-only, a file where a folder is expected ...);
    1 when the machine failed the run (a full disk, an I/O error) or the error names no path (a network
    error, a file that is not an image)."""
    return 2 if e.filename is not None and e.errno not in _RUN_ERRNOS else 1


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


class LineTicker:
    """A ``Ticker`` for logs: instead of a bar, a plain line on stderr at most every ``interval`` seconds
    and when the stage completes (``stage: done/total (pct), rate/s, eta``)."""

    def __init__(self, name: str, total: int | None, interval: float, clock: Callable[[], float] = time.monotonic):
        self.name, self.total, self.interval, self.clock = name, total, interval, clock
        self.done = self.shown = 0
        self.started = self.last = clock()

    def __call__(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        finished = self.total is not None and self.done >= self.total
        if finished or now - self.last >= self.interval:
            self.last, self.shown = now, self.done
            print(self.line(now), file=sys.stderr, flush=True)

    def finish(self) -> None:
        """A closing line for a stage that ended before its last line was printed (e.g. short of its
        planned total, when part of the work turned out not to be needed)."""
        if self.done != self.shown:
            self.shown = self.done
            print(f"{self.name}: {self.done} done, took {_clock(self.clock() - self.started)}", file=sys.stderr,
                  flush=True)

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            left = (self.total - self.done) / rate if rate else float("inf")
            eta = f", eta {_clock(left)}" if self.done < self.total else f", took {_clock(elapsed)}"
            return f"{self.name}: {self.done}/{self.total} ({100 * self.done / self.total:.0f}%), {rate:.1f}/s{eta}"
        return f"{self.name}: {self.done}, {rate:.1f}/s, {_clock(elapsed)} elapsed"

    def set_total(self, total: int) -> None:
        self.total = total

    def describe(self, text: str) -> None:
        self.name = text


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


PROGRESS_INTERVAL_ENV = "DENSECAPTION_PROGRESS_INTERVAL"


@contextmanager
def progress_stages(enabled: bool = True) -> Iterator[Callable[[str, int | None], Ticker]]:
    """Progress on stderr, one per stage: yields ``stage(name, total)``. On a terminal, rich bars with rate
    and ETA; otherwise (output going to a log file) plain lines every 30 s (``DENSECAPTION_PROGRESS_INTERVAL``
    seconds) and at each stage's end. Nothing when ``enabled`` is false (e.g. on non-main processes)."""
    if enabled and not sys.stderr.isatty():
        interval = float(os.environ.get(PROGRESS_INTERVAL_ENV, "30"))
        tickers: list[LineTicker] = []

        def stage(name: str, total: int | None = None) -> LineTicker:
            tickers.append(LineTicker(name, total, interval))
            return tickers[-1]

        yield stage
        for ticker in tickers:
            ticker.finish()
        return
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console(), transient=True,
                        disable=not enabled)
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

"""Shared pieces of the commands that run generation jobs: options, progress with rate and ETA, the end report.

Every such command (``generate summaries|negatives``, ``caption``, later the caption-quality ones) takes the
same job options, runs through ``generation.jobs.JobRunner`` and ends the same way: a count line, the
failed items with their reasons, exit code 1 when ``--max-failures`` stopped the run (or, with
``--strict``, when any item failed).
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer
from rich.markup import escape

from densecaption.cli._common import err_console, progress_stages
from densecaption.errors import UserError
from densecaption.generation.backends import BackendOptions, TextBackend
from densecaption.generation.jobs import JobProgress, JobReport, RetryPolicy, RunnerConfig

Concurrency = Annotated[int, typer.Option(help="Requests in flight at once (a local hf: model serves one at a "
                                               "time whatever this says).")]
MaxRetries = Annotated[int, typer.Option(help="Retries of a request after a rate limit (429), a server error "
                                              "(5xx) or a timeout, with exponential backoff and jitter.")]
Timeout = Annotated[float, typer.Option(help="Seconds one request to an openai: server may take.")]
MaxFailures = Annotated[int, typer.Option(help="Stop the run once this many items have failed in it "
                                               "(0: never stop).")]
Seed = Annotated[int, typer.Option(help="Seed of sampled decoding; each request's seed derives from it and the "
                                        "item, so sampled runs repeat too.")]
Temperature = Annotated[float, typer.Option(help="0: greedy decoding (repeatable); above 0: sampling.")]
ApiKeyEnv = Annotated[str, typer.Option(help="Environment variable holding the API key for an openai: server.")]
Device = Annotated[str, typer.Option(help="Where a local hf: model runs: auto, cpu, cuda, cuda:1, ...")]
LogPath = Annotated[Optional[Path], typer.Option("--log", help="The job log (default: beside the output).")]
Restart = Annotated[bool, typer.Option(help="Delete the job log and start over (by default a re-run of the same "
                                            "command continues where the last one stopped).")]
RetryFailed = Annotated[bool, typer.Option(help="Also run again the items an earlier run recorded as failed.")]
Strict = Annotated[bool, typer.Option(help="Exit 1 when any item failed, and stop at the first bad record "
                                           "instead of skipping it.")]


@dataclass(frozen=True)
class JobOptions:
    """The options every job command takes, gathered."""

    concurrency: int = 8
    max_retries: int = 5
    timeout: float = 120.0
    max_failures: int = 100
    seed: int = 0
    temperature: float = 0.0
    api_key_env: str = "OPENAI_API_KEY"
    device: str = "auto"
    log: Path | None = None
    restart: bool = False
    retry_failed: bool = False
    strict: bool = False

    def backend_options(self) -> BackendOptions:
        if self.temperature < 0:
            raise UserError("--temperature should be 0 or more")
        return BackendOptions(temperature=self.temperature, timeout=self.timeout, api_key_env=self.api_key_env,
                              device=self.device, max_connections=max(1, self.concurrency))

    def runner_config(self, backend: TextBackend) -> RunnerConfig:
        concurrency = max(1, min(self.concurrency, backend.max_parallel or self.concurrency))
        return RunnerConfig(concurrency=concurrency, retry=RetryPolicy(max_retries=max(0, self.max_retries)),
                            max_failures=max(0, self.max_failures), retry_failed=self.retry_failed, seed=self.seed)


def decoding_settings(options: JobOptions) -> dict[str, object]:
    """The decoding settings that shape outputs (for job log headers)."""
    return {"temperature": options.temperature, "seed": options.seed}


@contextmanager
def job_progress(label: str, *, every: float = 30.0) -> Iterator[Callable[[JobProgress], None]]:
    """A progress callback: a rich bar with rate and ETA on a terminal, else a plain line every ``every`` s."""
    console = err_console()
    plain = not sys.stderr.isatty()
    with progress_stages(enabled=not plain) as stage:  # plain: this function's own lines, with failure counts
        state: dict[str, object] = {"bar": None, "printed": time.monotonic()}

        def update(p: JobProgress) -> None:
            bar = state["bar"]
            if bar is None:
                bar = state["bar"] = stage(label, p.total)
                bar(p.done)
            elif p.last is not None:
                bar(1)
            if plain and time.monotonic() - float(state["printed"]) >= every:
                state["printed"] = time.monotonic()
                eta = f", ETA {format_seconds(p.eta)}" if p.eta is not None else ""
                console.print(f"{label}: {p.done}/{p.total} done ({p.failed} failed), {p.rate:.2f}/s{eta}",
                              highlight=False)

        yield update


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def finish(report: JobReport, *, label: str, log: Path, options: JobOptions, shown: int = 20) -> None:
    """Print the counts and the failures; exit 1 if the run was stopped, or (strict) if any item failed."""
    console = err_console()
    if report.torn_bytes:
        console.print(f"[yellow]note:[/] cut a torn last line ({report.torn_bytes} bytes) from {log}: "
                      "the previous run was killed mid-write; that item was run again", highlight=False)
    failures = report.failures
    before = f", {report.skipped} done before" if report.skipped else ""
    console.print(f"{label}: {report.ok} ok, {len(failures)} failed, {len(report.missing)} not run "
                  f"({report.ran} this run{before}, {report.seconds:.1f} s); log: {log}", highlight=False)
    for record in failures[:shown]:
        console.print(f"  [red]failed[/] {escape(record.id)}: {escape(str(record.reason))}", highlight=False)
    if len(failures) > shown:
        console.print(f"  ... and {len(failures) - shown} more (status \"failed\" in {log})", highlight=False)
    if failures and not options.retry_failed:
        console.print("  re-run with --retry-failed to try the failed items again", highlight=False)
    if report.stopped:
        console.print(f"[bold red]error:[/] stopped after {report.failed_now} failures (--max-failures "
                      f"{options.max_failures}); fix the cause, then re-run the same command to continue",
                      highlight=False)
        raise typer.Exit(1)
    if options.strict and failures:
        raise typer.Exit(1)

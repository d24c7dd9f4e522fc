"""One job runner for long generation runs: resumable, concurrent, bounded and honest.

Runs over 100,000 items take hours against a server that sometimes times out, rate-limits or answers junk.
The runner keeps an append-only JSONL log keyed by item id; one line per finished item::

    {"id": "...", "status": "ok", "output": ..., "attempts": 1, "time": "2025-...", "seconds": 0.8}
    {"id": "...", "status": "failed", "reason": "...", "attempts": 6, "time": "...", "seconds": 31.0}

The first line is a header naming the task and the settings that shape outputs (model, prompts, decoding),
so a re-run with other settings cannot mix its outputs into the log. Each line is written with one
``write`` on an ``O_APPEND`` file as soon as its item ends, so a killed run (even ``kill -9``) loses at most
the items in flight; a torn last line is cut off when the log is opened again. Re-running the same command
reads the log and runs only the items it lacks (failed items too with ``retry_failed``), so nothing is lost
or duplicated, and with a deterministic backend the final output equals an uninterrupted run's: outputs
depend only on the item (seeds are derived from the item id), never on timing or order.

Requests are retried with exponential backoff and jitter, bounded, when the backend says trying again may
help (429, 5xx, timeouts). A per-job ``check`` turns bad output into a failure with a reason, so nothing bad
is written as a success. ``max_failures`` stops a run that is going wrong.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Literal, Mapping, NoReturn, Sequence, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from densecaption.errors import UserError
from densecaption.files import JsonlLog, lock_or_fail
from densecaption.generation.backends import BackendError
from densecaption.seeding import keyed_rng, seed_for

P = TypeVar("P")
Status = Literal["ok", "failed"]
LOG_FORMAT = "densecaption-job-log/1"


class JobFailed(Exception):
    """Raised by a work function when its item cannot succeed (e.g. still too long after the last reduce
    round); the message is the reason recorded in the log."""


class Interrupted(Exception):
    """The run is stopping (``max_failures`` reached or Ctrl-C): the item is left for the next run."""


@dataclass(frozen=True)
class Job(Generic[P]):
    """One item: a stable id (the key of the log) and what the work function needs."""

    id: str
    payload: P


@dataclass(frozen=True)
class JobRecord:
    """One finished item, as one line of the log."""

    id: str
    status: Status
    output: Any = None
    reason: str | None = None
    attempts: int = 0
    """Requests made for the item, retries included."""
    time: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.ok:
            out["output"] = self.output
        else:
            out["reason"] = self.reason
        out.update(attempts=self.attempts, time=self.time, seconds=round(self.seconds, 3))
        return out

    @classmethod
    def from_json(cls, obj: Any) -> "JobRecord | None":
        """The record of a parsed line, or None for anything that is not one."""
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or obj.get("status") not in ("ok",
                                                                                                        "failed"):
            return None
        return cls(id=obj["id"], status=obj["status"], output=obj.get("output"), reason=obj.get("reason"),
                   attempts=int(obj.get("attempts") or 0), time=str(obj.get("time") or ""),
                   seconds=float(obj.get("seconds") or 0.0))


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter.

    Retry ``n`` (1-based) waits ``base_delay * 2**(n-1)`` seconds, capped at ``max_delay``, stretched by up
    to ``jitter`` of itself (so many clients do not retry in step) and capped again; a server's
    Retry-After wins when it is longer, still capped.
    """

    max_retries: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    jitter: float = 0.25

    def delay(self, retry: int, rng: random.Random, hint: float | None = None) -> float:
        delay = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        delay = min(self.max_delay, delay * (1.0 + self.jitter * rng.random()))
        if hint is not None and hint > 0:
            delay = max(delay, min(hint, self.max_delay))
        return delay


def derive_seed(seed: int | None, job_id: str, step: int) -> int | None:
    """A per-request seed that depends only on the run's seed, the item and the request's place in it."""
    return None if seed is None else seed_for(seed, job_id, step)


class JobContext:
    """What a work function gets besides its payload: ``call`` (retries) and ``next_seed`` (sampling)."""

    def __init__(self, job_id: str, policy: RetryPolicy, stop: threading.Event, seed: int | None):
        self.job_id = job_id
        self.policy = policy
        self.attempts = 0
        self.delays: list[float] = []
        self._stop = stop
        self._seed = seed
        self._step = 0
        self._rng = keyed_rng(job_id)  # backoff jitter, per item

    def next_seed(self) -> int | None:
        """The seed of this item's next request (None when the run has no seed)."""
        self._step += 1
        return derive_seed(self._seed, self.job_id, self._step)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, retried (by tenacity) on a retryable ``BackendError`` as the policy allows.

        Raises the last error, marked not retryable and saying how many attempts were made, when the
        retries run out; raises ``Interrupted`` when the run stops while waiting.
        """
        retrying = Retrying(retry=retry_if_exception(_retryable), wait=self._wait, sleep=self._sleep,
                            stop=stop_after_attempt(self.policy.max_retries + 1), retry_error_callback=_give_up)
        return retrying(self._attempt, fn, *args, **kwargs)

    def _attempt(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._stop.is_set():
            raise Interrupted()
        self.attempts += 1
        return fn(*args, **kwargs)

    def _wait(self, state: RetryCallState) -> float:
        """The policy's delay before retry ``n`` (tenacity asks after the last attempt too: no jitter is drawn
        then, so the item's jitter stream stays what it was)."""
        if state.attempt_number > self.policy.max_retries:
            return 0.0
        return self.policy.delay(state.attempt_number, self._rng, state.outcome.exception().retry_after)

    def _sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self._stop.wait(seconds):
            raise Interrupted()


def _retryable(error: BaseException) -> bool:
    return isinstance(error, BackendError) and error.retryable


def _give_up(state: RetryCallState) -> NoReturn:
    error = state.outcome.exception()
    raise BackendError(f"gave up after {state.attempt_number} attempts: {error}", retryable=False,
                       status=error.status) from error


# --------------------------------------------------------------------------------------------- the log
def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


class JobLog:
    """The append-only JSONL log of one task's run (see the module docstring)."""

    def __init__(self, path: Path | str, task: str, settings: Mapping[str, Any], *, fsync: bool = False):
        self.path = Path(path)
        self.task = task
        self.settings = _normal(dict(settings))
        self.torn_bytes = 0
        """Bytes of a torn last line cut off when the log was opened (a killed run)."""
        self.bad_lines = 0
        self._log = JsonlLog(self.path, fsync=fsync)
        self._lock = None  # the held lock (filelock) between open() and close()

    def header(self) -> dict[str, Any]:
        return {"format": LOG_FORMAT, "task": self.task, "settings": self.settings}

    def open(self, *, restart: bool = False) -> dict[str, JobRecord]:
        """Lock the log, read what earlier runs finished (the last line of an id wins), get ready to append.

        Raises ``UserError`` when another process holds the log (two runs into one output would mix); the
        lock is a file ``.NAME.lock`` beside the log, held until ``close``.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = lock_or_fail(self.path, "this job log")
        try:
            if restart:
                self.path.unlink(missing_ok=True)
            self.torn_bytes = self._log.repair()
            lines = [line for _, line in self._log.lines()]
            records: dict[str, JobRecord] = {}
            if lines:
                self._check_header(lines[0])
                for line in lines[1:]:
                    try:
                        record = JobRecord.from_json(json.loads(line))
                    except ValueError:
                        record = None
                    if record is None:
                        self.bad_lines += 1
                        continue
                    records[record.id] = record
            self._log.open()
            if not lines:
                self._log.append(self.header())
        except BaseException:
            self.close()
            raise
        return records

    def _check_header(self, line: bytes) -> None:
        try:
            header = json.loads(line)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != LOG_FORMAT:
            raise UserError(f"{self.path}: not a densecaption job log (move it away, or use --restart)")
        if header.get("task") != self.task:
            raise UserError(f"{self.path}: the log of a {header.get('task')!r} run, not {self.task!r}")
        old = header.get("settings") or {}
        if old != self.settings:
            diff = [f"{k}: {old.get(k)!r} in the log, {self.settings.get(k)!r} now"
                    for k in sorted(set(old) | set(self.settings)) if old.get(k) != self.settings.get(k)]
            raise UserError(f"{self.path}: written by a run with other settings ({'; '.join(diff)}); "
                            f"use the same settings to resume, another output, or --restart to start over")

    def append(self, record: JobRecord) -> None:
        if self._lock is None:
            raise RuntimeError("JobLog.open() first")
        self._log.append(record.to_json())

    def close(self) -> None:
        self._log.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def read_log(path: Path | str) -> Iterator[JobRecord]:
    """Every record line of a log, in order (for tools and tests; a torn last line is skipped)."""
    for _, line in JsonlLog(path).lines()[1:]:
        try:
            record = JobRecord.from_json(json.loads(line))
        except ValueError:
            continue
        if record is not None:
            yield record


# --------------------------------------------------------------------------------------------- the runner
@dataclass(frozen=True)
class RunnerConfig:
    concurrency: int = 8
    retry: RetryPolicy = RetryPolicy()
    max_failures: int = 0
    """Stop the run once this many items have failed in it (0: never stop)."""
    retry_failed: bool = False
    """Run again the items an earlier run recorded as failed (otherwise a re-run only adds missing ones)."""
    seed: int | None = 0


@dataclass(frozen=True)
class JobProgress:
    """Where a run stands, for progress displays; ``rate`` counts this run's items only."""

    total: int
    done: int
    ok: int
    failed: int
    skipped: int
    elapsed: float
    last: JobRecord | None = None

    @property
    def rate(self) -> float:
        ran = self.done - self.skipped
        return ran / self.elapsed if self.elapsed > 0 and ran else 0.0

    @property
    def eta(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate else None


@dataclass
class JobReport:
    """The outcome for the jobs given: each one's latest record (earlier runs' included)."""

    jobs: list[str]
    records: dict[str, JobRecord]
    skipped: int
    ran: int
    stopped: bool
    seconds: float
    torn_bytes: int = 0
    failed_now: int = 0

    def outputs(self) -> dict[str, Any]:
        """Outputs of the items that succeeded."""
        return {i: self.records[i].output for i in self.jobs if i in self.records and self.records[i].ok}

    @property
    def failures(self) -> list[JobRecord]:
        return [self.records[i] for i in self.jobs if i in self.records and not self.records[i].ok]

    @property
    def missing(self) -> list[str]:
        """Items with no record: never started because the run stopped."""
        return [i for i in self.jobs if i not in self.records]

    @property
    def ok(self) -> int:
        return sum(1 for i in self.jobs if i in self.records and self.records[i].ok)


Work = Callable[[P, JobContext], Any]
Check = Callable[[P, Any], "str | None"]


def check_nonempty(payload: Any, output: Any) -> str | None:
    """The default check: empty output (blank text, empty list) is a failure."""
    if output is None or (isinstance(output, str) and not output.strip()) or (
            isinstance(output, (list, dict)) and not output):
        return "empty output"
    return None


@dataclass
class JobRunner:
    """Runs jobs through a work function with a log, concurrency, retries, checks and a failure budget."""

    log: JobLog
    config: RunnerConfig = field(default_factory=RunnerConfig)
    progress: Callable[[JobProgress], None] | None = None
    restart: bool = False

    def run(self, jobs: Sequence[Job[P]], work: Work, check: Check | None = check_nonempty) -> JobReport:
        ids = [j.id for j in jobs]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise ValueError(f"job ids must be unique; repeated: {dupes}")
        wanted = set(ids)
        records = {k: v for k, v in self.log.open(restart=self.restart).items() if k in wanted}
        try:
            return self._run(jobs, ids, records, work, check)
        finally:
            self.log.close()

    def _todo(self, jobs: Sequence[Job[P]], records: dict[str, JobRecord]) -> list[Job[P]]:
        def wanted(job: Job[P]) -> bool:
            record = records.get(job.id)
            return record is None or (not record.ok and self.config.retry_failed)

        return [j for j in jobs if wanted(j)]

    def _run(self, jobs, ids, records, work, check) -> JobReport:
        todo = self._todo(jobs, records)
        skipped = len(jobs) - len(todo)
        stop = threading.Event()
        start = time.monotonic()
        todo_ids = {j.id for j in todo}
        kept = [r for r in records.values() if r.id not in todo_ids]
        counts = {"ok": sum(r.ok for r in kept), "failed": sum(not r.ok for r in kept), "done": skipped,
                  "failed_now": 0}
        stopped = False
        self._report(len(jobs), counts, skipped, start, None)
        concurrency = max(1, self.config.concurrency)
        pending: dict[Future, Job] = {}
        queue = iter(todo)
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="job") as pool:
            def fill() -> None:
                while len(pending) < 2 * concurrency and not stop.is_set():
                    job = next(queue, None)
                    if job is None:
                        return
                    pending[pool.submit(self._one, job, work, check, stop)] = job

            try:
                fill()
                while pending:
                    finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                    for future in finished:
                        pending.pop(future)
                        record = future.result()
                        if record is None:  # interrupted: left for the next run
                            continue
                        self.log.append(record)
                        records[record.id] = record
                        counts["done"] += 1
                        counts["ok" if record.ok else "failed"] += 1
                        if not record.ok:
                            counts["failed_now"] += 1
                            if self.config.max_failures and counts["failed_now"] >= self.config.max_failures:
                                stopped = True
                                stop.set()
                        self._report(len(jobs), counts, skipped, start, record)
                    fill()
            except BaseException:  # Ctrl-C and the like: finish nothing new, keep what is logged
                stop.set()
                for future in pending:
                    future.cancel()
                raise
        return JobReport(jobs=list(ids), records=records, skipped=skipped, ran=counts["done"] - skipped,
                         stopped=stopped, seconds=time.monotonic() - start, torn_bytes=self.log.torn_bytes,
                         failed_now=counts["failed_now"])

    def _report(self, total: int, counts: dict[str, int], skipped: int, start: float,
                last: JobRecord | None) -> None:
        if self.progress is not None:
            self.progress(JobProgress(total=total, done=counts["done"], ok=counts["ok"], failed=counts["failed"],
                                      skipped=skipped, elapsed=time.monotonic() - start, last=last))

    def _one(self, job: Job[P], work: Work, check: Check | None, stop: threading.Event) -> JobRecord | None:
        ctx = JobContext(job.id, self.config.retry, stop, self.config.seed)
        started = time.monotonic()

        def record(status: Status, output: Any = None, reason: str | None = None) -> JobRecord:
            return JobRecord(id=job.id, status=status, output=output, reason=reason, attempts=ctx.attempts,
                             time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             seconds=time.monotonic() - started)

        if stop.is_set():
            return None
        try:
            output = work(job.payload, ctx)
            reason = check(job.payload, output) if check is not None else None
        except Interrupted:
            return None
        except (JobFailed, BackendError) as e:
            return record("failed", reason=str(e) or type(e).__name__)
        except Exception as e:  # an unexpected error fails this item, not the whole run; the type says what
            return record("failed", reason=f"{type(e).__name__}: {e}")
        if reason is not None:
            return record("failed", reason=reason)
        try:
            json.dumps(output)
        except (TypeError, ValueError) as e:
            return record("failed", reason=f"output is not JSON: {e}")
        return record("ok", output=output)

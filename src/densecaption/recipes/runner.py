"""Run a plan's pending steps in this process, one after another, through the click command tree.

In-process on purpose: imports and model code load once for the whole recipe instead of once per step. Each
step gets a ``started`` marker before it runs and a stamp after it succeeds (both written atomically under
``${out}/.recipe/steps/``), so a killed run leaves a marker that the next run reads as ``resume`` (or, for a
step that cannot resume, as a step to start over). One runner holds a run folder at a time. Under
``accelerate launch`` the steps marked ``shards`` run in every process and the others in the main process
while the rest wait; only the main process writes state and reports (docs/recipes.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import io
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, TextIO

from densecaption.errors import UserError
from densecaption.files import JsonlLog, atomic_write_text, lock_or_fail, remove_stale_temps, writable_folder
from densecaption.recipes.commands import Command
from densecaption.recipes.plan import Plan, PlannedStep
from densecaption.recipes.schema import ResolvedStep, suggest


class StepFailed(UserError):
    """A step of the recipe failed; the run stops (exit 1), finished steps stay done."""

    exit_code = 1


@dataclass(frozen=True)
class Outcome:
    """What happened to one step or report in this run: ``done`` (already, skipped), ``ran``, ``resumed``,
    ``failed``, ``not run`` (after a failure) or ``report``."""

    id: str
    status: str
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------- selection
def select(plan: Plan, only: tuple[str, ...] = ()) -> tuple[PlannedStep, ...]:
    """The steps to consider: all, or those ``--only`` names (ids or shell patterns). A chosen step whose
    input comes from a step that is neither done nor chosen is refused in one line."""
    if not only:
        return plan.steps
    ids = [p.id for p in plan.steps]
    chosen: set[str] = set()
    for pattern in only:
        hits = [i for i in ids if fnmatch.fnmatchcase(i, pattern)]
        if not hits:
            raise UserError(f"--only {pattern}: no step of {plan.recipe.name} ({plan.scale}) matches"
                            f"{suggest(pattern, ids)} (steps: {', '.join(ids)})")
        chosen.update(hits)
    picked = tuple(p for p in plan.steps if p.id in chosen)
    for p in picked:
        for need in p.needs:
            dep = plan.get(need)
            if need not in chosen and dep.status != "done":
                raise UserError(f"--only {p.id}: it needs step {need}, which is not done yet ({dep.status}: "
                                f"{dep.reason}); run that first or add it to --only")
    return picked


# --------------------------------------------------------------------------------------------- one command
def execute(root: Command, argv: tuple[str, ...]) -> str | None:
    """Run ``densecaption ARGV`` in this process (as click's ``main`` without standalone mode); None on
    success, else why it failed. A command that ends with Ctrl-C (exit 130) interrupts the whole run."""
    import typer

    try:
        code: Any = root.main(args=list(argv), standalone_mode=False, prog_name="densecaption")
    except typer.Exit as e:
        code = e.exit_code
    except typer.Abort:
        return "aborted"
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) or e.code is None else 1
    except Exception as e:
        if not callable(getattr(e, "format_message", None)):  # a usage error has one; anything else is a crash
            raise
        return e.format_message()
    if code == 130:
        raise KeyboardInterrupt
    if isinstance(code, int) and code != 0:
        return f"exit code {code}"
    return None


class _Tee(io.TextIOBase):
    """A text stream writing to several others (a command's stdout to the screen and to a report file)."""

    def __init__(self, *streams: TextIO):
        self.streams = streams

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return self.streams[0].isatty()


class _ErrorLines(io.TextIOBase):
    """Keeps the last ``error: ...`` line written to it (colour codes removed): a failed step's own reason."""

    def __init__(self) -> None:
        self.last: str | None = None
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        import re

        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            plain = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
            if plain.startswith("error:"):
                self.last = plain[len("error:"):].strip()
        self._partial = self._partial[-4096:]
        return len(text)


# --------------------------------------------------------------------------------------------- the run
def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def clock(seconds: float) -> str:
    """``12.3s``, ``1m02s``, ``2h05m``: the overall progress line's times."""
    s = int(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s // 60 % 60:02d}m"


def _delete(path: str) -> None:
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink(missing_ok=True)


class Runner:
    """Runs one plan; ``root`` is the command tree the plan was checked against."""

    def __init__(self, plan: Plan, root: Command, *, as_json: bool = False):
        from densecaption.distributed import process_state

        self.plan, self.root, self.as_json = plan, root, as_json
        self.group = process_state()
        self.main = self.group is None or self.group.is_main_process
        self.state = plan.state
        self.outcomes: list[Outcome] = []
        self.started = time.monotonic()
        self.log: JsonlLog | None = None

    # ----------------------------------------------------------------------------------------- helpers
    def say(self, line: str) -> None:
        if self.main:
            print(line, file=sys.stderr, flush=True)

    def event(self, kind: str, **fields: Any) -> None:
        if self.main and self.log is not None:
            self.log.append({"event": kind, "time": _now(), **fields})

    def barrier(self) -> None:
        if self.group is not None:
            self.group.wait_for_everyone()

    def all_ok(self, ok: bool) -> bool:
        if self.group is None:
            return ok
        from accelerate.utils import gather_object

        return all(gather_object([ok]))

    @contextlib.contextmanager
    def step_stdout(self, copy: io.StringIO | None = None, errors: _ErrorLines | None = None) -> Iterator[None]:
        """A command's stdout: on stdout (on stderr with --json, which keeps stdout for the JSON), and into
        ``copy`` for a report; its stderr also into ``errors`` (to name why a step failed)."""
        screen = sys.stderr if self.as_json else sys.stdout
        target: TextIO = _Tee(screen, copy) if copy is not None else screen
        err: TextIO = _Tee(sys.stderr, errors) if errors is not None else sys.stderr
        with contextlib.redirect_stdout(target), contextlib.redirect_stderr(err):
            yield

    # ----------------------------------------------------------------------------------------- run
    def run(self, selected: tuple[PlannedStep, ...]) -> list[Outcome]:
        lock = None
        self.barrier()  # every process has its plan before the main one writes anything
        if self.main:
            writable_folder(self.plan.out)
            lock = lock_or_fail(self.plan.out, "this recipe's run folder")
        try:
            if self.main:
                remove_stale_temps(self.state.folder)
                self.log = JsonlLog(self.state.log)
                self.log.repair()
                self._write_run_json(selected)
                self.event("run-start", scale=self.plan.scale, steps=[p.id for p in selected])
            self.barrier()
            self._steps(selected)
            self._reports()
            self.event("run-end", ok=True, seconds=round(time.monotonic() - self.started, 3))
        finally:
            self.barrier()
            if lock is not None:
                lock.release()
        return self.outcomes

    def _write_run_json(self, selected: tuple[PlannedStep, ...]) -> None:
        import json

        from densecaption.evaluation.results import VERSIONED, versions

        plan = self.plan
        doc = {"recipe": plan.recipe.name, "source": str(plan.recipe.source), "scale": plan.scale,
               "out": str(plan.out), "vars": dict(plan.vars), "only": [p.id for p in selected]
               if len(selected) < len(plan.steps) else None,
               "processes": 1 if self.group is None else self.group.num_processes,
               "versions": versions((*VERSIONED, "diffusers")), "started": _now()}
        atomic_write_text(self.state.run_json, json.dumps(doc, indent=1, ensure_ascii=False, default=str) + "\n")

    def _steps(self, selected: tuple[PlannedStep, ...]) -> None:
        done = [p for p in selected if p.status == "done"]
        pending = [p for p in selected if p.status != "done"]
        self.outcomes.extend(Outcome(p.id, "done") for p in done)
        if done:
            names = ", ".join(p.id for p in done[:8]) + (" ..." if len(done) > 8 else "")
            self.say(f"skipping {len(done)} step(s) already done: {names}")
        total, ran = len(selected), []
        for n, planned in enumerate(pending):
            elapsed = time.monotonic() - self.started
            eta = f"~{clock(sum(ran) / len(ran) * (len(pending) - n))}" if ran else "?"
            self.say(f"[{len(done) + n + 1}/{total}] {planned.id} · {planned.step.command_line(resuming=planned.resuming)}"
                     f" (done {n}, skipped {len(done)}, left {len(pending) - n}, elapsed {clock(elapsed)}, eta {eta})")
            seconds = self._one(planned)
            ran.append(seconds)
            self.say(f"done in {seconds:.1f} s")

    def _one(self, planned: PlannedStep) -> float:
        step, state = planned.step, self.state
        if self.main:
            if not planned.resuming:
                for output in step.outputs:
                    _delete(output)
            state.stamp_path(step.id).unlink(missing_ok=True)
            state.error_path(step.id).unlink(missing_ok=True)
            marker = {"id": step.id, "hash": planned.hash, "argv": list(step.full_argv()),
                      "upstream": dict(planned.upstream), "inputs": dict(planned.inputs), "started": _now(),
                      "resumed": planned.resuming, "pid": os.getpid()}
            _write_json(state.started_path(step.id), marker)
            self.event("step-start", step=step.id, status=planned.status, argv=list(step.full_argv(
                resuming=planned.resuming)))
        self.barrier()
        began = time.monotonic()
        failure = None
        if self.main or step.shards:
            failure = self._execute(step, resuming=planned.resuming)
        ok = self.all_ok(failure is None)
        seconds = time.monotonic() - began
        if not ok:
            self.outcomes.append(Outcome(step.id, "failed", seconds))
            self.event("step-failed", step=step.id, seconds=round(seconds, 3), why=failure)
            self._fail(planned, failure or "it failed in another process")
        if self.main:
            from densecaption import __version__

            stamp = {"id": step.id, "hash": planned.hash, "argv": list(step.full_argv()),
                     "upstream": dict(planned.upstream), "inputs": dict(planned.inputs),
                     "resumed": planned.resuming, "seconds": round(seconds, 3), "densecaption": __version__,
                     "finished": _now()}
            _write_json(state.stamp_path(step.id), stamp)
            state.started_path(step.id).unlink(missing_ok=True)
            self.event("step-done", step=step.id, seconds=round(seconds, 3))
        self.outcomes.append(Outcome(step.id, "resumed" if planned.resuming else "ran", seconds))
        return seconds

    def _execute(self, step: ResolvedStep, *, resuming: bool, copy: io.StringIO | None = None) -> str | None:
        """Run one command; an unexpected exception (a bug) is a failure whose traceback is kept in
        ``.recipe/steps/<id>.error.txt`` rather than ending the runner with a traceback."""
        errors = _ErrorLines()
        try:
            with self.step_stdout(copy, errors):
                failure = execute(self.root, step.full_argv(resuming=resuming))
            return failure if failure is None or errors.last is None else f"{failure}: {errors.last}"
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - any crash of a step fails the step, with its traceback kept
            text = traceback.format_exc()
            if self.main:
                atomic_write_text(self.state.error_path(step.id), text)
                return f"{type(e).__name__}: {e} (traceback in {self.state.error_path(step.id)})"
            print(text, file=sys.stderr, flush=True)
            return f"{type(e).__name__}: {e}"

    def _fail(self, planned: PlannedStep, why: str) -> None:
        ids = {o.id for o in self.outcomes}
        self.outcomes.extend(Outcome(p.id, "not run") for p in self.plan.steps if p.id not in ids)
        self.event("run-end", ok=False, failed=planned.id)
        raise StepFailed(f"step {planned.id} failed ({why}): {planned.step.command_line(resuming=planned.resuming)}")

    def _reports(self) -> None:
        """Every report step, after every run; its stdout shown and kept in ``${out}/report/<id>.txt``."""
        if not self.main:
            return
        for step in self.plan.reports:
            self.say(f"report {step.id} · {step.command_line()}")
            copy = io.StringIO()
            began = time.monotonic()
            failure = self._execute(step, resuming=False, copy=copy)
            seconds = time.monotonic() - began
            atomic_write_text(self.state.report_path(step.id), copy.getvalue())
            if failure is not None:
                self.outcomes.append(Outcome(step.id, "failed", seconds))
                self.event("report-failed", step=step.id, why=failure)
                raise StepFailed(f"report {step.id} failed ({failure}): {step.command_line()}")
            self.outcomes.append(Outcome(step.id, "report", seconds))
            self.event("report", step=step.id, seconds=round(seconds, 3), path=str(self.state.report_path(step.id)))


def _write_json(path: Path, doc: dict) -> None:
    import json

    atomic_write_text(path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def run_plan(plan: Plan, root: Command, *, only: tuple[str, ...] = (), as_json: bool = False) -> list[Outcome]:
    """Run what ``only`` selects (everything by default) and the reports; a failed step raises
    :class:`StepFailed` after marking the steps it left undone (``Runner.outcomes``)."""
    return Runner(plan, root, as_json=as_json).run(select(plan, only))

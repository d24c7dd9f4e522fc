"""What every training loop here shares: epoch and step counters, checkpoints with exact resume, and the
metrics log. The loops (CLIP, text-to-image) differ only in their batches and losses.

A checkpoint is ``OUT/checkpoints/step-NNNNNNN/`` (``accelerator.save_state``) plus ``trainer_state.json``,
written last, so only folders with it count as complete. Resuming restores the state, skips the batches the
epoch already did (accelerate's ``skip_first_batches``) and reseeds the random generator per step from
(seed, step, process), so a resumed run draws what an uninterrupted one would and ends with the same weights.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from densecaption.errors import UserError
from densecaption.files import JsonlLog, atomic_write_text, lock_or_fail

STATE_FILE = "trainer_state.json"


class MetricsLog:
    """``log.jsonl`` of the run (main process only). On resume, lines after the checkpoint's step are
    dropped first, so the steps the resumed run repeats are not logged twice."""

    def __init__(self, path: Path, *, enabled: bool, after_step: int | None = None, tracker=None):
        self.path, self.enabled, self.tracker = path, enabled, tracker
        self.log = JsonlLog(path)
        if enabled and after_step is not None and path.exists():
            self.log.keep(lambda record: record.get("step", 0) <= after_step)
        elif enabled:
            self.log.repair()  # a line torn by a kill would otherwise swallow the next record

    def write(self, record: dict) -> None:
        if self.enabled:
            self.log.append(record)
        if self.tracker is not None:  # TensorBoard, when installed (every process calls; accelerate filters)
            self.tracker.log({k: v for k, v in record.items() if k not in ("epoch", "step")}, step=record["step"])


def claim_run_folder(out: Path, outputs: tuple[str, ...], *, resume: str | None, overwrite: bool,
                     scratch: tuple[str, ...] = ()) -> Any:
    """Lock ``out`` for this run (main process; the caller releases the lock) and check what it holds: a
    previous run's ``outputs`` are continued with ``resume``, removed with ``overwrite`` (``scratch`` too),
    else refused, so a re-run neither starts over silently nor appends to the old log. A second run into
    ``out`` fails at once."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other: continue the run or start it over")
    out.mkdir(parents=True, exist_ok=True)
    lock = lock_or_fail(out, "this training run")
    try:
        found = [name for name in outputs if (out / name).exists()]
        if found and not resume and not overwrite:
            raise UserError(f"{out}: already holds a training run ({', '.join(found)}); continue it with "
                            "--resume latest, or pass --overwrite to start over")
        for name in (outputs + scratch) if overwrite else ():
            target = out / name
            if not target.exists():
                continue
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
    except BaseException:
        lock.release()
        raise
    return lock


def nothing_to_resume(out: Path, resume: str | None) -> bool:
    """``--resume latest`` on a run killed before its first complete checkpoint (or never started): there is
    nothing to continue, so the run starts from the beginning (as diffusers' training scripts do), which lets a
    re-run of a killed command always pass ``--resume latest``."""
    return resume == "latest" and latest_checkpoint(Path(out)) is None


def latest_checkpoint(out: Path) -> Path | None:
    folders = sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    complete = [p for p in folders if (p / STATE_FILE).exists()]
    return complete[-1] if complete else None


class RunState:
    """Counters of one training run (``state``: epoch, step_in_epoch, global_step, plus the loop's own keys),
    its checkpoints every ``every`` steps and at epoch ends, and resuming."""

    def __init__(self, accelerator, out: Path, *, seed: int, keep: int, every: int = 0,
                 stop_after_steps: int | None = None, **extra: Any):
        self.accelerator, self.out, self.seed = accelerator, Path(out), seed
        self.keep, self.every, self.stop_after_steps = keep, every, stop_after_steps
        self.state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, **extra}

    def restore(self, resume: str) -> None:
        """Load ``latest`` or the named checkpoint (model, optimizer and counters)."""
        checkpoint = latest_checkpoint(self.out) if resume == "latest" else Path(resume)
        if checkpoint is None or not (checkpoint / STATE_FILE).exists():
            raise UserError(f"--resume {resume}: no complete checkpoint under {self.out / 'checkpoints'}")
        self.accelerator.load_state(str(checkpoint))
        self.state = json.loads((checkpoint / STATE_FILE).read_text())

    def save(self) -> None:
        folder = self.out / "checkpoints" / f"step-{self.state['global_step']:07d}"
        self.accelerator.save_state(str(folder))
        if self.accelerator.is_main_process:
            atomic_write_text(folder / STATE_FILE, json.dumps(self.state, indent=1) + "\n")
            for old in sorted((self.out / "checkpoints").glob("step-*"))[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def batches(self, loader, sampler, epoch: int):
        """The epoch's batches, without those a resumed epoch already did."""
        # accelerate's loader re-sets its sampler's epoch from its own counter when iterated: keep them equal
        loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        if not self.state["step_in_epoch"]:
            return loader
        batches = self.accelerator.skip_first_batches(loader, self.state["step_in_epoch"])
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        sampler.set_epoch(epoch)
        return batches

    def seed_step(self) -> None:
        """Seed torch's generator from (seed, step, process) before a step's random draws."""
        import torch

        torch.manual_seed(self.seed * 1_000_003 + self.state["global_step"] * 1_009
                          + self.accelerator.process_index)

    def count_step(self) -> None:
        self.state["step_in_epoch"] += 1
        self.state["global_step"] += 1

    def after_step(self) -> None:
        """Checkpoint every ``every`` steps; end abruptly after ``stop_after_steps`` (tests of resuming)."""
        if self.every and self.state["global_step"] % self.every == 0:
            self.save()
        if self.stop_after_steps and self.state["global_step"] >= self.stop_after_steps:
            self.accelerator.wait_for_everyone()
            os._exit(137)  # as if killed: nothing after the last checkpoint is saved

    def end_epoch(self, epoch: int) -> None:
        self.state["epoch"], self.state["step_in_epoch"] = epoch + 1, 0

"""One result type for every evaluation, one JSON file per run (docs/interfaces.md): naming, common keys,
writing, reading back."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from densecaption.data.dci import DCIDataset, lone_surrogates
from densecaption.files import atomic_write_text
from densecaption.errors import UserError

VERSIONED = ("densecaption", "torch", "open-clip-torch", "transformers", "peft", "accelerate")
IDENTITY = ("task", "model", "lora", "weights", "data_sha256", "split", "mode", "config")


def slug(text: str) -> str:
    """Lower case, ``[a-z0-9.-]`` kept, every run of other characters replaced by one ``-``."""
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-")


def result_name(task: str, model: str, lora: str | None, split: str, mode: str) -> str:
    parts = [task, slug(model)] + ([slug(lora)] if lora else []) + [slug(split), slug(mode)]
    return "_".join(parts) + ".json"


def dataset_sha256(dataset: DCIDataset, split: str | None) -> str:
    """SHA-256 over the split's annotation files (name and bytes, in split order); photos not included. A file
    that is missing or cannot be read adds only its name: the run skips its record too."""
    h = hashlib.sha256()
    for file in dataset.files(split):
        h.update(file.encode() + b"\0")
        try:
            h.update((dataset.annotation_dir / file).read_bytes())
        except OSError:
            continue
    return h.hexdigest()


def versions(packages: Iterable[str] = VERSIONED) -> dict[str, str]:
    """Installed version of each package (those not installed are left out)."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class EvalResult:
    """The result of one evaluation run, with the common keys of every task; ``extra`` holds the task's own
    keys (written between ``counts`` and ``runtime_s``, in their order)."""

    task: str
    model: str
    lora: str | None
    weights: str
    data: str
    data_sha256: str
    split: str
    mode: str
    config: dict[str, Any]
    metrics: dict[str, float | None]
    counts: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)
    runtime_s: float | None = None
    versions: dict[str, str] = field(default_factory=versions)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object: common keys in their documented order; a metric without entries (NaN) is
        written as null, since JSON has no NaN."""
        head = {k: getattr(self, k) for k in ("task", "model", "lora", "weights", "data", "data_sha256", "split",
                                              "mode", "config")}
        metrics = {k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                   for k, v in self.metrics.items()}
        return {**head, "metrics": metrics, "counts": self.counts, **self.extra, "runtime_s": self.runtime_s,
                "versions": self.versions, "created": self.created}

    @property
    def data_label(self) -> str:
        return data_label(self.data, self.data_sha256)


def data_label(path: str, sha256: str | None) -> str:
    """The data a result was computed on, as a report shows it: the path as given and a SHA-256 prefix."""
    return f"{path} @{(sha256 or '?')[:8]}"


def write_result(out_dir: Path | str, result: EvalResult | dict[str, Any]) -> Path:
    """Write ``result`` under its run name; a file there from a different run is kept (``-2``, ``-3`` ...)."""
    if isinstance(result, EvalResult):
        result = result.to_dict()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = result_name(result["task"], result["model"], result.get("lora"), result["split"], result["mode"])
    stem = name[:-len(".json")]
    path, n = out_dir / name, 1
    while path.exists() and not _same_run(path, result):
        n += 1
        path = out_dir / f"{stem}-{n}.json"
    atomic_write_text(path, json.dumps(result, indent=1, allow_nan=False) + "\n")
    return path


def _same_run(path: Path, result: dict[str, Any]) -> bool:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return all(old.get(k) == result.get(k) for k in IDENTITY)


def read_results(paths: Iterable[Path | str], task: str | None = None) -> list[dict[str, Any]]:
    """Result files from files and folders (a folder: every ``*.json`` in it and its sub-folders, hidden ones
    left out, so that a recipe's run folder with one folder per step reads whole), optionally of one task."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*.json") if not any(part.startswith(".")
                                                                     for part in f.relative_to(p).parts))
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    results = []
    for f in files:
        try:
            obj = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{f}: not a readable result file ({getattr(e, 'strerror', None) or e})") from e
        bad = next(lone_surrogates(obj), None)
        if bad is not None:  # JSON allows the escape, but it is not text: no table could print it
            raise UserError(f"{f}: not a readable result file ({bad or 'the document'} holds a lone UTF-16 "
                            "surrogate, which is not text)")
        if isinstance(obj, dict) and "task" in obj and (task is None or obj["task"] == task):
            obj["_file"] = str(f)
            results.append(obj)
    return results

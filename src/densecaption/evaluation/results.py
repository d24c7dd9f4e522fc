"""One result JSON per evaluation run (interfaces.md): naming, common keys, reading back."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from densecaption.data.dci import DCIDataset, atomic_write_text
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
    """SHA-256 over the split's annotation files (name and bytes, in split order); photos not included."""
    h = hashlib.sha256()
    for file in dataset.files(split):
        path = dataset.annotation_dir / file
        h.update(file.encode() + b"\0")
        if path.exists():
            h.update(path.read_bytes())
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


def new_result(task: str, **fields: Any) -> dict[str, Any]:
    """A result with the common keys in their documented order."""
    return {"task": task, **fields, "versions": versions(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def write_result(out_dir: Path | str, result: dict[str, Any]) -> Path:
    """Write ``result`` under its run name; a file there from a different run is kept (``-2``, ``-3`` ...)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = result_name(result["task"], result["model"], result.get("lora"), result["split"], result["mode"])
    stem = name[:-len(".json")]
    path, n = out_dir / name, 1
    while path.exists() and not _same_run(path, result):
        n += 1
        path = out_dir / f"{stem}-{n}.json"
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    return path


def _same_run(path: Path, result: dict[str, Any]) -> bool:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return all(old.get(k) == result.get(k) for k in IDENTITY)


def read_results(paths: Iterable[Path | str], task: str | None = None) -> list[dict[str, Any]]:
    """Result files from files and folders (a folder: every ``*.json`` in it), optionally of one task."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    results = []
    for f in files:
        try:
            obj = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{f}: not a readable result file ({e})") from e
        if isinstance(obj, dict) and "task" in obj and (task is None or obj["task"] == task):
            obj["_file"] = str(f)
            results.append(obj)
    return results

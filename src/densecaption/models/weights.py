"""Where a model comes from and what its weights are: a local folder (``random`` or ``unknown`` from the
marker file that says a folder holds random weights) or a hub id (``pretrained``), so results are labelled
honestly. Every loader decides "folder or hub id" with :func:`resolve_source`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from densecaption.errors import UserError

MARKER = "densecaption-weights.json"
MODEL_FOLDER_OR_HUB_ID = "a model folder or a hub id"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?$")
_HUB_ID_WITH_ORG = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Source:
    """A model's place: an absolute local folder (``is_local``) or a hub id, and its weights label."""

    path_or_id: str
    is_local: bool
    weights: str

    @property
    def folder(self) -> Path | None:
        return Path(self.path_or_id) if self.is_local else None


def looks_like_path(target: str) -> bool:
    """A target meant as a folder rather than a hub id (``/``, ``.``, ``~``, a backslash or two slashes)."""
    return target.startswith(("/", ".", "~")) or target.count("/") > 1 or "\\" in target


def resolve_source(target: str, *, label: str | None = None, expected: str = MODEL_FOLDER_OR_HUB_ID,
                   org_required: bool = False) -> Source:
    """An existing folder (weights from its marker) or a hub id (``pretrained``, nothing fetched here).

    A ``UserError`` starting with ``label`` (default: the target) for an existing file, a path that is not a
    folder, or text that cannot be a hub id (``org/name``, or a bare ``name`` unless ``org_required``);
    ``expected`` says what would have been right."""
    label = label or target
    path = Path(target).expanduser()
    if path.is_dir():
        return Source(str(path.resolve()), True, weights_of_folder(path))
    if path.exists():
        raise UserError(f"{label}: {path} is a file, not a folder (give {expected})")
    if looks_like_path(target):
        raise UserError(f"{label}: {path} is not a folder (give {expected})")
    if not (_HUB_ID_WITH_ORG if org_required else _HUB_ID).match(target):
        raise UserError(f"{label}: not {expected}")
    return Source(target, False, "pretrained")


def transformers_source(target: str, *, label: str, gguf: str | None = None, gguf_ok: bool = False) -> Source:
    """:func:`resolve_source` for a transformers model: a folder must hold ``config.json``, or the GGUF file
    named by ``gguf``, which counts as a published checkpoint (``pretrained``) unless a marker says otherwise.
    ``gguf_ok``: the loader takes GGUF files (the error for a folder without config.json says how)."""
    source = resolve_source(target, label=label)
    if not source.is_local:
        return source
    folder = source.folder
    if gguf is not None:
        if not (folder / gguf).is_file():
            raise UserError(f"{label}: no GGUF file {gguf!r} in {folder}; name one of its files after #gguf= or "
                            f"drop the option")
        return source if (folder / MARKER).is_file() else replace(source, weights="pretrained")
    if not (folder / "config.json").is_file():
        hint = "; for a GGUF file add #gguf=FILE" if gguf_ok else ""
        raise UserError(f"{label}: {folder} has no config.json (not a transformers model folder{hint})")
    return source


def write_marker(folder: Path, *, weights: str, **info) -> None:
    (folder / MARKER).write_text(json.dumps({"weights": weights, **info}, indent=1) + "\n")


def weights_of_folder(folder: Path) -> str:
    """``random`` (or whatever the marker says) for a marked folder, ``unknown`` for any other."""
    marker = Path(folder) / MARKER
    if marker.is_file():
        try:
            return str(json.loads(marker.read_text())["weights"])
        except (ValueError, KeyError, TypeError):
            return "unknown"
    return "unknown"

"""The marker file that says a model folder holds random weights, so results are labelled honestly."""

from __future__ import annotations

import json
from pathlib import Path

MARKER = "densecaption-weights.json"


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

"""Where a generated image comes from: caption set -> LoRA -> generation run (-> scores).

Each stage copies the record of the stage before it, so a score file alone says which caption set (its
precision and number of submasks) the model behind the images was fine-tuned on; nothing is recovered
from file or folder names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from densecaption.errors import DataError, UserError
from densecaption.files import JsonlLog

RUN_KIND = "densecaption.t2i-images"
RUN_MANIFEST = "manifest.json"
RUN_IMAGES = "images.jsonl"


def caption_set_point(caption_set: dict[str, Any] | None) -> dict[str, Any] | None:
    """(precision, submasks) a caption-set manifest was composed with, and what it realised."""
    if not caption_set:
        return None
    config = caption_set.get("config") or {}
    realised = caption_set.get("realised") or {}
    if "precision" not in config or "submasks" not in config:
        return None
    return {"precision": float(config["precision"]), "submasks": int(config["submasks"]),
            "realised_precision": (realised.get("precision") or {}).get("set"),
            "realised_submasks_mean": (realised.get("recall") or {}).get("mean"),
            "captions": (caption_set.get("counts") or {}).get("captions")}


def find_runs(images: Path | str) -> list[Path]:
    """``images`` itself when it is a run folder, else its direct subfolders that are runs (sorted)."""
    images = Path(images).expanduser()
    if not images.is_dir():
        raise UserError(f"--images {images}: no such folder")
    if (images / RUN_MANIFEST).is_file():
        return [images]
    runs = sorted(p for p in images.iterdir() if p.is_dir() and (p / RUN_MANIFEST).is_file())
    if not runs:
        raise UserError(f"--images {images}: not a generation run (no {RUN_MANIFEST}) and no subfolder is one; "
                        f"give a folder written by `densecaption t2i generate`")
    return runs


def read_run_manifest(run: Path) -> dict[str, Any]:
    """A run's manifest, checked to be one (DataError naming the file otherwise)."""
    path = Path(run) / RUN_MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from e
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("kind") != RUN_KIND:
        raise DataError(f"{path}: not a generation run manifest (\"kind\" should be {RUN_KIND!r})")
    if not isinstance(manifest.get("model"), str):
        raise DataError(f"{path}: \"model\" (the generator) is missing")
    return manifest


def read_run_images(run: Path | str) -> list[dict[str, Any]]:
    """The rows of a run's ``images.jsonl`` whose files exist, in (prompt, image) order; a row repeated by a
    resumed run counts once. A torn last line (a killed run) is ignored."""
    path = Path(run) / RUN_IMAGES
    if not path.is_file():
        return []
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    lines = JsonlLog(path).lines()
    for n, line in lines:
        try:
            row = json.loads(line)
            key = (int(row["prompt_index"]), int(row["image_index"]))
            str(row["file"]), str(row["prompt"]), int(row["seed"])
        except (ValueError, KeyError, TypeError) as e:
            if n == lines[-1][0]:
                continue  # the last line of a killed run
            raise UserError(f"{path}:{n}: not an image row ({e})") from None
        if (Path(run) / row["file"]).is_file():
            rows[key] = row
    return [rows[k] for k in sorted(rows)]

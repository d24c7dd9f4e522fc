"""Score generation runs (``t2i generate`` folders) on T2I-CompBench and write one result per (run, category,
scorer), with a per-image JSONL beside it (contract: "t2i compbench results").

A run folder holds ``manifest.json``, ``images.jsonl`` and ``images/``; ``--images`` is a run folder or a
folder whose direct subfolders are runs. A result already in ``--out`` for the same run, images (their
hash), category, scorer and settings is kept, not recomputed, unless ``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from densecaption.errors import DataError
from densecaption.evaluation.compbench.prompts import check_category
from densecaption.evaluation.compbench.models import DetectorSpec
from densecaption.evaluation.compbench.scorers import SCORERS, CompbenchSettings, ImageRecord, ModelPool, Scorer
from densecaption.evaluation.results import EvalResult, result_name, write_result
from densecaption.files import atomic_write_text
from densecaption.t2i.lineage import RUN_IMAGES, find_runs, read_run_manifest

TASK = "t2i-compbench"
RESUME_KEYS = ("task", "model", "lora", "data_sha256", "split", "mode", "config")
PER_IMAGE_SUFFIX = ".per-image.jsonl"

Progress = Callable[[str, int], Callable[[int], None]]


@dataclass(frozen=True)
class ScoredRun:
    """One (run, category, scorer) outcome: its result file, or why it was skipped."""

    run: str
    category: str | None
    mode: str | None
    score: float | None = None
    count: int = 0
    weights: str | None = None
    path: str | None = None
    status: str = "scored"  # scored | kept (an equal result was already there) | skipped
    note: str = ""


RECORD_FIELDS = {"file": str, "prompt": str, "prompt_index": int, "image_index": int}


def read_image_records(run: Path) -> list[ImageRecord]:
    """The rows of ``images.jsonl``, each checked (and its image file present). A file listed twice (an image
    written again) keeps its last row, in the place of its first."""
    path = run / RUN_IMAGES
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: missing (the run has no finished image yet?)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it ({e})") from e
    records: dict[str, ImageRecord] = {}
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            row = json.loads(line)
        except ValueError as e:
            raise DataError(f"{where}: not valid JSON ({e})") from e
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object")
        for key, kind in RECORD_FIELDS.items():
            if not isinstance(row.get(key), kind) or isinstance(row.get(key), bool):
                raise DataError(f"{where}: \"{key}\" is missing or not a{'n integer' if kind is int else ' string'}")
        seed = row.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise DataError(f"{where}: \"seed\" is not an integer")
        file = row["file"]
        if Path(file).is_absolute() or ".." in Path(file).parts:
            raise DataError(f"{where}: \"file\" must be a path inside the run folder, got {file!r}")
        if not (run / file).is_file():
            raise DataError(f"{where}: image {run / file} does not exist")
        records[file] = ImageRecord(file, row["prompt"], row["prompt_index"], row["image_index"], seed)
    return list(records.values())


def images_sha256(run: Path, records: Sequence[ImageRecord]) -> str:
    """SHA-256 over images.jsonl's bytes, then each listed image's path and bytes in order."""
    h = hashlib.sha256((run / RUN_IMAGES).read_bytes())
    for r in records:
        h.update(r.file.encode() + b"\0")
        h.update((run / r.file).read_bytes())
    return h.hexdigest()


def combined_weights(values: Sequence[str | None]) -> str:
    """random if any is random, else unknown if any is unknown (or missing), else pretrained."""
    values = [v or "unknown" for v in values]
    if "random" in values:
        return "random"
    if any(v != "pretrained" for v in values):
        return "unknown"
    return "pretrained"


def finished_result(out: Path, identity: dict[str, Any]) -> Path | None:
    """A result file in ``out`` with the same identity (RESUME_KEYS) whose per-image file is there too."""
    name = result_name(identity["task"], identity["model"], identity.get("lora"), identity["split"],
                       identity["mode"])
    stem, n = name[:-len(".json")], 1
    path = out / name
    while path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if (isinstance(old, dict) and all(old.get(k) == identity.get(k) for k in RESUME_KEYS)
                and "metrics" in old and old.get("per_image") and (out / old["per_image"]).is_file()):
            return path
        n += 1
        path = out / f"{stem}-{n}.json"
    return None


def _compbench_dir(settings: CompbenchSettings, manifest: dict[str, Any], run: Path) -> Path | None:
    """--compbench-dir, else the folder of the run's prompt file (as recorded, or relative to the run)."""
    if settings.compbench_dir:
        return Path(settings.compbench_dir).expanduser()
    file = (manifest.get("prompts") or {}).get("file")
    if not isinstance(file, str):
        return None
    for candidate in (Path(file).expanduser(), run / file):
        if candidate.parent.is_dir() and candidate.is_file():
            return candidate.parent
    return None


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def score_run(scorer: Scorer, run: Path, records: Sequence[ImageRecord], *, batch_size: int,
              advance: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Per-image rows of one scorer over a run's images, in batches."""
    from PIL import Image

    rows = []
    for batch in _batches(list(records), max(1, batch_size)):
        images = []
        for r in batch:
            with Image.open(run / r.file) as im:
                images.append(im.convert("RGB"))
        for r, row in zip(batch, scorer.score(batch, images)):
            rows.append({**r.as_dict(), **row})
        if advance:
            advance(len(batch))
    return rows


def run_compbench(images: Path | str, out: Path | str, *, settings: CompbenchSettings,
                  categories: Sequence[str] | None = None, category: str | None = None, overwrite: bool = False,
                  progress: Progress | None = None, notify: Callable[[str], None] | None = None) -> list[ScoredRun]:
    """Score every run under ``images`` and write results to ``out``; returns one ScoredRun per outcome.

    ``categories``: only runs of these categories (default: every run's). ``category``: the category of runs
    whose manifest has none (those are skipped otherwise). ``progress(name, total)`` starts a stage and returns
    a function to advance it; ``notify(line)`` receives skip notices.
    """
    for name in list(categories or []) + ([category] if category else []):
        check_category(name)
    DetectorSpec.parse(settings.detector)  # a bad spec fails before any scoring
    wanted = set(categories or [])
    out = Path(out).expanduser()
    pool = ModelPool(settings)
    outcomes: list[ScoredRun] = []

    def skip(run: Path, cat: str | None, note: str) -> None:
        outcomes.append(ScoredRun(str(run), cat, None, status="skipped", note=note))
        if notify:
            notify(f"{run}: {note}")

    for run in find_runs(Path(images)):
        manifest = read_run_manifest(run)
        cat = manifest.get("category") or category
        if cat is None:
            skip(run, None, "its manifest names no category: skipped (give --category to score it as one)")
            continue
        if wanted and cat not in wanted:
            continue
        spec = check_category(cat)
        if not spec.scorers:
            skip(run, cat, f"{cat}: {spec.note}; skipped")
            continue
        records = read_image_records(run)
        if not records:
            skip(run, cat, "no images in images.jsonl yet: skipped")
            continue
        data_sha = images_sha256(run, records)
        folder = _compbench_dir(settings, manifest, run)
        for scorer_name in spec.scorers:
            scorer = SCORERS.get(scorer_name)(pool, folder)
            outcomes.append(_score_one(scorer, run, manifest, cat, records, data_sha, out, settings=settings,
                                       overwrite=overwrite, progress=progress, pool=pool))
    return outcomes


def _score_one(scorer: Scorer, run: Path, manifest: dict[str, Any], cat: str, records: Sequence[ImageRecord],
               data_sha: str, out: Path, *, settings: CompbenchSettings, overwrite: bool,
               progress: Progress | None, pool: ModelPool) -> ScoredRun:
    identity = {"task": TASK, "model": manifest["model"], "lora": manifest.get("lora"), "split": cat,
                "mode": scorer.name, "data_sha256": data_sha, "config": scorer.config}
    if not overwrite:
        done = finished_result(out, identity)
        if done is not None:
            old = json.loads(done.read_text(encoding="utf-8"))
            return ScoredRun(str(run), cat, scorer.name, score=old["metrics"]["score"],
                             count=old["counts"]["score"], weights=old.get("weights"), path=str(done),
                             status="kept", note="already scored (use --overwrite to score again)")
    started = time.perf_counter()
    advance = progress(f"{run.name} {cat} {scorer.name}", len(records)) if progress else None
    rows = score_run(scorer, run, records, batch_size=settings.batch_size, advance=advance)
    models = scorer.models()
    generator_weights = manifest.get("weights")
    weights = combined_weights([generator_weights] + [m["weights"] for m in models.values()])
    mean = sum(r["score"] for r in rows) / len(rows)
    result = EvalResult(
        task=TASK, model=identity["model"], lora=identity["lora"], weights=weights,
        data=str(run) + (" (constructed prompts)" if (manifest.get("prompts") or {}).get("constructed") else ""),
        data_sha256=data_sha, split=cat, mode=scorer.name, config=scorer.config, metrics={"score": mean},
        counts={"score": len(rows)},
        extra={"generator_weights": generator_weights, "scorers": models,
               "lineage": {"images": str(run.resolve()), "lora_record": manifest.get("lora_record"),
                           "caption_set": manifest.get("caption_set"), "prompts": manifest.get("prompts")},
               "spacy_model": pool.spacy_loaded, "per_image": None})
    # write_result picks the file name (never a different run's); the per-image file takes its final stem.
    path = write_result(out, result)
    result.extra["per_image"] = path.stem + PER_IMAGE_SUFFIX
    atomic_write_text(out / result.extra["per_image"],
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    result.runtime_s = round(time.perf_counter() - started, 3)
    again = write_result(out, result)
    assert again == path, (again, path)
    return ScoredRun(str(run), cat, scorer.name, score=mean, count=len(rows), weights=weights, path=str(path))

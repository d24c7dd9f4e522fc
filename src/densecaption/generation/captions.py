"""Synthetic captions for a folder of images, or for COCO's images, from a vision-language model
(Captions4T2I section 4).

Each image is one job of the job runner (so a killed run resumes); the model is asked the prompt with the
image attached. The output file holds one JSON line per captioned image, in file-name order::

    {"file": "000001.jpg", "caption": "...", "model": "<spec>", "prompt": "...", "weights": "remote"}

For COCO, ``file`` is relative to the COCO folder (``val2017/000000000139.jpg``) and ``coco_id`` follows it.

It is written (atomically) from the job log at the end of each run; failed images are kept in the log with
their reasons, not in the output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from densecaption.errors import UserError
from densecaption.files import atomic_write_text, writing
from densecaption.generation.backends import TextBackend
from densecaption.generation.jobs import Job, JobContext, JobReport
from densecaption.generation.replies import strip_chatter

DEFAULT_PROMPT = "Describe the image concisely"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class CaptionItem:
    file: str
    """Path relative to the image folder (POSIX separators): the job id and the output's ``file``."""
    path: str


def list_images(folder: Path, *, recursive: bool = False) -> list[str]:
    """Image files under ``folder`` (by suffix), relative and sorted, so every run sees the same order."""
    if not folder.is_dir():
        raise UserError(f"--images {folder}: no such folder")
    pattern = "**/*" if recursive else "*"
    files = sorted(p.relative_to(folder).as_posix() for p in folder.glob(pattern)
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"--images {folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def caption_jobs(folder: Path, files: list[str]) -> list[Job[CaptionItem]]:
    return [Job(f, CaptionItem(f, str(folder / f))) for f in files]


def coco_images(root: Path, split: str, karpathy: Path | None = None) -> tuple[list[str], dict[str, int]]:
    """The image files (relative to the COCO folder) of a COCO 2017 split, or of a Karpathy split with
    ``karpathy``, and their COCO ids (written beside each caption)."""
    from densecaption.data.coco import read_coco, read_karpathy

    images = read_karpathy(root, karpathy, split) if karpathy is not None else read_coco(root, split)
    return [im.file for im in images], {im.file: im.id for im in images}


def caption_work(backend: TextBackend, prompt: str, max_tokens: int) -> Callable[[CaptionItem, JobContext], str]:
    """The work of one image: ask, then keep the answer without chat openers or closing remarks."""

    def work(item: CaptionItem, ctx: JobContext) -> str:
        reply = ctx.call(backend.generate, prompt, max_tokens=max_tokens, images=[item.path], seed=ctx.next_seed())
        return strip_chatter(reply)

    return work


def caption_lines(report: JobReport, *, model: str, prompt: str, weights: str,
                  coco_ids: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The output lines; with ``coco_ids``, each also names its image's ``coco_id``."""
    outputs = report.outputs()
    ids = coco_ids or {}
    return [{"file": f, **({"coco_id": ids[f]} if f in ids else {}), "caption": outputs[f], "model": model,
             "prompt": prompt, "weights": weights}
            for f in report.jobs if f in outputs]


def write_captions(out: Path, lines: list[dict[str, Any]]) -> None:
    """The output file, atomically; an OS error is one line naming the file (exit 2), not a traceback."""
    with writing(out):
        atomic_write_text(out, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))

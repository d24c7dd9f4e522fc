"""Synthetic captions for a folder of images from a vision-language model (Captions4T2I section 4).

Each image is one job of the job runner (so a killed run resumes); the model is asked the prompt with the
image attached. The output file holds one JSON line per captioned image, in file-name order::

    {"file": "000001.jpg", "caption": "...", "model": "<spec>", "prompt": "...", "weights": "remote"}

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


def caption_work(backend: TextBackend, prompt: str, max_tokens: int) -> Callable[[CaptionItem, JobContext], str]:
    """The work of one image: ask, then keep the answer without chat openers or closing remarks."""

    def work(item: CaptionItem, ctx: JobContext) -> str:
        reply = ctx.call(backend.generate, prompt, max_tokens=max_tokens, images=[item.path], seed=ctx.next_seed())
        return strip_chatter(reply)

    return work


def caption_lines(report: JobReport, *, model: str, prompt: str, weights: str) -> list[dict[str, Any]]:
    outputs = report.outputs()
    return [{"file": f, "caption": outputs[f], "model": model, "prompt": prompt, "weights": weights}
            for f in report.jobs if f in outputs]


def write_captions(out: Path, lines: list[dict[str, Any]]) -> None:
    """The output file, atomically; an OS error is one line naming the file (exit 2), not a traceback."""
    with writing(out):
        atomic_write_text(out, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))

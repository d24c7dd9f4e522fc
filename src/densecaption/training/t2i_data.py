"""Data for text-to-image LoRA training: reading a caption set (or a bare diffusers image folder), counting
what the text encoder's window truncates, and the on-disk caches of text-encoder outputs and VAE latents.

A caption set folder (``compose set``) holds ``manifest.json`` (kind ``densecaption.caption-set``),
``images/`` with ``metadata.jsonl`` (``file_name``, ``text``, ...) and, when written, ``captions.jsonl``
whose rows carry each caption's parts (base summary, then subcaptions): with it truncation is counted per
part, without it per whole caption only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

from densecaption.captionsets.compose import join_parts
from densecaption.captionsets.export import GRID_KIND, KIND as SET_KIND
from densecaption.captionsets.tokens import TextTokenizer, token_report
from densecaption.errors import DataError, UserError
from densecaption.files import atomic_write

METADATA = "metadata.jsonl"


@dataclass
class TrainRow:
    """One training image with its caption (and the caption's parts when the set lists them)."""

    image: Path
    text: str
    image_id: str | None = None
    parts: list[str] | None = None


@dataclass
class CaptionData:
    """What training reads from a ``--captions`` folder."""

    path: str
    rows: list[TrainRow]
    manifest: dict | None
    manifest_sha256: str | None
    parts_from: str | None
    """``captions.jsonl`` when per-part truncation could be counted, else None."""


def _read_metadata(folder: Path) -> list[TrainRow]:
    meta = folder / METADATA
    rows: list[TrainRow] = []
    for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise DataError(f"{meta}:{n}: not valid JSON ({e})") from None
        if not isinstance(record, dict) or not isinstance(record.get("file_name"), str) \
                or not isinstance(record.get("text"), str):
            raise DataError(f"{meta}:{n}: a row needs 'file_name' and 'text' strings")
        image = folder / record["file_name"]
        if not image.is_file():
            raise DataError(f"{meta}:{n}: image {record['file_name']!r} not found in {folder}")
        rows.append(TrainRow(image=image, text=record["text"], image_id=record.get("image_id")))
    if not rows:
        raise DataError(f"{meta}: no captions to train on")
    return rows


def _attach_parts(rows: list[TrainRow], jsonl: Path) -> bool:
    """Give rows their parts from ``captions.jsonl`` (matched by image id and text); False when any is missing."""
    parts_of: dict[tuple[Any, str], list[str]] = {}
    for n, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            parts = [str(p["text"]) for p in record["parts"]]
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{jsonl}:{n}: not a caption row with parts ({e})") from None
        if join_parts(parts) == record.get("text"):
            parts_of[(record.get("image_id"), record["text"])] = parts
    found = [parts_of.get((row.image_id, row.text)) for row in rows]
    if any(p is None for p in found):
        return False
    for row, parts in zip(rows, found):
        row.parts = parts
    return True


def read_captions(path: str) -> CaptionData:
    """A caption set folder (its manifest must say ``densecaption.caption-set``) or a bare image folder with
    ``metadata.jsonl`` (no lineage then)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"--captions {path}: not a folder (a caption set from `compose set`, or an image folder "
                        f"with {METADATA})")
    manifest_file = folder / "manifest.json"
    parent = folder.resolve().parent / "manifest.json"
    if not manifest_file.is_file() and parent.is_file() and (folder / METADATA).is_file():
        try:  # a set's images/ folder given instead of the set: train on the set, keeping its lineage
            owner = json.loads(parent.read_text(encoding="utf-8"))
        except ValueError:
            owner = None
        if isinstance(owner, dict) and owner.get("kind") == SET_KIND \
                and owner.get("files", {}).get("folder") == folder.resolve().name:
            data = read_captions(str(folder.resolve().parent))
            data.path = path
            return data
    if not manifest_file.is_file():
        if (folder / METADATA).is_file():
            return CaptionData(path=path, rows=_read_metadata(folder), manifest=None, manifest_sha256=None,
                               parts_from=None)
        raise UserError(f"--captions {path}: neither a caption set (no manifest.json; an incomplete set has none) "
                        f"nor an image folder ({METADATA})")
    raw = manifest_file.read_bytes()
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise UserError(f"{manifest_file}: not valid JSON ({e})") from None
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    if kind == GRID_KIND:
        raise UserError(f"{manifest_file}: a grid of caption sets; train on one of its set folders "
                        f"({', '.join(r.get('folder', '?') for r in manifest.get('sets', [])[:4])}...)")
    if kind != SET_KIND:
        raise UserError(f"{manifest_file}: not a caption-set manifest (kind {kind!r}, expected {SET_KIND!r})")
    images = folder / str(manifest.get("files", {}).get("folder", "images"))
    if not (images / METADATA).is_file():
        raise UserError(f"{manifest_file}: the set has no image folder ({images / METADATA} missing); write it "
                        "with `compose set --format folder,...`")
    rows = _read_metadata(images)
    jsonl = folder / str(manifest.get("files", {}).get("jsonl", "captions.jsonl"))
    parts_from = jsonl.name if jsonl.is_file() and _attach_parts(rows, jsonl) else None
    return CaptionData(path=path, rows=rows, manifest=manifest, manifest_sha256=hashlib.sha256(raw).hexdigest(),
                       parts_from=parts_from)


# ------------------------------------------------------------------------------------------- truncation

def pipeline_tokenizer(tokenizer, name: str, length: int, lowercase: bool) -> TextTokenizer:
    """A token counter over the pipeline's own tokenizer, seeing the text as the pipeline does."""

    def count(text: str) -> int:
        text = text.lower().strip() if lowercase else text
        return len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])

    return TextTokenizer(name=name, spec=name, limit=length, count=count)


def truncation_report(rows: Sequence[TrainRow], counter: TextTokenizer, longer: Sequence[int],
                      parts_from: str | None) -> dict[str, Any]:
    """Captions truncated and subcaptions cut at the used window, and at each longer window."""
    captions = [SimpleNamespace(parts=[SimpleNamespace(text=p) for p in (row.parts or [row.text])]) for row in rows]
    windows = [counter] + [TextTokenizer(name=counter.name, spec=counter.spec, limit=n, count=counter.count)
                           for n in longer if n > counter.limit]
    reports = token_report(captions, windows)
    if parts_from is None:  # whole captions only: nothing is known about subcaptions
        for r in reports:
            for key in ("subcaptions", "subcaptions_cut", "share_subcaptions_cut", "captions_with_cut_subcaption",
                        "base_cut"):
                r[key] = None
    used, rest = reports[0], reports[1:]
    line = (f"truncation at {used['limit']} tokens ({counter.name}): {used['captions_truncated']}/{used['captions']} "
            f"captions truncated")
    if parts_from is not None:
        line += f", {used['subcaptions_cut']}/{used['subcaptions']} subcaptions cut"
        if used["base_cut"]:
            line += f", {used['base_cut']} base summaries cut"
    if rest:
        what = "subcaptions cut" if parts_from is not None else "captions truncated"
        key = "subcaptions_cut" if parts_from is not None else "captions_truncated"
        line += "; at " + ", ".join(f"{r['limit']}: {r[key]}" for r in rest) + f" {what}"
    return {"tokenizer": counter.name, "length": counter.limit, "parts_from": parts_from,
            "used": used, "longer": rest, "summary": line}


# ----------------------------------------------------------------------------------------------- caches

def cache_key(*pieces: Any) -> str:
    return hashlib.sha256(json.dumps(pieces, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:32]


class TensorCache:
    """Tensors by key: one safetensors file per key under ``folder``, and in memory up to ``memory_bytes``."""

    def __init__(self, folder: Path, memory_bytes: int):
        self.folder, self.memory_bytes = folder, memory_bytes
        self.memory: dict[str, dict] = {}
        self.held = 0

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def has(self, key: str) -> bool:
        return key in self.memory or self.path(key).is_file()

    def put(self, key: str, tensors: dict) -> None:
        """Write atomically (a killed run leaves no half file)."""
        from safetensors.torch import save_file

        rows = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        atomic_write(self.path(key), lambda tmp: save_file(rows, str(tmp)))

    def get(self, key: str) -> dict:
        if key in self.memory:
            return self.memory[key]
        from safetensors.torch import load_file

        tensors = load_file(str(self.path(key)))
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        if self.held + size <= self.memory_bytes:
            self.memory[key] = tensors
            self.held += size
        return tensors


def fill_cache(cache: TensorCache, items: dict[str, Any], compute: Callable[[list], list[dict]], batch: int,
               advance: Callable[[int], None]) -> int:
    """Compute and store the items (key -> input) not cached yet, ``batch`` at a time; returns how many."""
    missing = [(k, v) for k, v in items.items() if not cache.has(k)]
    for i in range(0, len(missing), batch):
        chunk = missing[i:i + batch]
        for (key, _), tensors in zip(chunk, compute([v for _, v in chunk])):
            cache.put(key, tensors)
        advance(len(chunk))
    return len(missing)


def load_image(path: Path, resolution: int):
    """Resize the shorter side to ``resolution`` and center-crop a square, as diffusers' training scripts.
    Returns (pixels in [-1, 1] as a 3xHxW tensor, original (height, width), crop (top, left))."""
    import numpy as np
    import torch
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = resolution / min(w, h)
            nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
            im = im.resize((nw, nh), Image.BILINEAR)
            top, left = (nh - resolution) // 2, (nw - resolution) // 2
            im = im.crop((left, top, left + resolution, top + resolution))
            pixels = torch.from_numpy(np.asarray(im, dtype=np.float32).copy()).permute(2, 0, 1) / 127.5 - 1.0
    except OSError as e:
        raise DataError(f"{path}: cannot read the image ({e})") from None
    return pixels, (h, w), (top, left)


# ------------------------------------------------------------------------------------------- text window

def window_needed(rows: Sequence[TrainRow], counter: TextTokenizer) -> int:
    """Tokens of the longest caption (special tokens included): the window that truncates none."""
    return max(counter.count(row.text) for row in rows)


def auto_window(needed: int, default: int, longest: int) -> int:
    """``--max-text-length auto``: the window that keeps every caption, never below the pipeline's own
    (``default``) and capped at what the text encoder takes (``longest``; equal to ``default`` when fixed)."""
    return min(longest, max(default, needed))


def window_warning(truncation: dict[str, Any], *, family: str, encoder: str, needed: int, longest: int,
                   fixed: bool) -> str | None:
    """The warning block when the window truncates captions (None when it keeps them all): counts of captions
    cut and subcaptions lost, and the window that would keep every caption, or why none exists."""
    used = truncation["used"]
    if not used["captions_truncated"]:
        return None
    lines = [f"{used['captions_truncated']} of {used['captions']} captions are cut at {used['limit']} {encoder} "
             "tokens" + (f"; {used['subcaptions_cut']} subcaptions lost (the set's recall)"
                         if used.get("subcaptions_cut") is not None else "")]
    if used.get("base_cut"):
        lines.append(f"{used['base_cut']} captions lose part of their base summary")
    if fixed:
        lines.append(f"{family}'s text encoder has a fixed {longest}-token window: no longer window exists; "
                     "shorter captions (fewer submasks) are the only way to keep them")
    elif needed <= longest:
        lines.append(f"--max-text-length {needed} (or auto) keeps every caption (the longest has {needed} tokens; "
                     f"{family} takes up to {longest})")
    else:
        lines.append(f"the longest caption has {needed} tokens: even {family}'s maximum window, {longest}, cuts "
                     "some (--max-text-length auto uses it)")
    return "\n".join(lines)

"""Reading captions to measure: any JSONL with a ``caption`` or ``text`` field per line.

Works with the output of ``densecaption caption`` (``file``, ``caption``, ``model``), a caption set's JSONL
or diffusers ``metadata.jsonl`` (``file_name``, ``text``), and plain ``{"id": ..., "text": ...}`` lines. Each
caption gets an id (the first of ``id``, ``file``, ``file_name``, ``image``, ``image_id``; else its line
number, 1-based, as ``line-N``) and, where the line names one, an image file (``file``, ``file_name`` or
``image``, relative to the images folder). Duplicate ids get ``#2``, ``#3``... so every caption stays one job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densecaption.errors import UserError

TEXT_KEYS = ("caption", "text")
ID_KEYS = ("id", "file", "file_name", "image", "image_id")
IMAGE_KEYS = ("file", "file_name", "image")


@dataclass(frozen=True)
class CaptionRecord:
    id: str
    text: str
    image: str | None = None
    """The image file, relative to the images folder (None when the line names none)."""
    model: str | None = None
    references: tuple[str, ...] = field(default=())
    """Reference captions given on the same line (a ``references`` list), for RefCLIPScore."""


def _str(value: Any) -> str | None:
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value)
    return None


def parse_caption_line(obj: Any, line_no: int) -> CaptionRecord:
    """One JSON line as a record; raises ``ValueError`` saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    text = next((obj[k] for k in TEXT_KEYS if isinstance(obj.get(k), str)), None)
    if text is None:
        raise ValueError(f"no {' or '.join(repr(k) for k in TEXT_KEYS)} text field")
    ident = next((s for s in (_str(obj.get(k)) for k in ID_KEYS) if s is not None), f"line-{line_no}")
    image = next((s for s in (_str(obj.get(k)) for k in IMAGE_KEYS) if s is not None), None)
    refs = obj.get("references")
    references = tuple(r for r in refs if isinstance(r, str) and r.strip()) if isinstance(refs, list) else ()
    model = obj.get("model") if isinstance(obj.get("model"), str) else None
    return CaptionRecord(id=ident, text=text, image=image, model=model, references=references)


def read_captions(path: Path, *, strict: bool = False) -> tuple[list[CaptionRecord], list[str]]:
    """The captions of a JSONL file, and one line per skipped line saying why (``strict``: raise instead)."""
    if path.is_dir():
        meta = path / "metadata.jsonl"
        if not meta.is_file():
            raise UserError(f"--captions {path}: a folder without metadata.jsonl; give a JSONL file")
        path = meta
    if not path.is_file():
        raise UserError(f"--captions {path}: no such file")
    records: list[CaptionRecord] = []
    skipped: list[str] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = parse_caption_line(json.loads(line), n)
            except ValueError as e:
                message = f"{path}:{n}: {e}"
                if strict:
                    raise UserError(message) from None
                skipped.append(message)
                continue
            count = seen.get(record.id, 0) + 1
            seen[record.id] = count
            if count > 1:
                record = CaptionRecord(f"{record.id}#{count}", record.text, record.image, record.model,
                                       record.references)
            records.append(record)
    if not records:
        raise UserError(f"--captions {path}: no captions (each line needs a 'caption' or 'text' field)")
    return records, skipped


def captioner_name(records: list[CaptionRecord], path: Path) -> str:
    """The captioner's name for tables: the one ``model`` all lines share, else the file's stem."""
    models = {r.model for r in records if r.model}
    if len(models) == 1:
        return models.pop()
    return path.parent.name if path.name == "metadata.jsonl" else path.stem


def read_references(path: Path) -> dict[str, list[str]]:
    """References per caption id from JSONL: a ``references`` list on a line, or one ``caption``/``text``
    per line (several lines may share an id). Ids as in ``read_captions`` (without the duplicate suffix)."""
    if not path.is_file():
        raise UserError(f"--references {path}: no such file")
    refs: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise UserError(f"{path}:{n}: not JSON") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{n}: not a JSON object")
            ident = next((s for s in (_str(obj.get(k)) for k in ID_KEYS) if s is not None), None)
            if ident is None:
                raise UserError(f"{path}:{n}: no id ({', '.join(ID_KEYS)}) to match a caption")
            texts = [r for r in obj.get("references") or [] if isinstance(r, str) and r.strip()]
            texts += [obj[k] for k in TEXT_KEYS if isinstance(obj.get(k), str) and obj[k].strip()][:1]
            refs.setdefault(ident, []).extend(texts)
    return refs

"""Reading captions to measure: every caption file the toolkit writes, and any JSONL with a ``caption`` or
``text`` field per line.

Accepted as they are: the output of ``densecaption caption`` (``file``, ``caption``, ``model``), a caption
set's ``captions.jsonl`` from ``compose`` (``image_id``, ``file`` = the annotation, ``photo``, ``text``,
``image`` = ``images/<photo>`` in the set or the photo's path), its diffusers ``images/metadata.jsonl``
(``file_name``, ``text``), and plain ``{"id": ..., "text": ...}`` lines. A folder stands for its
``metadata.jsonl``, or for a caption set's ``captions.jsonl``.

Each caption gets an id (a set line's ``photo``, else the first of ``id``, ``file``, ``file_name``, ``image``,
``image_id``; else ``line-N``, 1-based) and the names its image may go by, relative to the images folder
(``file``, ``file_name`` or ``image``; a set line: ``image``, then ``photo``), so a set's captions find their
photo under the set folder, its ``images/`` or DCI's ``photos/``. Duplicate ids get ``#2``, ``#3``... so
every caption stays one job.

Lines are UTF-8: one that is not stops the read with its file and line number (a ``DataError``, exit 1),
since the whole file is then likely in another encoding. A string with a lone UTF-16 surrogate (JSON
``"\\ud800"``), which no UTF-8 file can hold, makes its line a bad line: skipped, or the end with ``strict``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from densecaption.data.dci import lone_surrogates
from densecaption.errors import DataError, UserError

TEXT_KEYS = ("caption", "text")
ID_KEYS = ("id", "file", "file_name", "image", "image_id")
IMAGE_KEYS = ("file", "file_name", "image")
SET_IMAGE_KEYS = ("image", "photo")
"""A caption set line's image: ``images/<photo>`` in the set (or the photo's path), then the photo's name."""
METADATA = "metadata.jsonl"
SET_CAPTIONS = "captions.jsonl"


@dataclass(frozen=True)
class CaptionRecord:
    id: str
    text: str
    image: str | None = None
    """The image file, relative to the images folder (None when the line names none)."""
    model: str | None = None
    references: tuple[str, ...] = field(default=())
    """Reference captions given on the same line (a ``references`` list), for RefCLIPScore."""
    also: tuple[str, ...] = field(default=())
    """Other names of the same image, tried in order when ``image`` is not under the images folder."""

    def image_path(self, folder: Path) -> Path | None:
        """The image under ``folder``: the first of its names that is a file there, else the first name
        (so a message can say what is missing); None when the line names no image."""
        names = [n for n in (self.image, *self.also) if n]
        found = next((folder / n for n in names if (folder / n).is_file()), None)
        return found or (folder / names[0] if names else None)


def _str(value: Any) -> str | None:
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value)
    return None


def _surrogate_at(value: Any) -> str | None:
    """The JSON Pointer of the first string (or key) of a parsed line that holds a lone UTF-16 surrogate."""
    return next(lone_surrogates(value), None)


def _is_set_line(obj: dict[str, Any]) -> bool:
    """A line of a caption set's ``captions.jsonl``: its ``file`` is the annotation, not the image."""
    return _str(obj.get("photo")) is not None and isinstance(obj.get("parts"), list)


def parse_caption_line(obj: Any, line_no: int) -> CaptionRecord:
    """One JSON line as a record; raises ``ValueError`` saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    text = next((obj[k] for k in TEXT_KEYS if isinstance(obj.get(k), str)), None)
    if text is None:
        raise ValueError(f"no {' or '.join(repr(k) for k in TEXT_KEYS)} text field")
    bad = _surrogate_at(obj)
    if bad:
        raise ValueError(f"{bad} holds a lone UTF-16 surrogate (a JSON \\ud800-\\udfff escape without its "
                         "pair), which is not text")
    set_line = _is_set_line(obj)
    names = [s for s in (_str(obj.get(k)) for k in (SET_IMAGE_KEYS if set_line else IMAGE_KEYS)) if s is not None]
    ident = obj["photo"] if set_line else next((s for s in (_str(obj.get(k)) for k in ID_KEYS) if s is not None),
                                               f"line-{line_no}")
    refs = obj.get("references")
    references = tuple(r for r in refs if isinstance(r, str) and r.strip()) if isinstance(refs, list) else ()
    model = obj.get("model") if isinstance(obj.get("model"), str) else None
    return CaptionRecord(id=str(ident), text=text, image=names[0] if names else None, model=model,
                         references=references, also=tuple(names[1:]))


def caption_file(path: Path) -> Path:
    """The JSONL a ``--captions`` path stands for: the file, a folder's ``metadata.jsonl``, or a caption set
    folder's ``captions.jsonl`` (else its ``images/metadata.jsonl``)."""
    if path.is_dir():
        for candidate in (path / METADATA, path / SET_CAPTIONS, path / "images" / METADATA):
            if candidate.is_file():
                return candidate
        raise UserError(f"--captions {path}: a folder without {METADATA} or a caption set's {SET_CAPTIONS}; "
                        "give a JSONL file")
    if not path.is_file():
        raise UserError(f"--captions {path}: no such file")
    return path


def jsonl_lines(path: Path, option: str) -> Iterator[tuple[int, str]]:
    """(1-based number, text) of each non-blank line of a UTF-8 JSONL file; a line that is not UTF-8 is a
    ``DataError`` naming the file, the line and the byte, never a traceback."""
    try:
        handle = path.open("rb")
    except OSError as e:
        raise UserError(f"{option} {path}: {e.strerror or e}") from None
    with handle:
        for n, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{n}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}: "
                                f"{e.reason}); save the file as UTF-8") from None
            if n == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
            if line.strip():
                yield n, line


def read_captions(path: Path, *, strict: bool = False) -> tuple[list[CaptionRecord], list[str]]:
    """The captions of a JSONL file (or folder, see ``caption_file``), and one line per skipped line saying
    why (``strict``: raise instead)."""
    path = caption_file(path)
    records: list[CaptionRecord] = []
    skipped: list[str] = []
    seen: dict[str, int] = {}
    for n, line in jsonl_lines(path, "--captions"):
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
            record = replace(record, id=f"{record.id}#{count}")
        records.append(record)
    if not records:
        raise UserError(f"--captions {path}: no captions (each line needs a 'caption' or 'text' field)")
    return records, skipped


def captioner_name(records: list[CaptionRecord], path: Path) -> str:
    """The captioner's name for tables: the one ``model`` all lines share, else the caption set's folder name
    (for its ``captions.jsonl`` or ``images/metadata.jsonl``), the folder of a ``metadata.jsonl``, or the
    file's stem."""
    models = {r.model for r in records if r.model}
    if len(models) == 1:
        return models.pop()
    path = caption_file(path)
    folder = path.parent.resolve()
    if path.name == SET_CAPTIONS and (folder / "manifest.json").is_file():
        return folder.name
    if path.name == METADATA:
        in_set = folder.name == "images" and (folder.parent / "manifest.json").is_file()
        return folder.parent.name if in_set else folder.name
    return path.stem


def read_references(path: Path) -> dict[str, list[str]]:
    """References per caption id from JSONL: a ``references`` list on a line, or one ``caption``/``text``
    per line (several lines may share an id). Ids as in ``read_captions`` (without the duplicate suffix)."""
    if not path.is_file():
        raise UserError(f"--references {path}: no such file")
    refs: dict[str, list[str]] = {}
    for n, line in jsonl_lines(path, "--references"):
        try:
            obj = json.loads(line)
        except ValueError:
            raise UserError(f"{path}:{n}: not JSON") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{n}: not a JSON object")
        bad = _surrogate_at(obj)
        if bad:
            raise DataError(f"{path}:{n}: {bad} holds a lone UTF-16 surrogate, which is not text")
        ident = next((s for s in (_str(obj.get(k)) for k in ID_KEYS) if s is not None), None)
        if ident is None:
            raise UserError(f"{path}:{n}: no id ({', '.join(ID_KEYS)}) to match a caption")
        texts = [r for r in obj.get("references") or [] if isinstance(r, str) and r.strip()]
        texts += [obj[k] for k in TEXT_KEYS if isinstance(obj.get(k), str) and obj[k].strip()][:1]
        refs.setdefault(ident, []).extend(texts)
    return refs


def sample_records(records: list[CaptionRecord], n: int | None, seed: int) -> tuple[list[CaptionRecord],
                                                                                     dict[str, Any] | None]:
    """A seeded random subset of ``n`` captions (the paper probes 1,000 per captioner), kept in file order.

    Each caption is ranked by a hash of (seed, its id), so the same ``n`` and ``seed`` pick the same captions
    in ``quality recall`` and ``quality precision`` whatever the line order, and a larger ``n`` keeps the
    smaller one's picks. ``n`` of None: every caption (no record); ``n`` at least the file's size: all, said so.
    """
    from densecaption.seeding import seed_for

    if n is None:
        return records, None
    if n < 1:
        raise UserError(f"--sample {n}: give at least 1 caption")
    info: dict[str, Any] = {"n": n, "seed": seed, "in_file": len(records), "key": "caption id (its image file)"}
    if n >= len(records):
        return records, {**info, "used": len(records), "all": True}
    ranked = sorted(range(len(records)), key=lambda i: (seed_for(seed, "quality-sample", records[i].id), i))
    chosen = sorted(ranked[:n])
    return [records[i] for i in chosen], {**info, "used": n, "all": False}


def captioner_weights(path: Path) -> str | None:
    """The captioner's weights as the captions record them: the ``weights`` of ``caption`` output lines, or
    the manifest of a set bridged from them (``compose from-captions``); ``random`` if any line says so."""
    path = caption_file(path)
    manifest = path.parent / "manifest.json" if path.name == SET_CAPTIONS else path.parent.parent / "manifest.json"
    if manifest.is_file():
        try:
            who = json.loads(manifest.read_text(encoding="utf-8")).get("captioner")
        except (OSError, ValueError, AttributeError):
            who = None
        if isinstance(who, dict) and who.get("weights"):
            return str(who["weights"])
    found = set()
    for _, line in jsonl_lines(path, "--captions"):
        try:
            value = json.loads(line).get("weights")
        except (ValueError, AttributeError):
            continue
        if isinstance(value, str):
            found.add(value)
    if not found:
        return None
    return "random" if "random" in found else found.pop() if len(found) == 1 else "unknown"

"""The stored ``clip_scores`` of sDCI: logit_scale x cosine of each entry's image or subcrop against its
first summary (``sum``) and against each negative (``<kind>_<i>``)."""

from __future__ import annotations

import json
from typing import Callable

from densecaption.data.dci import DCIDataset, DCIWriter
from densecaption.data.findings import Finding, RecordError, SkipLog
from densecaption.data.schema import BASE_KEY, DCIImage, parse_mask_key
from densecaption.data.sdci import misfit_masks, photo_error
from densecaption.data.subcrop import subcrop_box
from densecaption.errors import UserError
from densecaption.files import atomic_write_text

PROVENANCE = "clip_scores_model.json"


def score_texts(summaries: list[str], negatives: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(score name, text) pairs for one entry: ``sum`` first, then ``<kind>_<i>`` in the file's order."""
    pairs = [("sum", summaries[0])] if summaries else []
    for kind, texts in negatives.items():
        pairs.extend((f"{kind}_{i}", t) for i, t in enumerate(texts))
    return pairs


def compute_record_scores(record: DCIImage, model, file: str | None = None) -> dict[str, dict[str, float]]:
    """Scores for every summarised entry of ``record`` with an ``EmbeddingModel`` (one batch per record,
    each distinct text encoded once). Masks that do not fit the photo raise ``RecordError`` naming ``file``
    (default: the record's file name)."""
    keys = [k for k, v in (record.summaries or {}).items() if v]
    if not keys:
        return {}
    photo = record.open_photo()
    width, height = photo.size
    misfits = misfit_masks(record, photo.size, file or record.file)
    if misfits:
        raise RecordError(misfits)
    crops = []
    for key in keys:
        idx = parse_mask_key(key)
        if key == BASE_KEY or idx is None:
            crops.append(photo)
        else:
            box = subcrop_box(record.masks[idx].box, width, height)
            crops.append(photo.crop((box.x0, box.y0, box.x1, box.y1)))
    named = {key: score_texts(record.summaries[key], (record.negatives or {}).get(key, {})) for key in keys}
    texts = list(dict.fromkeys(t for pairs in named.values() for _, t in pairs))
    image_emb = model.encode_images(crops)
    text_emb = model.encode_texts(texts)
    sims = model.similarity(image_emb, text_emb).tolist()
    column = {t: i for i, t in enumerate(texts)}
    return {key: {name: float(sims[row][column[t]]) for name, t in named[key]} for row, key in enumerate(keys)}


def score_dataset(dataset: DCIDataset, model, writer: DCIWriter, *, skip: SkipLog, in_place: bool = False,
                  overwrite: bool = False, progress: Callable[[int], None] = lambda n: None) -> int:
    """Score every record of ``dataset`` into ``writer``; returns how many records were scored.

    The writer's folder records which model made the scores (``clip_scores_model.json``). Writing to a new
    folder resumes: records already written there by the same model are not scored again.
    """
    provenance = {"model": model.spec, "weights": model.weights}
    marker = writer.root / PROVENANCE
    done: set[str] = set()
    if not in_place and marker.exists() and not overwrite:
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError as e:  # not UTF-8, or not JSON
            raise UserError(f"{marker}: not a readable record of the scoring model ({e}); use --overwrite or "
                            "another --out") from None
        if not isinstance(previous, dict):
            previous = {}
        if previous.get("model") != model.spec:
            raise UserError(f"{writer.root} holds scores from {previous.get('model')!r}, not {model.spec!r} "
                            "(use --overwrite or another --out)")
        done = {p.name for p in (writer.root / "complete").glob("*.json")}
    atomic_write_text(marker, json.dumps(provenance, indent=1) + "\n")
    scored = 0
    for file in dataset.all_files():
        progress(1)
        if file in done:
            continue
        try:
            record = dataset.read(file)
            if record.summaries:
                try:
                    record.clip_scores = compute_record_scores(record, model, f"{dataset.source}/{file}")
                except OSError as e:
                    raise RecordError([Finding(f"{dataset.source}/{file}", "/image", photo_error(e))]) from e
                scored += 1
        except RecordError as e:
            skip.skip(e)
            continue
        writer.write(record, folders=["complete"] if in_place else None)
    return scored

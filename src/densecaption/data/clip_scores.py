"""The stored ``clip_scores`` of sDCI: logit_scale x cosine of each entry's image or subcrop against its
first summary (``sum``) and against each negative (``<kind>_<i>``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable

from densecaption.data.dci import DCIDataset, DCIWriter
from densecaption.data.findings import Finding, RecordError, SkipLog
from densecaption.data.schema import BASE_KEY, Box, DCIImage, parse_mask_key
from densecaption.data.sdci import misfit_masks, photo_error
from densecaption.data.subcrop import CropKey, subcrop_box
from densecaption.errors import UserError
from densecaption.files import atomic_write_text

if TYPE_CHECKING:
    from densecaption.evaluation.crop_cache import CropCache

PROVENANCE = "clip_scores_model.json"


def score_texts(summaries: list[str], negatives: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(score name, text) pairs for one entry: ``sum`` first, then ``<kind>_<i>`` in the file's order."""
    pairs = [("sum", summaries[0])] if summaries else []
    for kind, texts in negatives.items():
        pairs.extend((f"{kind}_{i}", t) for i, t in enumerate(texts))
    return pairs


def entry_boxes(record: DCIImage, size: tuple[int, int], file: str | None = None) -> dict[str, Box]:
    """The region each summarised entry shows: the whole photo for the base entry, the padded subcrop for a
    mask. Masks that do not fit a photo of ``size`` raise ``RecordError`` naming ``file``."""
    misfits = misfit_masks(record, size, file or record.file)
    if misfits:
        raise RecordError(misfits)
    width, height = size
    boxes: dict[str, Box] = {}
    for key in (k for k, v in (record.summaries or {}).items() if v):
        idx = parse_mask_key(key)
        boxes[key] = (Box(0, 0, width, height) if key == BASE_KEY or idx is None
                      else subcrop_box(record.masks[idx].box, width, height))
    return boxes


def photo_size(record: DCIImage) -> tuple[int, int]:
    """The photo's (width, height) from its header, without decoding the pixels."""
    from PIL import Image

    if record.photo_path is None:
        raise FileNotFoundError(f"{record.file}: no photo path known for {record.image!r}")
    with Image.open(record.photo_path) as im:
        return im.size


def compute_record_scores(record: DCIImage, model, file: str | None = None,
                          crop_cache: CropCache | None = None) -> dict[str, dict[str, float]]:
    """Scores for every summarised entry of ``record`` with an ``EmbeddingModel`` (one batch per record,
    each distinct text encoded once). Masks that do not fit the photo raise ``RecordError`` naming ``file``
    (default: the record's file name). With ``crop_cache`` holding every crop of the record, the photo is not
    decoded: the cached crops give the model exactly the inputs fresh ones give."""
    if not any((record.summaries or {}).values()):
        return {}
    if crop_cache is not None:
        boxes = entry_boxes(record, photo_size(record), file)
        cached = [CropKey(record.photo_path, b) for b in boxes.values()]
        if all(c in crop_cache for c in cached):
            crops = [crop_cache.image(c) for c in cached]
        else:
            crop_cache = None
    if crop_cache is None:
        photo = record.open_photo()
        boxes = entry_boxes(record, photo.size, file)
        crops = [photo.crop((b.x0, b.y0, b.x1, b.y1)) for b in boxes.values()]
    keys = list(boxes)
    named = {key: score_texts(record.summaries[key], (record.negatives or {}).get(key, {})) for key in keys}
    texts = list(dict.fromkeys(t for pairs in named.values() for _, t in pairs))
    image_emb = model.encode_images(crops)
    text_emb = model.encode_texts(texts)
    sims = model.similarity(image_emb, text_emb).tolist()
    column = {t: i for i, t in enumerate(texts)}
    return {key: {name: float(sims[row][column[t]]) for name, t in named[key]} for row, key in enumerate(keys)}


def fill_crop_cache(dataset: DCIDataset, files: list[str], cache: CropCache) -> int:
    """Add every summarised entry's crop of ``files`` to ``cache`` (each photo decoded once, all in one shard);
    returns how many were added. Records that fail here are skipped silently: scoring reports them."""
    keys: list[CropKey] = []
    for file in files:
        try:
            record = dataset.read(file)
            if any((record.summaries or {}).values()):
                keys.extend(CropKey(record.photo_path, b) for b in entry_boxes(record, photo_size(record)).values())
        except (RecordError, OSError):
            continue
    return cache.fill(keys)


def score_dataset(dataset: DCIDataset, model, writer: DCIWriter, *, skip: SkipLog, in_place: bool = False,
                  overwrite: bool = False, progress: Callable[[int], None] = lambda n: None,
                  crop_cache: CropCache | None = None) -> int:
    """Score every record of ``dataset`` into ``writer``; returns how many records were scored (by all
    processes: under ``accelerate launch`` each process scores every n-th file and writes its own records).

    The writer's folder records which model made the scores (``clip_scores_model.json``). Writing to a new
    folder resumes: records already written there by the same model are not scored again. ``crop_cache``
    (docs/speed.md) is filled first with this process's missing crops, then read instead of the photos.
    """
    from densecaption.distributed import process_state

    state = process_state()
    rank, world = (state.process_index, state.num_processes) if state else (0, 1)
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
    if state is not None:
        state.wait_for_everyone()  # every process has read the previous marker before the main one rewrites it
    if rank == 0:
        atomic_write_text(marker, json.dumps(provenance, indent=1) + "\n")
    scored = 0
    files = dataset.all_files()[rank::world]
    if crop_cache is not None:
        fill_crop_cache(dataset, [f for f in files if f not in done], crop_cache)
    for file in files:
        progress(1)
        if file in done:
            continue
        try:
            record = dataset.read(file)
            if record.summaries:
                try:
                    record.clip_scores = compute_record_scores(record, model, f"{dataset.source}/{file}",
                                                                crop_cache)
                except OSError as e:
                    raise RecordError([Finding(f"{dataset.source}/{file}", "/image", photo_error(e))]) from e
                scored += 1
        except RecordError as e:
            skip.skip(e)
            continue
        writer.write(record, folders=["complete"] if in_place else None)
    if state is not None:
        from accelerate.utils import gather_object

        scored = sum(gather_object([scored]))
    return scored

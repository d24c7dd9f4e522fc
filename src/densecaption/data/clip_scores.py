"""The stored ``clip_scores`` of sDCI: logit_scale x cosine of each entry's image or subcrop against its
first summary (``sum``) and against each negative (``<kind>_<i>``)."""

from __future__ import annotations

from densecaption.data.schema import BASE_KEY, DCIImage, parse_mask_key
from densecaption.data.subcrop import subcrop_box


def score_texts(summaries: list[str], negatives: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(score name, text) pairs for one entry: ``sum`` first, then ``<kind>_<i>`` in the file's order."""
    pairs = [("sum", summaries[0])] if summaries else []
    for kind, texts in negatives.items():
        pairs.extend((f"{kind}_{i}", t) for i, t in enumerate(texts))
    return pairs


def compute_record_scores(record: DCIImage, model) -> dict[str, dict[str, float]]:
    """Scores for every summarised entry of ``record`` with an ``EmbeddingModel`` (one batch per record,
    each distinct text encoded once)."""
    photo = record.open_photo()
    width, height = photo.size
    keys = [k for k, v in (record.summaries or {}).items() if v]
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
    if not keys:
        return {}
    image_emb = model.encode_images(crops)
    text_emb = model.encode_texts(texts)
    sims = (model.logit_scale * image_emb @ text_emb.T).tolist()
    column = {t: i for i, t in enumerate(texts)}
    return {key: {name: float(sims[row][column[t]]) for name, t in named[key]} for row, key in enumerate(keys)}

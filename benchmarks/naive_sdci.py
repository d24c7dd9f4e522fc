"""A deliberately plain sDCI implementation in the reference script's shape, for comparison.

Each of the four sub-runs re-reads the annotations, decodes each photo again for every entry and encodes
every batch's crops and texts from scratch, as the reference script does. It shares no scoring code with
``densecaption.evaluation``, so tests use it as an independent check and the benchmark as the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from densecaption.data.dci import DCIDataset
from densecaption.data.sdci import sdci_entries


@dataclass
class CountingModel:
    """Wraps a model and counts what its encoders see."""

    model: object
    images: int = 0
    texts: int = 0
    calls: list = field(default_factory=list)

    def score(self, images, texts):
        self.images += len(images)
        self.texts += len(texts)
        return self.model.similarity(self.model.encode_images(images), self.model.encode_texts(texts))


def _entries(dataset: DCIDataset, split: str, subrun: str):
    for record in dataset.iter_images(split):
        if not record.summaries or record.clip_scores is None:
            continue
        negatives = record.negatives or {}
        if subrun != "base" and all(k == "base" for k in negatives):
            continue
        for e in sdci_entries(record):
            if subrun == "base" and not e.is_base:
                continue
            if subrun == "hard":
                scores = e.clip_scores or {}
                candidates = [(f"{kind}_{i}", text) for kind, texts in e.negatives.items()
                              for i, text in enumerate(texts)]
                if not candidates or any(name not in scores for name, _ in candidates):
                    continue
                negative = candidates[0][1]
                best = scores[candidates[0][0]]
                for name, text in candidates[1:]:
                    if scores[name] >= best:  # on a tie the later candidate wins
                        negative, best = text, scores[name]
            else:
                swaps = e.negatives.get("swaps") or []
                if not swaps:
                    continue
                negative = swaps[0]
            if subrun == "pick5":
                if len(e.summaries) < 5:
                    continue
                positives = e.summaries[:5]
            else:
                positives = e.summaries[:1]
            yield record, e, positives, negative


def naive_sdci(dataset: DCIDataset, model: CountingModel, split: str = "test", batch_size: int = 8) -> dict:
    out = {}
    for subrun in ("all", "pick5", "base", "hard"):
        items = list(_entries(dataset, split, subrun))
        scm = neg = 0
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            crops = []
            for record, e, _, _ in batch:
                photo = record.open_photo()  # decoded again for every entry, as upstream
                b = e.crop
                crops.append(photo.crop((b.x0, b.y0, b.x1, b.y1)))
            texts = [t for _, _, pos, _ in batch for t in pos]
            s = model.score(crops, texts).tolist()
            negs = model.score(crops, [n for _, _, _, n in batch]).tolist()
            k = len(batch[0][2])
            for i in range(len(batch)):
                own = s[i][i * k:(i + 1) * k]
                best_j, best = None, None
                for j in range(len(batch)):
                    v = min(own) if j == i else max(s[i][j * k:(j + 1) * k])
                    if best is None or v > best:
                        best_j, best = j, v
                scm += best_j == i
                neg += min(own) > negs[i][i]
        n = len(items)
        out[subrun] = (100.0 * scm / n if n else float("nan"), 100.0 * neg / n if n else float("nan"), n)
    return {"all_scm": out["all"][0], "all_neg": out["all"][1], "pick5_scm": out["pick5"][0],
            "pick5_neg": out["pick5"][1], "base_neg": out["base"][1], "all_hard_negs": out["hard"][1]}


class PreviousImages:
    """The model without ``encode_pixels``: the store sends PIL crops through ``encode_images`` as before."""

    def __init__(self, model):
        self.model = model

    def encode_images(self, images):
        return self.model.encode_images(images)

    def encode_texts(self, texts):
        return self.model.encode_texts(texts)

    def similarity(self, a, b):
        return self.model.similarity(a, b)

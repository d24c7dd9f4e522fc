"""sdci-full: sDCI's entries with the full human-written DCI texts instead of the 77-token summaries.

This test is this project's own design (docs/long-text.md), not the DCI paper's: the paper only names
evaluating the unreduced descriptions as future work. Entries, crops and order are exactly those of sDCI's
All tests; each entry's text is its assembled description (the whole-image text, or the mask's text with
its descendants, as ``data stats`` assembles them) and its control text is the first summary. Tests:

- SCM within each image's own entries (``full_scm``) and in sDCI's flat batches of 8 (``full_scm_b8``);
- retrieval over the split's whole-image texts, image to text and text to image, Recall@1 and @5;
- every metric beside the same metric on the summaries, and the entries' accuracy by text-length bucket.

No negatives: DCI has none at full length. How a text past the model's window is read is the model's
``#long=`` option (models/long_text.py): cut (the default), refused, or chunked and pooled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from densecaption.data.schema import BASE_KEY, DCIImage, mask_key
from densecaption.data.sdci import MIN_BOX, records_with_sizes
from densecaption.data.subcrop import CropKey
from densecaption.data.text import image_text, mask_text
from densecaption.errors import DataError
from densecaption.evaluation.benchmark import Benchmark, BenchmarkData, BenchmarkOutput, Metric, RunContext, \
    option
from densecaption.evaluation.long_text import LENGTH_EDGES, bucket_labels, length_bucket, max_pool_scores, \
    mean_pool, recall_hits
from densecaption.evaluation.sdci import SdciConfig, items_for_record
from densecaption.evaluation.sdci_metrics import percent, scm_correct

DESIGN = ("sdci-full is this project's own test (docs/long-text.md), not the DCI paper's; "
          "the paper evaluates the 77-token summaries only")
_TESTS = (("scm", "SCM"), ("scm_b8", "SCM/8"), ("i2t_r1", "i2t@1"), ("i2t_r5", "i2t@5"), ("t2i_r1", "t2i@1"),
          ("t2i_r5", "t2i@5"))
METRICS = tuple(Metric(f"{side}_{key}", f"{label} {label_side}") for key, label in _TESTS
                for side, label_side in (("full", "full"), ("summary", "sum"))) + (Metric("cut_share", "Cut %"),)


@dataclass(frozen=True)
class SdciFullConfig:
    """The test's settings; entries follow sDCI's reference protocol."""

    batch_size: int = field(default=8, metadata=option(
        "Entries per flat SCM batch (the SCM/8 tests, sDCI's All SCM batching).", minimum=1))
    drop_quality: tuple[int, ...] = field(default=(), metadata=option(
        "Leave out masks of this quality (repeatable; sDCI's reference protocol keeps all)."))
    length_edges: tuple[int, ...] = field(default=LENGTH_EDGES, metadata=option(
        "Token-count edges of the length breakdown (repeatable; default 77, 248, 512, 1024)."))
    min_box: int = field(default=MIN_BOX, metadata=option("Smallest unpadded mask box side, px.", cli=False))


@dataclass(frozen=True)
class FullEntry:
    """One sDCI entry with its full text: the control summary and the assembled description."""

    image: str
    key: str
    crop: CropKey
    summary: str
    full: str

    @property
    def is_base(self) -> bool:
        return self.key == BASE_KEY


def full_entries(record: DCIImage, size: tuple[int, int], config: SdciFullConfig) -> list[FullEntry]:
    """The record's sDCI All entries (same skips, crops and order), each with its assembled text."""
    sdci = SdciConfig(drop_quality=config.drop_quality, min_box=config.min_box)
    idx_of = {mask_key(i): i for i in record.masks}
    return [FullEntry(it.image, it.key, it.crop, it.positives[0],
                      image_text(record) if it.key == BASE_KEY else mask_text(record, idx_of[it.key]))
            for it in items_for_record(record, size, sdci)["all"]]


class TextScorer:
    """Scores of crops against texts, each text read through its chunks (one chunk: the text itself).

    ``chunks[t]`` lists chunk indices into ``chunk_features``; ``pool`` is ``mean`` (a text's feature is the
    re-normalised mean of its chunks') or ``max`` (a text scores as its best chunk).
    """

    def __init__(self, model, image_features, chunk_features, chunks: list[list[int]], pool: str):
        import torch

        self.model, self.images, self.chunk_features = model, image_features, chunk_features
        self.chunks, self.pool = chunks, pool
        rows = chunk_features.numpy()
        self.text_features = torch.from_numpy(np.stack(
            [rows[c[0]] if len(c) == 1 else mean_pool(rows[c]).astype(np.float32) for c in chunks])) \
            if chunks and pool == "mean" else None

    def __call__(self, rows: list[int], texts: list[int]) -> np.ndarray:
        import torch

        with torch.no_grad():
            if self.pool == "mean":
                return self.model.similarity(self.images[rows], self.text_features[texts]).double().numpy()
            cols = [c for t in texts for c in self.chunks[t]]
            owners = [j for j, t in enumerate(texts) for _ in self.chunks[t]]
            scores = self.model.similarity(self.images[rows], self.chunk_features[cols]).double().numpy()
        return max_pool_scores(scores, owners, len(texts))


def scm_hits(groups: list[list[int]], crop_of: list[int], text_of: list[int],
             score: Callable[[list[int], list[int]], np.ndarray]) -> list[bool]:
    """Per entry: does its own text score highest among its group's texts (ties to the lowest index)."""
    hits = [False] * len(crop_of)
    for group in groups:
        scores = score([crop_of[e] for e in group], [text_of[e] for e in group])
        for e, ok in zip(group, scm_correct(scores, list(range(len(group))))):
            hits[e] = ok
    return hits


class SDCIFull(Benchmark):
    """sDCI's crops against the full DCI texts, past 77 tokens (this project's test; spec option #long=chunk-mean).

    SCM within images and in flat batches, retrieval and a length breakdown, each beside the summaries."""

    name = "sdci-full"
    uses_crop_cache = True
    title = "sDCI-full"
    config_class = SdciFullConfig
    metrics = METRICS
    data_help = "A DCI folder with complete/ files, or 'sample'."

    def open(self, path: Any, split: str) -> BenchmarkData:
        from densecaption.evaluation.benchmarks.sdci import SDCI

        return SDCI().open(path, split)

    def mode(self, config: SdciFullConfig, model: Any = None) -> str:
        """How the model reads texts past its window (``#long=`` of its spec; ``truncate`` without it)."""
        return getattr(model, "long_mode", "truncate")

    def run(self, model: Any, config: SdciFullConfig, data: BenchmarkData, context: RunContext) -> BenchmarkOutput:
        dataset = data.handle
        advance = context.progress("reading", len(dataset.files(data.split)))
        entries: list[FullEntry] = []
        for record, size in records_with_sizes(dataset, data.split, context.skip):
            entries += full_entries(record, size, config)
            advance(1)
        if not entries:
            raise DataError(f"{data.path}: no sDCI entry in split {data.split!r} (records need summaries, "
                            f"clip_scores and a swaps negative, as sDCI's All tests)")
        count = _token_counter(model)
        window = getattr(model, "context_length", None)
        long_mode = getattr(model, "long_mode", "truncate")
        tokens = [count(e.full) for e in entries]
        score, store, chunks = encode(model, entries, context, pool="max" if long_mode == "chunk-max" else "mean")
        metrics, counts, per_entry = score_tests(entries, score, config.batch_size)
        over = sum(n > window for n in tokens) if window else 0
        cut = over if long_mode == "truncate" else 0  # chunks drop nothing; native refused the run
        metrics["cut_share"], counts["cut_share"] = percent(cut, len(tokens)), len(tokens)
        order = [m.key for m in METRICS]
        return BenchmarkOutput({k: metrics[k] for k in order}, {k: counts[k] for k in order}, extra={
            "design": DESIGN, "long_mode": long_mode, "window": window,
            "images": len({e.image for e in entries}), "entries": len(entries),
            "tokens": {"mean": round(float(np.mean(tokens)), 2), "max": int(max(tokens)), "over_window": over,
                       "cut": cut, "counter": getattr(count, "name", "the model's tokenizer")},
            "by_length": by_length(tokens, per_entry["full"], per_entry["summary"], config.length_edges),
            "text_tokens": {f"{e.image}/{e.key}": n for e, n in zip(entries, tokens)},
            "chunks": chunks, "encoded_images": store.encoded_images, "encoded_texts": store.encoded_texts})

    def result_config(self, config: SdciFullConfig) -> dict[str, Any]:
        return {"batch_size": config.batch_size, "drop_quality": sorted(config.drop_quality),
                "length_edges": list(config.length_edges), "min_box": config.min_box}


def encode(model, entries: list[FullEntry], context: RunContext, *, pool: str):
    """Encode each unique crop and each unique chunk of the entries' texts once; returns the scorer over
    (crop index, text index) with crops and texts numbered by first appearance, the store, and the number
    of unique chunks."""
    from densecaption.evaluation.features import FeatureStore

    texts = list(dict.fromkeys(t for e in entries for t in (e.full, e.summary)))
    split_text = getattr(model, "chunks", lambda t: [t])  # a #long=chunk-* model cuts; others read whole
    chunk_lists = [split_text(t) for t in texts]
    chunk_strings = list(dict.fromkeys(c for cs in chunk_lists for c in cs))
    chunk_index = {c: i for i, c in enumerate(chunk_strings)}
    crops = list(dict.fromkeys(e.crop for e in entries))
    store = FeatureStore(model, num_workers=context.workers, cache_dir=context.cache_dir,
                         crop_cache=context.crop_cache_for(model))
    images, features = store.encode(crops, chunk_strings, context.progress("encoding", len(crops) + len(chunk_strings)))
    scorer = TextScorer(model, images, features, [[chunk_index[c] for c in cs] for cs in chunk_lists], pool)
    return scorer, store, len(chunk_strings)


def score_tests(entries: list[FullEntry], score: Callable[[list[int], list[int]], np.ndarray],
                batch_size: int) -> tuple[dict[str, float], dict[str, int], dict[str, list[bool]]]:
    """Every test on both sides (``full``, ``summary``): metrics, counts, and each entry's within-image SCM
    result per side. Crops and texts are numbered by first appearance, as ``encode`` numbers them."""
    crop_index: dict[CropKey, int] = {}
    text_index: dict[str, int] = {}
    for e in entries:
        crop_index.setdefault(e.crop, len(crop_index))
        text_index.setdefault(e.full, len(text_index))
        text_index.setdefault(e.summary, len(text_index))
    crop_of = [crop_index[e.crop] for e in entries]
    by_image: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        by_image.setdefault(e.image, []).append(i)
    flat = [list(range(s, min(s + batch_size, len(entries)))) for s in range(0, len(entries), batch_size)]
    base = [i for i, e in enumerate(entries) if e.is_base]
    metrics: dict[str, float] = {}
    counts: dict[str, int] = {}
    per_entry: dict[str, list[bool]] = {}
    for side in ("full", "summary"):
        text_of = [text_index[getattr(e, side)] for e in entries]
        per_entry[side] = scm_hits(list(by_image.values()), crop_of, text_of, score)
        hits = {"scm": per_entry[side], "scm_b8": scm_hits(flat, crop_of, text_of, score)}
        retrieval = score([crop_of[i] for i in base], [text_of[i] for i in base])
        for k in (1, 5):
            hits[f"i2t_r{k}"] = recall_hits(retrieval, k)
            hits[f"t2i_r{k}"] = recall_hits(retrieval.T, k)
        for key, ok in hits.items():
            metrics[f"{side}_{key}"] = percent(sum(ok), len(ok))
            counts[f"{side}_{key}"] = len(ok)
    return metrics, counts, per_entry


def by_length(tokens: list[int], full_ok: list[bool], summary_ok: list[bool],
              edges: tuple[int, ...] = LENGTH_EDGES) -> dict[str, dict[str, Any]]:
    """Entries and SCM accuracy (full text, summary) per full-text length bucket; empty buckets left out."""
    edges = tuple(sorted(set(edges))) or LENGTH_EDGES
    out: dict[str, dict[str, Any]] = {}
    for label in bucket_labels(edges):
        idx = [i for i, n in enumerate(tokens) if length_bucket(n, edges) == label]
        if idx:
            out[label] = {"entries": len(idx),
                          "full_scm": round(100.0 * sum(full_ok[i] for i in idx) / len(idx), 4),
                          "summary_scm": round(100.0 * sum(summary_ok[i] for i in idx) / len(idx), 4)}
    return out


def _token_counter(model) -> Callable[[str], int]:
    """The model's own token count; CLIP's BPE count when the model has no tokenizer that counts."""
    from densecaption.tokens import ClipTokenCounter

    if getattr(model, "count_tokens", None) is not None and model.count_tokens("a") is not None:
        return model.count_tokens
    return ClipTokenCounter()

"""The sDCI benchmark: the six reported tests over a DCI split, with any model of the contract.

Protocol (docs/sdci-benchmark.md). Four sub-runs build their entries from the same records:

- ``all``: base + kept masks, first summary, negative ``swaps[0]`` -> All SCM, All Neg
- ``pick5``: entries with at least 5 summaries, the first five (or a seeded sample) -> Pick5 SCM, Pick5 Neg
- ``base``: the whole photo only -> Base Neg
- ``hard``: base + kept masks, the negative of the chosen kinds (the paper's LLM kinds by default) with the
  highest stored ``clip_scores`` -> All Hard-Negs

Mode ``reference`` batches each sub-run as one flat list, 8 at a time, as the reference script does (a
batch may mix two images' crops); mode ``image-group`` makes each image's own crops one batch, the SCM
candidate set the paper's text describes. Neg tests do not depend on batching.

Every unique crop and text is encoded once for all four sub-runs; scores are batched matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from typing import TYPE_CHECKING

import numpy as np

from densecaption.data.dci import DCIDataset
from densecaption.data.findings import SkipLog
from densecaption.data.schema import DCIImage
from densecaption.data.sdci import MIN_BOX, EntryFilter, records_with_sizes, sdci_entries
from densecaption.data.subcrop import CropKey
from densecaption.evaluation.benchmark import option
from densecaption.evaluation.sdci_metrics import hardest_negative, neg_correct, percent, scm_correct
from densecaption.seeding import keyed_rng

if TYPE_CHECKING:
    from densecaption.evaluation.features import FeatureStore

Mode = Literal["reference", "image-group"]
MODES: tuple[str, ...] = ("reference", "image-group")
LLM_NEGATIVE_KINDS: tuple[str, ...] = ("basic", "layout", "swaps")
SUBRUNS = ("all", "pick5", "base", "hard")
METRICS = ("all_scm", "all_neg", "pick5_scm", "pick5_neg", "base_neg", "all_hard_negs")
PAPER_NAMES = {"all_scm": "All SCM", "all_neg": "All Neg", "pick5_scm": "Pick5 SCM", "pick5_neg": "Pick5 Neg",
               "base_neg": "Base Neg", "all_hard_negs": "All Hard-Negs"}
# which metric each sub-run's SCM and Neg feed (None: not reported)
_REPORTS = {"all": ("all_scm", "all_neg"), "pick5": ("pick5_scm", "pick5_neg"), "base": (None, "base_neg"),
            "hard": (None, "all_hard_negs")}


@dataclass(frozen=True)
class SdciConfig:
    """The protocol's settings; the defaults are the reference script's."""

    mode: Mode = field(default="reference", metadata=option(
        "reference (the paper's protocol, flat batches that may mix images) or image-group (each image's own "
        "crops per batch).", choices=MODES))
    batch_size: int = field(default=8, metadata=option("Entries per SCM batch in reference mode.", minimum=1))
    pick_seed: int | None = field(default=None, metadata=option(
        "Sample Pick5's five summaries with this seed (default: the first five)."))
    """None takes the first ``pick`` summaries (deterministic); a seed samples them like upstream's
    unseeded ``random.sample``, reproducibly."""
    drop_quality: tuple[int, ...] = field(default=(), metadata=option(
        "Leave out masks of this quality (repeatable; the reference protocol keeps all)."))
    pick: int = field(default=5, metadata=option("Summaries per Pick5 entry.", cli=False))
    negative_kind: str = field(default="swaps", metadata=option("Negative kind of the Neg tests.", cli=False))
    min_box: int = field(default=MIN_BOX, metadata=option("Smallest unpadded mask box side, px.", cli=False))
    hard_kinds: tuple[str, ...] = field(default=LLM_NEGATIVE_KINDS, metadata=option(
        "Negative kinds All Hard-Negs picks the hardest from (repeatable; default: the LLM kinds the paper "
        "used, basic, layout and swaps, so rule-based negatives added later do not change the test)."))

    @property
    def entry_filter(self) -> EntryFilter:
        return EntryFilter(min_box=self.min_box, drop_quality=frozenset(self.drop_quality))


@dataclass(frozen=True)
class Item:
    """One entry of one sub-run."""

    image: str
    key: str
    crop: CropKey
    positives: tuple[str, ...]
    negative: str


@dataclass
class SdciResult:
    metrics: dict[str, float]
    counts: dict[str, int]
    images: dict[str, int]
    """Images contributing to each sub-run (reference skip rules make these differ)."""
    encoded_images: int
    encoded_texts: int


def items_for_record(record: DCIImage, size: tuple[int, int], cfg: SdciConfig) -> dict[str, list[Item]]:
    """The record's entries in each sub-run, with the reference script's skip rules.

    An image without summaries or clip_scores is in no sub-run; one whose negatives hold only ``base`` is
    in Base Neg only. An entry without the needed negative (or, for Hard-Negs, with an unscored one) is
    left out of that sub-run.
    """
    out: dict[str, list[Item]] = {s: [] for s in SUBRUNS}
    if not record.summaries or record.clip_scores is None:
        return out
    only_base = set(record.negatives or {}) <= {"base"}
    rng = keyed_rng(cfg.pick_seed, record.file) if cfg.pick_seed is not None else None
    for e in sdci_entries(record, cfg.entry_filter, size):
        if not e.summaries:
            continue
        crop = CropKey(record.photo_path, e.crop)
        first = (e.summaries[0],)
        kind = e.negatives.get(cfg.negative_kind) or []
        neg = kind[0] if kind else None
        if e.is_base and neg is not None:
            out["base"].append(Item(record.file, e.key, crop, first, neg))
        if only_base:
            continue
        if neg is not None:
            out["all"].append(Item(record.file, e.key, crop, first, neg))
            if len(e.summaries) >= cfg.pick:
                chosen = rng.sample(e.summaries, cfg.pick) if rng else e.summaries[:cfg.pick]
                out["pick5"].append(Item(record.file, e.key, crop, tuple(chosen), neg))
        hard = hardest_negative(e.negatives, e.clip_scores or {}, cfg.hard_kinds)
        if hard is not None:
            out["hard"].append(Item(record.file, e.key, crop, first, hard[1]))
    return out


def make_batches(items: list[Item], mode: Mode, batch_size: int) -> list[list[Item]]:
    if mode == "reference":
        return [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    if mode == "image-group":
        groups: dict[str, list[Item]] = {}
        for it in items:
            groups.setdefault(it.image, []).append(it)
        return list(groups.values())
    raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")


def score_subrun(batches: list[list[Item]], similarity: Callable[[list[int], list[int]], np.ndarray],
                 crop_index: dict[CropKey, int], text_index: dict[str, int]) -> tuple[int, int]:
    """(SCM correct, Neg correct) over a sub-run's batches; ``similarity(rows, cols)`` gives scores."""
    scm_ok = neg_ok = 0
    for batch in batches:
        rows = [crop_index[it.crop] for it in batch]
        cols, owners = [], []
        for j, it in enumerate(batch):
            cols += [text_index[t] for t in it.positives]
            owners += [j] * len(it.positives)
        neg_cols = [text_index[it.negative] for it in batch]
        scores = similarity(rows, cols + neg_cols)
        pos, neg = scores[:, :len(cols)], scores[:, len(cols):]
        scm_ok += sum(scm_correct(pos, owners))
        owners_arr = np.asarray(owners)
        neg_ok += sum(neg_correct(pos[i, owners_arr == i], neg[i, i]) for i in range(len(batch)))
    return scm_ok, neg_ok


def collect_items(dataset: DCIDataset, split: str, cfg: SdciConfig, skip: SkipLog,
                  progress: Callable[[int], None] = lambda n: None) -> dict[str, list[Item]]:
    """Every sub-run's items over the split, in split order (base first, then masks in file order)."""
    runs: dict[str, list[Item]] = {s: [] for s in SUBRUNS}
    for record, size in records_with_sizes(dataset, split, skip):
        for name, items in items_for_record(record, size, cfg).items():
            runs[name].extend(items)
        progress(1)
    return runs


def evaluate_sdci(dataset: DCIDataset, model, *, split: str = "test", config: SdciConfig = SdciConfig(),
                  skip: SkipLog | None = None, store: FeatureStore | None = None,
                  progress: Callable[[str, int | None], Callable[[int], None]] | None = None) -> SdciResult:
    """Run the six tests. ``progress(stage, total)`` returns an ``advance(n)`` callback per stage."""
    skip = skip if skip is not None else SkipLog()
    progress = progress or (lambda stage, total: (lambda n: None))
    runs = collect_items(dataset, split, config, skip, progress("reading", len(dataset.files(split))))
    crops = list(dict.fromkeys(it.crop for items in runs.values() for it in items))
    texts = list(dict.fromkeys(t for items in runs.values() for it in items for t in (*it.positives, it.negative)))
    if store is None:
        from densecaption.evaluation.features import FeatureStore

        store = FeatureStore(model)
    image_features, text_features = store.encode(crops, texts, progress("encoding", len(crops) + len(texts)))
    crop_index = {c: i for i, c in enumerate(crops)}
    text_index = {t: i for i, t in enumerate(texts)}

    import torch

    def similarity(rows: list[int], cols: list[int]) -> np.ndarray:
        with torch.no_grad():
            return model.similarity(image_features[rows], text_features[cols]).double().numpy()

    metrics: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name in SUBRUNS:
        items = runs[name]
        scm_ok, neg_ok = score_subrun(make_batches(items, config.mode, config.batch_size), similarity,
                                      crop_index, text_index)
        scm_metric, neg_metric = _REPORTS[name]
        for metric, ok in ((scm_metric, scm_ok), (neg_metric, neg_ok)):
            if metric is not None:
                metrics[metric] = percent(ok, len(items))
                counts[metric] = len(items)
    images = {name: len({it.image for it in runs[name]}) for name in SUBRUNS}
    return SdciResult(metrics={m: metrics[m] for m in METRICS}, counts={m: counts[m] for m in METRICS},
                      images=images, encoded_images=store.encoded_images, encoded_texts=store.encoded_texts)


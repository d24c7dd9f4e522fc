"""Precision/recall caption sets (Captions4T2I section 3): pure functions, no I/O.

A caption for an image is made of *parts*: the base summary, then the summaries of K submasks (sDCI's kept
masks: box of at least 224 px, with summaries). A fraction P of the parts are true; every other part is
replaced by a negative of the SAME entry. Parts are whole summaries joined by one space, base first.

Two steps:

1. ``prepare_image`` picks, once per image and independently of P and K, each usable entry's summary
   (``first`` or seeded ``random``) and the negative that would replace it (``negative`` kind,
   ``negative_pick``), and orders the submasks (``area`` descending or ``tree`` pre-order).
2. ``compose_set`` decides which parts are true (``exact`` or ``bernoulli``) and builds the captions.

Randomness is derived from ``(seed, purpose, image id[, entry key])`` with SHA-256, so a choice for one
image never depends on the other images in the set (except exact mode's set-level hand-out of ceilings,
which uses one generator for the whole set) and the same seed gives byte-identical sets.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal

from densecaption.data.schema import BASE_KEY, NEGATIVE_KINDS, DCIImage, Entry
from densecaption.errors import DataError, UserError
from densecaption.seeding import rng_for

Mode = Literal["exact", "bernoulli"]
NegativeKind = Literal["swaps", "basic", "layout", "any"]
NegativePick = Literal["random", "hardest", "easiest"]
Order = Literal["area", "tree"]
Short = Literal["skip", "keep"]
SummaryPick = Literal["first", "random"]

MODES = ("exact", "bernoulli")
NEGATIVES = ("swaps", "basic", "layout", "any")
PICKS = ("random", "hardest", "easiest")
ORDERS = ("area", "tree")
SHORTS = ("skip", "keep")
SUMMARIES = ("first", "random")

PRESETS: dict[str, dict[str, Any]] = {
    # shengcheng/Captions4T2I as it is, quirks included (see the README): every part independently true
    # with probability P (Bernoulli, no seed upstream); the negative with the LOWEST stored CLIP score among
    # all kinds (upstream's "find_hard_neg" takes the least image-like one); submasks by area, largest
    # first; whole summaries; images with fewer than K submasks kept with fewer subcaptions.
    "captions4t2i": {"mode": "bernoulli", "negative": "any", "negative_pick": "easiest", "order": "area",
                     "short": "keep", "summary": "first"},
}


# --------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class CaptionSetConfig:
    """Everything that decides a caption set's content (the data aside)."""

    precision: float
    submasks: int
    mode: Mode = "exact"
    negative: NegativeKind = "any"
    negative_pick: NegativePick = "random"
    order: Order = "area"
    short: Short = "skip"
    summary: SummaryPick = "first"
    seed: int = 0
    preset: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.precision <= 1:
            raise UserError(f"--precision should be a fraction from 0 to 1, got {self.precision}")
        if self.submasks < 0:
            raise UserError(f"--submasks should be 0 or more, got {self.submasks}")
        for name, allowed in (("mode", MODES), ("negative", NEGATIVES), ("negative_pick", PICKS),
                              ("order", ORDERS), ("short", SHORTS), ("summary", SUMMARIES)):
            value = getattr(self, name)
            if value not in allowed:
                raise UserError(f"--{name.replace('_', '-')} should be one of {', '.join(allowed)}, got {value!r}")
        if self.preset is not None and self.preset not in PRESETS:
            raise UserError(f"--preset should be one of {', '.join(PRESETS)}, got {self.preset!r}")

    @classmethod
    def build(cls, precision: float, submasks: int, *, preset: str | None = None, seed: int = 0,
              **options: Any) -> CaptionSetConfig:
        """A config from options where None means "not given": a preset fills them in, and an option given
        with a different value than the preset's is an error (the set would no longer be the preset)."""
        given = {k: v for k, v in options.items() if v is not None}
        if preset is not None:
            if preset not in PRESETS:
                raise UserError(f"--preset should be one of {', '.join(PRESETS)}, got {preset!r}")
            for k, v in given.items():
                if PRESETS[preset].get(k, v) != v:
                    raise UserError(f"--preset {preset} uses --{k.replace('_', '-')} {PRESETS[preset][k]}, "
                                    f"not {v} (leave the option out)")
            given = {**given, **PRESETS[preset]}
        return cls(precision=float(precision), submasks=int(submasks), preset=preset, seed=int(seed), **given)

    @property
    def kinds(self) -> tuple[str, ...]:
        return NEGATIVE_KINDS if self.negative == "any" else (self.negative,)

    @property
    def exact_precision(self) -> Fraction:
        return Fraction(str(self.precision)) if not isinstance(self.precision, Fraction) else self.precision

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Choice:
    """One usable entry with the summary used when the part is true and the negative used when it is not."""

    key: str
    mask_idx: int | None
    area: int | None
    summary: str
    summary_index: int
    negative: str
    negative_kind: str
    negative_index: int
    negative_score: float | None
    summary_score: float | None


@dataclass(frozen=True)
class ImageParts:
    """An image ready to compose: its base choice and its usable submask choices, in the chosen order."""

    image_id: str
    file: str
    photo: str
    photo_path: str | None
    base: Choice
    submasks: tuple[Choice, ...]
    kept_masks: int
    """sDCI entries other than the base (kept masks with summaries), usable or not."""


@dataclass(frozen=True)
class Part:
    text: str
    true: bool
    key: str
    """Entry the part came from: ``base`` or ``m-<idx>-sc``."""
    source: str
    """``summary`` for a true part, else the negative's kind (``basic``, ``layout``, ``swaps``)."""
    index: int
    """Index of the summary or of the negative within its kind."""
    clip_score: float | None


@dataclass(frozen=True)
class Caption:
    image_id: str
    file: str
    photo: str
    photo_path: str | None
    parts: tuple[Part, ...]
    short: bool
    """The image had fewer than K usable submasks (kept with ``--short keep``)."""

    @property
    def text(self) -> str:
        return join_parts(p.text for p in self.parts)

    @property
    def labels(self) -> list[int]:
        return [int(p.true) for p in self.parts]

    @property
    def subcaptions(self) -> int:
        return len(self.parts) - 1

    @property
    def true_share(self) -> float:
        return sum(p.true for p in self.parts) / len(self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "file": self.file, "photo": self.photo, "text": self.text,
                "labels": self.labels, "subcaptions": self.subcaptions, "short": self.short,
                "parts": [asdict(p) for p in self.parts]}


@dataclass
class CaptionSet:
    config: CaptionSetConfig
    captions: list[Caption]
    images_in: int
    """Images offered to the set (prepared ones)."""
    short_skipped: int
    short_kept: int
    unusable: dict[str, int] = field(default_factory=dict)
    """Images dropped before composing, by reason (filled in by the loader)."""

    def realised(self) -> dict[str, Any]:
        """Realised precision (share of true parts) and recall (subcaptions per caption)."""
        parts = sum(len(c.parts) for c in self.captions)
        true = sum(sum(c.labels) for c in self.captions)
        shares = [c.true_share for c in self.captions]
        subs = [c.subcaptions for c in self.captions]
        hist: dict[str, int] = {}
        for s in sorted(subs):
            hist[str(s)] = hist.get(str(s), 0) + 1
        return {
            "precision": {"requested": self.config.precision, "set": true / parts if parts else None,
                          "true_parts": true, "parts": parts, **_spread(shares)},
            "recall": {"requested": self.config.submasks, **_spread(subs), "histogram": hist},
        }

    def counts(self) -> dict[str, Any]:
        return {"images_in": self.images_in, "captions": len(self.captions),
                "parts": sum(len(c.parts) for c in self.captions),
                "short_skipped": self.short_skipped, "short_kept": self.short_kept,
                "unusable": dict(self.unusable)}


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    """Mean over captions and its spread (population standard deviation, min, max)."""
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values),
            "min": min(values), "max": max(values)}


def join_parts(texts: Iterable[str]) -> str:
    """Parts joined by one space (upstream's join), each stripped."""
    return " ".join(t.strip() for t in texts)


def round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


# --------------------------------------------------------------------------------------------- prepare
class Unusable(Exception):
    """Why an image or entry cannot take part (a short reason, used as a count key)."""


def _choose(entry: Entry, config: CaptionSetConfig, image_id: str, area: int | None) -> Choice:
    """The summary and the negative of one entry; raises ``Unusable`` when it has none."""
    summaries = [(i, s) for i, s in enumerate(entry.summaries) if s.strip()]
    if not summaries:
        raise Unusable("no summary")
    if config.summary == "first":
        s_idx, s_text = summaries[0]
    else:
        s_idx, s_text = rng_for(config.seed, "summary", image_id, entry.key).choice(summaries)
    candidates = [(kind, i, t) for kind in config.kinds
                  for i, t in enumerate(entry.negatives.get(kind, [])) if t.strip()]
    if not candidates:
        raise Unusable("no negative")
    scores = entry.clip_scores or {}

    def score(kind: str, i: int) -> float | None:
        value = scores.get(f"{kind}_{i}")
        return None if value is None else float(value)

    if config.negative_pick == "random":
        kind, n_idx, n_text = rng_for(config.seed, "negative", image_id, entry.key).choice(candidates)
    else:
        missing = [f"{k}_{i}" for k, i, _ in candidates if score(k, i) is None]
        if missing:
            raise DataError(f"{entry.image_file}: clip_scores of {entry.key!r} lack {', '.join(missing[:3])}"
                            f"{' ...' if len(missing) > 3 else ''}; --negative-pick {config.negative_pick} "
                            "needs them (run `densecaption data clip-scores`)")
        sign = 1 if config.negative_pick == "hardest" else -1
        # max() keeps the first of equals: ties go to the earlier kind (basic, layout, swaps) and index.
        kind, n_idx, n_text = max(candidates, key=lambda c: sign * score(c[0], c[1]))
    s_score = scores.get("sum") if s_idx == 0 else None
    return Choice(key=entry.key, mask_idx=entry.mask_idx, area=area, summary=s_text.strip(), summary_index=s_idx,
                  negative=n_text.strip(), negative_kind=kind, negative_index=n_idx,
                  negative_score=score(kind, n_idx), summary_score=None if s_score is None else float(s_score))


def submask_order(record: DCIImage, entries: Sequence[Entry], order: Order) -> list[Entry]:
    """Submask entries (not the base) in the chosen order.

    ``area``: mask area descending, as upstream (ties keep ``mask_data`` order). ``tree``: pre-order walk of
    the mask tree (top-level masks in ``mask_data`` order, children in ``requirements`` order); kept masks
    the walk does not reach (a malformed tree) follow in ``mask_data`` order.
    """
    subs = [e for e in entries if e.key != BASE_KEY]
    if order == "area":
        return sorted(subs, key=lambda e: -record.masks[e.mask_idx].area)
    rank = {idx: i for i, idx in enumerate(record.descendants(-1))}
    return sorted(subs, key=lambda e: rank.get(e.mask_idx, len(rank)))


def prepare_image(record: DCIImage, entries: Sequence[Entry], config: CaptionSetConfig) -> ImageParts:
    """An image's choices (see the module doc); raises ``Unusable`` when the base entry has no summary or
    no negative of the chosen kind. Submasks without either are left out (they are not "usable")."""
    if not entries or entries[0].key != BASE_KEY:
        raise Unusable("no summaries")
    base = _choose(entries[0], config, record.id, None)
    subs = []
    for entry in submask_order(record, entries, config.order):
        try:
            subs.append(_choose(entry, config, record.id, record.masks[entry.mask_idx].area))
        except Unusable:
            continue
    return ImageParts(image_id=record.id, file=record.file, photo=record.image,
                      photo_path=None if record.photo_path is None else str(record.photo_path),
                      base=base, submasks=tuple(subs), kept_masks=len(entries) - 1)


# --------------------------------------------------------------------------------------------- labels
def exact_true_counts(sizes: Sequence[int], precision: Fraction | float, seed: int) -> list[int]:
    """True parts per caption for exact mode: floor or ceil of P * n_i, the ceilings handed out at random
    (seeded) among the captions where P * n_i is not whole, so that the total is round_half_up(P * N)."""
    p = precision if isinstance(precision, Fraction) else Fraction(str(precision))
    floors = [math.floor(p * n) for n in sizes]
    fractional = [i for i, n in enumerate(sizes) if p * n != floors[i]]
    extra = round_half_up(p * sum(sizes)) - sum(floors)
    assert 0 <= extra <= len(fractional), (extra, len(fractional))
    counts = list(floors)
    for i in rng_for(seed, "ceilings", str(p), len(sizes)).sample(fractional, extra):
        counts[i] += 1
    return counts


def exact_labels(n: int, true: int, seed: int, image_id: str) -> list[bool]:
    """Which ``true`` of ``n`` parts are true: a seeded random choice per image."""
    chosen = set(rng_for(seed, "arrange", image_id).sample(range(n), true))
    return [i in chosen for i in range(n)]


def bernoulli_labels(n: int, precision: float, seed: int, image_id: str) -> list[bool]:
    rng = rng_for(seed, "bernoulli", image_id)
    return [rng.random() < precision for _ in range(n)]


# --------------------------------------------------------------------------------------------- compose
def _part(choice: Choice, true: bool) -> Part:
    if true:
        return Part(choice.summary, True, choice.key, "summary", choice.summary_index, choice.summary_score)
    return Part(choice.negative, False, choice.key, choice.negative_kind, choice.negative_index,
                choice.negative_score)


def compose_set(images: Sequence[ImageParts], config: CaptionSetConfig) -> CaptionSet:
    """The caption set for ``config`` over prepared images (in the given order)."""
    k = config.submasks
    chosen: list[tuple[ImageParts, tuple[Choice, ...], bool]] = []
    skipped = kept_short = 0
    for img in images:
        short = len(img.submasks) < k
        if short and config.short == "skip":
            skipped += 1
            continue
        kept_short += short
        chosen.append((img, (img.base, *img.submasks[:k]), short))
    sizes = [len(choices) for _, choices, _ in chosen]
    if config.mode == "exact":
        counts = exact_true_counts(sizes, config.exact_precision, config.seed)
        labels = [exact_labels(n, t, config.seed, img.image_id)
                  for (img, _, _), n, t in zip(chosen, sizes, counts)]
    else:
        labels = [bernoulli_labels(n, config.precision, config.seed, img.image_id)
                  for (img, _, _), n in zip(chosen, sizes)]
    captions = [Caption(image_id=img.image_id, file=img.file, photo=img.photo, photo_path=img.photo_path,
                        parts=tuple(_part(c, t) for c, t in zip(choices, lab)), short=short)
                for (img, choices, short), lab in zip(chosen, labels)]
    return CaptionSet(config=config, captions=captions, images_in=len(images), short_skipped=skipped,
                      short_kept=kept_short)


def with_precision_and_submasks(config: CaptionSetConfig, precision: float, submasks: int) -> CaptionSetConfig:
    return replace(config, precision=float(precision), submasks=int(submasks))

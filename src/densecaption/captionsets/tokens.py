"""Token report of a caption set: CLIP tokens, and any tokenizer the user names with a length.

Counts follow docs/interfaces.md: the tokenizer's own ``input_ids`` of the text, special tokens included, no
truncation. With a limit L a caption is *truncated* when its count exceeds L. Truncation to L tokens keeps
the tokenizer's special tokens, so L - s content tokens survive (s = special tokens of an empty text: 2 for
CLIP, 1 for T5). A part is *cut* when its last token is not among them, i.e. when the content tokens of
the caption up to and including that part exceed L - s. Parts are joined by spaces and both CLIP and
sentencepiece tokenizers split on whitespace first, so the tokens of a prefix are a prefix of the tokens.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from densecaption.captionsets.compose import Caption, join_parts
from densecaption.errors import UserError
from densecaption.tokens import CLIP_CONTEXT


@dataclass
class TextTokenizer:
    """A token counter with a name, where it came from and the length it is reported against."""

    name: str
    spec: str
    limit: int
    count: Callable[[str], int]

    def __post_init__(self) -> None:
        self.count = lru_cache(maxsize=200_000)(self.count)
        self.special = self.count("")


def clip_tokenizer(limit: int = CLIP_CONTEXT) -> TextTokenizer:
    from densecaption.tokens import ClipTokenCounter

    counter = ClipTokenCounter()
    return TextTokenizer(name=counter.name, spec="clip", limit=limit, count=counter)


def parse_tokenizer_spec(spec: str) -> tuple[str, int]:
    """``NAME_OR_DIR:LENGTH`` -> (name, length)."""
    name, sep, length = spec.rpartition(":")
    if not sep or not name or not length.isdigit() or int(length) <= 0:
        raise UserError(f"--tokenizer {spec!r}: expected NAME_OR_DIR:LENGTH, e.g. "
                        "PixArt-alpha/PixArt-XL-2-1024-MS/tokenizer:120 or ./t5-tokenizer:120")
    return name, int(length)


def load_tokenizer(spec: str) -> TextTokenizer:
    """A transformers tokenizer from a folder or a hub id (``org/repo`` or ``org/repo/subfolder``)."""
    name, length = parse_tokenizer_spec(spec)
    if name == "clip":
        return clip_tokenizer(length)
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {}
    target = name
    if not Path(name).expanduser().exists():
        pieces = name.split("/")
        if len(pieces) > 2:
            target, kwargs["subfolder"] = "/".join(pieces[:2]), "/".join(pieces[2:])
    else:
        target = str(Path(name).expanduser())
    try:
        tok = AutoTokenizer.from_pretrained(target, **kwargs)
    except Exception as e:  # noqa: BLE001  transformers raises OSError, ValueError, EnvironmentError... for a bad name
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--tokenizer {spec!r}: cannot load a tokenizer from {name!r} ({first})") from None

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=True, truncation=False)["input_ids"])

    return TextTokenizer(name=f"{type(tok).__name__} ({name})", spec=spec, limit=length, count=count)


def caption_token_stats(parts: Sequence[str], tok: TextTokenizer) -> tuple[int, list[bool]]:
    """(tokens of the caption, for each part whether truncation to ``tok.limit`` cuts it)."""
    total = tok.count(join_parts(parts))
    if total <= tok.limit:
        return total, [False] * len(parts)
    room = tok.limit - tok.special
    cut = [tok.count(join_parts(parts[:i + 1])) - tok.special > room for i in range(len(parts))]
    return total, cut


def token_report(captions: Sequence[Caption], tokenizers: Sequence[TextTokenizer]) -> list[dict[str, Any]]:
    """One row per tokenizer (see the module doc for the definitions)."""
    rows = []
    for tok in tokenizers:
        counts, truncated, sub_cut, base_cut, sub_total, with_cut = [], 0, 0, 0, 0, 0
        for cap in captions:
            total, cut = caption_token_stats([p.text for p in cap.parts], tok)
            counts.append(total)
            truncated += total > tok.limit
            base_cut += cut[0] if cut else 0
            sub_cut += sum(cut[1:])
            sub_total += len(cut) - 1
            with_cut += any(cut[1:])
        n = len(captions)
        rows.append({
            "tokenizer": tok.name, "spec": tok.spec, "limit": tok.limit, "special_tokens": tok.special,
            "tokens": {"mean": statistics.fmean(counts) if counts else None,
                       "median": statistics.median(counts) if counts else None,
                       "max": max(counts) if counts else None},
            "captions": n, "captions_truncated": truncated, "share_truncated": truncated / n if n else None,
            "subcaptions": sub_total, "subcaptions_cut": sub_cut,
            "share_subcaptions_cut": sub_cut / sub_total if sub_total else None,
            "captions_with_cut_subcaption": with_cut, "base_cut": base_cut,
        })
    return rows

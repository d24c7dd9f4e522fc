"""Texts longer than a text tower's window, as pure functions: sentence-boundary chunking, the two pooling
baselines, recall@K and length buckets (docs/long-text.md; the design is this project's own).

``count(text)`` is always the model's own token count of a text, start and end tokens included, and
``window`` the most tokens the tower reads (77 for CLIP).
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

Counter = Callable[[str], int]
LONG_MODES: tuple[str, ...] = ("truncate", "native", "chunk-mean", "chunk-max", "parts-mean")
"""How a text past the window is read: cut to the window (what CLIP tokenizers do), refused, or chunked
and pooled (mean of the chunk features, or max over chunks of the score; ``parts-mean``: the chunks are
the text's own lines, DCI's parts)."""
PARTS_HEADER = "The following can also be seen in the image:"
"""The line DCI's assembled texts put before the mask lines: not a part of its own."""
LENGTH_EDGES: tuple[int, ...] = (77, 248, 512, 1024)
"""Bucket edges in tokens: CLIP's window, Long-CLIP's window, then doublings."""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """The text's sentences: a break after ``.``, ``!`` or ``?`` followed by white space, and at every
    newline; surrounding white space stripped, empty pieces dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _cut_long_sentence(sentence: str, count: Counter, window: int) -> list[str]:
    """A sentence over the window cut between words (a word boundary is a token boundary of CLIP's BPE),
    greedily; a single word over the window is cut between characters."""
    pieces: list[str] = []
    current = ""
    for word in sentence.split():
        candidate = f"{current} {word}" if current else word
        if count(candidate) <= window:
            current = candidate
            continue
        if current:
            pieces.append(current)
        if count(word) <= window:
            current = word
            continue
        current = ""
        for ch in word:  # a pathological "word" longer than the window
            if current and count(current + ch) > window:
                pieces.append(current)
                current = ""
            current += ch
    if current:
        pieces.append(current)
    return pieces


def chunk_text(text: str, count: Counter, window: int) -> list[str]:
    """Consecutive sentences packed greedily into chunks of at most ``window`` tokens (joined by a
    space); a sentence that alone exceeds the window is cut into window-sized pieces first. A text that
    fits is one chunk, itself."""
    if count(text) <= window:
        return [text]
    chunks: list[str] = []
    current = ""
    for sentence in split_sentences(text):
        parts = [sentence] if count(sentence) <= window else _cut_long_sentence(sentence, count, window)
        for part in parts:
            candidate = f"{current} {part}" if current else part
            if count(candidate) <= window:
                current = candidate
            else:
                if current:
                    chunks.append(current)
                current = part
    if current:
        chunks.append(current)
    return chunks


def split_parts(text: str, count: Counter, window: int) -> list[str]:
    """A text's own parts: its lines (for an assembled DCI text: the short caption, the extra caption and
    one per mask line; the header before the mask lines left out), a line over the window chunked as
    ``chunk_text`` does. A text that fits is one part, itself."""
    if count(text) <= window:
        return [text]
    lines = [line.strip() for line in text.split("\n") if line.strip() and line.strip() != PARTS_HEADER]
    return [piece for line in lines for piece in chunk_text(line, count, window)]


def mean_pool(chunk_features: np.ndarray) -> np.ndarray:
    """The re-normalised mean of the L2-normalised chunk rows (one text's feature, chunk-mean)."""
    rows = np.asarray(chunk_features, dtype=np.float64)
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    mean = rows.mean(axis=0)
    return mean / np.linalg.norm(mean)


def max_pool_scores(chunk_scores: np.ndarray, owners: Sequence[int], n_texts: int) -> np.ndarray:
    """(n_images, n_texts) from (n_images, n_chunks): each text's score is its best chunk's (chunk-max).
    ``owners[c]`` is the text chunk ``c`` belongs to; every text must own a chunk."""
    scores = np.asarray(chunk_scores, dtype=np.float64)
    owners_arr = np.asarray(owners)
    out = np.full((scores.shape[0], n_texts), -np.inf)
    for t in range(n_texts):
        cols = scores[:, owners_arr == t]
        if cols.shape[1] == 0:
            raise ValueError(f"text {t} has no chunk")
        out[:, t] = cols.max(axis=1)
    return out


def recall_hits(scores: np.ndarray, k: int) -> list[bool]:
    """Row i's true partner is column i; a hit when it is among the ``k`` best of its row, ties ranked
    by the lower column index. Text-to-image: pass the transpose."""
    scores = np.asarray(scores, dtype=np.float64)
    hits = []
    for i, row in enumerate(scores):
        rank = int(np.sum(row > row[i]) + np.sum(row[:i] == row[i]))
        hits.append(rank < k)
    return hits


def length_bucket(tokens: int, edges: Sequence[int] = LENGTH_EDGES) -> str:
    """The bucket label of a token count: ``<=77``, ``78-248``, ..., ``>1024`` for the default edges."""
    low = 0
    for edge in edges:
        if tokens <= edge:
            return f"<={edge}" if low == 0 else f"{low + 1}-{edge}"
        low = edge
    return f">{low}"


def bucket_labels(edges: Sequence[int] = LENGTH_EDGES) -> list[str]:
    """Every bucket's label, shortest first."""
    return [length_bucket(e, edges) for e in edges] + [f">{edges[-1]}"]

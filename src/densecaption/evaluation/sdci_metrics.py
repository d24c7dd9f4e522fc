"""The sDCI scores as pure functions of score matrices (no models, no I/O).

Definitions follow the DCI paper's section 4 and its reference script (docs/sdci-benchmark.md).
"""

from __future__ import annotations

from typing import Collection, Sequence

import numpy as np


def scm_correct(scores: np.ndarray, owners: Sequence[int]) -> list[bool]:
    """Subcrop-caption matching over one batch, image to text.

    ``scores[i, t]`` is the score of the batch's i-th image against its t-th text; ``owners[t]`` is the
    batch entry the text is a positive of. With G[i, j, k] the score of image i against entry j's k-th
    positive: M[i, j] = max_k G[i, j, k] for j != i and M[i, i] = min_k G[i, i, k]; entry i is correct when
    argmax_j M[i, j] == i, ties going to the lowest j. A batch of one is always correct.
    """
    scores = np.asarray(scores, dtype=np.float64)
    owners = np.asarray(owners)
    n = scores.shape[0]
    pooled = np.empty((n, n))
    for j in range(n):
        cols = scores[:, owners == j]
        if cols.shape[1] == 0:
            raise ValueError(f"batch entry {j} has no positive text")
        pooled[:, j] = cols.max(axis=1)
        pooled[j, j] = cols[j].min()
    return [int(np.argmax(pooled[i])) == i for i in range(n)]


def neg_correct(positive_scores: Sequence[float], negative_score: float) -> bool:
    """The entry beats its negative when its worst positive scores strictly higher."""
    return min(positive_scores) > negative_score


def hardest_negative(negatives: dict[str, list[str]], clip_scores: dict[str, float],
                     kinds: Collection[str] | None = None) -> tuple[str, str] | None:
    """The negative with the highest stored score, as (name, text); None when a candidate has no score.

    Candidates are the negatives of ``kinds`` (every kind when None), kinds in the object's key order and
    each list in order, named ``<kind>_<i>``; a stable ascending sort by score and the last wins, so on a
    tie the later one wins.
    """
    candidates = [(f"{kind}_{i}", text) for kind, texts in negatives.items() if kinds is None or kind in kinds
                  for i, text in enumerate(texts)]
    if not candidates or any(name not in clip_scores for name, _ in candidates):
        return None
    return sorted(candidates, key=lambda c: clip_scores[c[0]])[-1]


def percent(correct: int, total: int) -> float:
    return float(100.0 * correct / total) if total else float("nan")

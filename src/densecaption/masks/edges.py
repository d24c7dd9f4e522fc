"""Prompt points for SAM: the regular grid and DCI's points near Canny edges (see ``docs/masks.md``).

Points here are (x, y) pixels. The edge pick is pure given its random generator; ``dci-reference`` keeps the
release's clamping quirk (y bounded by the width, x by the height) and prompts only the first point.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from densecaption.masks import Mode


@dataclass(frozen=True)
class EdgeSettings:
    """The release's constants for the Canny-point pass."""

    filter_d: int = 11
    sigma_color: float = 61
    sigma_space: float = 39
    canny_low: float = 100
    canny_high: float = 250
    border: int = 10
    window: int = 12
    jitter: float = 35.0
    extra: int = 8


def grid_points(width: int, height: int, per_side: int = 50) -> list[tuple[float, float]]:
    """SAM's regular grid: (x, y) at ((i + 0.5) / n of the width, (j + 0.5) / n of the height), row by row."""
    steps = (np.arange(per_side) + 0.5) / per_side
    return [(float(x * width), float(y * height)) for y in steps for x in steps]


def edge_map(image: np.ndarray, settings: EdgeSettings = EdgeSettings()) -> np.ndarray:
    """Canny edges (boolean) of the bilateral-filtered RGB photo."""
    import cv2

    blurred = cv2.bilateralFilter(np.ascontiguousarray(image, dtype=np.uint8), settings.filter_d,
                                  settings.sigma_color, settings.sigma_space)
    return cv2.Canny(blurred, settings.canny_low, settings.canny_high) == 255


def _bound(v: float, lo: int, hi: int) -> int:
    return int(max(min(hi, v), lo))


def pick_edge_points(edges: np.ndarray, rng: random.Random, mode: Mode = "default",
                     settings: EdgeSettings = EdgeSettings()) -> list[tuple[int, int]]:
    """Greedy edge points as (x, y): candidates (edge pixels) shuffled and taken from the end; one more than
    ``border`` px inside the photo and not yet cleared is accepted with ``extra`` copies jittered uniformly
    within +-jitter/2 per axis, each clamped to [border, side - border]; its window of ``window`` px each way
    is then cleared. ``dci-reference`` clamps y with the width and x with the height, as the release did."""
    height, width = edges.shape
    free = edges.copy()
    ys, xs = np.nonzero(edges)
    candidates = list(zip(ys.tolist(), xs.tolist()))
    rng.shuffle(candidates)
    b, w = settings.border, settings.window
    y_hi, x_hi = (width - b, height - b) if mode == "dci-reference" else (height - b, width - b)
    points: list[tuple[int, int]] = []
    while candidates:
        y, x = candidates.pop()
        if x < b or y < b or x > width - b or y > height - b or not free[y, x]:
            continue
        points.append((_bound(x, b, x_hi), _bound(y, b, y_hi)))
        for _ in range(settings.extra):
            jy = (0.5 - rng.random()) * settings.jitter
            jx = (0.5 - rng.random()) * settings.jitter
            points.append((_bound(x + jx, b, x_hi), _bound(y + jy, b, y_hi)))
        free[max(0, y - w):y + w, max(0, x - w):x + w] = False
    return points


def edge_prompts(points: list[tuple[int, int]], mode: Mode = "default") -> list[tuple[int, int]]:
    """The edge points SAM is prompted with: all of them, or in ``dci-reference`` only the first (the release
    passed its N x 2 array where SAM wanted a list of per-layer grids, so SAM used row 0)."""
    return points[:1] if mode == "dci-reference" else list(points)

"""Speed of DCI's tree step (``densecaption.masks.tree``) on SA-1B-sized synthetic mask sets.

    .venv/bin/python benchmarks/mask_tree_bench.py [--photos 6] [--masks 100 200 300] [--mode default]

Each synthetic photo is 1500 x 2250 px with N masks: large background strips, objects (ellipses), parts inside
them and near-duplicates (objects grown by a pixel), as SAM's grid and edge passes produce. Prints photos per
second for the tree step (group + refine) and for writing ``mask_data`` (one full-size PNG per kept mask), the
relation tests run, the pixels they touched, and what the same tests would touch on full-image arrays.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from densecaption.masks import relations  # noqa: E402
from densecaption.masks.relations import BitMask  # noqa: E402
from densecaption.masks.tree import build_tree, to_mask_data  # noqa: E402

HEIGHT, WIDTH = 1500, 2250


def ellipse(cy: int, cx: int, ry: int, rx: int, score: float) -> BitMask:
    """An ellipse clipped to the photo, held as its box crop."""
    t, b = max(cy - ry, 0), min(cy + ry + 1, HEIGHT)
    l, r = max(cx - rx, 0), min(cx + rx + 1, WIDTH)
    yy, xx = np.ogrid[t:b, l:r]
    bits = ((yy - cy) / max(ry, 1)) ** 2 + ((xx - cx) / max(rx, 1)) ** 2 <= 1.0
    return _crop(t, l, bits, score)


def _crop(t: int, l: int, bits: np.ndarray, score: float) -> BitMask:
    inner = BitMask.from_full(bits, score)
    return BitMask(t + inner.top, l + inner.left, t + inner.bottom, l + inner.right, inner.bits, score)


def grown(m: BitMask) -> BitMask:
    """``m`` one pixel wider on every side (a near-duplicate, as two prompts on one object give)."""
    bits = np.pad(m.bits, 1)
    bits[1:, :] |= bits[:-1, :].copy()
    bits[:, 1:] |= bits[:, :-1].copy()
    t, l = m.top - 1, m.left - 1
    keep = (slice(max(-t, 0), None), slice(max(-l, 0), None))
    return _crop(max(t, 0), max(l, 0), bits[keep][:HEIGHT - max(t, 0), :WIDTH - max(l, 0)], m.score * 0.99)


def synthetic_masks(n: int, rng: np.random.Generator) -> list[BitMask]:
    """About 5 % strips, 45 % objects, 30 % parts, 20 % near-duplicates."""
    out: list[BitMask] = []
    strips = max(2, n // 20)
    edges = np.linspace(0, WIDTH, strips + 1).astype(int)
    for a, b in zip(edges[:-1], edges[1:]):
        out.append(_crop(0, int(a), np.ones((HEIGHT, int(b - a)), dtype=bool), float(rng.uniform(0.7, 1))))
    objects = []
    while len(out) < n:
        kind = rng.random()
        if kind < 0.5 or not objects:
            m = ellipse(int(rng.integers(0, HEIGHT)), int(rng.integers(0, WIDTH)), int(rng.integers(20, 300)),
                        int(rng.integers(20, 300)), float(rng.uniform(0.7, 1)))
            objects.append(m)
        elif kind < 0.8:
            o = objects[int(rng.integers(len(objects)))]
            h, w = max(o.bottom - o.top, 4), max(o.right - o.left, 4)
            m = ellipse(o.top + h // 2, o.left + w // 2, max(h // 5, 2), max(w // 5, 2), float(rng.uniform(0.7, 1)))
        else:
            m = grown(objects[int(rng.integers(len(objects)))])
        out.append(m)
    return out[:n]


class Counter:
    """Counts the overlap counts the relations ask for and the pixels they touch."""

    def __init__(self) -> None:
        self.calls = self.pixels = 0
        self._inner = relations.overlap_pixels

    def __call__(self, a: BitMask, b: BitMask) -> int:
        self.calls += 1
        t, l = max(a.top, b.top), max(a.left, b.left)
        bm, r = min(a.bottom, b.bottom), min(a.right, b.right)
        self.pixels += max(bm - t, 0) * max(r - l, 0)
        return self._inner(a, b)


def full_image_pair_seconds(repeats: int = 20) -> float:
    """What one overlap count costs on two full-image boolean arrays (the naive way)."""
    a = np.zeros((HEIGHT, WIDTH), dtype=bool)
    b = np.zeros((HEIGHT, WIDTH), dtype=bool)
    a[:800], b[400:] = True, True
    start = time.perf_counter()
    for _ in range(repeats):
        np.count_nonzero(a & b)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--masks", type=int, nargs="+", default=[100, 200, 300])
    parser.add_argument("--mode", choices=["default", "dci-reference"], default="default")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    naive = full_image_pair_seconds()
    rows = []
    for n in args.masks:
        rng = np.random.default_rng(args.seed)
        photos = [synthetic_masks(n, rng) for _ in range(args.photos)]
        counter = Counter()
        relations.overlap_pixels = counter
        start = time.perf_counter()
        trees = [build_tree(masks, args.mode) for masks in photos]
        tree_s = time.perf_counter() - start
        relations.overlap_pixels = counter._inner
        start = time.perf_counter()
        kept = sum(len(to_mask_data(t, HEIGHT, WIDTH, args.mode)) for t in trees)
        write_s = time.perf_counter() - start
        rows.append({"masks": n, "tree_photos_per_s": args.photos / tree_s, "mask_data_photos_per_s": args.photos / write_s,
                     "overlap_counts_per_photo": counter.calls / args.photos,
                     "mpixels_touched_per_photo": counter.pixels / args.photos / 1e6,
                     "naive_full_image_s_per_photo": counter.calls / args.photos * naive,
                     "kept_masks_per_photo": kept / args.photos})
    print(f"$ .venv/bin/python benchmarks/mask_tree_bench.py {shlex.join(sys.argv[1:])}")
    print(f"{args.photos} synthetic photos of {WIDTH} x {HEIGHT} px per row, mode {args.mode}; full-image overlap "
          f"count: {naive * 1e3:.2f} ms per pair")
    head = ("masks", "tree photos/s", "mask_data photos/s", "overlap counts", "Mpx touched", "naive s/photo", "kept")
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in rows:
        print(f"| {r['masks']} | {r['tree_photos_per_s']:.2f} | {r['mask_data_photos_per_s']:.2f} | "
              f"{r['overlap_counts_per_photo']:.0f} | {r['mpixels_touched_per_photo']:.1f} | "
              f"{r['naive_full_image_s_per_photo']:.1f} | {r['kept_masks_per_photo']:.0f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

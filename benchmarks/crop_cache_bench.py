"""The training loader with and without the crop cache, on a synthetic release at SA-1B sizes.

    .venv/bin/python benchmarks/crop_cache_bench.py [--photos 2000] [--masks 10] [--sample 300] [--dir DIR]

Writes ``--photos`` JPEGs of 1500 x 2250 px (SA-1B's typical size) with ``--masks`` random boxes each, and
takes each photo's base entry and its masks' subcrops as training entries (``training.data.EntryDataset``,
random order, one process: the rates are per core). Without the cache an entry costs a full photo decode
(the loader keeps 16 decoded photos, which random order rarely hits); with it, the photo is decoded once when
the cache is filled and every epoch reads a 224 x 224 uint8 crop from a memory-mapped shard. Peak memory
of filling is measured in child processes over half and all the photos: it stays flat in the photo count.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densecaption.data.schema import Box  # noqa: E402
from densecaption.data.subcrop import CropKey, subcrop_box  # noqa: E402
from densecaption.training.data import EntryDataset, TrainEntry  # noqa: E402

WIDTH, HEIGHT = 2250, 1500


def write_photos(folder: Path, photos: int, masks: int, seed: int = 0) -> list[TrainEntry]:
    """Synthetic photos (smooth colour fields with grain, JPEG quality 90) and their entries."""
    import numpy as np
    from PIL import Image

    rng, boxes = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for p in range(photos):
        path = folder / f"sa_{p:07d}.jpg"
        if not path.exists():
            small = Image.fromarray(rng.integers(0, 256, (15, 22, 3), dtype=np.uint8)).resize((WIDTH, HEIGHT))
            grain = rng.integers(-12, 13, (HEIGHT, WIDTH, 1), dtype=np.int16)
            pixels = np.clip(np.asarray(small, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path, quality=90)
        entries.append(TrainEntry(path.stem, path, Box(0, 0, WIDTH, HEIGHT), ("a photo",), ("not a photo",)))
        for _ in range(masks):
            w, h = int(boxes.integers(40, WIDTH // 2)), int(boxes.integers(40, HEIGHT // 2))
            x, y = int(boxes.integers(0, WIDTH - w)), int(boxes.integers(0, HEIGHT - h))
            entries.append(TrainEntry(path.stem, path, subcrop_box(Box(x, y, x + w, y + h), WIDTH, HEIGHT),
                                      ("a region",), ("not a region",)))
    return entries


def load_backend(folder: Path):
    from densecaption.models.open_clip_backend import init_random_open_clip
    from densecaption.models.registry import load_model

    if not (folder / "open_clip_config.json").exists():
        init_random_open_clip("ViT-B-32", folder, tiny=True)  # preprocessing is ViT-B/32's; encoders unused
    return load_model(f"open_clip:local-dir:{folder}", device="cpu")


def read_rate(dataset: EntryDataset, order: list[int]) -> float:
    start = time.perf_counter()
    for i in order:
        dataset[i]
    return len(order) / (time.perf_counter() - start)


def _fill_child(root: str, model_dir: str, keys: list, out) -> None:
    import torch

    from densecaption.evaluation.crop_cache import CropCache

    torch.set_num_threads(1)
    cache = CropCache.for_model(Path(root), load_backend(Path(model_dir)))
    start = time.perf_counter()
    added = cache.fill(keys)
    out.put((added, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def fill_in_child(root: Path, model_dir: Path, keys: list[CropKey]) -> tuple[int, float, float]:
    """(crops added, seconds, peak RSS in MiB) of filling a fresh cache in a child process."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_fill_child, args=(str(root), str(model_dir), keys, out))
    child.start()
    result = out.get()
    child.join()
    return result


def main() -> None:
    import torch

    torch.set_num_threads(1)  # per-core rates, as in a loader worker
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--masks", type=int, default=10)
    parser.add_argument("--sample", type=int, default=300, help="Entries timed without the cache (slow).")
    parser.add_argument("--dir", type=Path, default=None, help="Keep the synthetic photos here (reused).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        start = time.perf_counter()
        entries = write_photos(root / "photos", args.photos, args.masks)
        print(f"{args.photos} photos x {args.masks} masks ({len(entries)} entries, base included), "
              f"{WIDTH} x {HEIGHT} px, ready in {time.perf_counter() - start:.0f} s")
        model_dir = root / "model"
        backend = load_backend(model_dir)
        order = random.Random(0).sample(range(len(entries)), len(entries))
        plain_rate = read_rate(EntryDataset(entries, backend), order[:args.sample])

        from densecaption.evaluation.crop_cache import CropCache

        keys = [CropKey(e.photo, e.crop) for e in entries]
        half = [k for k in keys if int(k.photo.stem.split("_")[1]) < max(args.photos // 2, 1)]
        memory = {}
        for name, subset in (("half", half), ("all", keys)):
            added, seconds, peak = fill_in_child(Path(tmp) / f"cache-{name}", model_dir, subset)
            memory[name] = (len({k.photo for k in subset}), added, seconds, peak)
        cache = CropCache.for_model(Path(tmp) / "cache-all", backend)
        cached_rate = read_rate(EntryDataset(entries, backend, crop_cache=cache), order)
    photos, added, fill_s, _ = memory["all"]
    print(f"{'loader path (1 process)':<44}{'entries':>9}{'entries/s/core':>16}")
    print(f"{'decode the full photo per entry':<44}{args.sample:>9}{plain_rate:>16.1f}")
    print(f"{'fill the cache (one decode per photo)':<44}{added:>9}{added / fill_s:>16.1f}")
    print(f"{'read from the cache (every epoch)':<44}{len(order):>9}{cached_rate:>16.1f}")
    print(f"cache read vs full decode: {cached_rate / plain_rate:.1f}x per core; "
          f"first epoch incl. fill: {len(order) / (fill_s + len(order) / cached_rate) / plain_rate:.1f}x")
    print("peak memory of filling: " + "; ".join(f"{p} photos {peak:.0f} MiB" for p, _, _, peak in memory.values()))
    print(f"cache on disk: {added * 224 * 224 * 3 / 2**20:.0f} MiB ({224 * 224 * 3 // 1024} KiB per entry)")


if __name__ == "__main__":
    main()

"""CLIP fine-tuning throughput: training samples per second and peak memory.

    .venv/bin/python benchmarks/train_bench.py [--model SPEC] [--batch-size 8] [--epochs 2]

Without --model it writes a tiny random open_clip model (CPU-friendly); pass
`--model open_clip:ViT-B-32` (random full size) or a real model on a GPU machine. Trains on the bundled
sample's test split (44 entries) with validation off.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from densecaption.training.clip import ClipTrainConfig, train_clip  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = args.model
        if spec is None:
            from densecaption.models.open_clip_backend import init_random_open_clip

            spec = f"open_clip:local-dir:{init_random_open_clip('ViT-B-32', Path(tmp) / 'tiny', tiny=True)}"
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        cfg = ClipTrainConfig(data="sample", model=spec, out=str(Path(tmp) / "run"), split="test",
                              valid_split=None, epochs=args.epochs, batch_size=args.batch_size,
                              workers=args.workers)
        steps = []
        start = time.perf_counter()
        train_clip(cfg, log=steps.append)
        elapsed = time.perf_counter() - start
    samples = 44 * args.epochs
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"{'model':<48}{'device':<10}{'steps':>6}{'samples/s':>11}{'peak MiB':>10}")
    print(f"{spec[-48:]:<48}{device[:9]:<10}{len(steps):>6}{samples / elapsed:>11.1f}{peak:>10.0f}")
    print(json.dumps({"model": spec, "device": device, "steps": len(steps), "samples_per_s": round(samples / elapsed, 2),
                      "peak_mib": round(peak), "includes": "model load, checkpoints, adapter save"}))


if __name__ == "__main__":
    main()

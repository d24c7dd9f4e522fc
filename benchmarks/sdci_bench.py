"""sDCI: the project's evaluation against a plain re-encode-per-test implementation, same data and model.

    .venv/bin/python benchmarks/sdci_bench.py [--data sample] [--model SPEC] [--repeat 1]

Without --model it writes a random-initialised open_clip ViT-B-32 (full size) to a temporary folder.
Prints wall time, images and texts sent through the encoders, and checks both give the same six numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.naive_sdci import CountingModel, naive_sdci  # noqa: E402
from densecaption.data.dci import DCIDataset  # noqa: E402
from densecaption.evaluation.features import FeatureStore  # noqa: E402
from densecaption.evaluation.sdci import evaluate_sdci  # noqa: E402
from densecaption.models.registry import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sample")
    parser.add_argument("--model", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = args.model
        if spec is None:
            from densecaption.models.open_clip_backend import init_random_open_clip

            spec = f"open_clip:local-dir:{init_random_open_clip('ViT-B-32', Path(tmp) / 'vit-b-32')}"
        model = load_model(spec, device=args.device)
        dataset = DCIDataset.open(args.data)

        start = time.perf_counter()
        store = FeatureStore(model, num_workers=args.workers)
        ours = evaluate_sdci(dataset, model, split=args.split, store=store)
        ours_s = time.perf_counter() - start

        counting = CountingModel(model)
        start = time.perf_counter()
        naive = naive_sdci(dataset, counting, split=args.split)
        naive_s = time.perf_counter() - start

    same = all(abs(ours.metrics[k] - naive[k]) < 1e-9 or (ours.metrics[k] != ours.metrics[k])
               for k in naive)
    print(f"sDCI {args.split} on {args.data} with {spec} ({args.device})")
    print(f"{'implementation':<28}{'wall s':>9}{'images encoded':>16}{'texts encoded':>15}")
    print(f"{'densecaption (once each)':<28}{ours_s:>9.2f}{ours.encoded_images:>16}{ours.encoded_texts:>15}")
    print(f"{'plain, per test and batch':<28}{naive_s:>9.2f}{counting.images:>16}{counting.texts:>15}")
    print(f"same six numbers: {same}; speed-up {naive_s / ours_s:.1f}x")
    print(json.dumps({"ours_s": round(ours_s, 3), "naive_s": round(naive_s, 3), "ours_images": ours.encoded_images,
                      "ours_texts": ours.encoded_texts, "naive_images": counting.images,
                      "naive_texts": counting.texts, "same": same}))


if __name__ == "__main__":
    main()

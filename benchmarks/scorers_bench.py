"""BLIP and FLAVA heads on sDCI: wall time and work (crops and texts encoded, pairs through a fusion encoder).

    .venv/bin/python benchmarks/scorers_bench.py [--data sample] [--threads 1]

Writes the tiny random BLIP ITM and FLAVA folders to a temporary folder and runs sDCI with each head. An ITC
head encodes each unique crop and text once and scores with one matrix product; an ITM head still encodes
each crop and text once, but every (crop, text) pair the tests compare goes through the fusion encoder
(the "pairs" column), which is where its time goes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densecaption.evaluation.run import evaluate  # noqa: E402
from densecaption.models.registry import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sample")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    import torch

    from densecaption.models.tiny_scorers import init_random_blip_itm, init_random_flava

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        blip, flava = init_random_blip_itm(Path(tmp) / "blip"), init_random_flava(Path(tmp) / "flava")
        for name, spec in (("blip itm", f"hf:{blip}"), ("blip itc", f"hf:{blip}#head=itc"),
                           ("flava itc", f"hf:{flava}"), ("flava itm", f"hf:{flava}#head=itm")):
            model = load_model(spec, device="cpu")
            pairs = _count_pairs(model)
            start = time.perf_counter()
            result = evaluate("sdci", model, args.data, device="cpu")
            rows.append((name, time.perf_counter() - start, result.extra["encoded_images"],
                         result.extra["encoded_texts"], pairs[0]))
    print(f"sDCI on {args.data}, tiny random BLIP / FLAVA (CPU, {torch.get_num_threads()} threads)")
    print(f"{'head':<11}{'wall s':>8}{'crops':>7}{'texts':>7}{'pairs':>8}")
    for name, wall, crops, texts, pairs in rows:
        print(f"{name:<11}{wall:>8.2f}{crops:>7}{texts:>7}{pairs:>8}")
    print("pairs: (crop, text) pairs through a fusion encoder (0 for ITC: one matrix product per score matrix)")
    print("command: .venv/bin/python benchmarks/scorers_bench.py " + " ".join(sys.argv[1:]))


def _count_pairs(model) -> list[int]:
    """Wraps ``pair_scores`` (pair scorers only) to count the pairs it scores; returns the live counter."""
    count = [0]
    inner = getattr(model, "pair_scores", None)
    if inner is not None:
        def counted(image_tokens, input_ids, attention_mask):
            count[0] += len(input_ids)
            return inner(image_tokens, input_ids, attention_mask)

        model.pair_scores = counted
    return count


if __name__ == "__main__":
    main()

"""sDCI: the project's evaluation, its previous path and a plain re-encode-per-test implementation, same data
and model.

    .venv/bin/python benchmarks/sdci_bench.py [--data sample] [--model SPEC | --backend hf] [--workers N]
        [--skip-naive] [--crop-cache DIR]

Without --model it writes a random-initialised ViT-B-32 (full size; open_clip, or transformers with
--backend hf) to a temporary folder. Rows: ``fast`` (texts batched by token length, crops preprocessed to
tensors in the loader workers), ``previous`` (texts batched in file order, PIL crops preprocessed in the main
process) and ``plain`` (benchmarks/naive_sdci.py, the reference script's shape). Prints wall time, images and
texts sent through the encoders, text tokens encoded (padding included) against the floor (the unique texts'
own token counts), and checks all give the same six numbers. Numbers from random weights are labelled so.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.naive_sdci import CountingModel, PreviousImages, naive_sdci  # noqa: E402
from densecaption.data.dci import DCIDataset  # noqa: E402
from densecaption.evaluation.features import FeatureStore  # noqa: E402
from densecaption.evaluation.sdci import evaluate_sdci  # noqa: E402
from densecaption.models.registry import load_model  # noqa: E402


def run_store(dataset, model, scorer, args, *, sort_texts: bool, crop_cache=None) -> dict:
    """One evaluation with fresh counters; its wall time, counts and numbers."""
    model.sort_texts = sort_texts
    model.encoded_text_tokens = model.text_token_floor = 0
    store = FeatureStore(scorer, num_workers=args.workers, crop_cache=crop_cache)
    start = time.perf_counter()
    result = evaluate_sdci(dataset, scorer, split=args.split, store=store)
    return {"s": time.perf_counter() - start, "images": result.encoded_images, "texts": result.encoded_texts,
            "tokens": model.encoded_text_tokens, "floor": model.text_token_floor, "metrics": result.metrics,
            "decode_s": store.decode_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sample")
    parser.add_argument("--model", default=None)
    parser.add_argument("--backend", default="open_clip", choices=("open_clip", "hf"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--skip-naive", action="store_true", help="Leave out the slow plain implementation.")
    parser.add_argument("--crop-cache", type=Path, default=None, help="Also time the fast path reading crops "
                        "from this crop cache (filled on the first pass).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = args.model
        if spec is None:
            from densecaption.models.random_init import write_hf_clip, write_open_clip

            folder = Path(tmp) / "vit-b-32"
            (write_open_clip if args.backend == "open_clip" else write_hf_clip)("ViT-B-32", folder)
            spec = f"open_clip:local-dir:{folder}" if args.backend == "open_clip" else f"hf:{folder}"
        model = load_model(spec, device=args.device)
        dataset = DCIDataset.open(args.data)
        rows = {"previous": run_store(dataset, model, PreviousImages(model), args, sort_texts=False),
                "fast": run_store(dataset, model, model, args, sort_texts=True)}
        if args.crop_cache is not None:
            from densecaption.evaluation.crop_cache import CropCache

            cache = CropCache.for_model(args.crop_cache, model)
            rows["fast + crop cache"] = run_store(dataset, model, model, args, sort_texts=True, crop_cache=cache)
        if not args.skip_naive:
            counting = CountingModel(model)
            model.sort_texts = False
            start = time.perf_counter()
            naive = naive_sdci(dataset, counting, split=args.split)
            rows["plain, per test and batch"] = {"s": time.perf_counter() - start, "images": counting.images,
                                                 "texts": counting.texts, "tokens": None, "floor": None,
                                                 "metrics": naive, "decode_s": None}

    reference = rows["previous"]["metrics"]
    same = all(r["metrics"][k] == reference[k] or (r["metrics"][k] != r["metrics"][k] and reference[k] != reference[k])
               for r in rows.values() for k in reference)
    label = " (random weights)" if model.weights == "random" else ""
    print(f"sDCI {args.split} on {args.data} with {spec}{label} ({args.device}, {args.workers} workers)")
    print(f"{'implementation':<27}{'wall s':>8}{'images enc.':>13}{'texts enc.':>12}{'text tokens':>13}"
          f"{'token floor':>13}")
    for name, r in rows.items():
        tokens = "" if r["tokens"] is None else r["tokens"]
        floor = "" if r["floor"] is None else r["floor"]
        print(f"{name:<27}{r['s']:>8.2f}{r['images']:>13}{r['texts']:>12}{tokens:>13}{floor:>13}")
    fast, previous = rows["fast"], rows["previous"]
    print(f"same six numbers: {same}; fast vs previous {previous['s'] / fast['s']:.2f}x; text tokens "
          f"{fast['tokens'] / max(fast['floor'], 1):.3f}x the floor (previous "
          f"{previous['tokens'] / max(previous['floor'], 1):.3f}x)")
    print(json.dumps({name: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "metrics"}
                      for name, r in rows.items()} | {"same": same}))


if __name__ == "__main__":
    main()

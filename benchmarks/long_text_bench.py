"""sdci-full: work and wall time per way of reading long texts, on the same data and model.

    .venv/bin/python benchmarks/long_text_bench.py [--data sample] [--arch ViT-B-32] [--tiny]

Writes a random open_clip model (77 tokens) and a random 248-token transformers CLIP (Long-CLIP-style) to a
temporary folder and runs sdci-full with each ``#long=`` mode. Counts the crops and texts the encoders saw,
against what encoding every entry's text (or chunks) per use would send (the floor is one pass per unique
crop and chunk).
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--tiny", action="store_true", help="shrink both models (a quick run)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        from densecaption.models.long_clip import init_random_long_clip
        from densecaption.models.open_clip_backend import init_random_open_clip

        clip = init_random_open_clip(args.arch, Path(tmp) / "clip", tiny=args.tiny)
        long = init_random_long_clip("long-clip", Path(tmp) / "long", tiny=args.tiny)
        modes = ("truncate", "chunk-mean", "chunk-max", "parts-mean")
        specs = [f"open_clip:local-dir:{clip}#long={m}" for m in modes]
        specs.append(f"hf:{long}")
        for spec in specs:
            model = load_model(spec, device=args.device)
            start = time.perf_counter()
            result = evaluate("sdci-full", model, args.data, device=args.device)
            wall = time.perf_counter() - start
            x = result.extra
            chunks_per_use = _chunk_uses(model, args.data)
            rows.append({"model": spec.rsplit("/", 1)[-1], "window": x["window"], "wall_s": round(wall, 2),
                         "entries": x["entries"], "crops": x["encoded_images"], "texts": x["encoded_texts"],
                         "per_use": chunks_per_use, "cut": x["tokens"]["cut"], "full_scm": result.metrics["full_scm"]})
    print(f"sdci-full test on {args.data}, random {args.arch}{' (tiny)' if args.tiny else ''} and a random "
          f"248-token CLIP ({args.device})")
    head = f"{'model':<26}{'window':>7}{'wall s':>8}{'entries':>8}{'crops':>7}{'chunks':>8}{'per use':>9}{'cut':>5}"
    print(head)
    for r in rows:
        print(f"{r['model']:<26}{r['window']:>7}{r['wall_s']:>8.2f}{r['entries']:>8}{r['crops']:>7}{r['texts']:>8}"
              f"{r['per_use']:>9}{r['cut']:>5}")
    print("chunks: unique texts and chunks encoded; per use: chunks a per-test encoder would send "
          "(each entry's full text and summary in SCM, SCM/8 and retrieval)")
    print(json.dumps(rows))


def _chunk_uses(model, data: str) -> int:
    """Chunks sent if every test encoded its texts anew: each entry's full-text chunks and summary once in
    SCM and once in SCM/8, a base entry's once more for retrieval."""
    from densecaption.data.dci import DCIDataset
    from densecaption.data.findings import SkipLog
    from densecaption.data.sdci import records_with_sizes
    from densecaption.evaluation.benchmarks.sdci_full import SdciFullConfig, full_entries

    chunks = getattr(model, "chunks", lambda text: [text])
    total = 0
    for record, size in records_with_sizes(DCIDataset.open(data), "test", SkipLog()):
        for e in full_entries(record, size, SdciFullConfig()):
            total += (len(chunks(e.full)) + 1) * (3 if e.is_base else 2)
    return total


if __name__ == "__main__":
    main()

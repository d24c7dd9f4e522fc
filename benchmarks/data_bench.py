"""Speed of the DCI data layer on a synthetic release: read, validate and count tokens.

    .venv/bin/python benchmarks/data_bench.py [--records 2000] [--masks 12]

Prints records per second, bytes read, and the peak Python memory while streaming (which should not grow
with the number of records).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densecaption.data.dci import DCIDataset  # noqa: E402
from densecaption.data.stats import compute_stats  # noqa: E402
from densecaption.data.validate import validate_dataset  # noqa: E402
from densecaption.tokens import ClipTokenCounter  # noqa: E402
from tests.conftest import make_doc, mask_entry, write_dataset  # noqa: E402


def synthetic_doc(masks: int) -> dict:
    doc = make_doc()
    size = (400, 300)
    doc["mask_data"] = {str(i): mask_entry(i, -1, [], (i, i, 200 + i, 250), size, f"thing {i}",
                                           "a fairly long caption about the region " * 4) for i in range(masks)}
    doc["mask_keys"] = list(doc["mask_data"])
    doc["summaries"] = {"base": ["a summary of the whole photo with several words"] * 10}
    doc["negatives"] = {"base": {k: ["a negative caption"] * 3 for k in ("basic", "layout", "swaps")}}
    doc["clip_scores"] = {}
    return doc


def measure(label: str, n: int, fn) -> tuple[str, float, float]:
    """Records per second (untraced run), then the peak traced memory of a second run."""
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return label, n / elapsed, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--masks", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        doc = synthetic_doc(args.masks)
        write_dataset(Path(tmp), {f"{i}-data.json": doc for i in range(args.records)})
        ds = DCIDataset.open(tmp)
        size = sum(p.stat().st_size for p in ds.annotation_dir.glob("*.json"))
        count = ClipTokenCounter()
        rows = [
            measure("read (stream)", args.records, lambda: sum(1 for _ in ds.iter_images())),
            measure("stats (CLIP tokens)", args.records, lambda: compute_stats(ds.iter_images(), count)),
            measure("validate (pixels)", args.records, lambda: validate_dataset(tmp)),
        ]
    print(f"{args.records} records x {args.masks} masks, {size / 2**20:.1f} MiB of JSON in complete/")
    print(f"{'step':<22}{'records/s':>12}{'peak MiB':>12}")
    for label, rate, peak in rows:
        print(f"{label:<22}{rate:>12.0f}{peak:>12.1f}")
    print(json.dumps({label: {"records_per_s": round(rate, 1), "peak_mib": round(peak, 2)}
                      for label, rate, peak in rows}))


if __name__ == "__main__":
    main()

"""Speed of ``densecaption view`` on a synthetic release: the index's first scan and its cached reopen, a
search, and a record page with many SA-1B-sized masks (each mask decoded once).

    .venv/bin/python benchmarks/web_bench.py [--records 8000] [--masks 100]

Prints a table: seconds, files parsed and masks decoded per step.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient  # noqa: E402

from densecaption.data.dci import DCIDataset  # noqa: E402
from densecaption.web.index import RecordIndex  # noqa: E402
from densecaption.web.view import ViewConfig, create_view_app  # noqa: E402
from tests.conftest import make_doc, mask_entry, write_dataset  # noqa: E402


def big_record(masks: int, size: tuple[int, int] = (2250, 1500)) -> dict:
    """A record with ``masks`` rectangular masks on an SA-1B-sized photo."""
    doc = make_doc(size)
    w, h = size
    doc["mask_data"] = {str(i): mask_entry(i, -1, [], (10 * i % (w - 300), 7 * i % (h - 300),
                                                       10 * i % (w - 300) + 300, 7 * i % (h - 300) + 300),
                                           size, f"thing {i}", "a region") for i in range(1, masks + 1)}
    doc["mask_keys"] = list(doc["mask_data"])
    for key in ("summaries", "negatives", "clip_scores"):
        doc.pop(key)
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=8000)
    parser.add_argument("--masks", type=int, default=100)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        docs = {f"{i}-data.json": make_doc() for i in range(args.records - 1)}
        docs["big-data.json"] = big_record(args.masks)
        inner = write_dataset(Path(tmp) / "d", docs, photo_size=(400, 300))
        big = json.loads((inner / "complete" / "big-data.json").read_text())
        big["image"] = "big.jpg"
        (inner / "complete" / "big-data.json").write_text(json.dumps(big))
        from PIL import Image

        Image.new("RGB", (2250, 1500), "grey").save(inner / "photos" / "big.jpg")
        dataset = DCIDataset.open(inner)
        cache = Path(tmp) / "cache"
        for label in ("index: first scan", "index: reopen (cached)"):
            start = time.perf_counter()
            index = RecordIndex.open(dataset, cache)
            rows.append((label, time.perf_counter() - start, index.parsed, 0))
        start = time.perf_counter()
        found = index.filter(query="lid")
        rows.append((f"search 'lid' ({len(found)} hits, first search)", time.perf_counter() - start, 0, 0))
        app = create_view_app(ViewConfig(str(inner), cache_dir=cache))
        client = TestClient(app)
        start = time.perf_counter()
        assert client.get("/image/big-data").status_code == 200
        for i in range(1, args.masks + 1):
            for kind in ("outline", "fill"):
                assert client.get(f"/image/big-data/mask/{i}/{kind}.png").status_code == 200
        rows.append((f"record page + {2 * args.masks} mask PNGs (2250x1500)", time.perf_counter() - start, 0,
                     app.state.masks.decoded))
    print(f"| step ({args.records} records) | seconds | files parsed | masks decoded |")
    print("| --- | --- | --- | --- |")
    for label, seconds, parsed, decoded in rows:
        print(f"| {label} | {seconds:.3f} | {parsed} | {decoded} |")
    print(f"\n.venv/bin/python benchmarks/web_bench.py --records {args.records} --masks {args.masks}")


if __name__ == "__main__":
    main()

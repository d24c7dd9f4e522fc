"""Speed of the real-data commands on local stand-ins: a download from a 127.0.0.1 server (whole, and
dropped halfway then resumed), `data photos` from an SA-1B-layout tar, and `data export` at two dataset
sizes (peak Python memory should not grow with the number of records).

    .venv/bin/python benchmarks/realdata_bench.py [--mib 64] [--records 100 400]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tarfile
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densecaption.data.dci import DCIDataset  # noqa: E402
from densecaption.data.download import FetchConfig, fetch  # noqa: E402
from densecaption.data.export import export  # noqa: E402
from densecaption.data.findings import SkipLog  # noqa: E402
from densecaption.data.photos import fill_photos  # noqa: E402
from tests.conftest import make_doc, write_dataset  # noqa: E402
from tests.http_files import FileServer  # noqa: E402


def no_progress(name, total=None):
    return lambda n=1: None


def timed(fn) -> tuple[float, float]:
    """(seconds, peak traced Python MiB) of one run."""
    tracemalloc.start()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="Size of the downloaded file.")
    parser.add_argument("--records", type=int, nargs="+", default=[100, 400])
    args = parser.parse_args()
    import datasets  # noqa: F401  imported before any measurement: import-time memory is not the run's
    import pyarrow.parquet  # noqa: F401

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        payload = os.urandom(args.mib << 20)
        sha = hashlib.sha256(payload).hexdigest()
        server = FileServer({"/f.tar.gz": payload})
        try:
            for label, drop in (("download (whole)", None), ("download (dropped at 50%, resumed)", len(payload) // 2)):
                if drop:
                    server.drop_after["/f.tar.gz"] = drop
                dest = tmp / f"dl-{bool(drop)}"
                seconds, peak = timed(lambda: fetch(f"{server.url}/f.tar.gz", dest, sha256=sha,
                                                    config=FetchConfig(wait_s=0)))
                assert dest.read_bytes() == payload
                rows.append((label, f"{args.mib / seconds:,.0f} MiB/s", f"{peak:.1f}"))
        finally:
            server.close()

        for n in args.records:
            root = tmp / f"dci-{n}"
            inner = write_dataset(root, {f"{i}-data.json": make_doc(image=f"sa_{i}.jpg") for i in range(n)},
                                  folder="annotations")
            tar_path = tmp / f"sa-{n}.tar"
            with tarfile.open(tar_path, "w") as tar:  # SA-1B layout; as many unnamed photos as named ones
                for i in range(2 * n):
                    data = (inner / "photos" / f"sa_{i}.jpg").read_bytes() if i < n else b"x" * 60_000
                    info = tarfile.TarInfo(f"./sa_{i + (0 if i < n else 10 ** 6)}.jpg")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            for photo in (inner / "photos").iterdir():
                photo.unlink()
            dataset = DCIDataset.open(root, source="annotations")
            seconds, peak = timed(lambda: fill_photos(dataset, tar_path, no_progress))
            mib = tar_path.stat().st_size / 2**20
            rows.append((f"data photos, {n} named of {2 * n} in a {mib:.0f} MiB tar", f"{n / seconds:,.0f} photos/s",
                         f"{peak:.1f}"))
            for fmt in ("parquet", "hf"):
                out = tmp / f"out-{n}-{fmt}"
                seconds, peak = timed(lambda: export(DCIDataset.open(root, source="annotations"), out, fmt,
                                                     split=None, skip=SkipLog(strict=True), stage=no_progress))
                rows.append((f"data export --format {fmt}, {n} records", f"{n / seconds:,.0f} records/s",
                             f"{peak:.1f}"))
    print(f"$ {' '.join(['.venv/bin/python', *sys.argv])}")
    print("| step | speed | peak Python MiB |")
    print("| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

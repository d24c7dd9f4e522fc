"""Throughput of generation jobs against a local fake server with a fixed latency, versus requests in flight.

    .venv/bin/python benchmarks/generation_bench.py [--latency 0.05] [--items 128] [--concurrency 1 8 32]

Each run goes the whole real path: the openai: backend over httpx to an OpenAI-compatible server on
127.0.0.1 (``benchmarks/fake_server.py``, answering after ``--latency`` seconds), through the job runner with
its append-only log. With a server that answers in constant time, throughput should grow almost linearly
with concurrency until the client or the server runs out of threads; the table shows items per second, the
speed-up over one request at a time, and the share of the ideal (concurrency / latency) reached.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1])]

from benchmarks.fake_server import FakeChatServer  # noqa: E402
from densecaption.generation.backends import BackendOptions, load_backend  # noqa: E402
from densecaption.generation.jobs import Job, JobLog, JobRunner, RunnerConfig  # noqa: E402


def measure(url: str, concurrency: int, items: int, folder: Path) -> tuple[float, int]:
    """Seconds to run ``items`` one-request jobs at ``concurrency``, and how many succeeded."""
    backend = load_backend(f"openai:{url}#bench", BackendOptions(timeout=30, max_connections=concurrency))
    log = JobLog(folder / f"c{concurrency}.jsonl", "bench", {"concurrency": concurrency})
    runner = JobRunner(log, RunnerConfig(concurrency=concurrency))
    jobs = [Job(f"item-{i}", f"describe item {i}") for i in range(items)]

    def work(prompt, ctx):
        return ctx.call(backend.generate, prompt, max_tokens=32, seed=ctx.next_seed())

    start = time.perf_counter()
    report = runner.run(jobs, work)
    seconds = time.perf_counter() - start
    backend.close()
    return seconds, report.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the fake server takes per request")
    parser.add_argument("--items", type=int, default=128, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    rows = []
    with FakeChatServer(latency=args.latency) as server, tempfile.TemporaryDirectory() as tmp:
        for concurrency in args.concurrency:
            seconds, ok = measure(server.url, concurrency, args.items, Path(tmp))
            rows.append((concurrency, ok, seconds, ok / seconds))
    base = rows[0][3]
    print(f"fake server latency {args.latency * 1000:.0f} ms, {args.items} requests per row")
    print(f"{'in flight':>9}  {'ok':>5}  {'seconds':>8}  {'items/s':>8}  {'speed-up':>8}  {'of ideal':>8}")
    for concurrency, ok, seconds, rate in rows:
        ideal = concurrency / args.latency
        print(f"{concurrency:>9}  {ok:>5}  {seconds:>8.2f}  {rate:>8.1f}  {rate / base:>7.1f}x  {rate / ideal:>7.0%}")


if __name__ == "__main__":
    main()

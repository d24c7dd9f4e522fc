"""Where the test suite's time goes, from pytest logs run with ``--durations=N``.

    python -m benchmarks.suite_time LOG [LOG ...]

Prints, per log, the tests counted and the wall time of pytest's last line, then the slowest listed
durations (setup and call of one test added up) and their sums per test file, so a change to the suite (e.g.
``-n 2 --dist loadfile``, or cheaper slow tests) can be compared log against log. A log made on a busy
machine is noisy: compare logs made under the same load. The command that made the table is printed first.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

_DURATION = re.compile(r"^\s*([\d.]+)s (setup|call|teardown)\s+(.+?)\s*$")
_SUMMARY = re.compile(r"=* ?(.*?) in ([\d.]+)s")
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|error|errors|xfailed|xpassed)")


@dataclass
class SuiteLog:
    """One pytest log: test counts, wall seconds and the listed durations per test id (phases added up)."""

    counts: dict[str, int] = field(default_factory=dict)
    wall_s: float | None = None
    durations: dict[str, float] = field(default_factory=dict)


def parse(text: str) -> SuiteLog:
    log = SuiteLog()
    per_test: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        match = _DURATION.match(line)
        if match:
            per_test[match.group(3)] += float(match.group(1))
            continue
        summary = _SUMMARY.search(line)
        if summary and _COUNT.search(summary.group(1)):
            log.counts = {kind: int(n) for n, kind in _COUNT.findall(summary.group(1))}
            log.wall_s = float(summary.group(2))
    log.durations = dict(per_test)
    return log


def by_file(durations: dict[str, float]) -> dict[str, float]:
    files: dict[str, float] = defaultdict(float)
    for test, seconds in durations.items():
        files[test.split("::")[0]] += seconds
    return dict(sorted(files.items(), key=lambda kv: -kv[1]))


def main(paths: list[str], top: int = 15) -> None:
    print("command: python -m benchmarks.suite_time " + " ".join(paths))
    for path in paths:
        log = parse(Path(path).read_text(errors="replace"))
        counts = ", ".join(f"{n} {k}" for k, n in log.counts.items())
        wall = f"{log.wall_s:.0f} s" if log.wall_s is not None else "?"
        listed = sum(log.durations.values())
        print(f"\n{path}: {counts}; wall {wall}; {len(log.durations)} listed tests, {listed:.0f} s of them")
        print(f"| {'seconds':>8} | test (setup + call) |\n| ---: | --- |")
        for test, seconds in sorted(log.durations.items(), key=lambda kv: -kv[1])[:top]:
            print(f"| {seconds:8.1f} | {test} |")
        print(f"\n| {'seconds':>8} | file (listed tests only) |\n| ---: | --- |")
        for file, seconds in list(by_file(log.durations).items())[:top]:
            print(f"| {seconds:8.1f} | {file} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])

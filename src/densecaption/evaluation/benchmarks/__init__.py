"""The registered benchmarks: one module in this folder and one entry below each.

Each target is a ``Benchmark`` subclass (see ``densecaption.evaluation.benchmark``); ``bench TASK`` and
``report TASK`` are built from these entries, and the contract tests run every one of them.
"""

from __future__ import annotations

from densecaption.registry import Registry

BENCHMARKS: Registry = Registry("benchmark")
BENCHMARKS.register("sdci", "densecaption.evaluation.benchmarks.sdci:SDCI",
                    summary="the six sDCI tests of the DCI paper (subcrop-caption matching and negatives)")
BENCHMARKS.register("sdci-full", "densecaption.evaluation.benchmarks.sdci_full:SDCIFull",
                    summary="sDCI's entries with the full DCI texts beyond 77 tokens: SCM, retrieval, by length "
                            "(this project's design)")

"""The benchmark interface: what every registered benchmark provides, so that one CLI command, one Python
function (``evaluate``), one result type and one report serve them all.

A benchmark is a name, a frozen config dataclass (its fields become ``bench TASK`` options; see
``option``), the metric keys with their display labels, the published rows to compare with, how to open
its data, and ``run(model, config, data, context) -> BenchmarkOutput``. Adding a benchmark is one module
defining such a class plus one entry in ``densecaption.evaluation.benchmarks.BENCHMARKS``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from densecaption.data.findings import SkipLog
from densecaption.errors import UserError


def option(help: str, *, choices: tuple[str, ...] = (), minimum: int | float | None = None,
           cli: bool = True) -> dict[str, Any]:
    """Metadata for a config field: its ``--help`` text, allowed values, lower bound, and whether it is
    offered on the command line at all (``cli=False``: fixed by the protocol, still recorded)."""
    return {"help": help, "choices": choices, "minimum": minimum, "cli": cli}


def check_config(config: Any) -> None:
    """Refuse values outside a field's ``choices`` or below its ``minimum`` (named as the CLI option)."""
    for f in dataclasses.fields(config):
        value, meta = getattr(config, f.name), f.metadata
        flag = "--" + f.name.replace("_", "-")
        if meta.get("choices") and value not in meta["choices"]:
            raise UserError(f"{flag} {value!r}: choose from {', '.join(meta['choices'])}")
        if meta.get("minimum") is not None and value is not None and value < meta["minimum"]:
            raise UserError(f"{flag} {value}: must be at least {meta['minimum']}")


@dataclass(frozen=True)
class Metric:
    key: str
    label: str


@dataclass(frozen=True)
class PublishedRow:
    """A row of a paper's table: the model as the paper names it, its numbers, and where they come from."""

    model: str
    metrics: Mapping[str, float]
    source: str


@dataclass(frozen=True)
class BenchmarkData:
    """Opened benchmark data: the path as given, a SHA-256 that identifies its content, the split, and the
    benchmark's own handle (e.g. a ``DCIDataset``)."""

    path: str
    sha256: str
    split: str
    handle: Any


@dataclass
class RunContext:
    """What a run needs besides model, config and data; none of it changes a number.

    ``progress(stage, total)`` returns an ``advance(n)`` callback; ``workers`` decode photos in processes;
    ``cache_dir`` holds an embedding cache for this model; ``processes`` is the size of an accelerate group;
    ``crop_cache`` is the root of a crop cache (docs/speed.md): crops decoded once, read back resized.
    """

    skip: SkipLog = field(default_factory=SkipLog)
    progress: Callable[[str, int | None], Callable[[int], None]] = lambda stage, total: (lambda n: None)
    workers: int = 0
    cache_dir: Any = None
    processes: int = 1
    crop_cache: Path | None = None

    def crop_cache_for(self, model: Any) -> Any:
        """The ``CropCache`` of ``model``'s preprocessing under ``crop_cache``, or None when no root is set;
        benchmarks hand it to their ``FeatureStore`` so crops are decoded from full photos only once."""
        if self.crop_cache is None:
            return None
        from densecaption.evaluation.crop_cache import CropCache

        return CropCache.for_model(Path(self.crop_cache), model)


@dataclass
class BenchmarkOutput:
    """What ``run`` returns: metric -> percentage, metric -> entries counted, and task-specific result keys
    (written after ``counts`` in the result file, in this order)."""

    metrics: dict[str, float]
    counts: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)


class Benchmark(ABC):
    """One evaluation task. Subclasses set the class attributes and implement ``open`` and ``run``."""

    name: ClassVar[str]
    title: ClassVar[str]
    """A human name for table titles, e.g. 'sDCI'."""
    config_class: ClassVar[type]
    metrics: ClassVar[tuple[Metric, ...]]
    published: ClassVar[tuple[PublishedRow, ...]] = ()
    data_help: ClassVar[str] = "The benchmark's data folder."
    default_split: ClassVar[str] = "test"
    uses_splits: ClassVar[bool] = True
    uses_crop_cache: ClassVar[bool] = False
    """True when ``run`` reads photo crops through ``context.crop_cache_for`` (the CLI then offers --crop-cache)."""

    @abstractmethod
    def open(self, path: str, split: str) -> BenchmarkData:
        """Open the data at ``path`` (bad data raises ``UserError``/``DataError`` with the place and reason)."""

    @abstractmethod
    def run(self, model: Any, config: Any, data: BenchmarkData, context: RunContext) -> BenchmarkOutput:
        """Score ``model`` on ``data``; pure of file output (the caller writes the result)."""

    def mode(self, config: Any, model: Any = None) -> str:
        """The result's ``mode`` (part of its file name); the config's ``mode`` field when it has one. ``model``
        is the loaded model, for a task whose mode is how the model reads (sdci-full)."""
        return str(getattr(config, "mode", "default"))

    def result_config(self, config: Any) -> dict[str, Any]:
        """The settings recorded in the result (two runs with equal settings are the same run)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()
                if k != "mode"}

    def make_config(self, **values: Any) -> Any:
        """The config from keyword values (unknown keys refused), checked against its fields' metadata."""
        known = {f.name for f in dataclasses.fields(self.config_class)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"{self.name}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        config = self.config_class(**values)
        check_config(config)
        return config

    def metric_labels(self) -> dict[str, str]:
        return {m.key: m.label for m in self.metrics}

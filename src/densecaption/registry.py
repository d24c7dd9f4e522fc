"""One generic registry for every plug-in point: model backends, text generators, detectors, tiny random
models, text-to-image families, CompBench scorers and categories, benchmarks.

An entry maps a name to a target: either a lazy ``"package.module:attr"`` string, imported only when the
entry is first used (so listing what is registered, or building the CLI's help, loads no model code), or
the object itself (registered directly or with the ``@registry.register(...)`` decorator). Each entry has
a one-line summary for ``densecaption ls`` and optional metadata (small facts a caller needs before loading,
such as whether a spec string must name a model). An unknown name is a ``UserError`` with a did-you-mean
suggestion.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from densecaption.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered name: its target (a ``"module:attr"`` string or the object), summary and metadata."""

    name: str
    target: Any
    summary: str = ""
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def lazy(self) -> bool:
        return isinstance(self.target, str)


def import_target(target: str) -> Any:
    """The object a ``"package.module:attr"`` (or ``"module:attr.sub"``) string names."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"registry target {target!r}: expected 'package.module:attr'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Names -> plug-ins of one kind (``kind`` is how errors and listings name them, e.g. 'model backend')."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, T] = {}

    def register(self, name: str, target: Any = None, *, summary: str = "", **meta: Any):
        """Add ``name``. With a target (a ``"module:attr"`` string or an object) it is registered at once;
        without one, returns a decorator that registers what it decorates and gives it back unchanged.
        A name registered twice is a programming error (``ValueError``), not a silent replacement."""
        if target is None:
            def decorate(obj: T) -> T:
                self.register(name, obj, summary=summary, **meta)
                return obj
            return decorate
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if not summary and not isinstance(target, str):
            summary = (getattr(target, "__doc__", None) or "").strip().split("\n")[0]
        self._entries[name] = Entry(name, target, summary, MappingProxyType(dict(meta)))
        return None

    def entry(self, name: str) -> Entry:
        """The entry for ``name`` without importing anything; unknown names raise with a suggestion."""
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(self.unknown_message(name)) from None

    def get(self, name: str) -> T:
        """The registered object (a lazy target is imported on first use and kept)."""
        if name not in self._loaded:
            entry = self.entry(name)
            self._loaded[name] = import_target(entry.target) if entry.lazy else entry.target
        return self._loaded[name]

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(self._entries)

    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries.values())

    def choices(self, sep: str = ", ") -> str:
        """The names joined for a help text or an error message."""
        return sep.join(self._entries)

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {self.choices()})"

    def find(self, predicate: Callable[[Entry], bool]) -> Entry | None:
        """The first entry whose metadata or name satisfies ``predicate`` (nothing is imported)."""
        return next((e for e in self._entries.values() if predicate(e)), None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"

"""Findings about data files: where (file and JSON Pointer), what, and how bad."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

from densecaption.errors import DataError

Severity = Literal["error", "warning"]


def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON Pointer to the given path ("" is the whole document)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass(frozen=True)
class Finding:
    file: str
    pointer: str
    reason: str
    severity: Severity = "error"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def message(self) -> str:
        """``file#pointer: reason``, without the severity: what an error line says after its own prefix."""
        where = f"{self.file}#{self.pointer}" if self.pointer else self.file
        return f"{where}: {self.reason}"

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


class RecordError(DataError):
    """A record that cannot be used as it is; carries every error found in it."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        first = findings[0]
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        super().__init__(f"{first.message}{more}")  # the CLI adds "error:" (or "skipped") itself


@dataclass
class SkipLog:
    """What a loading command skipped. With ``strict`` the first bad record stops the command instead.

    ``on_skip`` is called once per skipped record (the CLI prints one warning line there).
    """

    strict: bool = False
    on_skip: Callable[[RecordError], None] | None = None
    skipped: list[RecordError] = field(default_factory=list)

    def skip(self, error: RecordError) -> None:
        if self.strict:
            raise error
        self.skipped.append(error)
        if self.on_skip is not None:
            self.on_skip(error)

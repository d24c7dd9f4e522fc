"""Prompt templates: the built-in ones, or a user's own from a JSON file (``generate ... --prompts FILE``).

A prompts file is one JSON object, template name -> text, e.g. the DCI paper's appendix A prompts::

    {"first_image": "Summarise this description in about {words} words ...", "multi": "... {n} ... {words} ..."}

Names are those of the command (``SUMMARY_PLACEHOLDERS``, ``NEGATIVE_PLACEHOLDERS``); a name left out keeps
its built-in text. A text must hold every placeholder its built-in template uses (``{words}``, ``{n}``) and
no other ``{name}``; other braces are left as they are. What was used (the file, its sha256 and every text)
goes into the job log's header, the run's manifest, so a log is never resumed with other prompts.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from densecaption.errors import UserError

SUMMARY_PLACEHOLDERS: dict[str, frozenset[str]] = {
    "first_image": frozenset({"words"}), "first_region": frozenset({"words"}),
    "shorten_a_little": frozenset(), "shorten_more": frozenset(), "multi": frozenset({"n", "words"}),
}
"""Template names of ``generate summaries`` -> the placeholders each must hold."""
NEGATIVE_PLACEHOLDERS: dict[str, frozenset[str]] = {
    "basic": frozenset(), "layout": frozenset(), "swaps": frozenset(),
    "shorten_a_little": frozenset(), "shorten_more": frozenset(),
}
"""Template names of ``generate negatives`` -> the placeholders each must hold (the reduce loop's too)."""

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill(template: str, **values: Any) -> str:
    """``template`` with each ``{name}`` of ``values`` replaced; other braces stay (no ``str.format`` escaping)."""
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


@dataclass(frozen=True)
class PromptSet:
    """The templates one run uses, and where they came from (``file`` None: the built-in ones)."""

    templates: Mapping[str, str]
    version: str
    """The built-in prompts' version (bumped when their wording changes)."""
    file: str | None = None
    sha256: str | None = None
    given: tuple[str, ...] = field(default=())
    """The names the file set (the rest are built-in)."""

    def __getitem__(self, name: str) -> str:
        return self.templates[name]

    def manifest(self) -> str | dict[str, Any]:
        """What the job log's header records: the built-in version, or the file, its hash and every text."""
        if self.file is None:
            return self.version
        return {"file": self.file, "sha256": self.sha256, "given": list(self.given), "builtin": self.version,
                "templates": dict(self.templates)}


def load_prompts(path: Path | str, builtin: Mapping[str, str], placeholders: Mapping[str, frozenset[str]],
                 version: str) -> PromptSet:
    """The built-in templates with those of the JSON file at ``path`` put in their place.

    Raises ``UserError`` (one line naming the file and the key) for a file that cannot be read or is not a
    JSON object of strings, an unknown name, a missing placeholder or an unknown one.
    """
    file = Path(path).expanduser()
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise UserError(f"--prompts {path}: cannot read it ({e.strerror or e})") from None
    try:
        given = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise UserError(f"--prompts {path}: not JSON ({e})") from None
    if not isinstance(given, dict) or not given:
        raise UserError(f"--prompts {path}: expected a JSON object of template name -> text "
                        f"(names: {', '.join(placeholders)})")
    templates = dict(builtin)
    for name, text in given.items():
        templates[name] = _checked(path, name, text, placeholders)
    return PromptSet(templates, version, str(file.resolve()), hashlib.sha256(raw).hexdigest(), tuple(given))


def _checked(path: Path | str, name: str, text: Any, placeholders: Mapping[str, frozenset[str]]) -> str:
    where = f"--prompts {path}, key {name!r}"
    if name not in placeholders:
        raise UserError(f"{where}: unknown template name (known here: {', '.join(placeholders)})")
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where}: the template should be a non-empty string")
    found = set(_PLACEHOLDER.findall(text))
    missing = sorted(placeholders[name] - found)
    if missing:
        raise UserError(f"{where}: missing placeholder {', '.join('{' + m + '}' for m in missing)}")
    unknown = sorted(found - placeholders[name])
    if unknown:
        allowed = ", ".join("{" + p + "}" for p in sorted(placeholders[name])) or "none"
        raise UserError(f"{where}: unknown placeholder {', '.join('{' + u + '}' for u in unknown)} "
                        f"(allowed: {allowed})")
    return text

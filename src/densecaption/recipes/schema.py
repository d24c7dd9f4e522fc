"""The recipe format as frozen dataclasses, read from YAML with structural checks (docs/recipes.md).

Loading checks what one file can say about itself: known keys and their types, required keys, scale names,
variable names. What needs a chosen scale and values (substitution, ``foreach``, duplicate ids, cycles,
outputs inside ``${out}``) is checked by :mod:`densecaption.recipes.plan`, and what needs the command tree
(command words, options) by :mod:`densecaption.recipes.commands`. Every error is a ``UserError`` naming the
file, the step and the key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from densecaption.errors import UserError

FULL = "full"  # the default scale: the recipe's vars as written
BUILTINS = ("out", "scale", "recipe")

RECIPE_KEYS = ("name", "title", "paper", "table", "description", "full", "vars", "scales", "steps", "report")
FULL_KEYS = ("hardware", "time", "data", "notes")
SCALE_KEYS = ("vars", "description")
STEP_KEYS = ("id", "scales", "run", "args", "options", "inputs", "outputs", "resume", "shards", "foreach", "after")
REPORT_KEYS = ("id", "scales", "run", "args", "options", "foreach")


@dataclass(frozen=True)
class StepSpec:
    """One step (or report) as written; values may still hold ``${...}`` references."""

    id: str
    run: tuple[str, ...]
    args: tuple[Any, ...] = ()
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    inputs: tuple[Any, ...] = ()
    outputs: tuple[Any, ...] = ()
    resume: Mapping[str, Any] | None = None
    shards: bool = False
    foreach: Mapping[str, Any] | None = None
    after: tuple[str, ...] = ()
    scales: tuple[str, ...] | None = None
    report: bool = False

    def in_scale(self, scale: str) -> bool:
        return self.scales is None or scale in self.scales


@dataclass(frozen=True)
class Recipe:
    """A whole recipe file. ``vars`` are the full variant's values; ``scales`` maps a scale to its overrides."""

    name: str
    title: str
    source: Path
    steps: tuple[StepSpec, ...]
    report: tuple[StepSpec, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    scales: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    paper: str = ""
    table: str = ""
    description: str = ""
    full: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def scale_names(self) -> tuple[str, ...]:
        return (FULL, *[s for s in self.scales if s != FULL])


@dataclass(frozen=True)
class ResolvedStep:
    """A step after substitution and ``foreach``: the exact command line and its declared data."""

    id: str
    words: tuple[str, ...]
    argv: tuple[str, ...]
    resume_argv: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    resumable: bool = False
    shards: bool = False
    report: bool = False
    template: str = ""

    def command_line(self, *, resuming: bool = False) -> str:
        import shlex

        return shlex.join(["densecaption", *self.full_argv(resuming=resuming)])

    def full_argv(self, *, resuming: bool = False) -> tuple[str, ...]:
        """The words, then the arguments and options; the resume options only on a continuation."""
        return (*self.words, *self.argv, *(self.resume_argv if resuming else ()))


# ------------------------------------------------------------------------------------------------- errors
def suggest(name: str, known: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest known name (as the registries suggest), else nothing."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def where(source: Path | str, step: str | None = None, key: str | None = None, report: bool = False) -> str:
    """``FILE: step 'ID', key 'KEY'``: the place an error message starts with."""
    parts = [str(source)]
    if step is not None:
        parts.append(f"{'report' if report else 'step'} {step!r}")
    if key is not None:
        parts.append(f"key {key!r}")
    return ", ".join(parts[:1]) + (": " + ", ".join(parts[1:]) if len(parts) > 1 else "")


def fail(source: Path | str, message: str, *, step: str | None = None, key: str | None = None,
         report: bool = False) -> UserError:
    return UserError(f"{where(source, step, key, report)}: {message}")


# ------------------------------------------------------------------------------------------------- loading
def load_recipe(path: Path | str, *, expect_name: str | None = None) -> Recipe:
    """Read and check one recipe file; ``expect_name`` (a shipped recipe's file stem) must equal its ``name``."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such recipe file") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).split("\n")[0]
        raise UserError(f"{path}{at}: not valid YAML ({problem})") from None
    return parse_recipe(doc, path, expect_name=expect_name)


def parse_recipe(doc: Any, source: Path, *, expect_name: str | None = None) -> Recipe:
    """A :class:`Recipe` from a parsed YAML document, with the structural checks."""
    if not isinstance(doc, dict):
        raise fail(source, "a recipe is a YAML mapping (name, title, vars, scales, steps, report)")
    _known_keys(doc, RECIPE_KEYS, source)
    for key in ("name", "title", "steps"):
        if key not in doc:
            raise fail(source, f"the required key {key!r} is missing")
    name = _text(doc["name"], source, key="name")
    if expect_name is not None and name != expect_name:
        raise fail(source, f"name {name!r} must equal the file name {expect_name!r}", key="name")
    title = _text(doc["title"], source, key="title")
    if "\n" in title.strip():
        raise fail(source, "the title is one line", key="title")
    variables = _mapping(doc.get("vars") or {}, source, key="vars")
    for var in variables:
        _var_name(var, source, "vars")
    scales = _scales(doc.get("scales") or {}, variables, source)
    full = _mapping(doc.get("full") or {}, source, key="full")
    _known_keys(full, FULL_KEYS, source, prefix="full.")
    steps = _step_list(doc["steps"], source, report=False)
    if not steps:
        raise fail(source, "a recipe needs at least one step", key="steps")
    reports = _step_list(doc.get("report") or [], source, report=True)
    known_scales = (FULL, *scales)
    for spec in (*steps, *reports):
        for scale in spec.scales or ():
            if scale not in known_scales:
                raise fail(source, f"unknown scale {scale!r}{suggest(scale, known_scales)} (known: "
                                   f"{', '.join(known_scales)})", step=spec.id, key="scales", report=spec.report)
    return Recipe(name=name, title=title.strip(), source=source, steps=steps, report=reports,
                  vars=MappingProxyType(dict(variables)), scales=MappingProxyType(scales),
                  paper=_text(doc.get("paper", ""), source, key="paper"),
                  table=_text(doc.get("table", ""), source, key="table"),
                  description=_text(doc.get("description", ""), source, key="description"),
                  full=MappingProxyType({k: str(v) for k, v in full.items()}))


def _scales(raw: Any, variables: Mapping[str, Any], source: Path) -> dict[str, Mapping[str, Any]]:
    scales = _mapping(raw, source, key="scales")
    out: dict[str, Mapping[str, Any]] = {}
    for scale, body in scales.items():
        key = f"scales.{scale}"
        body = _mapping(body or {}, source, key=key)
        _known_keys(body, SCALE_KEYS, source, prefix=f"{key}.")
        overrides = _mapping(body.get("vars") or {}, source, key=f"{key}.vars")
        for var in overrides:
            if var not in variables:
                raise fail(source, f"unknown variable {var!r}{suggest(str(var), variables)}: a scale overrides "
                                   f"variables declared under vars", key=f"{key}.vars.{var}")
        out[str(scale)] = MappingProxyType(dict(overrides))
    return out


def _step_list(raw: Any, source: Path, *, report: bool) -> tuple[StepSpec, ...]:
    section = "report" if report else "steps"
    if not isinstance(raw, list):
        raise fail(source, "expected a list of steps", key=section)
    return tuple(_step(item, source, report=report, index=i) for i, item in enumerate(raw))


def _step(raw: Any, source: Path, *, report: bool, index: int) -> StepSpec:
    section = "report" if report else "steps"
    if not isinstance(raw, dict):
        raise fail(source, "each step is a mapping with at least id and run", key=f"{section}[{index}]")
    if "id" not in raw:
        raise fail(source, "the step has no id", key=f"{section}[{index}]")
    sid = _text(raw["id"], source, key=f"{section}[{index}].id")

    def err(message: str, key: str) -> UserError:
        return fail(source, message, step=sid, key=key, report=report)

    allowed = REPORT_KEYS if report else STEP_KEYS
    for key in raw:
        if key not in allowed:
            extra = " (report steps are not stamped: no inputs, outputs, resume, shards or after)" \
                if report and key in STEP_KEYS else ""
            raise err(f"unknown key{suggest(str(key), allowed)} (known: {', '.join(allowed)}){extra}", str(key))
    if "run" not in raw:
        raise err("the required key 'run' is missing (the densecaption command, e.g. 'compose grid')", "run")
    run = raw["run"]
    words = tuple(run.split()) if isinstance(run, str) else run
    if not isinstance(words, (list, tuple)) or not words or not all(isinstance(w, str) for w in words):
        raise err("expected the command's words, e.g. 'compose grid'", "run")
    options = raw.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise err("expected a mapping of option name to value", "options")
    resume = raw.get("resume", None) if "resume" in raw else None
    if "resume" in raw:
        resume = resume or {}
        if not isinstance(resume, dict):
            raise err("expected a mapping of the options added on a continuation ({} when none)", "resume")
    foreach = raw.get("foreach")
    if foreach is not None:
        if not isinstance(foreach, dict) or not foreach:
            raise err("expected a mapping of loop variable to a list (or a ${var} holding one)", "foreach")
        for name in foreach:
            if not isinstance(name, str) or not name.isidentifier() or name in BUILTINS:
                raise err(f"{name!r} cannot be a loop variable (a name of letters, digits and _, not "
                          f"{', '.join(BUILTINS)})", f"foreach.{name}")
    shards = raw.get("shards", False)
    if not isinstance(shards, bool):
        raise err("expected true or false", "shards")
    scales = raw.get("scales")
    if scales is not None:
        scales = _strings(scales, err, "scales")
    return StepSpec(id=sid, run=tuple(words), args=_list(raw.get("args"), err, "args"),
                    options=MappingProxyType(dict(options)), inputs=_list(raw.get("inputs"), err, "inputs"),
                    outputs=_list(raw.get("outputs"), err, "outputs"),
                    resume=MappingProxyType(dict(resume)) if resume is not None else None, shards=shards,
                    foreach=MappingProxyType(dict(foreach)) if foreach is not None else None,
                    after=_strings(raw.get("after") or [], err, "after"), scales=scales, report=report)


def _list(value: Any, err, key: str) -> tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise err("expected a list", key)
    return tuple(value)


def _strings(value: Any, err, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise err("expected a list of names", key)
    return tuple(value)


def _known_keys(doc: Mapping, allowed: tuple[str, ...], source: Path, prefix: str = "") -> None:
    for key in doc:
        if key not in allowed:
            raise fail(source, f"unknown key{suggest(str(key), allowed)} (known: {', '.join(allowed)})",
                       key=f"{prefix}{key}")


def _mapping(value: Any, source: Path, *, key: str) -> dict:
    if not isinstance(value, dict):
        raise fail(source, "expected a mapping", key=key)
    return value


def _text(value: Any, source: Path, *, key: str) -> str:
    if not isinstance(value, str):
        raise fail(source, "expected text", key=key)
    return value


def _var_name(name: Any, source: Path, section: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise fail(source, f"{name!r} cannot be a variable name (letters, digits and _)", key=f"{section}.{name}")
    if name in BUILTINS:
        raise fail(source, f"{name!r} is a built-in (set by the runner: {', '.join(BUILTINS)})",
                   key=f"{section}.{name}")

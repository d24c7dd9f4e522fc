"""From a recipe, a scale and ``--set`` values to the ordered steps with their status (docs/recipes.md).

Pure steps first (substitution, ``foreach``, ordering by data, hashing), then what reads the disk:
fingerprints of outside inputs and the stamps under ``${out}/.recipe/``. A step's hash covers its whole
command line, the hashes of the steps whose outputs it reads and the fingerprints of its outside inputs, so a
changed option or input makes the step, and everything downstream of it, stale.
"""

from __future__ import annotations

import bisect
import dataclasses
import fnmatch
import hashlib
import heapq
import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from densecaption.errors import UserError
from densecaption.recipes import commands
from densecaption.recipes.commands import Command
from densecaption.recipes.schema import FULL, Recipe, ResolvedStep, StepSpec, fail, suggest

STATUSES = ("done", "run", "resume", "stale", "missing")
STATE = ".recipe"  # the runner's folder inside ${out}
REPORTS = "report"  # report outputs inside ${out}
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")


class SubstitutionError(Exception):
    """A ``${...}`` that cannot be resolved; the caller adds the file, step and key."""


# ------------------------------------------------------------------------------------------- substitution
class Scope:
    """The names a ``${...}`` may use: built-ins, the recipe's variables (resolved on first use, so a
    variable may refer to others) and the loop variables of one ``foreach`` combination."""

    def __init__(self, variables: Mapping[str, Any], builtins: Mapping[str, Any],
                 loop: Mapping[str, Any] | None = None, _shared: tuple[dict, list] | None = None):
        self.variables, self.builtins, self.loop = variables, builtins, loop or {}
        # resolved variables, and the chain being resolved (to name a circle), shared with derived scopes
        self._resolved, self._resolving = _shared if _shared is not None else ({}, [])

    def with_loop(self, loop: Mapping[str, Any] | None) -> "Scope":
        return Scope(self.variables, self.builtins, loop, (self._resolved, self._resolving))

    def names(self) -> list[str]:
        return [*self.loop, *self.builtins, *self.variables]

    def value(self, name: str) -> Any:
        if name in self.loop:
            return self.loop[name]
        if name in self.builtins:
            return self.builtins[name]
        if name not in self.variables:
            raise SubstitutionError(f"unknown variable {name!r}{suggest(name, self.names())} "
                                    f"(known: {', '.join(self.names())})")
        if name not in self._resolved:
            if name in self._resolving:
                cycle = " -> ".join([*self._resolving[self._resolving.index(name):], name])
                raise SubstitutionError(f"variables refer to each other in a circle: {cycle}")
            self._resolving.append(name)
            try:
                self._resolved[name] = substitute(self.variables[name], self.with_loop(None))
            finally:
                self._resolving.pop()
        return self._resolved[name]

    def lookup(self, ref: str) -> Any:
        """``name`` or ``name.key.key`` (a key of a mapping, or a list index)."""
        head, *path = ref.strip().split(".")
        value = self.value(head)
        for i, key in enumerate(path):
            here = ".".join([head, *path[:i + 1]])
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                known = f" (keys: {', '.join(map(str, value))})" if isinstance(value, dict) else ""
                raise SubstitutionError(f"${{{here}}}: {'.'.join([head, *path[:i]])} has no {key!r}{known}")
        return value


def substitute(value: Any, scope: Scope) -> Any:
    """Replace ``${name}`` references in strings, inside lists and mappings too. A string that is exactly one
    reference takes the value with its type; otherwise values are interpolated as text; ``$${`` is ``${``."""
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole and whole.group(1) is not None:
            return scope.lookup(whole.group(1))
        return _REF.sub(lambda m: "${" if m.group(1) is None else _as_text(m.group(1), scope.lookup(m.group(1))),
                        value)
    if isinstance(value, list):
        return [substitute(v, scope) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, scope) for k, v in value.items()}
    return value


def _as_text(ref: str, value: Any) -> str:
    if value is None or isinstance(value, (list, dict)):
        kind = "null" if value is None else type(value).__name__
        raise SubstitutionError(f"${{{ref}}} is {kind} and cannot sit inside text (use it as the whole value)")
    return commands.text(value)


# ------------------------------------------------------------------------------------------- settings
def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs of ``--set``, each VALUE read as YAML (``3``, ``[0, 1]``, ``true``, text)."""
    import yaml

    sets: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        try:
            sets[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise UserError(f"--set {item!r}: the value is not YAML ({getattr(e, 'problem', e)})") from None
    return sets


def variables_for(recipe: Recipe, scale: str, sets: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe's vars, overridden by the scale's, overridden by ``--set`` (still unsubstituted)."""
    known = recipe.scale_names()
    if scale not in known:
        raise UserError(f"{recipe.source}: unknown scale {scale!r}{suggest(scale, known)} (known: {', '.join(known)})")
    for key in sets:
        if key not in recipe.vars:
            names = list(recipe.vars)
            raise UserError(f"--set {key}: {recipe.name} has no variable {key!r}{suggest(key, names)} "
                            f"(its variables: {', '.join(names) or 'none'})")
    return {**recipe.vars, **(recipe.scales.get(scale, {}) if scale != FULL else {}), **sets}


def default_out(recipe: Recipe, scale: str) -> Path:
    return Path("runs") / f"{recipe.name}-{scale}"


# ------------------------------------------------------------------------------------------- expansion
@dataclass(frozen=True)
class Expanded:
    """The recipe for one scale and set of values: resolved variables, steps and reports in file order."""

    vars: Mapping[str, Any]
    steps: tuple[ResolvedStep, ...]
    reports: tuple[ResolvedStep, ...]


def expand(recipe: Recipe, scale: str = FULL, sets: Mapping[str, Any] | None = None, out: Path | str | None = None,
           *, root: Command | None = None) -> Expanded:
    """Substitute, expand ``foreach``, render and check every command line; every error names the step and
    the key. ``root`` is the command tree (built here when not given)."""
    out = Path(out) if out is not None else default_out(recipe, scale)
    variables = variables_for(recipe, scale, sets or {})
    scope = Scope(variables, {"out": str(out), "scale": scale, "recipe": recipe.name})
    resolved = {}
    for name in variables:
        try:
            resolved[name] = scope.value(name)
        except SubstitutionError as e:
            key = "vars" if name not in (sets or {}) else "--set"
            raise fail(recipe.source, str(e), key=f"{key}.{name}") from None
    root = root if root is not None else commands.command_tree()
    steps = [s for spec in recipe.steps if spec.in_scale(scale) for s in _expand_step(recipe, spec, scope, root, out)]
    reports = [s for spec in recipe.report if spec.in_scale(scale) for s in _expand_step(recipe, spec, scope, root, out)]
    seen: dict[str, ResolvedStep] = {}
    for step in (*steps, *reports):
        if step.id in seen:
            first = seen[step.id].template
            raise fail(recipe.source, f"two steps have the id {step.id!r} (from {first!r} and {step.template!r}); "
                                      f"ids must stay unique after foreach", step=step.template, key="id",
                       report=step.report)
        seen[step.id] = step
    steps = [_with_after(recipe, s, [t.id for t in steps]) for s in steps]
    return Expanded(MappingProxyType(resolved), tuple(steps), tuple(reports))


def _expand_step(recipe: Recipe, spec: StepSpec, scope: Scope, root: Command, out: Path
                 ) -> list[ResolvedStep]:
    def err(message: str, key: str) -> UserError:
        return fail(recipe.source, message, step=spec.id, key=key, report=spec.report)

    command = commands.find_command(root, spec.run, err)
    loops: list[list[tuple[str, Any]]] = []
    for name, raw in (spec.foreach or {}).items():
        values = _subst(raw, scope, err, f"foreach.{name}")
        if not isinstance(values, list):
            raise err(f"expected a list to loop over, got {type(values).__name__}", f"foreach.{name}")
        loops.append([(name, v) for v in values])
    steps = []
    for combo in itertools.product(*loops):
        here = scope.with_loop(dict(combo))
        sid = _subst(spec.id, here, err, "id")
        if not isinstance(sid, str) or not _ID.fullmatch(sid):
            raise err(f"{sid!r} is not a step id (letters, digits, - _ . only, starting with a letter or digit)",
                      "id")

        def err_id(message: str, key: str, sid=sid) -> UserError:
            return fail(recipe.source, message, step=sid, key=key, report=spec.report)

        args = commands.render_args(tuple(_subst(list(spec.args), here, err_id, "args")), err_id)
        argv = args + commands.render_options(command, _subst(dict(spec.options), here, err_id, "options"), err_id)
        resume_argv = commands.render_options(command, _subst(dict(spec.resume or {}), here, err_id, "resume"),
                                              err_id, section="resume")
        commands.check_argv(command, spec.run, argv + resume_argv, err_id)
        inputs = _paths(_subst(list(spec.inputs), here, err_id, "inputs"), err_id, "inputs", allow_null=True)
        outputs = _paths(_subst(list(spec.outputs), here, err_id, "outputs"), err_id, "outputs")
        for i, output in enumerate(outputs):
            _inside_out(output, out, err_id, f"outputs[{i}]")
        after = tuple(commands.text(a) for a in _subst(list(spec.after), here, err_id, "after"))
        steps.append(ResolvedStep(id=sid, words=spec.run, argv=tuple(argv), resume_argv=tuple(resume_argv),
                                  inputs=inputs, outputs=outputs, after=after, resumable=spec.resume is not None,
                                  shards=spec.shards, report=spec.report, template=spec.id))
    return steps


def _subst(value: Any, scope: Scope, err: Callable[[str, str], UserError], key: str) -> Any:
    try:
        return substitute(value, scope)
    except SubstitutionError as e:
        raise err(str(e), key) from None


def _paths(values: list[Any], err, key: str, allow_null: bool = False) -> tuple[str, ...]:
    """Paths as text; a list value (``${models}``) spreads into several paths. An input may be null (an optional
    local path, e.g. a model's folder in one scale and a hub id in another): it is left out."""
    out = []
    for i, value in enumerate(values):
        for item in value if isinstance(value, list) else [value]:
            if item is None and allow_null:
                continue
            if isinstance(item, (list, dict)) or item is None or isinstance(item, bool):
                raise err(f"expected a path, got {item!r}", f"{key}[{i}]")
            out.append(commands.text(item))
    return tuple(out)


def _inside_out(output: str, out: Path, err, key: str) -> None:
    path, root = os.path.abspath(output), os.path.abspath(out)
    if os.path.commonpath([path, root]) != root or path == root:
        raise err(f"{output} is not inside the run folder ${{out}} ({out}): outputs must lie inside it", key)
    first = Path(os.path.relpath(path, root)).parts[0]
    if first in (STATE, REPORTS):
        raise err(f"{output}: ${{out}}/{first} is the runner's own (state and report files)", key)


def _with_after(recipe: Recipe, step: ResolvedStep, ids: list[str]) -> ResolvedStep:
    """``after`` patterns (``train-*``) matched against the expanded ids."""
    matched: list[str] = []
    for pattern in step.after:
        hits = [i for i in ids if fnmatch.fnmatchcase(i, pattern) and i != step.id]
        if not hits:
            raise fail(recipe.source, f"no step matches {pattern!r}{suggest(pattern, ids)}", step=step.id, key="after")
        matched.extend(h for h in hits if h not in matched)
    return dataclasses.replace(step, after=tuple(matched))


# ------------------------------------------------------------------------------------------- ordering
def _parts(path: str) -> tuple[str, ...]:
    return Path(os.path.abspath(path)).parts


class OutputIndex:
    """The steps' outputs by path, to find in a few lookups (not one per output) which steps wrote a path,
    a folder holding it or something inside it."""

    def __init__(self, steps: Iterable[ResolvedStep]):
        self.owners: dict[tuple[str, ...], list[str]] = {}
        for step in steps:
            for output in step.outputs:
                self.owners.setdefault(_parts(output), []).append(step.id)
        self.keys = sorted(self.owners)

    def producers(self, path: str) -> list[str]:
        """Ids of the steps with an output equal to ``path``, containing it, or inside it."""
        parts = _parts(path)
        found = [sid for n in range(1, len(parts) + 1) for sid in self.owners.get(parts[:n], ())]
        i = bisect.bisect_right(self.keys, parts)  # outputs inside ``path`` sort right after it
        while i < len(self.keys) and self.keys[i][:len(parts)] == parts:
            found.extend(self.owners[self.keys[i]])
            i += 1
        return found


def data_dependencies(steps: tuple[ResolvedStep, ...]) -> dict[str, tuple[str, ...]]:
    """Step id -> the ids of the steps whose outputs contain, or lie inside, one of its inputs (file order)."""
    index = OutputIndex(steps)
    position = {s.id: n for n, s in enumerate(steps)}
    return {s.id: tuple(sorted({p for i in s.inputs for p in index.producers(i) if p != s.id}, key=position.get))
            for s in steps}


def order(steps: tuple[ResolvedStep, ...], source: Path | str = "recipe") -> tuple[ResolvedStep, ...]:
    """Steps in an order where each runs after what it reads and what it names in ``after``; among steps free
    to run, file order (a stable topological sort). A cycle is a ``UserError`` naming its steps."""
    data = data_dependencies(steps)
    needs = {s.id: set(data[s.id]) | set(s.after) for s in steps}
    index = {s.id: i for i, s in enumerate(steps)}
    waiting = {sid: len(n) for sid, n in needs.items()}
    users: dict[str, list[str]] = {s.id: [] for s in steps}
    for sid, n in needs.items():
        for dep in n:
            users[dep].append(sid)
    ready = [index[sid] for sid, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    ordered: list[ResolvedStep] = []
    while ready:
        step = steps[heapq.heappop(ready)]
        ordered.append(step)
        for user in users[step.id]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, index[user])
    if len(ordered) < len(steps):
        raise fail(source, f"steps wait on each other in a circle: {_cycle(needs, waiting)} (an input of "
                           f"each lies in an output of the next, or `after` says so)", key="steps")
    return tuple(ordered)


def _cycle(needs: dict[str, set[str]], waiting: dict[str, int]) -> str:
    stuck = {s for s, n in waiting.items() if n > 0}
    path = [min(stuck)]
    while True:
        nxt = sorted(d for d in needs[path[-1]] if d in stuck)[0]
        if nxt in path:
            loop = path[path.index(nxt):] + [nxt]
            return " -> ".join(loop)
        path.append(nxt)


# ------------------------------------------------------------------------------------------- fingerprints
def fingerprint(value: str) -> str:
    """What an outside input is now: for a file or folder, a hash over each file's relative path, size and
    mtime_ns (read with ``stat``, contents not read); ``sample`` stands for the bundled sample's files; any
    other text (a hub id, a model name) is itself."""
    if value == "sample":
        from densecaption.data.sample import sample_dir

        path = sample_dir()
    else:
        path = Path(value)
    if not path.exists():
        return f"text:{value}"
    digest = hashlib.sha256()
    files = 0
    for rel, st in _walk(path):
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        files += 1
    return f"files:{files}:{digest.hexdigest()[:32]}"


def _walk(path: Path) -> Iterable[tuple[str, os.stat_result]]:
    if path.is_file():
        yield path.name, path.stat()
        return
    for parent, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(parent, name)
            try:
                yield os.path.relpath(full, path), os.stat(full)
            except FileNotFoundError:  # removed while walking (a temporary)
                continue


def step_hash(argv: tuple[str, ...], upstream: Mapping[str, str], inputs: Mapping[str, str]) -> str:
    """SHA-256 of the full command line, the upstream steps' hashes and the outside inputs' fingerprints."""
    doc = {"argv": list(argv), "upstream": dict(sorted(upstream.items())), "inputs": dict(sorted(inputs.items()))}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# ------------------------------------------------------------------------------------------- run state
@dataclass(frozen=True)
class RunState:
    """Where a run folder keeps its state: ``.recipe/steps/<id>.started.json`` (a step began) and
    ``<id>.done.json`` (its stamp), ``.recipe/run.json``, ``.recipe/log.jsonl`` and ``report/<id>.txt``."""

    out: Path

    @property
    def folder(self) -> Path:
        return self.out / STATE

    def started_path(self, sid: str) -> Path:
        return self.folder / "steps" / f"{sid}.started.json"

    def stamp_path(self, sid: str) -> Path:
        return self.folder / "steps" / f"{sid}.done.json"

    def error_path(self, sid: str) -> Path:
        return self.folder / "steps" / f"{sid}.error.txt"

    @property
    def run_json(self) -> Path:
        return self.folder / "run.json"

    @property
    def log(self) -> Path:
        return self.folder / "log.jsonl"

    def report_path(self, sid: str) -> Path:
        return self.out / REPORTS / f"{sid}.txt"

    def read(self, path: Path) -> dict | None:
        """A marker or stamp, or None when absent or unreadable (then the step is not done)."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None


# ------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class PlannedStep:
    """A step in run order with its hash, what it needs and its status (one of ``STATUSES``) with the reason."""

    step: ResolvedStep
    hash: str
    upstream: Mapping[str, str]
    needs: tuple[str, ...]
    inputs: Mapping[str, str]
    status: str
    reason: str

    @property
    def id(self) -> str:
        return self.step.id

    @property
    def resuming(self) -> bool:
        return self.status == "resume"


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    scale: str
    out: Path
    vars: Mapping[str, Any]
    steps: tuple[PlannedStep, ...]
    reports: tuple[ResolvedStep, ...]

    @property
    def state(self) -> RunState:
        return RunState(self.out)

    def get(self, sid: str) -> PlannedStep:
        return next(p for p in self.steps if p.id == sid)


def make_plan(recipe: Recipe, scale: str = FULL, sets: Mapping[str, Any] | None = None,
              out: Path | str | None = None, *, root: Command | None = None) -> Plan:
    """Expand, order, hash and read the status of every step; reads the disk, writes nothing."""
    out = Path(out) if out is not None else default_out(recipe, scale)
    expanded = expand(recipe, scale, sets, out, root=root)
    steps = order(expanded.steps, recipe.source)
    data = data_dependencies(steps)
    index = OutputIndex(steps)
    state = RunState(out)
    prints: dict[str, str] = {}
    hashes: dict[str, str] = {}
    planned = []
    for step in steps:
        outside = [i for i in step.inputs if not index.producers(i)]
        inputs = {i: prints[i] if i in prints else prints.setdefault(i, fingerprint(i)) for i in outside}
        upstream = {d: hashes[d] for d in data[step.id]}
        hashes[step.id] = step_hash(step.full_argv(), upstream, inputs)
        status, reason = step_status(step, hashes[step.id], upstream, inputs, state)
        needs = tuple(dict.fromkeys((*data[step.id], *step.after)))
        planned.append(PlannedStep(step, hashes[step.id], MappingProxyType(upstream), needs,
                                   MappingProxyType(inputs), status, reason))
    return Plan(recipe, scale, out, expanded.vars, tuple(planned), expanded.reports)


def step_status(step: ResolvedStep, digest: str, upstream: Mapping[str, str], inputs: Mapping[str, str],
                state: RunState) -> tuple[str, str]:
    """``done``, ``run``, ``resume``, ``stale`` or ``missing``, and why."""
    stamp = state.read(state.stamp_path(step.id))
    started = state.read(state.started_path(step.id))
    if stamp is not None and stamp.get("hash") == digest:
        gone = [o for o in step.outputs if not os.path.exists(o)]
        if not gone:
            return "done", f"finished {stamp.get('finished', '?')} in {stamp.get('seconds', 0):.1f} s"
        return "missing", f"finished before, but its output {gone[0]} is gone" + \
            (f" (and {len(gone) - 1} more)" if len(gone) > 1 else "")
    if started is not None and started.get("hash") == digest:
        if step.resumable:
            extra = f" with {' '.join(step.resume_argv)}" if step.resume_argv else ""
            return "resume", f"started {started.get('started', '?')} and did not finish: continues{extra}"
        return "run", f"started {started.get('started', '?')} and did not finish; it cannot resume, so its " \
                      f"outputs are deleted and it starts over"
    earlier = stamp if stamp is not None else started
    if earlier is not None:
        return "stale", _what_changed(step, earlier, upstream, inputs) + ": its outputs are deleted and it runs again"
    return "run", "not run yet"


def argv_change(before: list[str], now: list[str]) -> str:
    """The first difference of two command lines, e.g. ``--submasks 1 -> 0`` or ``added --overwrite``."""
    import difflib

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=now, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        # a changed value reads better with the option it belongs to
        value = i1 < len(before) and not before[i1].startswith("--")
        lead = [before[i1 - 1]] if value and i1 > 0 and before[i1 - 1].startswith("--") else []
        old, new = " ".join(lead + before[i1:i2]), " ".join(now[j1:j2])
        if tag == "replace":
            return f"{old} -> {new}"
        return f"added {new}" if tag == "insert" else f"removed {old}"
    return "reordered"


def _what_changed(step: ResolvedStep, earlier: dict, upstream: Mapping[str, str], inputs: Mapping[str, str]) -> str:
    before_argv = list(earlier.get("argv") or [])
    if before_argv != list(step.full_argv()):
        return f"its command line changed ({argv_change(before_argv, list(step.full_argv()))})"
    for sid, digest in upstream.items():
        if (earlier.get("upstream") or {}).get(sid) != digest:
            return f"upstream step {sid} changed"
    for path, mark in inputs.items():
        if (earlier.get("inputs") or {}).get(path) != mark:
            return f"input {path} changed"
    return "its inputs changed"

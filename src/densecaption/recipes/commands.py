"""The commands a recipe's steps name: found in the command tree of ``densecaption.cli.build_app()`` (typer's
click-style commands), their options rendered into a command line and checked by the commands' own parser
before anything runs.

Building the tree imports typer and the CLI modules, not torch or any model library. Typer now carries its
own copy of click, so commands, groups and parameters are recognised by what they have (``commands``,
``opts``, ``param_type_name``), not by click's classes.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from densecaption.errors import UserError
from densecaption.recipes.schema import suggest

Command = Any  # a typer/click command: ``params``, ``make_context``, ``main``; a group also has ``commands``
Fail = Callable[[str, str], UserError]  # (message, key) -> the error naming the file and the step

# Commands a step may not run: a recipe inside a recipe, and the web servers that never return.
EXCLUDED = frozenset({"run", "view", "annotate"})


def command_tree() -> Command:
    """The ``densecaption`` command as click sees it (typer's commands converted)."""
    import typer

    from densecaption.cli import build_app

    return typer.main.get_command(build_app())


def is_group(command: Command) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def find_command(root: Command, words: tuple[str, ...], err: Fail) -> Command:
    """The command reached by ``words`` (``("compose", "grid")``), with a did-you-mean for a wrong word."""
    command = root
    for i, word in enumerate(words):
        said = " ".join(("densecaption", *words[:i]))
        if not is_group(command):
            raise err(f"`{said}` takes no sub-command {word!r}", "run")
        names = [n for n, c in command.commands.items()
                 if not getattr(c, "hidden", False) and not (i == 0 and n in EXCLUDED)]
        if word not in names:
            raise err(f"unknown command {word!r} of `{said}`{suggest(word, names)} (known: {', '.join(names)})",
                      "run")
        command = command.commands[word]
    if is_group(command):
        names = ", ".join(n for n, c in command.commands.items() if not getattr(c, "hidden", False))
        raise err(f"`densecaption {' '.join(words)}` needs a sub-command ({names})", "run")
    return command


def text(value: Any) -> str:
    """A scalar as command-line text: ``true``/``false``, integers as written, a float without a trailing
    ``.0`` when it is whole (``1.0`` -> ``1``, as ``compose grid`` names its sets), otherwise its repr."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"{type(value).__name__} is not a scalar")


def _option_map(command: Command) -> dict[str, Any]:
    """``--name`` (and ``--no-name``) -> the option, for every visible option of ``command``."""
    found: dict[str, Any] = {}
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option" and not getattr(param, "hidden", False):
            for opt in (*param.opts, *param.secondary_opts):
                if opt.startswith("--"):
                    found[opt] = param
    return found


def render_options(command: Command, options: Mapping[str, Any], err: Fail, *, section: str = "options"
                   ) -> list[str]:
    """``{max_steps: 3, overwrite: true, seed: null, tokenizer: [a, b]}`` -> ``--max-steps 3 --overwrite
    --tokenizer a --tokenizer b``, each key checked against the command's options (flag or value, repeatable
    or not)."""
    known = _option_map(command)
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        here = f"{section}.{key}"
        param = known.get(flag)
        if param is None:
            names = sorted({o[2:] for o in known})
            raise err(f"not an option of this command{suggest(key.replace('_', '-'), names)} "
                      f"(its options: {', '.join(names)})", here)
        if value is None:
            continue
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            if not isinstance(value, bool):
                raise err(f"{flag} is a flag: give true or false (or null to leave it out)", here)
            argv.extend(_flag(param, flag, value))
            continue
        if isinstance(value, bool):
            raise err(f"{flag} takes a value, not {text(value)} (quote it to pass the word)", here)
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not getattr(param, "multiple", False):
            raise err(f"{flag} takes one value, not a list (it is not repeatable)", here)
        for item in values:
            if isinstance(item, (list, dict)) or item is None:
                raise err(f"{flag}: each value is text or a number, not {type(item).__name__}", here)
            argv.extend([flag, text(item)])
    return argv


def _flag(param: Any, flag: str, value: bool) -> list[str]:
    """``--x`` for true; for false the paired ``--no-x`` when the option has one, else nothing (the flag's
    absence is its off state)."""
    on = flag in param.opts
    if value == on:
        return [flag]
    pair = param.secondary_opts if on else param.opts
    long = [o for o in pair if o.startswith("--")]
    return [long[0]] if long else []


def render_args(args: tuple[Any, ...], err: Fail) -> list[str]:
    """Positional arguments as text; a list value spreads into several arguments."""
    out: list[str] = []
    for i, value in enumerate(args):
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (list, dict)) or item is None:
                raise err(f"each argument is text or a number, not {type(item).__name__}", f"args[{i}]")
            out.append(text(item))
    return out


def check_argv(command: Command, words: tuple[str, ...], argv: list[str], err: Fail) -> None:
    """Let the command parse the line without running it: missing required options, wrong value types or
    choices and extra arguments are found before any step runs."""
    import typer

    try:
        ctx = command.make_context(" ".join(("densecaption", *words)), list(argv), resilient_parsing=False)
    except typer.Exit:  # --help given as an option or argument
        raise err("the command line asks for help instead of running", "args") from None
    except Exception as e:
        if not callable(getattr(e, "format_message", None)):  # not a usage error: a bug, let it show
            raise
        raise err(f"`densecaption {' '.join(words)}` would refuse it: {e.format_message()}", "options") from None
    ctx.close()

"""``densecaption bench TASK``: one command per registered benchmark, its options built from the
benchmark's config dataclass (field types, defaults, help texts and choices) plus the common ones."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.markup import escape
from rich.table import Table

from densecaption.cli._common import guarded, out_console, progress_stages, report_skips, skip_log
from densecaption.files import remove_stale_temps, writable_folder


def build_app() -> typer.Typer:
    from densecaption.evaluation.benchmarks import BENCHMARKS

    app = typer.Typer(help=f"Benchmark image-text models ({BENCHMARKS.choices()}).", no_args_is_help=True)
    for entry in BENCHMARKS.entries():
        benchmark = BENCHMARKS.get(entry.name)()
        app.command(entry.name, help=_help(benchmark))(bench_command(benchmark))
    return app


def _help(benchmark) -> str:
    labels = ", ".join(m.label for m in benchmark.metrics)
    return (f"{benchmark.__doc__.strip().splitlines()[0]}\n\nMetrics: {labels}. Writes one result JSON per run "
            "into --out and prints the table. Every unique crop and text is encoded once. Runs the same under "
            "`accelerate launch --num_processes N -m densecaption ...`, which shards the encoding across processes.")


def _option_type(hint: Any) -> tuple[Any, bool]:
    """The CLI type of a config field's type hint, and whether it is a repeatable (tuple) option."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return str, False
    if origin is tuple:
        return Optional[list[args[0]]], True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return Optional[inner], False
    return hint, False


def _config_parameters(config_class: type) -> tuple[list[inspect.Parameter], set[str]]:
    hints = typing.get_type_hints(config_class)
    params, repeated = [], set()
    for f in dataclasses.fields(config_class):
        if not f.metadata.get("cli", True):
            continue
        kind, is_list = _option_type(hints[f.name])
        choices = f.metadata.get("choices") or ()
        text = f.metadata.get("help", "") + (f" Choices: {', '.join(choices)}." if choices else "")
        default = None if is_list else f.default
        if is_list:
            repeated.add(f.name)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[kind, typer.Option(help=text)]))
    return params, repeated


def _common_parameters(benchmark) -> tuple[list[inspect.Parameter], list[inspect.Parameter]]:
    from densecaption.models.registry import model_spec_help

    def opt(name: str, kind: Any, default: Any, text: str) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=Annotated[kind, typer.Option(help=text)])

    head = [opt("data", str, inspect.Parameter.empty, benchmark.data_help),
            opt("model", str, "open_clip:ViT-B-32:openai", f"Model spec: {escape(model_spec_help())}."),
            opt("lora", Optional[str], None, "A peft LoRA adapter folder to apply.")]
    if benchmark.uses_splits:
        head.append(opt("split", str, benchmark.default_split, "Split of the data to evaluate."))
    tail = [opt("device", str, "auto", "auto, cpu, cuda, cuda:1 ..."),
            opt("workers", int, 0, "Worker processes that decode photos and cut crops."),
            opt("cache", Optional[Path], None, "Embedding cache folder: a second run of the same model skips "
                                                "encoding."),
            opt("out", Path, Path("results"), "Folder for the result JSON."),
            opt("strict", bool, False, "Stop at the first bad record instead of skipping it.")]
    if benchmark.uses_crop_cache:
        tail.insert(3, opt("crop_cache", Optional[Path], None, "Crop cache folder: each crop is decoded from "
                           "its full photo once and stored resized to the model's input size (uint8), so later "
                           "runs skip the decoding; numbers are unchanged."))
    return head, tail


def bench_command(benchmark) -> Callable[..., None]:
    """A typer command running ``benchmark``: common options, then one option per CLI field of its config."""
    config_params, repeated = _config_parameters(benchmark.config_class)
    head, tail = _common_parameters(benchmark)

    def command(**kwargs: Any) -> None:
        config = {k: kwargs.pop(k) for k in [p.name for p in config_params]}
        for name in repeated:  # a repeatable option not given keeps the field's default
            if config[name] is None:
                del config[name]
            else:
                config[name] = tuple(config[name])
        run_and_report(benchmark, config, **kwargs)

    command.__name__ = benchmark.name
    wrapped = guarded(command)
    params = head + config_params + tail
    wrapped.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapped.__annotations__ = {p.name: p.annotation for p in params}
    return wrapped


def run_and_report(benchmark, config: dict[str, Any], *, data: str, model: str, lora: str | None,
                   split: str | None = None, device: str, workers: int, cache: Path | None, out: Path,
                   strict: bool, crop_cache: Path | None = None) -> None:
    """Run ``benchmark`` through ``evaluate``, write its result file and print its table (main process)."""
    from densecaption.distributed import process_state
    from densecaption.evaluation.benchmark import RunContext
    from densecaption.evaluation.results import write_result
    from densecaption.evaluation.run import evaluate
    from densecaption.models.fingerprint import cache_folder

    checked = benchmark.make_config(**config)  # bad settings fail before the model loads
    state = process_state()
    main = state is None or state.is_main_process
    if main:
        prepare_out(out)  # an unusable --out fails before the run, not after it
        if cache is not None:
            remove_stale_temps(cache)
    log = skip_log(strict)
    with progress_stages(enabled=main) as stage:
        context = RunContext(skip=log, progress=stage, workers=workers,
                             cache_dir=cache_folder(cache, model, lora) if cache else None, crop_cache=crop_cache)
        result = evaluate(benchmark.name, model, data, lora=lora, split=split, device=device, context=context,
                          **dataclasses.asdict(checked))
    if not main:
        return
    report_skips(log)
    path = write_result(out, result)
    print_result(benchmark, result.to_dict(), path)


def prepare_out(out: Path) -> None:
    """Make the result folder and check it can be written (a file in its place or a read-only disk fails
    now, in one line, not after the run), and clear the temporaries a killed run left in it."""
    writable_folder(out)
    remove_stale_temps(out, recursive=False)


def print_result(benchmark, record: dict, path: Path) -> None:
    weights = record["weights"]
    title = f"{benchmark.title} {record['split']} ({record['mode']}): {record['model']}" + \
        (f" + {record['lora']}" if record["lora"] else "") + ("" if weights == "pretrained" else
                                                               f"  [weights: {weights}]")
    table = Table()  # the title goes above it as a line: a table title would wrap at the table's narrow width
    table.add_column("test")
    table.add_column("score %", justify="right")
    table.add_column("entries", justify="right")
    for m in benchmark.metrics:
        value = record["metrics"][m.key]
        table.add_row(m.label, "n/a" if value is None else f"{value:.2f}", str(record["counts"][m.key]))
    console = out_console()
    console.print(f"[bold]{escape(title)}[/]", highlight=False, soft_wrap=False, overflow="fold")
    console.print(table)
    for note in record.get("notes", ()):
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if weights != "pretrained":
        console.print(f"[yellow]weights: {weights}[/]: these numbers do not measure a trained model.")
    encoded = (f"encoded {record['encoded_images']} crops and {record['encoded_texts']} texts; "
               if "encoded_images" in record else "")
    console.print(f"{encoded}{record.get('truncated_texts', 0)} texts truncated; result: {path}", highlight=False)

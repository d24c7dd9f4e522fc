"""``densecaption bench ...``: benchmarks of image-text models."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from densecaption.cli._common import guarded, out_console, progress_stages, report_skips, skip_log
from densecaption.errors import UserError

app = typer.Typer(help="Benchmark image-text models (sDCI).", no_args_is_help=True)


@app.command()
@guarded
def sdci(
    data: Annotated[str, typer.Option(help="A DCI folder with complete/ files, or 'sample'.")],
    model: Annotated[str, typer.Option(help="Model spec: open_clip:ARCH[:TAG|FILE], open_clip:local-dir:DIR, "
                                            "hf:ID_OR_DIR, lm:ID_OR_DIR[#gguf=FILE].")] =
    "open_clip:ViT-B-32:openai",
    lora: Annotated[Optional[str], typer.Option(help="A peft LoRA adapter folder to apply.")] = None,
    split: Annotated[str, typer.Option(help="Split of splits.json to evaluate.")] = "test",
    mode: Annotated[str, typer.Option(help="reference (the paper's protocol, flat batches that may mix "
                                           "images) or image-group (each image's own crops per batch).")] =
    "reference",
    batch_size: Annotated[int, typer.Option(help="Entries per SCM batch in reference mode.")] = 8,
    pick_seed: Annotated[Optional[int], typer.Option(help="Sample Pick5's five summaries with this seed "
                                                          "(default: the first five).")] = None,
    drop_quality: Annotated[Optional[list[int]], typer.Option(
        help="Leave out masks of this quality (repeatable; the reference protocol keeps all).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    workers: Annotated[int, typer.Option(help="Worker processes that decode photos and cut crops.")] = 0,
    cache: Annotated[Optional[Path], typer.Option(help="Embedding cache folder: a second run of the same "
                                                       "model skips encoding.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the result JSON.")] = Path("results"),
    strict: Annotated[bool, typer.Option(help="Stop at the first bad record instead of skipping it.")] = False,
):
    """The six sDCI tests (All SCM, All Neg, Pick5 SCM, Pick5 Neg, Base Neg, All Hard-Negs).

    Writes one result JSON per run into --out and prints the table. Every unique crop and text is encoded
    once for all six tests. Runs the same under `accelerate launch --num_processes N -m densecaption ...`,
    which shards the encoding across processes.
    """
    from densecaption.data.dci import DCIDataset
    from densecaption.data.sdci import EntryFilter
    from densecaption.evaluation.features import FeatureStore
    from densecaption.evaluation.results import dataset_sha256, new_result, write_result
    from densecaption.evaluation.sdci import MODES, SdciConfig, evaluate_sdci
    from densecaption.models.fingerprint import cache_folder
    from densecaption.distributed import process_state
    from densecaption.models.registry import load_model

    if mode not in MODES:
        raise UserError(f"--mode {mode!r}: choose from {', '.join(MODES)}")
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    started = time.perf_counter()
    dataset = DCIDataset.open(data)
    if dataset.source != "complete":
        raise UserError(f"{dataset.root}: no complete/ folder: sDCI needs summaries and negatives")
    state = process_state()
    loaded = load_model(model, device=str(state.device) if state else device, lora=lora)
    config = SdciConfig(mode=mode, batch_size=batch_size, pick_seed=pick_seed,
                        entry_filter=EntryFilter(drop_quality=frozenset(drop_quality or ())))
    store = FeatureStore(loaded, num_workers=workers,
                         cache_dir=cache_folder(cache, model, lora) if cache else None)
    main = state is None or state.is_main_process
    log = skip_log(strict)
    with progress_stages(enabled=main) as stage:
        result = evaluate_sdci(dataset, loaded, split=split, config=config, skip=log, store=store, progress=stage)
    if not main:
        return
    report_skips(log)
    record = new_result(
        "sdci", model=model, lora=lora, weights=loaded.weights, data=data, data_sha256=dataset_sha256(dataset, split),
        split=split, mode=mode,
        config={"batch_size": batch_size, "pick": config.pick, "pick_seed": pick_seed,
                "negative": config.negative_kind, "min_box": config.entry_filter.min_box,
                "drop_quality": sorted(config.entry_filter.drop_quality)},
        metrics=result.metrics, counts=result.counts, images=result.images,
        encoded_images=result.encoded_images, encoded_texts=result.encoded_texts,
        truncated_texts=loaded.truncated_texts, notes=list(loaded.notes),
        processes=state.num_processes if state else 1, runtime_s=round(time.perf_counter() - started, 3))
    path = write_result(out, record)
    print_result(record, path)


def print_result(record: dict, path: Path) -> None:
    from densecaption.evaluation.sdci import METRICS, PAPER_NAMES

    weights = record["weights"]
    title = f"sDCI {record['split']} ({record['mode']}): {record['model']}" + \
        (f" + {record['lora']}" if record["lora"] else "") + ("" if weights == "pretrained" else
                                                               f"  [weights: {weights}]")
    table = Table(title=escape(title))
    table.add_column("test")
    table.add_column("score %", justify="right")
    table.add_column("entries", justify="right")
    for m in METRICS:
        value = record["metrics"][m]
        table.add_row(PAPER_NAMES[m], "n/a" if value != value else f"{value:.2f}", str(record["counts"][m]))
    console = out_console()
    console.print(table)
    for note in record["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if weights != "pretrained":
        console.print(f"[yellow]weights: {weights}[/]: these numbers do not measure a trained model.")
    console.print(f"encoded {record['encoded_images']} crops and {record['encoded_texts']} texts; "
                  f"{record['truncated_texts']} texts truncated; result: {path}", highlight=False)

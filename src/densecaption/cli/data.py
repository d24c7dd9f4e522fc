"""``densecaption data ...``: look after DCI folders (validate, stats, show, sample, clip-scores)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from densecaption.cli._common import guarded, out_console, progress_bar, report_skips, skip_log
from densecaption.errors import DataError, UserError
from densecaption.files import remove_stale_temps, writable_folder

app = typer.Typer(help="Validate, describe, draw and prepare datasets in the official DCI layout.",
                  no_args_is_help=True)

PathArg = Annotated[str, typer.Argument(help="A DCI folder (the root or its densely_captioned_images/), "
                                             "or 'sample' for the bundled sample.")]


@app.command()
@guarded
def validate(
    path: PathArg,
    strict: Annotated[bool, typer.Option(help="Count warnings as errors.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
):
    """Check every annotation file, mask and photo; exit 1 when there are errors.

    Errors mark records that cannot be used as they are; warnings mark quirks of the real release that
    the reader handles. Each finding names the file and a JSON Pointer into it.
    """
    from densecaption.data.validate import validate_dataset

    with progress_bar("validating") as tick:
        report = validate_dataset(path, progress=tick, on_total=tick.set_total)
    if as_json:
        out_console().print_json(json.dumps(report.to_dict()))
    else:
        console = out_console()
        for f in report.findings:
            colour = "red" if f.severity == "error" else "yellow"
            where = f"{f.file}#{f.pointer}" if f.pointer else f.file
            console.print(f"[{colour}]{f.severity}[/] {where}: {f.reason}", highlight=False)
        verdict = "[green]ok[/]" if report.ok(strict) else "[red]invalid[/]"
        console.print(f"{verdict}: {report.files_checked} files, {len(report.errors)} errors, "
                      f"{len(report.warnings)} warnings ({report.root})", highlight=False)
    raise typer.Exit(0 if report.ok(strict) else 1)


@app.command()
@guarded
def stats(
    path: PathArg,
    split: Annotated[Optional[str], typer.Option(help="Count one split of splits.json (default: all).")] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad record instead of skipping it.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
):
    """The DCI paper's Table 1 (images, captions, CLIP tokens per caption and per image).

    Rows: DCI and DCI_sub count the texts assembled from the human annotations (whole image; whole image
    plus every mask); sDCI and sDCI_sub count the LLM summaries (base only; base plus masks). Tokens are
    CLIP BPE tokens with start and end tokens, untruncated. See the README for the exact definitions.
    """
    from densecaption.data.dci import DCIDataset
    from densecaption.data.stats import compute_stats
    from densecaption.tokens import ClipTokenCounter

    dataset = DCIDataset.open(path)
    files = dataset.files(split)
    log = skip_log(strict)
    counter = ClipTokenCounter()
    with progress_bar("counting tokens", total=len(files)) as advance:
        def records():
            for record in dataset.iter_images(split, log):
                yield record
                advance(1)

        rows = compute_stats(records(), counter)
    report_skips(log)
    if as_json:
        out_console().print_json(json.dumps({"data": str(path), "split": split or "all", "source": dataset.source,
                                             "tokenizer": counter.name, "rows": [r.to_dict() for r in rows]}))
        return
    table = Table(title=f"DCI statistics ({split or 'all splits'}, {dataset.source}/)")
    for col in ("Dataset", "Imgs", "Caps", "Toks/Cap", "Toks/Img"):
        table.add_column(col, justify="left" if col == "Dataset" else "right")
    for r in rows:
        table.add_row(r.dataset, f"{r.imgs:,}", f"{r.caps:,}", f"{r.toks_per_cap:,.2f}", f"{r.toks_per_img:,.2f}")
    out_console().print(table)


@app.command()
@guarded
def show(
    path: PathArg,
    image: Annotated[str, typer.Argument(help="The record: annotation file name or id, or photo file name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write, or an existing folder to write "
                                                          "<record id>.png into.")],
    min_box: Annotated[int, typer.Option(help="Draw only masks whose box is at least this many px.")] = 0,
):
    """Draw one annotation: the photo with mask outlines, labels and the caption.

    Outlines are solid for good masks, dashed for low-quality (label-only) and dotted for bad ones; each
    runs just inside its mask, so masks that share an edge keep separate lines. Labels never cover one
    another: those with no room near their mask go beside the photo with a line to it.
    """
    from densecaption.data.dci import DCIDataset
    from densecaption.data.show import render_annotation

    dataset = DCIDataset.open(path)
    record = dataset.read(dataset.find(image))
    written = render_annotation(record, out, min_box=min_box)
    out_console().print(f"wrote {written}", highlight=False)


@app.command()
@guarded
def sample(
    out: Annotated[Path, typer.Argument(help="Folder to write the sample into.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing copy.")] = False,
):
    """Write the bundled sample dataset (official DCI layout, with its README) to OUT."""
    from densecaption.data.sample import write_sample

    root = write_sample(out, overwrite=overwrite)
    out_console().print(f"wrote the sample dataset to {root}")


@app.command("clip-scores")
@guarded
def clip_scores(
    data: Annotated[str, typer.Option(help="A DCI folder, or 'sample'.")],
    model: Annotated[str, typer.Option(help="Model spec, e.g. open_clip:ViT-B-32:openai.")] =
    "open_clip:ViT-B-32:openai",
    out: Annotated[Optional[Path], typer.Option(help="Write a new dataset here (photos hard-linked).")] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Rewrite the input's complete/ files.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Rescore records already in --out.")] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad record instead of skipping it.")] = False,
):
    """Compute the stored clip_scores of every summarised entry.

    Each entry's photo or subcrop is scored against its first summary (``sum``) and each negative
    (``<kind>_<i>``) as logit_scale x cosine, like the release's CLIP ViT-B/32 scores. The hardest-negative
    test and caption-set selection read them. The output folder records the model in
    clip_scores_model.json; re-running into the same --out with the same model resumes where it stopped.
    """
    from densecaption.data.clip_scores import score_dataset
    from densecaption.data.dci import DCIDataset, DCIWriter
    from densecaption.models.base import EmbeddingModel
    from densecaption.models.registry import load_model

    if (out is None) == (not in_place):
        raise UserError("give exactly one of --out DIR and --in-place")
    dataset = DCIDataset.open(data)
    if dataset.source != "complete":
        raise DataError(f"{dataset.root}: no complete/ folder (clip_scores need summaries)")
    if in_place and str(data) == "sample":
        raise UserError("the bundled sample is read-only: use --out, or `densecaption data sample DIR` first")
    writable_folder(out if out is not None else dataset.root)  # before the model loads
    loaded = load_model(model, device=device)
    if not isinstance(loaded, EmbeddingModel):
        raise UserError(f"{model}: clip_scores need a model that embeds images and texts (CLIP, SigLIP)")
    writer = DCIWriter(out) if out is not None else DCIWriter(dataset.root, is_root=True)
    remove_stale_temps(writer.root)
    if out is not None and (dataset.root / "splits.json").exists():
        shutil.copyfile(dataset.root / "splits.json", writer.root / "splits.json")
    log = skip_log(strict)
    with progress_bar("scoring", total=len(dataset.all_files())) as tick:
        scored = score_dataset(dataset, loaded, writer, skip=log, in_place=in_place, overwrite=overwrite,
                               progress=tick)
    report_skips(log)
    label = "" if loaded.weights == "pretrained" else f" [yellow](weights: {loaded.weights})[/]"
    out_console().print(f"scored {scored} records with {model}{label} -> {writer.root}")

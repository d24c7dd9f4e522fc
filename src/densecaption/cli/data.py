"""``densecaption data ...``: look after DCI folders (validate, stats, show, sample, clip-scores), and get
real data (download, photos, export)."""

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
    workers: Annotated[int, typer.Option(help="Worker processes checking files (0: one per core); the "
                                              "findings and their order do not depend on it.")] = 0,
):
    """Check every annotation file, mask and photo; exit 1 when there are errors.

    Errors mark records that cannot be used as they are; warnings mark quirks of the real release that
    the reader handles. Each finding names the file and a JSON Pointer into it.
    """
    from densecaption.data.validate import validate_dataset

    with progress_bar("validating") as tick:
        report = validate_dataset(path, progress=tick, on_total=tick.set_total, workers=workers or None)
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
    workers: Annotated[int, typer.Option(help="Worker processes counting tokens (0: one per core); the "
                                              "table does not depend on it.")] = 0,
):
    """The DCI paper's Table 1 (images, captions, CLIP tokens per caption and per image).

    Rows: DCI and DCI_sub count the texts assembled from the human annotations (whole image; whole image
    plus every mask); sDCI and sDCI_sub count the LLM summaries (base only; base plus masks). Tokens are
    CLIP BPE tokens with start and end tokens, untruncated. See the README for the exact definitions.
    """
    from densecaption.data.dci import DCIDataset
    from densecaption.data.stats import dataset_stats
    from densecaption.tokens import ClipTokenCounter

    dataset = DCIDataset.open(path)
    files = dataset.files(split)
    log = skip_log(strict)
    counter = ClipTokenCounter()
    with progress_bar("counting tokens", total=len(files)) as advance:
        rows = dataset_stats(dataset, split, log, workers=workers or None, progress=advance)
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
    crop_cache: Annotated[Optional[Path], typer.Option(
        help="Crop cache folder: each crop is decoded from its full photo once and stored resized to the "
             "model's input size (uint8), so later runs skip the decoding; scores are unchanged.")] = None,
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
    cache = None
    if crop_cache is not None:
        from densecaption.evaluation.crop_cache import CropCache

        cache = CropCache.for_model(crop_cache, loaded)
    writer = DCIWriter(out) if out is not None else DCIWriter(dataset.root, is_root=True)
    remove_stale_temps(writer.root)
    if out is not None and (dataset.root / "splits.json").exists():
        shutil.copyfile(dataset.root / "splits.json", writer.root / "splits.json")
    log = skip_log(strict)
    with progress_bar("scoring", total=len(dataset.all_files())) as tick:
        scored = score_dataset(dataset, loaded, writer, skip=log, in_place=in_place, overwrite=overwrite,
                               progress=tick, crop_cache=cache)
    report_skips(log)
    label = "" if loaded.weights == "pretrained" else f" [yellow](weights: {loaded.weights})[/]"
    out_console().print(f"scored {scored} records with {model}{label} -> {writer.root}")


# --------------------------------------------------------------------------------------------- real data
download_app = typer.Typer(help="Download DCI's released files: the annotations and the LoRA adapters.",
                           no_args_is_help=True)
app.add_typer(download_app, name="download")

FromArchive = Annotated[Optional[Path], typer.Option(
    "--from", help="Use this archive, already downloaded by hand, instead of downloading (checked the same way).")]
Retries = Annotated[int, typer.Option(help="Tries of a dropped download; each resumes where the last stopped.")]


@download_app.command("dci")
@guarded
def download_dci(
    dest: Annotated[Path, typer.Argument(help="Folder to unpack into: DEST/densely_captioned_images/.")],
    url: Annotated[str, typer.Option(help="Where to download from (a mirror).")] = "",
    sha256: Annotated[str, typer.Option(help="The archive's SHA-256 (with --url, a mirror's file).")] = "",
    from_file: FromArchive = None,
    retries: Retries = 5,
):
    """Download, check and unpack the DCI annotations (the official dci.tar.gz).

    The download resumes after a dropped connection or a killed run (HTTP Range into DEST/dci.tar.gz.partial),
    is checked against its SHA-256 (a wrong file is deleted), and is unpacked into a temporary folder that is
    renamed into place when whole, so a second run finds it done and does nothing. The photos come from
    SA-1B: see `densecaption data photos`.
    """
    from densecaption.data.download import DCI, locate_dci

    resource = _resource(DCI, url, sha256)
    path = _download(resource, dest, locate_dci, from_file, retries)
    out_console().print(f"next: densecaption data photos {path} --from sa_000138.tar (SA-1B's tar, "
                        f"downloaded by hand from ai.meta.com/datasets/segment-anything)", highlight=False)


@download_app.command("adapter")
@guarded
def download_adapter(
    name: Annotated[str, typer.Argument(help="dci_pick1 or dci_pick1_nl0.")],
    dest: Annotated[Path, typer.Argument(help="Folder to unpack into: DEST/NAME/ holds the peft adapter.")],
    url: Annotated[str, typer.Option(help="Where to download from (a mirror).")] = "",
    sha256: Annotated[str, typer.Option(help="The archive's SHA-256 (with --url, a mirror's file).")] = "",
    from_file: FromArchive = None,
    retries: Retries = 5,
):
    """Download, check and unpack one of DCI's released LoRA adapters (peft, on HF CLIP ViT-B/32).

    Use it as --lora DEST/NAME with --model hf:openai/clip-vit-base-patch32 (or a local copy of that model);
    an adapter loaded onto another model is refused. Resumes and checks like `data download dci`.
    """
    from densecaption.data.download import ADAPTER_BASE, ADAPTERS, locate_adapter

    if name not in ADAPTERS:
        raise UserError(f"no adapter {name!r} (known: {', '.join(ADAPTERS)})")
    path = _download(_resource(ADAPTERS[name], url, sha256), dest, locate_adapter, from_file, retries)
    out_console().print(f"use: --model {ADAPTER_BASE} --lora {path}", highlight=False)


def _resource(resource, url: str, sha256: str):
    """The resource with a mirror's URL and checksum (a mirror must name its checksum)."""
    from dataclasses import replace

    if url and not sha256 and url != resource.url:
        raise UserError("--url needs --sha256 (the checksum of the mirror's file)")
    if sha256 and (len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256)):
        raise UserError(f"--sha256 {sha256!r}: expected 64 hex digits")
    return replace(resource, url=url or resource.url, sha256=(sha256 or resource.sha256).lower())


def _download(resource, dest: Path, locate, from_file: Optional[Path], retries: int) -> Path:
    from densecaption.cli._common import progress_stages
    from densecaption.data.download import FetchConfig, download_resource

    if retries < 1:
        raise UserError("--retries should be at least 1")
    with progress_stages() as stage:
        outcome = download_resource(resource, dest, locate, source_file=from_file,
                                    config=FetchConfig(retries=retries), stage=stage)
    verb = "already unpacked" if outcome.done_before else "unpacked"
    out_console().print(f"{verb}: {outcome.path} (sha256 {resource.sha256[:12]}...)", highlight=False)
    return outcome.path


@app.command("fetch")
@guarded
def fetch_benchmark_data(
    name: Annotated[str, typer.Argument(help="aro, sugarcrepe, vlchecklist, winoground or compbench "
                                             "(T2I-CompBench's prompt files).")],
    dest: Annotated[Path, typer.Argument(help="Folder to fetch into (the benchmark's --data folder; compbench: "
                                              "the --compbench-dir folder).")],
    photos: Annotated[bool, typer.Option(help="Also fetch the COCO photo zips (ARO: val2014, 6 GB; SugarCrepe: "
                                              "val2017, 1 GB).")] = False,
    mirror: Annotated[Optional[str], typer.Option(help="Fetch every file as MIRROR/NAME instead.")] = None,
    constructed: Annotated[bool, typer.Option(
        "--constructed", help="Write a small constructed set in the official layout instead (no network): tiny "
                              "solid-colour photos, or two prompts per CompBench category written by us, to try "
                              "the pipeline offline. DEST must be new or empty; it gets a CONSTRUCTED.txt marker "
                              "and results on it say 'constructed'.")] = False,
    retries: Retries = 5,
):
    """Download a compositional benchmark's public files, or T2I-CompBench's prompt files, from their official
    locations into the layout `bench NAME` (or `t2i generate --compbench-dir`) reads
    (docs/compositional-benchmarks.md, docs/constructed-sets.md).

    Resumes after a dropped connection or a killed run, checks sizes and checksums where known, unpacks zips
    into place atomically, and skips what a previous run finished. Without network it stops with one line
    naming the files to download by hand; files that are not public are named at the end. With
    --constructed it writes a made-up mini-set offline instead (never mistake its numbers for the benchmark's).
    """
    from densecaption.cli._common import progress_stages
    from densecaption.data.download import FetchConfig
    from densecaption.data.fetch import BY_HAND, NEXT, NEXT_CONSTRUCTED, fetch_benchmark

    if retries < 1:
        raise UserError("--retries should be at least 1")
    if constructed:
        from densecaption.data.minisets import write_constructed

        if photos or mirror:
            raise UserError("--constructed writes a set offline: --photos and --mirror do not apply")
        path, written = write_constructed(name, dest)
        out_console().print(f"{'wrote' if written else 'already there'}: a constructed {name} set in {path} "
                            f"(not the real data)", highlight=False)
        out_console().print(f"next: {NEXT_CONSTRUCTED[name].format(dest=dest)}", highlight=False)
        return
    with progress_stages() as stage:
        got = fetch_benchmark(name, dest, photos=photos, mirror=mirror, config=FetchConfig(retries=retries),
                              stage=stage)
    console = out_console()
    console.print(f"fetched: {', '.join(got.done) or 'nothing new'}"
                  + (f"; already there: {', '.join(got.skipped)}" if got.skipped else ""), highlight=False)
    if BY_HAND.get(name):
        console.print(f"by hand: {BY_HAND[name]}", highlight=False)
    console.print(f"next: {NEXT[name].format(dest=dest)}", highlight=False)


@app.command()
@guarded
def photos(
    path: Annotated[str, typer.Argument(help="The DCI folder (as unpacked by `data download dci`).")],
    source: Annotated[Path, typer.Option("--from", help="SA-1B's sa_000138.tar (read as a stream, never unpacked "
                                                        "whole) or a folder of SA-1B photos.")],
):
    """Write the photos the annotations name into photos/, from SA-1B's tar or a folder of its photos.

    Photos already in photos/ are skipped, each one is written whole or not at all, and the tar is read once,
    stopping when every named photo is found; named photos the source lacks are listed at the end (exit 1).
    """
    from densecaption.cli._common import progress_stages
    from densecaption.data.dci import DCIDataset
    from densecaption.data.photos import fill_photos

    dataset = DCIDataset.open(path)
    if (dataset.root / "annotations").is_dir():
        dataset = DCIDataset.open(path, source="annotations")
    with progress_stages() as stage:
        report = fill_photos(dataset, source, stage)
    out_console().print(f"wrote {len(report.written)} photos to {dataset.photo_dir} "
                        f"({len(report.present)} already there)", highlight=False)
    if report.missing:
        shown = ", ".join(report.missing[:5]) + (", ..." if len(report.missing) > 5 else "")
        raise DataError(f"{len(report.missing)} named photo(s) are not in {source}: {shown}")


@app.command()
@guarded
def export(
    path: PathArg,
    out: Annotated[Path, typer.Argument(help="Folder to write (records/ and entries/, or two .parquet files).")],
    fmt: Annotated[str, typer.Option("--format", help="hf (datasets.load_from_disk) or parquet "
                                                      "(load_dataset('parquet', ...)).")] = "hf",
    split: Annotated[Optional[str], typer.Option(help="One split of splits.json (default: all).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad record instead of skipping it.")] = False,
):
    """Export the dataset as Hugging Face tables: one row per record, and one per sDCI entry.

    Records hold the photo (an Image column), captions, masks as COCO RLE, summaries, negatives and
    clip_scores; entries hold each sDCI entry's crop box, summaries, negatives and clip_scores. Rows are
    written as they are read (memory stays flat), into a temporary folder renamed to OUT when whole.
    """
    from densecaption.cli._common import progress_stages
    from densecaption.data.dci import DCIDataset
    from densecaption.data.export import export as export_tables

    if fmt not in ("hf", "parquet"):
        raise UserError(f"--format {fmt!r}: expected hf or parquet")
    dataset = DCIDataset.open(path)
    log = skip_log(strict)
    with progress_stages() as stage:
        counts = export_tables(dataset, out, fmt, split=split, skip=log, stage=stage, overwrite=overwrite)
    report_skips(log)
    out_console().print(f"wrote {counts['records']} records and {counts['entries']} sDCI entries to {out} "
                        f"({fmt})", highlight=False)

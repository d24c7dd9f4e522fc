"""``densecaption compose ...``: precision/recall caption sets for text-to-image training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from densecaption.cli._common import (
    guarded,
    out_console,
    progress_stages,
    report_skips,
    skip_log,
)
from densecaption.errors import UserError
from densecaption.files import remove_stale_temps

app = typer.Typer(help="Build precision/recall caption sets (Captions4T2I) from sDCI summaries and negatives.",
                  no_args_is_help=True)

Data = Annotated[str, typer.Option(help="A DCI folder with summaries and negatives, or 'sample'.")]
Out = Annotated[Path, typer.Option(help="Folder to write into (made if missing).")]
Mode = Annotated[str | None, typer.Option(
    help="exact: the set's share of true parts equals P up to one part (default); bernoulli: each part true "
         "with probability P, as upstream.")]
Negative = Annotated[str | None, typer.Option(help="Negative kind: swaps, basic, layout or any (default).")]
Pick = Annotated[str | None, typer.Option(
    help="random (default), hardest (highest stored CLIP score) or easiest (lowest).")]
OrderOpt = Annotated[str | None, typer.Option(
    "--order", help="Submask order: area (largest first, default) or tree (pre-order of the mask tree).")]
ShortOpt = Annotated[str | None, typer.Option(
    "--short", help="Images with fewer than K usable submasks: skip (default) or keep with fewer.")]
SummaryOpt = Annotated[str | None, typer.Option(
    "--summary", help="first summary of each entry (default) or a random one.")]
Preset = Annotated[str | None, typer.Option(
    help="captions4t2i: upstream's construction (bernoulli, lowest-scored negative of any kind, area order, "
         "keep short images).")]
Seed = Annotated[int, typer.Option(help="Seed of every random choice.")]
Split = Annotated[str | None, typer.Option(help="Split of splits.json, or 'all'.")]
Formats = Annotated[str, typer.Option("--format", help="Comma list of folder, parquet, jsonl.")]
Tokenizers = Annotated[list[str] | None, typer.Option(
    "--tokenizer", help="NAME_OR_DIR:LENGTH of a tokenizer to report tokens and truncation for, e.g. "
                        "PixArt-alpha/PixArt-XL-2-1024-MS/tokenizer:120 (repeatable; CLIP at 77 is always "
                        "reported).")]
Overwrite = Annotated[bool, typer.Option(help="Replace sets already written there (a grid: start over instead of "
                                               "resuming).")]
Strict = Annotated[bool, typer.Option(help="Stop at the first bad record instead of skipping it.")]


def _config(precision: float, submasks: int, preset, seed, **options):
    from densecaption.captionsets.compose import CaptionSetConfig

    return CaptionSetConfig.build(precision, submasks, preset=preset, seed=seed, **options)


def _tokenizers(specs: list[str] | None):
    from densecaption.captionsets.tokens import clip_tokenizer, load_tokenizer

    return [clip_tokenizer()] + [load_tokenizer(s) for s in specs or []]


def _split(split: str | None) -> str | None:
    return None if split in (None, "all") else split


def _numbers(text: str, kind: type, option: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} {text!r}: expected a comma list of {'numbers' if kind is float else 'integers'}")
    if not values:
        raise UserError(f"{option} {text!r}: give at least one value")
    return list(dict.fromkeys(values))


def _print_sets(rows: list[dict]) -> None:
    """Realised precision (set share of true parts, caption spread) and recall; tokens of each tokenizer."""
    table = Table(title="caption sets")
    specs = [t["spec"] for t in rows[0]["manifest"]["tokens"]] if rows else []
    for col in ("set", "caps", "P", "P real", "P sd", "K", "K mean", "short", *[f"{s} tok/trunc/cut" for s in specs]):
        table.add_column(col, justify="left" if col == "set" else "right")

    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    for r in rows:
        m = r["manifest"]
        prec, rec, c = m["realised"]["precision"], m["realised"]["recall"], m["counts"]
        toks = [f"{num(t['tokens']['mean'], '.0f')}/{num(t['share_truncated'], '.0%')}/{t['subcaptions_cut']}"
                for t in m["tokens"]]
        short = f"{c['short_kept']}k" if m["config"]["short"] == "keep" else f"{c['short_skipped']}s"
        table.add_row(r["name"], str(c["captions"]), f"{m['config']['precision']:g}", num(prec["set"], ".3f"),
                      num(prec["std"], ".2f"), str(m["config"]["submasks"]), num(rec["mean"], ".2f"), short, *toks)
    out_console().print(table)
    out_console().print("short: images with fewer than K usable submasks (k kept, s skipped); tok/trunc/cut: "
                        "mean tokens / captions over the limit / subcaptions truncation cuts", highlight=False)


@app.command("set")
@guarded
def set_(
    data: Data,
    precision: Annotated[float, typer.Option(help="Fraction of true parts, 0 to 1.")],
    submasks: Annotated[int, typer.Option(help="Subcaptions per caption (K).")],
    out: Out,
    mode: Mode = None, negative: Negative = None, negative_pick: Pick = None, order: OrderOpt = None,
    short: ShortOpt = None, summary: SummaryOpt = None, preset: Preset = None, seed: Seed = 0,
    split: Split = "train", format: Formats = "folder,parquet,jsonl", tokenizer: Tokenizers = None,
    overwrite: Overwrite = False, strict: Strict = False,
):
    """One caption set: base summary + K submask summaries per image, a fraction P of them true.

    Writes OUT/manifest.json (parameters, realised precision and recall, token report, source data and its
    sha256), OUT/images/ with metadata.jsonl (diffusers image folder), OUT/captions.parquet and
    OUT/captions.jsonl.
    """
    from densecaption.captionsets.build import data_info, write_one
    from densecaption.captionsets.export import parse_formats, prepare_out
    from densecaption.captionsets.source import prepare_dataset
    from densecaption.data.dci import DCIDataset

    config = _config(precision, submasks, preset, seed, mode=mode, negative=negative, negative_pick=negative_pick,
                     order=order, short=short, summary=summary)
    formats = parse_formats(format)
    prepare_out(out, overwrite)  # fail before the work, not after
    remove_stale_temps(out)
    dataset = DCIDataset.open(data)
    sp = _split(split)
    tokenizers = _tokenizers(tokenizer)
    log = skip_log(strict)
    with progress_stages() as stage:
        prepared = prepare_dataset(dataset, sp, config, log, stage("reading records", len(dataset.files(sp))))
        manifest = write_one(prepared, config, out, formats, data_info(dataset, sp), tokenizers, True)
    report_skips(log)
    _print_sets([{"name": str(out), "manifest": manifest}])
    out_console().print(f"wrote {out}", highlight=False)


@app.command()
@guarded
def grid(
    data: Data,
    out: Out,
    precisions: Annotated[str, typer.Option(help="Comma list of fractions.")] = "0,0.25,0.5,0.75,1",
    submasks: Annotated[str, typer.Option(help="Comma list of subcaption counts.")] = "0,1,2,3",
    mode: Mode = None, negative: Negative = None, negative_pick: Pick = None, order: OrderOpt = None,
    short: ShortOpt = None, summary: SummaryOpt = None, preset: Preset = None, seed: Seed = 0,
    split: Split = "train", format: Formats = "folder,parquet,jsonl", tokenizer: Tokenizers = None,
    overwrite: Overwrite = False, strict: Strict = False,
):
    """The paper's grid: one set per (P, K) under OUT/p<P>_k<K>/, and OUT/manifest.json over all of them.

    The same records, summaries and negatives serve every set (chosen once from the seed), so sets differ
    only in which parts are true and how many subcaptions they hold. A grid cut short (killed) resumes when
    the same command runs again: sets already complete (their manifest is written last) are kept, the
    others written. Another grid's sets in OUT stop the run unless --overwrite.
    """
    from densecaption.captionsets.build import build_grid
    from densecaption.captionsets.export import parse_formats, read_manifest
    from densecaption.data.dci import DCIDataset
    from densecaption.files import writable_folder

    ps = _numbers(precisions, float, "--precisions")
    ks = _numbers(submasks, int, "--submasks")
    config = _config(ps[0], ks[0], preset, seed, mode=mode, negative=negative, negative_pick=negative_pick,
                     order=order, short=short, summary=summary)
    formats = parse_formats(format)
    writable_folder(out)  # fail before the work, not after
    dataset = DCIDataset.open(data)
    sp = _split(split)
    tokenizers = _tokenizers(tokenizer)
    log = skip_log(strict)
    remove_stale_temps(out)
    kept: list[str] = []
    with progress_stages() as stage:
        manifest = build_grid(dataset, sp, config, ps, ks, out, formats, tokenizers, log, overwrite, stage,
                              on_kept=kept.append)
    report_skips(log)
    rows = [{"name": s["folder"], "manifest": read_manifest(out / s["folder"])} for s in manifest["sets"]]
    _print_sets(rows)
    chosen = manifest.get("image_set") or {}
    if chosen.get("count") is not None:
        dropped = chosen.get("dropped") or []
        out_console().print(f"every set holds the same {chosen['count']} images ({chosen.get('rule')})"
                            + (f"; {len(dropped)} dropped (listed in the grid manifest)" if dropped else ""),
                            highlight=False)
    if kept:
        names = ", ".join(kept[:6]) + (" ..." if len(kept) > 6 else "")
        out_console().print(f"kept {len(kept)} sets complete from an earlier run ({names})", highlight=False)
    out_console().print(f"wrote {len(rows) - len(kept)} sets and {out / 'manifest.json'}", highlight=False)


@app.command("from-captions")
@guarded
def from_captions(
    captions: Annotated[Path, typer.Option(help="The output of `densecaption caption` (JSONL: file, caption, model, "
                                                "prompt, weights; COCO lines also coco_id).")],
    images: Annotated[Path, typer.Option(help="The folder the lines' 'file' is relative to (caption's --images, or "
                                              "the COCO folder of --coco).")],
    out: Out,
    tokenizer: Tokenizers = None,
    over_limit: Annotated[str, typer.Option(
        help="Captions over 77 CLIP tokens (the paper asked for fewer): keep (counted and reported), drop (left "
             "out and listed) or reask (ask --vlm again with --reask-prompt; the reply is kept if it fits, else "
             "the shorter of the two).")] = "keep",
    vlm: Annotated[str | None, typer.Option(help="With --over-limit reask: the vision-language model to ask, as "
                                                 "`densecaption caption --vlm` takes it (usually the captioner).")]
    = None,
    reask_prompt: Annotated[str | None, typer.Option(help="With --over-limit reask: what the model is asked "
                                                          "(default: 'Describe the image concisely in one short "
                                                          "sentence').")] = None,
    device: Annotated[str, typer.Option(help="With --over-limit reask and a local model: auto, cpu, cuda, ...")]
    = "auto",
    seed: Seed = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a set (or any files) already in --out.")] = False,
):
    """A caption set from synthetic captions (Captions4T2I section 4): `caption` output -> set folder.

    Writes OUT in the layout of `compose set` (OUT/images/ with metadata.jsonl, OUT/captions.jsonl,
    OUT/manifest.json naming the captioner, its prompt and weights, the captions file's sha256, the image set
    and the token report), so `train t2i --captions OUT` and `quality ... --captions OUT --images OUT` take it.
    Captions over 77 CLIP tokens are counted and handled by --over-limit. The set is written in a temporary
    folder renamed into place; one file must hold one captioner's captions.
    """
    from densecaption.captionsets.bridge import DEFAULT_REASK_PROMPT, BridgeConfig, bridge, check_out, reask_with
    from densecaption.generation.backends import BackendOptions, GeneratorSpec

    config = BridgeConfig(over_limit=over_limit, vlm=vlm,  # type: ignore[arg-type]  (checked by BridgeConfig)
                          reask_prompt=reask_prompt or DEFAULT_REASK_PROMPT)
    if vlm:
        GeneratorSpec.parse(vlm)
    check_out(out, overwrite)
    tokenizers = _tokenizers(tokenizer)
    ask = reask_with(vlm, config.reask_prompt, config.reask_max_tokens, seed, BackendOptions(device=device)) \
        if config.over_limit == "reask" else None
    with progress_stages() as stage:
        stage("writing the set", None)
        manifest = bridge(captions, images, out, tokenizers=tokenizers, config=config, overwrite=overwrite, ask=ask)
    console = out_console()
    report, who = manifest["over_limit"], manifest["captioner"]
    longest = report["longest"]
    console.print(f"{report['over']} of {report['captions']} captions over {report['limit']} CLIP tokens "
                  f"({report['share_over']:.1%}; longest {longest['tokens']} tokens: {longest['file']})",
                  highlight=False)
    if report.get("dropped"):
        console.print(f"dropped {len(report['dropped'])}: {', '.join(report['dropped'][:6])}"
                      + (" ..." if len(report["dropped"]) > 6 else ""), highlight=False)
    if "reasked" in report:
        replaced = sum(a["kept"] == "reply" for a in report["reasked"])
        console.print(f"asked {len(report['reasked'])} again: {replaced} replies kept, {report['still_over']} still "
                      f"over the limit", highlight=False)
    for t in manifest["tokens"][1:]:
        console.print(f"{t['spec']}: {t['captions_truncated']} of {t['captions']} captions over {t['limit']} tokens",
                      highlight=False)
    label = "" if who["weights"] in ("pretrained", "remote") else f" (captioner weights: {who['weights']})"
    console.print(f"wrote {out}: {manifest['counts']['captions']} captions of {who['model']}{label}", highlight=False)

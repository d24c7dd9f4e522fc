"""``densecaption generate ...``: sDCI summaries and negatives written by a language model (or rules)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, Sequence

import typer
from rich.markup import escape

from densecaption.cli._common import err_console, guarded, out_console, report_skips, skip_log
from densecaption.cli._jobs import (ApiKeyEnv, Concurrency, Device, JobOptions, LogPath, MaxFailures, MaxRetries,
                                    Restart, RetryFailed, Seed, Strict, Temperature, Timeout, decoding_settings,
                                    finish, job_progress)
from densecaption.errors import DataError, UserError
from densecaption.files import remove_stale_temps
from densecaption.generation.backends import generator_spec_help

app = typer.Typer(help="Generate sDCI text with a language model: summaries and negatives.", no_args_is_help=True)

Data = Annotated[str, typer.Option(help="A DCI folder, or 'sample' for the bundled sample.")]
Out = Annotated[Optional[Path], typer.Option(help="Write a new dataset here (official layout, photos hard-linked).")]
InPlace = Annotated[bool, typer.Option("--in-place", help="Rewrite the input dataset instead.")]
Split = Annotated[Optional[str], typer.Option(help="Only this split of splits.json (default: all).")]
Limit = Annotated[Optional[int], typer.Option(help="Only the first N records (in splits.json order).")]
Masks = Annotated[bool, typer.Option(help="Also the masks sDCI keeps (unpadded box >= --min-box px); "
                                          "--no-masks: the whole images only.")]
Prompts = Annotated[Optional[Path], typer.Option(
    "--prompts", help="A JSON file of your own prompt templates, name -> text (see docs/generation.md); names it "
                      "leaves out keep the built-in text. Recorded, with its sha256, in the job log's header.")]


def _prompts(path: Path | None, builtin: Callable[[], Any], placeholders: dict, version: str) -> Any:
    """The templates of a run: the built-in ones, or those of ``--prompts`` over them (reported on one line)."""
    from densecaption.generation.prompts import load_prompts

    if path is None:
        return builtin()
    prompts = load_prompts(path, builtin().templates, placeholders, version)
    out_console().print(f"prompts: {', '.join(prompts.given)} from {prompts.file} (sha256 {prompts.sha256[:12]})",
                        highlight=False)
    return prompts


def _run(label: str, llm: str, config, options: JobOptions, target, jobs: Sequence, work: Callable,
         check: Callable):
    """Run ``jobs`` against the language model ``llm`` through the job runner, with a progress bar.

    ``work(item, chat)`` does one item; the log (``generate-<label>.jobs.jsonl`` unless --log) records the
    settings that shape outputs. Returns (report, log path)."""
    from densecaption.generation.backends import load_backend
    from densecaption.generation.jobs import JobLog, JobRunner
    from densecaption.generation.summaries import Chat

    backend = load_backend(llm, options.backend_options())
    try:
        log = options.log or target.log_dir / f"generate-{label}.jobs.jsonl"
        settings = {"llm": llm, **config.settings(), **decoding_settings(options)}
        runner = JobRunner(JobLog(log, f"generate {label}", settings), options.runner_config(backend),
                           restart=options.restart)
        with job_progress(label) as progress:
            runner.progress = progress
            return runner.run(jobs, lambda item, ctx: work(item, Chat(backend, ctx)), check), log
    finally:
        backend.close()


def _by_file(outputs: dict[str, Any]) -> dict[str, dict[tuple[str, ...], Any]]:
    """Job outputs grouped by record: ``{file: {(key[, kind]): output}}`` (ids are ``file#key[#kind]``)."""
    grouped: dict[str, dict[tuple[str, ...], Any]] = {}
    for job_id, output in outputs.items():
        file, *rest = job_id.split("#")
        grouped.setdefault(file, {})[tuple(rest)] = output
    return grouped


@app.command()
@guarded
def summaries(
    data: Data,
    llm: Annotated[str, typer.Option(help=f"The language model: {escape(generator_spec_help())}.")],
    out: Out = None,
    in_place: InPlace = False,
    split: Split = None,
    limit: Limit = None,
    masks: Masks = True,
    n_base: Annotated[int, typer.Option(help="Summaries per whole image, the first included.")] = 10,
    n_mask: Annotated[Optional[int], typer.Option(help="Summaries per mask, the first included (default: 1 + "
                                                       "max(4, ceil(ln(CLIP tokens of the mask's text)))).")] = None,
    words: Annotated[int, typer.Option(help="Words the first summary aims at.")] = 65,
    reduce_tries: Annotated[int, typer.Option(help="Shortening requests before an entry that does not fit 77 "
                                                   "CLIP tokens fails.")] = 4,
    max_tokens: Annotated[int, typer.Option(help="New tokens per single-summary request.")] = 256,
    multi_max_tokens: Annotated[int, typer.Option(help="New tokens per numbered-list request.")] = 1024,
    min_box: Annotated[int, typer.Option(help="Smallest unpadded mask box (px) that gets summaries.")] = 224,
    prompts: Prompts = None,
    concurrency: Concurrency = 8, max_retries: MaxRetries = 5, timeout: Timeout = 120.0,
    max_failures: MaxFailures = 100, seed: Seed = 0, temperature: Temperature = 0.0,
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY", device: Device = "auto", log: LogPath = None,
    restart: Restart = False, retry_failed: RetryFailed = False, strict: Strict = False,
):
    """Write sDCI summaries: a first summary of about 65 words per entry, shortened until it fits 77 CLIP
    tokens, then numbered alternatives until each entry has N.

    Entries are each whole image and each mask whose unpadded box is at least 224 px; their texts are the
    ones DCI assembled from the annotations. The result is a new dataset (or, with --in-place, the input
    rewritten) whose complete/ files carry the new summaries; old negatives and clip_scores are dropped, since
    they were made from the old summaries. Re-running the same command continues a killed run.
    """
    from densecaption.data.dci import DCIDataset
    from densecaption.generation.backends import GeneratorSpec
    from densecaption.generation.datasets import open_target, read_records, select_files, write_records
    from densecaption.generation.prompts import SUMMARY_PLACEHOLDERS
    from densecaption.generation.summaries import (PROMPT_VERSION, SummaryConfig, builtin_prompts, check_summaries,
                                                   summarise, summary_jobs, with_summaries)
    from densecaption.tokens import ClipTokenCounter

    options = JobOptions(concurrency=concurrency, max_retries=max_retries, timeout=timeout,
                         max_failures=max_failures, seed=seed, temperature=temperature, api_key_env=api_key_env,
                         device=device, log=log, restart=restart, retry_failed=retry_failed, strict=strict)
    GeneratorSpec.parse(llm)
    if n_base < 1 or (n_mask is not None and n_mask < 1):
        raise UserError("--n-base and --n-mask should be at least 1")
    templates = _prompts(prompts, builtin_prompts, SUMMARY_PLACEHOLDERS, PROMPT_VERSION)
    dataset = DCIDataset.open(data)
    target = open_target(dataset, out, in_place=in_place)
    remove_stale_temps(target.writer.root)
    files = select_files(dataset, split, limit)
    config = SummaryConfig(words=words, n_base=n_base, n_mask=n_mask, reduce_tries=reduce_tries,
                           max_tokens=max_tokens, multi_max_tokens=multi_max_tokens, masks=masks, min_box=min_box,
                           prompts=templates)
    count = ClipTokenCounter()
    skipped = skip_log(strict)
    jobs = summary_jobs(read_records(dataset, files, skipped), config, count)
    report_skips(skipped)
    report, log_path = _run("summaries", llm, config, options, target, jobs,
                            lambda item, chat: summarise(item, chat, config, count), check_summaries(config, count))
    grouped = _by_file(report.outputs())
    written = write_records(target, dataset, files,
                            lambda r: with_summaries(r, {k[0]: v for k, v in grouped.get(r.file, {}).items()}))
    with_base = sum(1 for f in written if ("base",) in grouped.get(f, {}))
    out_console().print(f"wrote {len(written)} records ({with_base} with summaries) to {target.writer.root}",
                        highlight=False)
    finish(report, label="summaries", log=log_path, options=options)


@app.command()
@guarded
def negatives(
    data: Data,
    llm: Annotated[Optional[str], typer.Option(help=f"The language model for the LLM kinds: "
                                                    f"{escape(generator_spec_help())}.")] = None,
    out: Out = None,
    in_place: InPlace = False,
    kinds: Annotated[str, typer.Option(help="LLM negative kinds, comma-separated: basic, layout, swaps.")]
    = "basic,layout,swaps",
    rules: Annotated[bool, typer.Option("--rules", help="Also rule-based negatives (spaCy swaps, WordNet "
                                                        "replacements), as kinds rule_swap and rule_replace.")]
    = False,
    spacy_model: Annotated[Optional[str], typer.Option(help="spaCy pipeline for --rules and for checking what LLM "
                                                            "negatives mean (default: the official en_core_web_sm, "
                                                            "else its PyPI mirror).")] = None,
    wordnet_dir: Annotated[Optional[Path], typer.Option(help="WordNet folder for --rules (default: NLTK's data "
                                                              "path).")] = None,
    split: Split = None,
    limit: Limit = None,
    masks: Masks = True,
    n_base: Annotated[int, typer.Option(help="Negatives of each kind (LLM and --rules) per whole image.")] = 3,
    n_mask: Annotated[int, typer.Option(help="Negatives of each kind (LLM and --rules) per mask.")] = 1,
    tries: Annotated[int, typer.Option(help="Requests per negative before its entry and kind fail.")] = 4,
    reduce_tries: Annotated[int, typer.Option(help="Shortening requests per candidate.")] = 4,
    max_tokens: Annotated[int, typer.Option(help="New tokens per request.")] = 256,
    prompts: Prompts = None,
    concurrency: Concurrency = 8, max_retries: MaxRetries = 5, timeout: Timeout = 120.0,
    max_failures: MaxFailures = 100, seed: Seed = 0, temperature: Temperature = 0.0,
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY", device: Device = "auto", log: LogPath = None,
    restart: Restart = False, retry_failed: RetryFailed = False, strict: Strict = False,
):
    """Write sDCI negatives from each summarised entry's first summary.

    LLM kinds (DCI appendix A.2): basic, layout and swaps; a reply is kept when its CLIP length is from 15
    tokens under to 50 over the summary's, then shortened to 5 over (at most 77), and only when it means what
    its kind means: never a summary of the entry or a part of one; swaps rearranges the summary's content
    words; basic and layout bring a word the summary lacks. Turned-down replies are asked again (--tries).
    --rules adds rule-based kinds (rule_swap, rule_replace), --n-base/--n-mask of each. Regenerated
    kinds replace the old ones; clip_scores of changed records are dropped (recompute them with `densecaption
    data clip-scores`). Re-running the same command continues a killed run.
    """
    from densecaption.data.dci import DCIDataset
    from densecaption.generation.backends import GeneratorSpec
    from densecaption.generation.datasets import open_target, read_records, select_files, write_records
    from densecaption.generation.negatives import (PROMPT_VERSION, Analyser, NegativeConfig, all_summaries,
                                                   builtin_prompts, check_negatives, make_negatives, negative_jobs,
                                                   rule_negatives_for, sources, with_negatives)
    from densecaption.generation.prompts import NEGATIVE_PLACEHOLDERS
    from densecaption.tokens import ClipTokenCounter

    options = JobOptions(concurrency=concurrency, max_retries=max_retries, timeout=timeout,
                         max_failures=max_failures, seed=seed, temperature=temperature, api_key_env=api_key_env,
                         device=device, log=log, restart=restart, retry_failed=retry_failed, strict=strict)
    if llm is None and not rules:
        raise UserError("give --llm SPEC for LLM negatives, --rules for rule-based ones, or both")
    if llm is not None:
        GeneratorSpec.parse(llm)
    if n_base < 0 or n_mask < 0:
        raise UserError("--n-base and --n-mask should be 0 or more")
    templates = _prompts(prompts, builtin_prompts, NEGATIVE_PLACEHOLDERS, PROMPT_VERSION) if llm else None
    if prompts is not None and llm is None:
        raise UserError("--prompts is for the LLM kinds: give --llm SPEC too")
    config = NegativeConfig(kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()), n_base=n_base,
                            n_mask=n_mask, tries=tries, reduce_tries=reduce_tries, max_tokens=max_tokens, masks=masks,
                            **({"prompts": templates} if templates is not None else {}))
    dataset = DCIDataset.open(data)
    if dataset.source != "complete":
        raise DataError(f"{dataset.root}: no complete/ folder; negatives are made from summaries "
                        f"(run `densecaption generate summaries` first)")
    target = open_target(dataset, out, in_place=in_place)
    remove_stale_temps(target.writer.root)
    files = select_files(dataset, split, limit)
    count = ClipTokenCounter()
    skipped = skip_log(strict)
    entries: list[tuple[str, str, str]] = []
    summaries_of: dict[tuple[str, str], tuple[str, ...]] = {}
    for record in read_records(dataset, files, skipped):
        entries += [(record.file, key, text) for key, text in sources(record, masks)]
        summaries_of.update(all_summaries(record, masks))
    report_skips(skipped)
    if not entries:
        raise DataError(f"{dataset.root}: none of the {len(files)} records has summaries")

    report = log_path = None
    grouped: dict[str, dict[tuple[str, ...], Any]] = {}
    if llm is not None:
        analyse = Analyser(spacy_model)
        report, log_path = _run("negatives", llm, config, options, target,
                                negative_jobs(entries, config, summaries_of),
                                lambda item, chat: make_negatives(item, chat, config, count, analyse),
                                check_negatives(config, count))
        grouped = _by_file(report.outputs())

    rule_made: dict[tuple[str, str], dict[str, list[str]]] = {}
    problems = []
    if rules:
        rule_options = {k: v for k, v in (("spacy_model", spacy_model), ("wordnet_dir", wordnet_dir)) if v}
        rule_made, problems = rule_negatives_for(entries, seed=seed, count=count, n_base=n_base, n_mask=n_mask,
                                                 **rule_options)
    rules_by_file: dict[str, dict[str, dict[str, list[str]]]] = {}
    for (f, key), made_kinds in rule_made.items():
        rules_by_file.setdefault(f, {})[key] = made_kinds
    keys_of: dict[str, list[str]] = {}
    for f, key, _ in entries:
        keys_of.setdefault(f, []).append(key)
    dropped: list[str] = []

    def transform(record):
        llm_out = {(k[0], k[1]): v for k, v in grouped.get(record.file, {}).items()}
        rule_out = rules_by_file.get(record.file, {}) if rules else None
        new = with_negatives(record, llm_out, config.kinds if llm is not None else (), rule_out,
                             keys_of.get(record.file, []))
        if record.clip_scores is not None and new.clip_scores is None:
            dropped.append(record.file)
        return new

    written = write_records(target, dataset, files, transform)
    console = out_console()
    console.print(f"wrote {len(written)} records to {target.writer.root}", highlight=False)
    if rules:
        made = sum(len(texts) for kinds_made in rule_made.values() for texts in kinds_made.values())
        console.print(f"rule negatives: {made} made for {len(entries)} entries", highlight=False)
        for reason, n in Counter(f"{p.kind}: {p.reason}" for p in problems).most_common():
            err_console().print(f"  [yellow]not made[/] {escape(reason)} ({n} entries)", highlight=False)
    if dropped:
        err_console().print(f"[yellow]note:[/] clip_scores dropped from {len(dropped)} records whose negatives "
                            f"changed: run `densecaption data clip-scores` on the output", highlight=False)
    if report is not None:
        finish(report, label="negatives", log=log_path, options=options)

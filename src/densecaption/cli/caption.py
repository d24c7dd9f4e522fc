"""``densecaption caption``: synthetic captions for a folder of images from a vision-language model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from densecaption.cli._common import guarded, out_console
from densecaption.cli._jobs import (ApiKeyEnv, Concurrency, Device, JobOptions, LogPath, MaxFailures, MaxRetries,
                                    Restart, RetryFailed, Seed, Strict, Temperature, Timeout, decoding_settings,
                                    finish, job_progress)
from densecaption.errors import UserError
from densecaption.files import remove_stale_temps, writable_file
from densecaption.generation.backends import generator_spec_help
from densecaption.generation.captions import DEFAULT_PROMPT


@guarded
def caption(
    images: Annotated[Optional[Path], typer.Option(help="Folder of images (jpg, png, webp, ...).")] = None,
    coco: Annotated[Optional[Path], typer.Option(help="Instead of --images: a COCO folder (train2017/, val2017/, "
                                                      "annotations/captions_*.json).")] = None,
    split: Annotated[str, typer.Option(help="With --coco: the COCO 2017 split (val2017, train2017), or with "
                                            "--karpathy its split (test, val, train, restval).")] = "val2017",
    karpathy: Annotated[Optional[Path], typer.Option(help="With --coco: Karpathy's split file (dataset_coco.json); "
                                                          "--split then names one of its splits.")] = None,
    *,
    vlm: Annotated[str, typer.Option(help=f"The vision-language model, one that takes images: "
                                          f"{escape(generator_spec_help())} (a local image-text-to-text model).")],
    out: Annotated[Path, typer.Option(help="JSONL file to write: one line per captioned image.")],
    prompt: Annotated[str, typer.Option(help="What the model is asked about each image.")] = DEFAULT_PROMPT,
    max_tokens: Annotated[int, typer.Option(help="New tokens per caption (the model's tokens).")] = 77,
    recursive: Annotated[bool, typer.Option(help="Also images in sub-folders.")] = False,
    concurrency: Concurrency = 8, max_retries: MaxRetries = 5, timeout: Timeout = 120.0,
    max_failures: MaxFailures = 100, seed: Seed = 0, temperature: Temperature = 0.0,
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY", device: Device = "auto", log: LogPath = None,
    restart: Restart = False, retry_failed: RetryFailed = False, strict: Strict = False,
):
    """Caption every image in a folder, or COCO's images, with a vision-language model (Captions4T2I section 4).

    Writes OUT with one JSON line per captioned image: file (relative to --images or --coco; COCO images also
    get coco_id), caption, model, prompt and weights, in file-name order (COCO: id order). Progress is kept in a job log beside OUT (OUT's name with
    .jobs.jsonl), so re-running the same command after a crash or kill continues where it stopped; failed
    images are listed at the end with their reasons and are not written to OUT.
    """
    from densecaption.generation.backends import GeneratorSpec, load_backend
    from densecaption.generation.captions import (caption_jobs, caption_lines, caption_work, coco_images,
                                                  list_images, write_captions)
    from densecaption.generation.jobs import JobLog, JobRunner, check_nonempty

    options = JobOptions(concurrency=concurrency, max_retries=max_retries, timeout=timeout,
                         max_failures=max_failures, seed=seed, temperature=temperature, api_key_env=api_key_env,
                         device=device, log=log, restart=restart, retry_failed=retry_failed, strict=strict)
    GeneratorSpec.parse(vlm)
    if max_tokens < 1:
        raise UserError("--max-tokens should be at least 1")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: give a .jsonl file name")
    writable_file(out)  # its folder, and the job log's: fail before the work, not after
    if log is not None:
        writable_file(log)
    remove_stale_temps(out.parent, recursive=False)
    if (images is None) == (coco is None):
        raise UserError("give exactly one of --images DIR and --coco DIR")
    if karpathy is not None and coco is None:
        raise UserError("--karpathy needs --coco DIR (the folder holding the COCO images)")
    coco_ids = None
    if coco is not None:
        files, coco_ids = coco_images(coco, split, karpathy)
        jobs = caption_jobs(coco.expanduser(), files)
    else:
        jobs = caption_jobs(images, list_images(images, recursive=recursive))
    backend = load_backend(vlm, options.backend_options())
    try:
        if not backend.reads_images:
            raise UserError(f"--vlm {vlm}: a text-only model cannot caption images (give an image-text-to-text "
                            f"model or a server that takes images)")
        log_path = options.log or out.with_name(out.stem + ".jobs.jsonl")
        settings = {"vlm": vlm, "prompt": prompt, "max_tokens": max_tokens, **decoding_settings(options)}
        runner = JobRunner(JobLog(log_path, "caption", settings), options.runner_config(backend),
                           restart=options.restart)
        with job_progress("captions") as progress:
            runner.progress = progress
            report = runner.run(jobs, caption_work(backend, prompt, max_tokens), check_nonempty)
        weights = backend.weights
    finally:
        backend.close()
    lines = caption_lines(report, model=vlm, prompt=prompt, weights=weights, coco_ids=coco_ids)
    write_captions(out, lines)
    label = "" if weights in ("pretrained", "remote") else f" (weights: {weights})"
    out_console().print(f"wrote {len(lines)} captions to {out}{label}", highlight=False)
    finish(report, label="captions", log=log_path, options=options)

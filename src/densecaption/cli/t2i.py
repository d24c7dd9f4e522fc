"""``densecaption t2i ...``: images from text-to-image models, and their T2I-CompBench scores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from densecaption.cli._common import guarded, out_console, progress_stages
from densecaption.cli.compbench import compbench
from densecaption.errors import UserError
from densecaption.evaluation.compbench.prompts import CATEGORIES
from densecaption.t2i.families import FAMILIES

app = typer.Typer(help="Generate images with text-to-image models (with a LoRA) and score them on "
                       "T2I-CompBench.", no_args_is_help=True)
app.command("compbench")(compbench)


@app.command()
@guarded
def generate(
    model: Annotated[str, typer.Option(help=f"{FAMILIES.choices()} (their hub checkpoints), a hub id or a local "
                                            "diffusers folder (e.g. from `models init-random ... --backend "
                                            "diffusers`).")],
    out: Annotated[Path, typer.Option(help="Run folder (with --compbench-dir: one run folder per category "
                                           "inside it).")],
    lora: Annotated[Optional[str], typer.Option(help="LoRA folder written by `train t2i` (OUT/lora); its caption "
                                                     "set is recorded in the manifest.")] = None,
    prompts: Annotated[Optional[Path], typer.Option(help="A prompt file, one prompt per line (CRLF or LF).")] = None,
    compbench_dir: Annotated[Optional[Path], typer.Option(
        help="Your copy of T2I-CompBench's examples/dataset folder (none is bundled): prompts come from "
             "<category>_val.txt.")] = None,
    category: Annotated[Optional[list[str]], typer.Option(
        help=f"T2I-CompBench category (repeat for several): {CATEGORIES.choices()}. With --prompts: the category "
             "the file's prompts are scored as.")]
    = None,
    images_per_prompt: Annotated[int, typer.Option(help="Images per prompt (T2I-CompBench: 10).")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of image 0; image i uses seed + i (T2I-CompBench: 42).")] = 42,
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps (default: the pipeline's own).")] = None,
    guidance_scale: Annotated[Optional[float], typer.Option(help="Classifier-free guidance (default: the "
                                                                 "pipeline's own).")] = None,
    height: Annotated[Optional[int], typer.Option(help="Image height (default: the model's native size).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Image width (default: the model's native size).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per pipeline call (each with its own seeded "
                                                 "generator).")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ... (under accelerate launch: each "
                                             "process's own).")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (fp16 on GPU, fp32 on CPU), fp32, fp16 or bf16.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Start the run folder again instead of resuming it.")] = False,
):
    """Generate N images per prompt with seeds seed, seed+1, ... (T2I-CompBench's protocol).

    Writes OUT/manifest.json (model, LoRA and the caption set it was trained on, prompts, settings),
    OUT/images/*.png and OUT/images.jsonl (file -> prompt, seed). Run it again to resume a stopped run.
    Several GPUs: `accelerate launch -m densecaption t2i generate ...` shares the images out.
    """
    from densecaption.evaluation.compbench.prompts import check_category, prompt_file, read_prompts
    from densecaption.t2i.generate import GenerateConfig, GenerationSettings, generate_images, open_pipeline

    if (prompts is None) == (compbench_dir is None):
        raise UserError("give either --prompts FILE or --compbench-dir DIR with --category NAME")
    categories = list(dict.fromkeys(category or []))
    for name in categories:
        check_category(name)
    if prompts is not None:
        if len(categories) > 1:
            raise UserError("--prompts takes at most one --category (the category its prompts belong to)")
        jobs = [(prompts, categories[0] if categories else None, out)]
    else:
        if not categories:
            raise UserError("--compbench-dir needs --category (repeat it for several)")
        jobs = [(prompt_file(compbench_dir, c), c, out / c) for c in categories]
    settings = GenerationSettings(steps=steps, guidance_scale=guidance_scale, height=height, width=width)
    console = out_console()
    loaded = open_pipeline(model, lora, device, dtype)
    for file, cat, run_out in jobs:
        cfg = GenerateConfig(model=model, out=str(run_out), prompts=read_prompts(file), prompts_file=str(file),
                             category=cat, lora=lora, images_per_prompt=images_per_prompt, seed=seed,
                             batch_size=batch_size, device=device, dtype=dtype, settings=settings,
                             overwrite=overwrite)
        with progress_stages() as stage:
            summary = generate_images(cfg, progress=lambda name, total, cat=cat: stage(f"{name} {cat or ''}", total),
                                      loaded=loaded)
        note = " (random weights: images show nothing)" if summary["weights"] == "random" else ""
        console.print(f"{run_out}: {summary['generated']} generated, {summary['skipped']} already there, "
                      f"{summary['total']} in all{note}", highlight=False)

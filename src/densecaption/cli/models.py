"""``densecaption models ...``: model folders for tests and demos."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from densecaption.cli._common import guarded, out_console

app = typer.Typer(help="Make and inspect model folders.", no_args_is_help=True)


# Tiny random transformers models other than CLIP: ARCH -> ("module:function", how the product loads it).
HF_TINY = {
    "llava": ("densecaption.models.tiny_vlm:init_random_llava", "hf:{out} (captioning, quality precision --vlm)"),
    "blip-vqa": ("densecaption.models.tiny_blip:init_random_blip_vqa", "t2i compbench --vqa-model {out}"),
    "owlvit": ("densecaption.models.tiny_detector:init_random_owlvit", "t2i compbench --detector owlvit:{out}"),
}


class Backend(str, Enum):
    open_clip = "open_clip"
    hf = "hf"
    diffusers = "diffusers"


@app.command("init-random")
@guarded
def init_random(
    arch: Annotated[str, typer.Argument(help="open_clip architecture, e.g. ViT-B-32 (sizes for both backends); "
                                             "with --backend hf also the always-tiny 'llava' (captioning), "
                                             "'blip-vqa' (T2I-CompBench attribute binding) and 'owlvit' (its "
                                             "spatial detector). With --backend diffusers a "
                                             "text-to-image family: pixart-alpha, sd21 or sdxl (always tiny).")],
    out: Annotated[Path, typer.Argument(help="Folder to write (load it as open_clip:local-dir:OUT or hf:OUT; a "
                                             "diffusers pipeline as --model OUT).")],
    backend: Annotated[Backend, typer.Option(help="open_clip folder, or a transformers CLIP folder (CLIPModel "
                                                  "with a CLIP tokenizer and image processor), or a diffusers "
                                                  "text-to-image pipeline (tiny, with test tokenizers).")]
    = Backend.open_clip,
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
    tiny: Annotated[bool, typer.Option(help="Shrink widths and depths to a few layers (fast tests).")] = False,
):
    """Write a random-initialised model with the marker that labels its results ``weights: random``."""
    if backend is Backend.diffusers:
        from densecaption.t2i.pipelines import init_random_pipeline

        folder = init_random_pipeline(arch.lower(), out, seed=seed)
        out_console().print(f"wrote random {arch} pipeline (diffusers, tiny) to {folder}; load it as --model {folder} "
                            f"(e.g. densecaption train t2i --model {folder} ..., densecaption t2i generate --model "
                            f"{folder} ...)", highlight=False)
        return
    if backend is Backend.hf and arch.lower() in HF_TINY:
        import importlib

        target, usage = HF_TINY[arch.lower()]
        module, _, func = target.partition(":")
        folder = getattr(importlib.import_module(module), func)(out, seed=seed)
        spec = usage.format(out=folder)
    elif backend is Backend.hf:
        from densecaption.models.hf_backend import init_random_hf_clip

        folder = init_random_hf_clip(arch, out, seed=seed, tiny=tiny)
        spec = f"hf:{folder}"
    else:
        from densecaption.models.open_clip_backend import init_random_open_clip

        folder = init_random_open_clip(arch, out, seed=seed, tiny=tiny)
        spec = f"open_clip:local-dir:{folder}"
    out_console().print(f"wrote random {arch} ({backend.value}) to {folder}; load it as {spec}", highlight=False)

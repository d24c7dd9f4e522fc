"""Images for a list of prompts, T2I-CompBench's way: N images per prompt, image i with its own generator
seeded ``seed + i`` (42, 43, ... by default), recorded in a manifest instead of encoded in file names.

A run folder holds ``manifest.json`` (model, LoRA and the caption set behind it, prompts, settings),
``images/PPPPP_II.png`` and ``images.jsonl`` (one row per finished image: file, prompt, indices, seed). Rows
are appended after each image is written, so a killed run resumes with what is missing; a folder holding a
different run is refused, and so is a second run while one holds the folder (a lock file, ``.lock``, in it).
Under ``accelerate launch`` the images are shared out between the processes.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from densecaption.data.minisets import is_constructed
from densecaption.errors import UserError
from densecaption.evaluation.results import versions
from densecaption.files import JsonlLog, atomic_write, atomic_write_text, lock_or_fail, remove_stale_temps
from densecaption.t2i.lineage import RUN_IMAGES, RUN_KIND, RUN_MANIFEST, read_run_images

PACKAGES = ("densecaption", "torch", "diffusers", "transformers", "peft", "accelerate")
# Settings that make two runs the same run (a resumed run must match the folder's manifest on all of them).
IDENTITY = ("model", "lora", "category", "images_per_prompt", "seed", "generation")


@dataclass
class GenerationSettings:
    """Sampler settings; None takes the pipeline's own default (recorded as the value it used)."""

    steps: int | None = None
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    negative_prompt: str | None = None


@dataclass
class GenerateConfig:
    model: str
    out: str
    prompts: list[str]
    prompts_file: str
    category: str | None = None
    lora: str | None = None
    images_per_prompt: int = 10
    seed: int = 42
    batch_size: int = 1
    device: str = "auto"
    dtype: str = "auto"
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    overwrite: bool = False


def prompts_sha256(prompts: list[str]) -> str:
    """Over the prompts themselves (one per line, LF), so CRLF and LF copies of a file hash alike."""
    return hashlib.sha256("".join(p + "\n" for p in prompts).encode("utf-8")).hexdigest()


def image_file(prompt_index: int, image_index: int) -> str:
    return f"images/{prompt_index:05d}_{image_index:02d}.png"


def call_defaults(pipe) -> dict[str, Any]:
    """The pipeline's own defaults for steps and guidance, and its native image size."""
    params = inspect.signature(pipe.__call__).parameters
    denoiser = getattr(pipe, "transformer", None) or pipe.unet
    size = int(denoiser.config.sample_size) * int(pipe.vae_scale_factor)
    return {"steps": params["num_inference_steps"].default, "guidance_scale": params["guidance_scale"].default,
            "height": size, "width": size}


def effective_settings(pipe, settings: GenerationSettings) -> dict[str, Any]:
    defaults = call_defaults(pipe)
    chosen = {k: v for k, v in asdict(settings).items() if v is not None}
    return {**defaults, "negative_prompt": None, **chosen, "scheduler": type(pipe.scheduler).__name__,
            "generator": "cpu"}


def pipeline_kwargs(pipe, family, generation: dict[str, Any]) -> dict[str, Any]:
    """Call arguments: the recorded settings, the family's exact-size switches (PixArt would otherwise snap
    the size to its aspect-ratio bins), and no caption cleaning (it needs bs4/ftfy; prompts are lowercased
    either way)."""
    kwargs = {"num_inference_steps": generation["steps"], "guidance_scale": generation["guidance_scale"],
              "height": generation["height"], "width": generation["width"], **dict(family.exact_size_kwargs)}
    if generation.get("negative_prompt"):
        kwargs["negative_prompt"] = generation["negative_prompt"]
    if "clean_caption" in inspect.signature(pipe.__call__).parameters:
        kwargs["clean_caption"] = False
    return kwargs


def build_manifest(cfg: GenerateConfig, resolved, generation: dict[str, Any]) -> dict[str, Any]:
    from densecaption.t2i.pipelines import read_lora_record

    record = read_lora_record(cfg.lora) if cfg.lora else None
    return {
        "kind": RUN_KIND, "format_version": 1,
        "model": cfg.model, "family": resolved.family.name, "weights": resolved.weights,
        "lora": cfg.lora, "lora_record": record, "caption_set": (record or {}).get("caption_set"),
        "category": cfg.category,
        "prompts": {"file": cfg.prompts_file, "sha256": prompts_sha256(cfg.prompts), "count": len(cfg.prompts),
                    **({"constructed": True} if is_constructed(cfg.prompts_file) else {})},
        "images_per_prompt": cfg.images_per_prompt, "seed": cfg.seed, "generation": generation,
        "versions": versions(PACKAGES),
    }


def check_same_run(path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    differ = [k for k in IDENTITY if old.get(k) != new.get(k)]
    if (old.get("prompts") or {}).get("sha256") != new["prompts"]["sha256"]:
        differ.append("prompts")
    if differ:
        raise UserError(f"{path}: holds a different generation run ({', '.join(differ)} differ); use another "
                        "--out, or --overwrite to start again")


def images_log(out: Path) -> JsonlLog:
    """The run's ``images.jsonl``; appends wait for a lock beside it (several processes append to it)."""
    return JsonlLog(out / RUN_IMAGES, lock=True)


def save_image(image, path: Path) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def resolve_dtype(name: str, device: str):
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if name not in table:
        raise UserError(f"--dtype {name!r}: choose auto, {', '.join(table)}")
    return table[name]


def open_pipeline(model: str, lora: str | None, device: str, dtype: str):
    """(pipeline, resolved model) on this process's device, quiet, ready for ``generate_images``."""
    from densecaption.distributed import process_state
    from densecaption.models.registry import resolve_device
    from densecaption.t2i.pipelines import load_pipeline, quiet_hf

    state = process_state()
    device = str(state.device) if state else resolve_device(device)
    with quiet_hf():
        pipe, resolved = load_pipeline(model, lora=lora, device=device, dtype=resolve_dtype(dtype, device))
    pipe.set_progress_bar_config(disable=True)
    return pipe, resolved


def generate_images(cfg: GenerateConfig, progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
                    loaded=None) -> dict[str, Any]:
    """Generate what the run folder still lacks; returns counts (``generated``, ``skipped``, ``total``).
    ``loaded``: a pipeline from ``open_pipeline`` for the same model and LoRA, reused across runs."""
    from densecaption.distributed import process_state

    if not cfg.prompts:
        raise UserError(f"{cfg.prompts_file}: no prompts in it")
    if cfg.images_per_prompt < 1 or cfg.batch_size < 1:
        raise UserError("--images-per-prompt and --batch-size must be at least 1")
    state = process_state()
    rank, world = (state.process_index, state.num_processes) if state else (0, 1)
    out = Path(cfg.out).expanduser()
    lock = None
    if rank == 0:  # one run per folder: the main process holds it (the others are the same run)
        out.mkdir(parents=True, exist_ok=True)
        lock = lock_or_fail(out, "this run folder")
        remove_stale_temps(out)
    try:
        return _generate(cfg, out, state, rank, world, progress, loaded)
    finally:
        if lock is not None:
            lock.release()


def _generate(cfg: GenerateConfig, out: Path, state, rank: int, world: int, progress, loaded) -> dict[str, Any]:
    import shutil

    import torch

    if cfg.overwrite and rank == 0 and out.exists():
        for name in (RUN_MANIFEST, RUN_IMAGES, "images"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    if state:
        state.wait_for_everyone()
    pipe, resolved = loaded or open_pipeline(cfg.model, cfg.lora, cfg.device, cfg.dtype)
    generation = effective_settings(pipe, cfg.settings)
    manifest = build_manifest(cfg, resolved, generation)
    manifest_path = out / RUN_MANIFEST
    if manifest_path.is_file():
        check_same_run(manifest_path, json.loads(manifest_path.read_text(encoding="utf-8")), manifest)
    elif rank == 0:
        (out / "images").mkdir(parents=True, exist_ok=True)
        atomic_write_text(manifest_path, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    log = images_log(out)
    if rank == 0:
        log.repair()
    if state:
        state.wait_for_everyone()

    done = {(r["prompt_index"], r["image_index"]) for r in read_run_images(out)}
    todo = [(p, i) for p in range(len(cfg.prompts)) for i in range(cfg.images_per_prompt) if (p, i) not in done]
    mine = todo[rank::world]
    advance = progress("generating", len(mine)) if progress else (lambda n: None)
    kwargs = pipeline_kwargs(pipe, resolved.family, generation)
    for start in range(0, len(mine), cfg.batch_size):
        batch = mine[start:start + cfg.batch_size]
        generators = [torch.Generator("cpu").manual_seed(cfg.seed + i) for _, i in batch]
        with torch.inference_mode():
            images = pipe(prompt=[cfg.prompts[p] for p, _ in batch], generator=generators,
                          num_images_per_prompt=1, **kwargs).images
        for (p, i), image in zip(batch, images):
            file = image_file(p, i)
            save_image(image, out / file)
            log.append({"file": file, "prompt": cfg.prompts[p], "prompt_index": p, "image_index": i,
                        "seed": cfg.seed + i})
        advance(len(batch))
    if state:
        state.wait_for_everyone()
    total = len(cfg.prompts) * cfg.images_per_prompt
    return {"generated": len(mine), "skipped": len(done), "total": total, "out": str(out),
            "weights": resolved.weights, "processes": world}

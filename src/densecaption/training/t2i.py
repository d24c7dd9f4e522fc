"""LoRA fine-tuning of text-to-image models (PixArt-alpha, SD 2.1, SDXL) on caption sets (Captions4T2I
section 3), on top of accelerate.

Text-encoder outputs are computed once per unique caption with the pipeline's own ``encode_prompt`` and
VAE latents once per image; both are cached under ``OUT/cache`` (a resumed run reuses them), then the text
encoders leave the device and only the denoiser's LoRA layers train, on the DDPM noise (or v) objective.
What the text window truncates is counted first (``OUT/truncation.json``): a caption set's subcaptions sit
at the end of its captions, exactly where truncation cuts. Checkpoints, exact resume and the metrics log
follow ``training/clip.py``.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from densecaption.errors import UserError
from densecaption.files import atomic_write_text, file_sha256, remove_stale_temps
from densecaption.t2i.families import StepContext
from densecaption.training.run_state import MetricsLog, RunState, latest_checkpoint, nothing_to_resume
from densecaption.training.t2i_data import (CaptionData, TensorCache, TrainRow, auto_window, cache_key,
                                            fill_cache, load_image, pipeline_tokenizer, read_captions,
                                            truncation_report, window_needed, window_warning)

CHECKPOINT_LORA = "denoiser_lora.safetensors"
MIXED_PRECISION = ("no", "fp16", "bf16")
ON_TRUNCATION = ("warn", "error")


@dataclass
class TrainT2IConfig:
    """Defaults are the paper's (10 epochs, batch 32, lr 1e-4, LoRA rank 4 on upstream's PixArt targets);
    SD/SDXL targets and LoRA alpha = rank follow diffusers' LoRA scripts."""

    captions: str
    model: str
    out: str
    max_text_length: int | str | None = None
    """Text window; None: the pipeline's own (PixArt 120, SD/SDXL 77, which cannot grow); ``auto``: the window
    that keeps every caption, capped at the family's maximum (``t2i_data.auto_window``)."""
    on_truncation: str = "warn"
    """``warn``: a warning block when the window cuts captions; ``error``: stop before training when it would
    cut subcaptions (or, without parts, captions)."""
    resolution: int | None = None
    """Training image size; None: the model's native size (denoiser sample size x VAE factor)."""
    lora_r: int = 4
    lora_alpha: float | None = None
    """None: equal to the rank (scale 1)."""
    lora_dropout: float = 0.0
    lora_targets: list[str] | None = None
    """None: the family's (PixArt: upstream's 12 module names; SD/SDXL: to_k, to_q, to_v, to_out.0)."""
    lr: float = 1e-4
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    epochs: int = 10
    max_steps: int | None = None
    """Training steps (batches per process) to stop at exactly; overrides ``epochs`` (as many as it takes)."""
    batch_size: int = 32
    grad_accum: int = 1
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    seed: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    validation_every: int = 1
    """Epochs between validation images (0: none)."""
    validation_prompts: list[str] | None = None
    """None: the set's first ``validation_count`` captions."""
    validation_count: int = 2
    validation_steps: int = 20
    validation_guidance: float | None = None
    """None: the family's guidance scale."""
    text_batch_size: int = 16
    cache_memory_mb: int = 4096
    workers: int = 0
    resume: str | None = None
    """``latest`` or a checkpoint folder: continue a run that stopped."""
    stop_after_steps: int | None = field(default=None, repr=False)
    """For tests of resuming: end the process abruptly after this many steps."""


# ------------------------------------------------------------------------------------------- dataset

class LatentTextDataset:
    """Cached VAE latent distributions and text-encoder outputs, one item per training image."""

    def __init__(self, latent_keys: list[str], text_keys: list[str], latents: TensorCache, texts: TensorCache):
        self.latent_keys, self.text_keys, self.latents, self.texts = latent_keys, text_keys, latents, texts

    def __len__(self) -> int:
        return len(self.latent_keys)

    def __getitem__(self, i: int) -> dict:
        return {**self.latents.get(self.latent_keys[i]), **self.texts.get(self.text_keys[i])}

    @staticmethod
    def collate(items: list[dict]) -> dict:
        import torch

        return {k: torch.stack([item[k] for item in items]) for k in items[0]}


# -------------------------------------------------------------------------------------------- training

def planned_steps(epochs: int, max_steps: int | None, per_epoch: int) -> tuple[int, int]:
    """(epochs to run, steps to stop at): ``epochs`` full epochs, or with ``max_steps`` as many epochs as it
    takes to reach it, stopping at exactly ``max_steps``."""
    if max_steps is None:
        return epochs, epochs * per_epoch
    return -(-max_steps // per_epoch), max_steps


def _check(cfg: TrainT2IConfig) -> None:
    if cfg.mixed_precision not in MIXED_PRECISION:
        raise UserError(f"--mixed-precision {cfg.mixed_precision!r}: choose {', '.join(MIXED_PRECISION)}")
    for name in ("epochs", "batch_size", "grad_accum", "lora_r", "keep_checkpoints", "text_batch_size",
                 "validation_steps"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be at least 1")
    if cfg.on_truncation not in ON_TRUNCATION:
        raise UserError(f"--on-truncation {cfg.on_truncation!r}: choose {', '.join(ON_TRUNCATION)}")
    if isinstance(cfg.max_text_length, str) and cfg.max_text_length != "auto":
        raise UserError(f"--max-text-length {cfg.max_text_length!r}: a number of tokens or 'auto'")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise UserError(f"--max-steps {cfg.max_steps}: must be at least 1")
    if cfg.validation_every < 0 or cfg.checkpoint_every < 0:
        raise UserError("--validation-every and --checkpoint-every must be 0 (off) or positive")


def _text_window(cfg: TrainT2IConfig, family) -> int:
    """The window asked for (the pipeline's own for None, the longest for ``auto``, narrowed once the
    captions are counted)."""
    longest = max((family.max_text_length, *family.longer_lengths))
    length = longest if cfg.max_text_length == "auto" else cfg.max_text_length or family.max_text_length
    if length < 1 or length > longest:
        fixed = ("its text encoder has a fixed window" if not family.longer_lengths
                 else f"its text encoder takes at most {longest}")
        raise UserError(f"--max-text-length {length}: {family.name} encodes at most {longest} tokens ({fixed})")
    return length


def _resolution(cfg: TrainT2IConfig, pipe, family) -> int:
    denoiser = getattr(pipe, family.denoiser)
    native = int(denoiser.config.sample_size) * int(pipe.vae_scale_factor)
    resolution = cfg.resolution or native
    step = 8 * int(pipe.vae_scale_factor)
    if resolution < step or resolution % step:
        raise UserError(f"--resolution {resolution}: must be a positive multiple of {step} for this model "
                        f"(native {native})")
    return resolution


def _free_text_encoders(pipe, names: tuple[str, ...]) -> None:
    """Drop the text encoders: their outputs are cached, and they are the pipeline's largest part."""
    import gc

    import torch

    for name in names:
        if getattr(pipe, name, None) is not None:
            getattr(pipe, name).to("cpu")
            setattr(pipe, name, None)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _model_identity(resolved) -> list[str]:
    """What the caches are keyed by besides the input: the model and its weights' marker."""
    marker = Path(resolved.source) / "densecaption-weights.json"
    return [resolved.family.name, resolved.source, resolved.weights,
            marker.read_text() if marker.is_file() else ""]


def train_t2i(cfg: TrainT2IConfig, progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
              log: Callable[[dict], None] | None = None) -> Path:
    """Fine-tune and write ``<out>/lora`` (with ``densecaption_lora.json``); returns that folder."""
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    from densecaption.t2i.pipelines import LORA_KIND, LORA_RECORD, inject_lora, load_pipeline, lora_state_dict, \
        quiet_hf, resolve_model, save_lora

    _check(cfg)
    progress = progress or (lambda stage, total: (lambda n: None))
    out = Path(cfg.out)
    if nothing_to_resume(out, cfg.resume):  # killed before its first checkpoint: start from the beginning
        cfg = replace(cfg, resume=None)
    if not cfg.resume and latest_checkpoint(out) is not None:
        raise UserError(f"{out}: already holds a run with checkpoints; continue it with --resume latest or "
                        "choose another --out")
    data: CaptionData = read_captions(cfg.captions)
    resolved = resolve_model(cfg.model)
    family = resolved.family
    adapter = family.training
    length = _text_window(cfg, family)

    tensorboard = importlib.util.find_spec("tensorboard") is not None
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision,
                              cpu=not torch.cuda.is_available(), log_with="tensorboard" if tensorboard else None,
                              project_dir=str(out))
    if tensorboard:
        accelerator.init_trackers("train_t2i")
    main = accelerator.is_main_process

    def say(record: dict) -> None:
        if log and main:
            log(record)

    set_seed(cfg.seed)
    on_gpu = accelerator.device.type == "cuda"
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.mixed_precision] \
        if on_gpu else torch.float32
    with quiet_hf():
        pipe, resolved = load_pipeline(resolved, device="cpu", dtype=weight_dtype)
    pipe.set_progress_bar_config(disable=True)
    resolution = _resolution(cfg, pipe, family)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        atomic_write_text(out / "train_config.json", json.dumps(asdict(cfg), indent=1) + "\n")

    # what the text window cuts
    tokenizer = pipe.tokenizer
    longest = max((family.max_text_length, *family.longer_lengths))
    with quiet_hf():  # no "sequence longer than the maximum" warnings: counting long texts is the point
        probe = pipeline_tokenizer(tokenizer, "probe", longest, family.lowercase_prompts)
        needed = window_needed(data.rows, probe)
        if cfg.max_text_length == "auto":
            length = auto_window(needed, family.max_text_length, longest)
        counter = pipeline_tokenizer(tokenizer, f"{type(tokenizer).__name__} ({resolved.spec})", length,
                                     family.lowercase_prompts)
        truncation = truncation_report(data.rows, counter, family.longer_lengths, data.parts_from)
    truncation["window"] = {"asked": cfg.max_text_length or "pipeline default", "used": length,
                            "keeps_every_caption": needed, "family_maximum": longest,
                            "fixed": not family.longer_lengths}
    if main:
        atomic_write_text(out / "truncation.json", json.dumps(truncation, indent=1) + "\n")
    say({"message": truncation["summary"]})
    encoder = type(tokenizer).__name__.replace("TokenizerFast", "").replace("Tokenizer", "")
    warning = window_warning(truncation, family=family.name, encoder=encoder, needed=needed, longest=longest,
                             fixed=not family.longer_lengths)
    if warning:
        lost = truncation["used"]["subcaptions_cut"]
        if cfg.on_truncation == "error" and (lost if lost is not None else truncation["used"]["captions_truncated"]):
            raise UserError(f"--on-truncation error: {warning.splitlines()[0]} ({out / 'truncation.json'})")
        say({"warning": warning})

    # text-encoder outputs, once per unique caption (and validation prompt), then the encoders go
    identity = _model_identity(resolved)
    memory = cfg.cache_memory_mb * 2 ** 20
    texts = TensorCache(out / "cache" / "text", memory)
    prompts = list(cfg.validation_prompts or dict.fromkeys(r.text for r in data.rows))
    prompts = prompts if cfg.validation_prompts else prompts[:cfg.validation_count]
    prompts = prompts if cfg.validation_every else []
    text_keys = [cache_key(identity, "text", length, r.text) for r in data.rows]
    prompt_keys = [cache_key(identity, "prompt", length, p) for p in prompts]
    encoded = encoded_prompts = 0
    if main:
        for te in adapter.text_encoders:
            getattr(pipe, te).to(accelerator.device)

        def encoder(guidance: bool):
            def compute(batch: list[str]) -> list[dict]:
                with torch.no_grad(), quiet_hf():  # truncation is counted above, not warned about per batch
                    result = adapter.encode(pipe, batch, length, accelerator.device, guidance)
                return [{k: v[i] for k, v in result.items()} for i in range(len(batch))]
            return compute

        unique = dict(zip(text_keys, (r.text for r in data.rows)))
        advance = progress("encoding texts", len(unique) + len(prompts))
        encoded = fill_cache(texts, unique, encoder(False), cfg.text_batch_size, advance)
        encoded_prompts = fill_cache(texts, dict(zip(prompt_keys, prompts)), encoder(True), cfg.text_batch_size,
                                     advance)
    accelerator.wait_for_everyone()
    _free_text_encoders(pipe, adapter.text_encoders)

    # VAE latent distributions, once per image
    vae = pipe.vae.to(accelerator.device)
    if vae.dtype != torch.float32:  # latents are encoded once, in full precision (SDXL's VAE overflows in fp16)
        vae.to(dtype=torch.float32)
    latents = TensorCache(out / "cache" / "latents", memory)
    latent_keys = [cache_key(identity, "latent", resolution, file_sha256(r.image)) for r in data.rows]
    images = 0
    if main:
        def encode_images(batch: list[TrainRow]) -> list[dict]:
            loaded = [load_image(r.image, resolution) for r in batch]
            pixels = torch.stack([p for p, _, _ in loaded]).to(accelerator.device)
            with torch.no_grad():
                params = vae.encode(pixels).latent_dist.parameters.float().cpu()
            return [{"latent_params": params[i], "original_size": torch.tensor(size, dtype=torch.float32),
                     "crop_top_left": torch.tensor(crop, dtype=torch.float32)}
                    for i, (_, size, crop) in enumerate(loaded)]

        advance = progress("encoding images", len(set(latent_keys)))
        images = fill_cache(latents, dict(zip(latent_keys, data.rows)), encode_images, 8, advance)
    accelerator.wait_for_everyone()

    # LoRA on the denoiser only
    denoiser = getattr(pipe, family.denoiser)
    denoiser.requires_grad_(False)
    denoiser.to(accelerator.device)
    lora_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha or cfg.lora_r, lora_dropout=cfg.lora_dropout,
                             init_lora_weights="gaussian",
                             target_modules=list(cfg.lora_targets or family.lora_targets))
    try:
        inject_lora(denoiser, lora_config)
    except ValueError as e:
        raise UserError(f"--lora-targets: {str(e).splitlines()[0]}") from None
    params = [p for p in denoiser.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    if cfg.gradient_checkpointing:
        denoiser.enable_gradient_checkpointing()
    step_context = StepContext(resolution, bool(getattr(denoiser, "use_additional_conditions", False)))
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    prediction = scheduler.config.prediction_type
    scaling = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)

    from densecaption.training.samplers import RandomBatches

    train_set = LatentTextDataset(latent_keys, text_keys, latents, texts)
    sampler = RandomBatches(len(train_set), cfg.batch_size, seed=cfg.seed)
    loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=train_set.collate,
                                         num_workers=cfg.workers)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    # checkpoints hold the LoRA tensors only, not the frozen base model
    def save_hook(models, weights, output_dir):
        if main:
            for m in models:
                state = {k: v.detach().contiguous().cpu() for k, v in
                         lora_state_dict(accelerator.unwrap_model(m)).items()}
                save_file(state, str(Path(output_dir) / CHECKPOINT_LORA))
        weights.clear()

    def load_hook(models, input_dir):
        while models:
            model = accelerator.unwrap_model(models.pop())
            set_peft_model_state_dict(model, load_file(str(Path(input_dir) / CHECKPOINT_LORA)))

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)
    model, optimizer, loader = accelerator.prepare(denoiser, optimizer, loader)

    run = RunState(accelerator, out, seed=cfg.seed, keep=cfg.keep_checkpoints, every=cfg.checkpoint_every,
                   stop_after_steps=cfg.stop_after_steps)
    if cfg.resume:
        run.restore(cfg.resume)
    state = run.state
    metrics_log = MetricsLog(out / "log.jsonl", enabled=main, after_step=state["global_step"] if cfg.resume else -1,
                             tracker=accelerator if tensorboard else None)
    record = {"epoch": state["epoch"], "step": state["global_step"], "captions": len(data.rows),
              "unique_texts": len(set(text_keys)), "encoded_texts": encoded,
              "encoded_prompts": encoded_prompts, "encoded_images": images,
              "resolution": resolution, "max_text_length": length}
    metrics_log.write(record)
    say(record)

    def validate(epoch: int) -> None:
        if not (main and prompts):
            return
        folder = out / "validation" / f"epoch-{epoch + 1:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        guidance = cfg.validation_guidance if cfg.validation_guidance is not None else family.guidance_scale
        listed = []
        model.eval()
        with torch.no_grad(), accelerator.autocast():
            for i, (prompt, key) in enumerate(zip(prompts, prompt_keys)):
                kwargs = {k: v[None].to(accelerator.device, dtype=weight_dtype if v.is_floating_point() else v.dtype)
                          for k, v in texts.get(key).items()}
                generator = torch.Generator(accelerator.device).manual_seed(cfg.seed)
                image = pipe(**kwargs, num_inference_steps=cfg.validation_steps, guidance_scale=guidance,
                             height=resolution, width=resolution, generator=generator,
                             **dict(family.exact_size_kwargs), **dict(adapter.call_kwargs)).images[0]
                name = f"{i:02d}.png"
                image.save(folder / name)
                listed.append({"file": name, "prompt": prompt, "seed": cfg.seed})
        model.train()
        atomic_write_text(folder / "prompts.json", json.dumps(
            {"epochs_completed": epoch + 1, "step": state["global_step"], "steps": cfg.validation_steps,
             "guidance_scale": guidance, "height": resolution, "width": resolution, "images": listed},
            indent=1) + "\n")

    epochs, total = planned_steps(cfg.epochs, cfg.max_steps, len(loader))
    advance = progress("training", total)
    advance(min(state["global_step"], total))
    model.train()
    for epoch in range(state["epoch"], epochs):
        if state["global_step"] >= total:
            break
        for batch in run.batches(loader, sampler, epoch):
            if state["global_step"] >= total:  # --max-steps reached inside this epoch
                break
            run.seed_step()  # noise, timesteps and latent samples: what an uninterrupted run would draw
            with accelerator.accumulate(model):
                mean, logvar = batch["latent_params"].chunk(2, dim=1)
                sample = mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * torch.randn_like(mean)
                clean = (sample - shift) * scaling
                noise = torch.randn_like(clean)
                timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (clean.shape[0],),
                                          device=clean.device).long()
                noisy = scheduler.add_noise(clean, noise, timesteps)
                target = noise if prediction == "epsilon" else scheduler.get_velocity(clean, noise, timesteps)
                cond = {k: v.to(weight_dtype) if v.is_floating_point() else v for k, v in batch.items()}
                pred = adapter.forward(model, noisy.to(weight_dtype), timesteps, cond, step_context)
                if pred.shape[1] == 2 * clean.shape[1]:  # learned sigma (PixArt): the loss sees the noise half
                    pred = pred[:, :clean.shape[1]]
                loss = F.mse_loss(pred.float(), target.float())
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            run.count_step()
            advance(1)
            record = {"epoch": epoch, "step": state["global_step"], "loss": float(loss.detach())}
            metrics_log.write(record)
            say(record)
            run.after_step()
        if state["global_step"] >= total and state["step_in_epoch"] < len(loader):
            validate(epoch)  # stopped inside the epoch: last images and checkpoint at the step reached
            run.save()
            break
        run.end_epoch(epoch)
        if cfg.validation_every and (epoch + 1) % cfg.validation_every == 0:
            validate(epoch)
        run.save()

    final = out / "lora"
    if main:
        save_lora(family, accelerator.unwrap_model(model), lora_config, final)
        config = {k: v for k, v in asdict(cfg).items() if k not in ("stop_after_steps",)}
        config.update(max_text_length=length, resolution=resolution, lora_alpha=cfg.lora_alpha or cfg.lora_r,
                      lora_targets=list(cfg.lora_targets or family.lora_targets))
        record = {"kind": LORA_KIND, "format_version": 1, "model": cfg.model, "family": family.name,
                  "base_weights": resolved.weights, "captions": cfg.captions, "caption_set": data.manifest,
                  "caption_set_manifest_sha256": data.manifest_sha256, "config": config, "truncation": truncation,
                  "epochs": epochs, "max_steps": cfg.max_steps, "steps": state["global_step"]}
        atomic_write_text(final / LORA_RECORD, json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


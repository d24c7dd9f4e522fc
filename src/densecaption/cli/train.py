"""``densecaption train ...``: fine-tuning."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.panel import Panel

from densecaption.cli._common import err_console, guarded, out_console, progress_stages, report_skips, skip_log
from densecaption.errors import UserError
from densecaption.models.registry import model_spec_help
from densecaption.t2i.families import FAMILIES, families

app = typer.Typer(help="Fine-tune models with LoRA: CLIP on sDCI (train clip), text-to-image models on caption "
                       "sets (train t2i).", no_args_is_help=True)


@app.command()
@guarded
def clip(
    data: Annotated[str, typer.Option(help="A DCI folder with complete/ files, or 'sample'.")],
    out: Annotated[str, typer.Option(help="Run folder: checkpoints/, log.jsonl, adapter/, best_adapter/.")],
    model: Annotated[str, typer.Option(help=f"CLIP-style model spec: {escape(model_spec_help(embedding_only=True))}.")] =
    "open_clip:ViT-B-32:openai",
    captions: Annotated[str, typer.Option(help="first (summary 0), pick1 (one at random per epoch) or pickN "
                                               "(N at once; losses use the worst positive).")] = "first",
    pick_n: Annotated[int, typer.Option(help="N of pickN.")] = 5,
    batching: Annotated[str, typer.Option(help="rand (shuffle all entries) or imggroup (an image's crops in "
                                               "one batch).")] = "rand",
    neg_loss: Annotated[str, typer.Option(help="bce (upstream's pairwise loss, used for the paper's numbers), "
                                               "negclip (negatives as extra softmax columns) or none.")] = "bce",
    neg_weight: Annotated[float, typer.Option(help="beta: weight of the bce negative loss.")] = 1.0,
    clip_weight: Annotated[float, typer.Option(help="alpha: weight of the contrastive loss.")] = 1.0,
    negative_kind: Annotated[str, typer.Option(help="Negatives to train with: swaps, basic, layout or any.")] =
    "swaps",
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 4,
    lora_alpha: Annotated[float, typer.Option(help="LoRA alpha.")] = 2.0,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.2,
    lora_targets: Annotated[Optional[str], typer.Option(
        help="Comma-separated module names (default per backend: open_clip q/k/v/out_proj, c_fc, c_proj; "
             "hf q/k/v/out_proj, fc1, fc2, visual/text_projection).")] = None,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 5e-5,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Entries per batch (per process).")] = 32,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    mixed_precision: Annotated[str, typer.Option(help="no, fp16 or bf16.")] = "no",
    seed: Annotated[int, typer.Option(help="Seed of data order, caption picks and initialisation.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Also checkpoint every N steps (0: epoch ends only).")] = 0,
    resume: Annotated[Optional[str], typer.Option(help="'latest' or a checkpoint folder.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Remove a previous run's outputs in --out (checkpoints, log, "
                                                 "adapters) and start over.")] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first record that fails to parse instead of "
                                              "skipping it.")] = False,
    best_metric: Annotated[str, typer.Option(help="Validation metric that picks best_adapter/.")] = "all_scm",
    split: Annotated[str, typer.Option(help="Training split.")] = "train",
    valid_split: Annotated[Optional[str], typer.Option(help="Validation split ('' to skip).")] = "valid",
    workers: Annotated[int, typer.Option(help="Data loading worker processes.")] = 0,
    crop_cache: Annotated[Optional[str], typer.Option(
        help="Crop cache folder: each entry's crop is decoded from its full photo once, stored resized to the "
             "model's input size and read from there every epoch (docs/speed.md).")] = None,
    stop_after_steps: Annotated[Optional[int], typer.Option(hidden=True)] = None,
):
    """LoRA fine-tuning of a CLIP-style model on sDCI entries (DCI section 5).

    Runs on CPU, one GPU or many: `accelerate launch -m densecaption train clip ...`. Checkpoints at each
    epoch (and every --checkpoint-every steps); --resume latest continues a killed run, --overwrite starts
    over; a folder holding a run is refused without one of them, and one run at a time holds OUT. Validates
    on the valid split with the sDCI metrics each epoch; writes OUT/adapter (peft format, loadable with
    `bench sdci --lora OUT/adapter` onto the same base model only), OUT/best_adapter and OUT/log.jsonl.
    """
    from densecaption.data.findings import SkipLog
    from densecaption.distributed import process_state
    from densecaption.evaluation.sdci import METRICS
    from densecaption.training.clip import ClipTrainConfig, train_clip

    if best_metric not in METRICS:
        raise UserError(f"--best-metric {best_metric!r}: choose from {', '.join(METRICS)}")
    cfg = ClipTrainConfig(
        data=data, model=model, out=out, split=split, valid_split=valid_split or None, captions=captions,
        pick_n=pick_n, batching=batching, neg_loss=neg_loss, neg_weight=neg_weight, clip_weight=clip_weight,
        negative_kind=negative_kind, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        lora_targets=lora_targets.split(",") if lora_targets else None, lr=lr, epochs=epochs,
        batch_size=batch_size, grad_accum=grad_accum, mixed_precision=mixed_precision, seed=seed,
        checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite, strict=strict,
        best_metric=best_metric, workers=workers, stop_after_steps=stop_after_steps,
        crop_cache=crop_cache or None)
    state = process_state()
    main = state is None or state.is_main_process
    skips = skip_log(strict) if main else SkipLog(strict=strict)  # one warning per record, not per process
    console = out_console()
    tickers = {}

    def show(record: dict) -> None:
        if "loss" in record and "training" in tickers:
            tickers["training"].describe(f"epoch {record['epoch']} loss {record['loss']:.4f}")
        if any(k.startswith("valid_") for k in record):
            values = ", ".join(f"{k[6:]} {v:.2f}" for k, v in record.items() if k.startswith("valid_"))
            console.print(f"epoch {record['epoch']}: valid {values}", highlight=False)

    with progress_stages(enabled=main) as stage:
        def remember(name: str, total: int | None = None):
            tickers[name] = stage(name, total)
            return tickers[name]

        adapter = train_clip(cfg, progress=remember, log=show, skip=skips)
    if not main:
        return
    report_skips(skips)
    console.print(f"adapter: {adapter}  (evaluate: densecaption bench sdci --data {data} --model {model} "
                  f"--lora {adapter})", highlight=False)


def _windows() -> str:
    """Each family's text window and how far it can grow, for the help of --max-text-length."""
    return ", ".join(f"{f.name} {f.max_text_length} "
                     + (f"(up to {max(f.longer_lengths)})" if f.longer_lengths else "(fixed)") for f in families())


@app.command()
@guarded
def t2i(
    captions: Annotated[str, typer.Option(help="A caption set folder from `compose set` (its lineage is recorded), "
                                               "or a diffusers image folder with metadata.jsonl (file_name, text).")],
    out: Annotated[str, typer.Option(help="Run folder: lora/, checkpoints/, validation/, cache/, log.jsonl, "
                                          "truncation.json.")],
    model: Annotated[str, typer.Option(help=f"A text-to-image family ({FAMILIES.choices()}: its hub checkpoint; "
                                            "pixart-alpha is the paper's), a hub id or a local diffusers pipeline "
                                            "folder (e.g. from `models init-random ARCH OUT --backend diffusers`).")]
    = "pixart-alpha",
    max_text_length: Annotated[Optional[str], typer.Option(
        help=f"Text-encoder window in tokens (default: the pipeline's own; {_windows()}), or 'auto': the window "
             "that keeps every caption, capped at the family's maximum. Longer captions are truncated: a warning "
             "says how many, see truncation.json.")]
    = None,
    on_truncation: Annotated[str, typer.Option(
        help="warn (default): a warning block when the window cuts captions; error: exit 2 before training when "
             "subcaptions would be cut.")] = "warn",
    resolution: Annotated[Optional[int], typer.Option(
        help="Training image size (shorter side resized, center crop); default the model's native size.")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs (paper: 10).")] = 10,
    max_steps: Annotated[Optional[int], typer.Option(
        help="Training steps (batches per process) instead of --epochs: as many epochs as it takes, stopping at "
             "exactly N (Captions4T2I Table 3: 100,000 at batch 8). --resume keeps counting.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch and process (paper: 32).")] = 32,
    lr: Annotated[float, typer.Option(help="AdamW learning rate (paper: 1e-4).")] = 1e-4,
    lora_r: Annotated[int, typer.Option(help="LoRA rank (paper: 4).")] = 4,
    lora_alpha: Annotated[Optional[float], typer.Option(help="LoRA alpha (default: the rank).")] = None,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.0,
    lora_targets: Annotated[Optional[str], typer.Option(
        help="Comma-separated denoiser module names (default: the family's; "
             + "; ".join(f"{f.name} {', '.join(f.lora_targets)}" for f in families()) + ").")] = None,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    mixed_precision: Annotated[str, typer.Option(help="no, fp16 or bf16 (frozen weights in that type on a GPU; "
                                                      "LoRA weights stay float32).")] = "no",
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade compute for denoiser memory.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of data order, noise and LoRA initialisation.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Also checkpoint every N steps (0: epoch ends only).")] = 0,
    keep_checkpoints: Annotated[int, typer.Option(help="Checkpoints kept (oldest removed).")] = 2,
    resume: Annotated[Optional[str], typer.Option(help="'latest' or a checkpoint folder.")] = None,
    validation_every: Annotated[int, typer.Option(help="Write validation images every N epochs (0: never).")] = 1,
    validation_prompts: Annotated[Optional[list[str]], typer.Option(
        help="Validation prompt (repeatable; default: the set's first --validation-count captions).")] = None,
    validation_count: Annotated[int, typer.Option(help="Captions used as validation prompts by default.")] = 2,
    validation_steps: Annotated[int, typer.Option(help="Denoising steps of validation images.")] = 20,
    validation_guidance: Annotated[Optional[float], typer.Option(
        help="Guidance scale of validation images (default: the family's; "
             + ", ".join(f"{f.name} {f.guidance_scale:g}" for f in families()) + ").")] = None,
    workers: Annotated[int, typer.Option(help="Data loading worker processes.")] = 0,
    stop_after_steps: Annotated[Optional[int], typer.Option(hidden=True)] = None,
):
    """LoRA fine-tuning of a text-to-image model on a caption set (Captions4T2I section 3).

    Text-encoder outputs are computed once per unique caption and VAE latents once per image (cached in
    OUT/cache), then only the denoiser's LoRA layers train. Before training, OUT/truncation.json counts the
    captions the text window truncates and the subcaptions it cuts (and what longer windows would keep).
    Runs on CPU, one GPU or many: `accelerate launch -m densecaption train t2i ...`; --resume latest
    continues a killed run. Writes OUT/lora (with densecaption_lora.json: model, caption set manifest,
    config, truncation) and validation images in OUT/validation/epoch-XXX.
    """
    from densecaption.training.t2i import TrainT2IConfig, train_t2i

    window: int | str | None = max_text_length
    if max_text_length is not None and max_text_length != "auto":
        if not max_text_length.isdigit():
            raise UserError(f"--max-text-length {max_text_length!r}: a number of tokens or 'auto'")
        window = int(max_text_length)
    cfg = TrainT2IConfig(
        captions=captions, model=model, out=out, max_text_length=window, on_truncation=on_truncation,
        max_steps=max_steps, resolution=resolution,
        lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        lora_targets=lora_targets.split(",") if lora_targets else None, lr=lr, epochs=epochs, batch_size=batch_size,
        grad_accum=grad_accum, mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing,
        seed=seed, checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, resume=resume,
        validation_every=validation_every, validation_prompts=list(validation_prompts) if validation_prompts else None,
        validation_count=validation_count, validation_steps=validation_steps,
        validation_guidance=validation_guidance, workers=workers, stop_after_steps=stop_after_steps)
    console = out_console()
    tickers = {}

    def show(record: dict) -> None:
        if "message" in record:
            console.print(record["message"], highlight=False)
        elif "warning" in record:
            err_console().print(Panel(escape(record["warning"]), title="WARNING: the text window cuts captions",
                                      border_style="bold yellow"), highlight=False)
        elif "encoded_texts" in record:
            console.print(f"{record['captions']} captions ({record['unique_texts']} unique): encoded "
                          f"{record['encoded_texts']} texts and {record['encoded_images']} images (others cached); "
                          f"{record['resolution']} px, {record['max_text_length']} text tokens", highlight=False)
        elif "loss" in record and "training" in tickers:
            tickers["training"].describe(f"epoch {record['epoch']} loss {record['loss']:.4f}")

    from densecaption.distributed import process_state

    state = process_state()
    main = state is None or state.is_main_process
    with progress_stages(enabled=main) as stage:
        def remember(name: str, total: int | None = None):
            tickers[name] = stage(name, total)
            return tickers[name]

        lora = train_t2i(cfg, progress=remember, log=show)
    if main:
        console.print(f"lora: {lora}  (generate: densecaption t2i generate --model {model} --lora {lora} ...)",
                      highlight=False)

"""``densecaption train ...``: fine-tuning."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from densecaption.cli._common import guarded, out_console, progress_stages
from densecaption.errors import UserError

app = typer.Typer(help="Fine-tune models with LoRA (CLIP on sDCI; text-to-image on caption sets later).",
                  no_args_is_help=True)


@app.command()
@guarded
def clip(
    data: Annotated[str, typer.Option(help="A DCI folder with complete/ files, or 'sample'.")],
    out: Annotated[str, typer.Option(help="Run folder: checkpoints/, log.jsonl, adapter/, best_adapter/.")],
    model: Annotated[str, typer.Option(help="open_clip:... or hf:... CLIP-style model spec.")] =
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
    best_metric: Annotated[str, typer.Option(help="Validation metric that picks best_adapter/.")] = "all_scm",
    split: Annotated[str, typer.Option(help="Training split.")] = "train",
    valid_split: Annotated[Optional[str], typer.Option(help="Validation split ('' to skip).")] = "valid",
    workers: Annotated[int, typer.Option(help="Data loading worker processes.")] = 0,
    stop_after_steps: Annotated[Optional[int], typer.Option(hidden=True)] = None,
):
    """LoRA fine-tuning of a CLIP-style model on sDCI entries (DCI section 5).

    Runs on CPU, one GPU or many: `accelerate launch -m densecaption train clip ...`. Checkpoints at each
    epoch (and every --checkpoint-every steps); --resume latest continues a killed run. Validates on the
    valid split with the sDCI metrics each epoch; writes OUT/adapter (peft format, loadable with
    `bench sdci --lora OUT/adapter`), OUT/best_adapter and OUT/log.jsonl.
    """
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
        checkpoint_every=checkpoint_every, resume=resume, best_metric=best_metric, workers=workers,
        stop_after_steps=stop_after_steps)
    console = out_console()
    tickers = {}

    def show(record: dict) -> None:
        if "loss" in record and "training" in tickers:
            tickers["training"].describe(f"epoch {record['epoch']} loss {record['loss']:.4f}")
        if any(k.startswith("valid_") for k in record):
            values = ", ".join(f"{k[6:]} {v:.2f}" for k, v in record.items() if k.startswith("valid_"))
            console.print(f"epoch {record['epoch']}: valid {values}", highlight=False)

    with progress_stages() as stage:
        def remember(name: str, total: int | None = None):
            tickers[name] = stage(name, total)
            return tickers[name]

        adapter = train_clip(cfg, progress=remember, log=show)
    console.print(f"adapter: {adapter}  (evaluate: densecaption bench sdci --data {data} --model {model} "
                  f"--lora {adapter})", highlight=False)

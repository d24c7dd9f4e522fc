"""LoRA fine-tuning of CLIP-style models on dense captions (DCI section 5), on top of accelerate.

The same code runs on a CPU, one GPU or many (``accelerate launch``: DDP, each process its share of the
batches). State is checkpointed with ``accelerator.save_state`` every N steps and at each epoch end, with
the epoch and step in ``trainer_state.json``; ``resume="latest"`` continues a killed run where it stopped,
and with the same seed ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from densecaption.data.dci import DCIDataset
from densecaption.data.findings import SkipLog
from densecaption.errors import UserError
from densecaption.files import atomic_write_text, remove_stale_temps
from densecaption.models.lora import RECORD, base_identity
from densecaption.training.data import EntryDataset, load_entries, parse_split
from densecaption.training.losses import DenseCaptionLoss
from densecaption.training.run_state import MetricsLog, RunState, claim_run_folder, nothing_to_resume
from densecaption.training.samplers import ImageGroupBatches, RandomBatches

@dataclass
class ClipTrainConfig:
    """Defaults are the paper's (lr 5e-5, batch 32, 10 epochs, bce negative loss with weight 1) and
    upstream's LoRA settings (rank 4, alpha 2, dropout 0.2, biases of LoRA layers trained)."""

    data: str
    model: str
    out: str
    split: str = "train"
    valid_split: str | None = "valid"
    captions: str = "first"
    pick_n: int = 5
    batching: str = "rand"
    neg_loss: str = "bce"
    neg_weight: float = 1.0
    clip_weight: float = 1.0
    negative_kind: str = "swaps"
    lora_r: int = 4
    lora_alpha: float = 2.0
    lora_dropout: float = 0.2
    lora_targets: list[str] | None = None
    lr: float = 5e-5
    weight_decay: float = 0.0
    epochs: int = 10
    batch_size: int = 32
    grad_accum: int = 1
    mixed_precision: str = "no"
    seed: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    best_metric: str = "all_scm"
    workers: int = 0
    crop_cache: str | None = None
    """Folder of a crop cache (docs/speed.md): each entry's crop decoded once, resized, then read every epoch."""
    resume: str | None = None
    """``latest`` or a checkpoint folder: continue a run that stopped."""
    overwrite: bool = False
    """Remove a previous run's outputs in ``out`` and start over (without it, or ``resume``, such a run is refused)."""
    strict: bool = False
    """Stop at the first record that fails to parse instead of skipping it."""
    stop_after_steps: int | None = field(default=None, repr=False)
    """For tests of resuming: end the process abruptly after this many optimizer steps."""


class ContrastiveScorer(nn.Module):
    """One forward pass for DDP: images against the batch's positives and negatives, as logits."""

    def __init__(self, backend, net: nn.Module):
        super().__init__()
        self.net = net
        object.__setattr__(self, "backend", backend)  # plain reference, not a submodule

    def forward(self, pixels: torch.Tensor, positives: dict, negatives: dict) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.backend.image_embeds(self.net, pixels)
        scale = self.net.logit_scale.exp()
        pos = scale * images @ self.backend.text_embeds(self.net, positives).T
        neg = scale * images @ self.backend.text_embeds(self.net, negatives).T
        return pos, neg


RUN_OUTPUTS = ("checkpoints", "log.jsonl", "adapter", "best_adapter", "train_config.json")
"""What a run writes into ``out``: their presence means a run was there, and --overwrite removes them
(with TensorBoard's ``train_clip`` events, which alone do not count as a run)."""

Progress = Callable[[str, int | None], Callable[[int], None]]


def train_clip(cfg: ClipTrainConfig, progress: Progress | None = None, log: Callable[[dict], None] | None = None,
               skip: SkipLog | None = None) -> Path:
    """Fine-tune and write ``<out>/adapter`` (peft format); returns that folder. The main process holds the
    run folder's lock throughout; ``skip`` collects the records that fail to parse (strict: stops at one)."""
    from densecaption.distributed import process_state

    check_choices(cfg)  # before a bad option could cost the previous run's outputs (--overwrite)
    if nothing_to_resume(Path(cfg.out), cfg.resume):  # killed before its first checkpoint: start over
        cfg = replace(cfg, resume=None, overwrite=True)
    state = process_state()
    lock = None
    if state is None or state.is_main_process:
        lock = claim_run_folder(Path(cfg.out), RUN_OUTPUTS, resume=cfg.resume, overwrite=cfg.overwrite,
                                scratch=("train_clip",))
    try:
        if state is not None:
            state.wait_for_everyone()  # the others start once the folder is claimed (and cleared)
        return _train(cfg, progress, log, skip if skip is not None else SkipLog(strict=cfg.strict))
    finally:
        if lock is not None:
            lock.release()


def fill_crop_cache(cfg: ClipTrainConfig, backend, entries, accelerator, progress: Progress):
    """The crop cache of ``cfg.crop_cache`` holding every entry's crop (the main process fills it)."""
    from densecaption.evaluation.crop_cache import CropCache
    from densecaption.training.data import CropKey

    cache = CropCache.for_model(Path(cfg.crop_cache), backend)
    if accelerator.is_main_process:
        keys = [CropKey(e.photo, e.crop) for e in entries]
        cache.fill(keys, workers=cfg.workers, progress=progress("caching crops", len(keys)))
    accelerator.wait_for_everyone()
    cache.reload()
    return cache


def check_choices(cfg: ClipTrainConfig) -> None:
    """A ``UserError`` for a knob outside its choices (the CLI passes them as free strings)."""
    for name, value, allowed in (("captions", cfg.captions, ("first", "pick1", "pickN")),
                                 ("batching", cfg.batching, ("rand", "imggroup")),
                                 ("neg_loss", cfg.neg_loss, ("bce", "negclip", "none"))):
        if value not in allowed:
            raise UserError(f"--{name.replace('_', '-')} {value!r}: choose {', '.join(allowed)}")


def _train(cfg: ClipTrainConfig, progress: Progress | None, log: Callable[[dict], None] | None,
           skip: SkipLog) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from peft import LoraConfig, get_peft_model

    from densecaption.models.registry import load_model

    progress = progress or (lambda stage, total: (lambda n: None))
    out = Path(cfg.out)
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision,
                              cpu=not torch.cuda.is_available(), log_with="tensorboard" if tensorboard else None,
                              project_dir=str(out))
    if tensorboard:
        accelerator.init_trackers("train_clip")
    set_seed(cfg.seed)
    backend = load_model(cfg.model, device="cpu")
    if not hasattr(backend, "image_embeds"):
        raise UserError(f"{cfg.model}: this backend cannot be fine-tuned (it needs a CLIP-style model)")
    dataset = DCIDataset.open(cfg.data)
    entries, groups = load_entries(dataset, cfg.split, negative_kind=cfg.negative_kind, skip=skip)
    if cfg.valid_split and cfg.valid_split != cfg.split:
        parse_split(dataset, cfg.valid_split, skip)  # bad validation records: reported once, before training
    if not entries:
        raise UserError(f"{cfg.data}: no trainable entries in split {cfg.split!r} (summaries and "
                        f"{cfg.negative_kind} negatives needed)")

    backend.prepare_for_lora()
    base = {"spec": cfg.model, **base_identity(backend.model)}  # what loading the adapter checks it against
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="lora_only",
                      target_modules=list(cfg.lora_targets or backend.lora_targets))
    net = get_peft_model(backend.model, lora)
    backend.model = net.base_model.model  # LoRA layers are injected in place: evaluation sees them
    scorer = ContrastiveScorer(backend, net)
    loss_fn = DenseCaptionLoss(cfg.neg_loss, alpha=cfg.clip_weight, beta=cfg.neg_weight)
    optimizer = torch.optim.AdamW([p for p in scorer.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    crop_cache = fill_crop_cache(cfg, backend, entries, accelerator, progress) if cfg.crop_cache else None
    train_set = EntryDataset(entries, backend, captions=cfg.captions, n=cfg.pick_n, seed=cfg.seed,
                             crop_cache=crop_cache)
    sampler = (ImageGroupBatches(groups, cfg.batch_size, seed=cfg.seed) if cfg.batching == "imggroup"
               else RandomBatches(len(entries), cfg.batch_size, seed=cfg.seed))
    loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=train_set.collate,
                                         num_workers=cfg.workers)
    scorer, optimizer, loader = accelerator.prepare(scorer, optimizer, loader)

    run = RunState(accelerator, out, seed=cfg.seed, keep=cfg.keep_checkpoints, every=cfg.checkpoint_every,
                   stop_after_steps=cfg.stop_after_steps, best=None)
    backend.device = str(accelerator.device)
    if cfg.resume:
        run.restore(cfg.resume)
    state = run.state
    metrics_log = MetricsLog(out / "log.jsonl", enabled=accelerator.is_main_process, after_step=state["global_step"]
                             if cfg.resume else None, tracker=accelerator if tensorboard else None)

    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        atomic_write_text(out / "train_config.json", json.dumps(asdict(cfg), indent=1) + "\n")
    n_pos = train_set.positives_per_entry
    advance = progress("training", cfg.epochs * len(loader))
    advance(state["epoch"] * len(loader) + state["step_in_epoch"])
    for epoch in range(state["epoch"], cfg.epochs):
        train_set.epoch = epoch
        batches = run.batches(loader, sampler, epoch)
        scorer.train()
        for batch in batches:
            run.seed_step()  # dropout draws what an uninterrupted run would, whatever ran since the checkpoint
            with accelerator.accumulate(scorer):
                pos, neg = scorer(batch["pixels"], batch["positives"], batch["negatives"])
                losses = loss_fn(pos, n_pos, neg)
                accelerator.backward(losses["loss"])
                optimizer.step()
                optimizer.zero_grad()
            run.count_step()
            advance(1)
            record = {"epoch": epoch, "step": state["global_step"],
                      **{k: float(v.detach()) for k, v in losses.items()}}
            metrics_log.write(record)
            if log and accelerator.is_main_process:
                log(record)
            run.after_step()
        run.end_epoch(epoch)
        metrics = validate(cfg, dataset, backend, scorer) if cfg.valid_split else {}
        if metrics:
            record = {"epoch": epoch, "step": state["global_step"], **{f"valid_{k}": v for k, v in metrics.items()}}
            metrics_log.write(record)
            if log and accelerator.is_main_process:
                log(record)
        score = metrics.get(cfg.best_metric)
        if score is not None and not math.isnan(score) and (state["best"] is None or score > state["best"]):
            state["best"] = score
            if accelerator.is_main_process:
                save_adapter(accelerator.unwrap_model(scorer).net, out / "best_adapter",
                             adapter_record(cfg, state, base))
        run.save()
    final = out / "adapter"
    if accelerator.is_main_process:
        save_adapter(accelerator.unwrap_model(scorer).net, final, adapter_record(cfg, state, base))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def adapter_record(cfg: ClipTrainConfig, state: dict, base: dict) -> dict:
    """``densecaption_adapter.json``: the run, and the base model the adapter needs (checked on loading)."""
    return {"model": cfg.model, "data": cfg.data, "split": cfg.split, "epochs": cfg.epochs,
            "epochs_done": state["epoch"], "steps": state["global_step"], "best": {cfg.best_metric: state["best"]},
            "base": base}


def save_adapter(net, folder: Path, record: dict) -> None:
    """peft's adapter files plus the project's record beside them."""
    net.save_pretrained(str(folder))
    atomic_write_text(folder / RECORD, json.dumps(record, indent=1) + "\n")


def validate(cfg: ClipTrainConfig, dataset: DCIDataset, backend, scorer: nn.Module) -> dict[str, float]:
    """The six sDCI metrics on the validation split with the weights as they are now."""
    from densecaption.evaluation.sdci import evaluate_sdci

    scorer.eval()
    try:
        with torch.no_grad():
            return evaluate_sdci(dataset, backend, split=cfg.valid_split, skip=SkipLog()).metrics
    finally:
        scorer.train()

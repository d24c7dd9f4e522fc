"""Linear probe on an ImageNet-style folder through ``clip_benchmark`` (the protocol of DCI's Table 9).

Every train and test image is encoded once through the model contract (L2-normalised image embeddings); the
features go into clip_benchmark's feature cache and its ``linear_probe.evaluate`` trains a linear layer on
them (AdamW, cosine schedule, its defaults: 10 epochs, lr 0.1, batch 64) and scores the test split. With
``--val-proportion`` it first sweeps the weight decay on a held-out share of the train split as it does;
docs/scorers-and-classification.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from densecaption.evaluation.benchmark import Benchmark, BenchmarkData, BenchmarkOutput, Metric, RunContext, option

METRICS = (Metric("lp_acc1", "linear-probe top-1"), Metric("lp_mean_per_class_recall", "mean per-class recall"))


@dataclass(frozen=True)
class LinearProbeConfig:
    train_split: str = field(default="train", metadata=option("The split the linear layer is trained on."))
    fewshot_k: int = field(default=-1, metadata=option(
        "Training images per class (-1: all of them); clip_benchmark's --fewshot_k.", minimum=-1))
    epochs: int = field(default=10, metadata=option("Training epochs of the linear layer.", minimum=1))
    lr: float = field(default=0.1, metadata=option("Learning rate of the linear layer.", minimum=0.0))
    val_proportion: float = field(default=0.0, metadata=option(
        "Share of the train split held out to sweep the weight decay (0: no sweep, weight decay 0).", minimum=0.0))
    batch_size: int = field(default=64, metadata=option("Images (and features) per batch.", minimum=1))
    seed: int = field(default=0, metadata=option("Seed of the layer's initialisation, shuffling and splits."))


class LinearProbe(Benchmark):
    """A linear classifier on frozen image embeddings of an ImageNet-style folder, through clip_benchmark."""

    name = "linear-probe"
    title = "Linear probe"
    config_class = LinearProbeConfig
    metrics = METRICS
    data_help = "An ImageNet-style folder: DIR/<split>/<class folder>/<image> (the train split and --split)."
    default_split = "val"

    def open(self, path: Any, split: str) -> BenchmarkData:
        from densecaption.evaluation.clip_benchmark_adapter import open_split, split_sha256

        test = open_split(path, split)
        return BenchmarkData(path=str(path), sha256=split_sha256(test), split=split, handle=(str(path), test))

    def run(self, model: Any, config: LinearProbeConfig, data: BenchmarkData,
            context: RunContext) -> BenchmarkOutput:
        import tempfile

        import torch
        from clip_benchmark.metrics import linear_probe

        from densecaption.errors import DataError, UserError
        from densecaption.evaluation.clip_benchmark_adapter import ContractAsClip, library_fixes, open_split, \
            probe_device, require_embedding_model

        require_embedding_model(model, "bench linear-probe")
        root, test = data.handle
        train = open_split(root, config.train_split)
        if train.folders != test.folders:
            raise DataError(f"{root}: splits {config.train_split!r} and {test.split!r} have different class folders")
        if not 0 <= config.val_proportion < 1:
            raise UserError(f"--val-proportion {config.val_proportion}: must be at least 0 and below 1")
        advance = context.progress("images", len(train.files) + len(test.files))
        features = {}
        for name, split in (("train", train), ("test", test)):
            adapter = ContractAsClip(model, split.files, "cpu", advance)
            rows = [adapter.encode_image(torch.arange(s, min(s + config.batch_size, len(split.files))))
                    for s in range(0, len(split.files), config.batch_size)]
            features[name] = (torch.cat(rows), torch.tensor(split.targets))
        with tempfile.TemporaryDirectory() as root_dir, torch.random.fork_rng(), probe_device() as device, \
                library_fixes():
            torch.manual_seed(config.seed)  # its few-shot draw and loaders use the global generator
            val_loader = _write_cache(root_dir, features, config)
            found = linear_probe.evaluate(None, None, None, config.fewshot_k, config.batch_size, 0, config.lr,
                                          config.epochs, "features", config.seed, root_dir, device,
                                          val_dataloader=val_loader, normalize=True, amp=False)
        if found is None:
            raise DataError(f"{root}: some class has fewer than --fewshot-k {config.fewshot_k} training images")
        n = len(test.files)
        return BenchmarkOutput(
            {"lp_acc1": 100 * found["lp_acc1"], "lp_mean_per_class_recall": 100 * found["lp_mean_per_class_recall"]},
            {"lp_acc1": n, "lp_mean_per_class_recall": n},
            extra={"lp_acc5": None if found["lp_acc5"] != found["lp_acc5"] else 100 * found["lp_acc5"],
                   "weight_decay": found["weight_decay"], "train_images": len(train.files),
                   "classes": len(test.folders), "encoded_images": len(train.files) + len(test.files),
                   "encoded_texts": 0})


def _write_cache(root: str, features: dict, config: LinearProbeConfig):
    """Write the features as clip_benchmark caches them (``features_{train,val,test}.pt`` and targets), so its
    ``evaluate`` skips featurising; a held-out val share when sweeping. Returns its val-loader stand-in."""
    import os

    import torch

    folder = os.path.join(root, "features")
    os.makedirs(folder)
    train_x, train_y = features["train"]
    val = None
    if config.val_proportion > 0:
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(config.seed))
        cut = max(1, int(round(len(order) * config.val_proportion)))
        val_idx, train_idx = order[:cut], order[cut:]
        val = (train_x[val_idx], train_y[val_idx])
        train_x, train_y = train_x[train_idx], train_y[train_idx]
    for name, pair in (("train", (train_x, train_y)), ("val", val), ("test", features["test"])):
        if pair is not None:
            torch.save(pair[0], os.path.join(folder, f"features_{name}.pt"))
            torch.save(pair[1], os.path.join(folder, f"targets_{name}.pt"))
    return () if val is not None else None  # only its being None matters once the cache exists

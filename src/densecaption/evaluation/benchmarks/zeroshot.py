"""Zero-shot classification on an ImageNet-style folder through ``clip_benchmark`` (DCI paper, Table 8).

Each class's text embedding is the renormalised mean of its prompts' embeddings (CLIP's 80 ImageNet templates
by default); an image's class is the argmax of cosine against them. clip_benchmark computes top-1, top-5
(with at least 5 classes) and mean per-class recall; docs/scorers-and-classification.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from densecaption.evaluation.benchmark import Benchmark, BenchmarkData, BenchmarkOutput, Metric, PublishedRow, \
    RunContext, option

METRICS = (Metric("acc1", "top-1"), Metric("acc5", "top-5"), Metric("mean_per_class_recall", "mean per-class recall"))
# DCI paper, Table 8: ImageNet validation top-1, CLIP ViT-B/32 and its fine-tunes.
_PUBLISHED = (("CLIP (baseline)", 60.96), ("sDCI P1", 42.51), ("sDCI P1 NL0", 51.44), ("DAC-LLM", 52.65),
              ("DAC-SAM", 53.43))


@dataclass(frozen=True)
class ZeroShotConfig:
    classnames: str = field(default="auto", metadata=option(
        "Class names: auto (clip_benchmark's ImageNet names for 1000 class folders, else the folder names), "
        "folders, a clip_benchmark dataset name (imagenet1k, cifar10, ...), or a file (one name per line in "
        "sorted folder order, or a .json object folder -> name)."))
    templates: str = field(default="imagenet1k", metadata=option(
        "Prompt templates: a clip_benchmark dataset name (imagenet1k: CLIP's 80 prompts) or a file with one "
        "template per line holding {c}."))
    batch_size: int = field(default=64, metadata=option("Images per batch.", minimum=1))


class ZeroShot(Benchmark):
    """Zero-shot classification of an ImageNet-style folder (DCI Table 8), through clip_benchmark."""

    name = "zeroshot"
    title = "Zero-shot classification"
    config_class = ZeroShotConfig
    metrics = METRICS
    published = tuple(PublishedRow(model, {"acc1": value}, "DCI paper, Table 8 (ImageNet val)")
                      for model, value in _PUBLISHED)
    data_help = "An ImageNet-style folder: DIR/<split>/<class folder>/<image>."
    default_split = "val"

    def open(self, path: Any, split: str) -> BenchmarkData:
        from densecaption.evaluation.clip_benchmark_adapter import open_split, split_sha256

        opened = open_split(path, split)
        return BenchmarkData(path=str(path), sha256=split_sha256(opened), split=split, handle=opened)

    def run(self, model: Any, config: ZeroShotConfig, data: BenchmarkData, context: RunContext) -> BenchmarkOutput:
        import torch
        from clip_benchmark.metrics import zeroshot_classification

        from densecaption.evaluation.clip_benchmark_adapter import ContractAsClip, IndexDataset, Texts, \
            class_names, library_fixes, require_embedding_model, templates, torch_device_type

        require_embedding_model(model, "bench zeroshot")
        split = data.handle
        names, prompts = class_names(config.classnames, split.folders), templates(config.templates)
        device = torch_device_type(model.device)
        adapter = ContractAsClip(model, split.files, device, context.progress("images", len(split.files)))
        loader = torch.utils.data.DataLoader(IndexDataset(split.targets, names), batch_size=config.batch_size)
        with library_fixes():
            found = zeroshot_classification.evaluate(adapter, loader, Texts, names, prompts, device, amp=False)
        n = len(split.files)
        metrics = {"acc1": 100 * found["acc1"], "acc5": 100 * found["acc5"],
                   "mean_per_class_recall": 100 * found["mean_per_class_recall"]}
        counts = {"acc1": n, "acc5": n if len(names) >= 5 else 0, "mean_per_class_recall": n}
        return BenchmarkOutput(metrics, counts, extra={
            "classes": len(names), "templates": len(prompts), "encoded_images": adapter.encoded_images,
            "encoded_texts": adapter.encoded_texts})

"""sDCI on the benchmark interface: DCI data with summaries, negatives and clip_scores; six tests."""

from __future__ import annotations

from typing import Any

from densecaption.errors import DataError
from densecaption.evaluation.benchmark import Benchmark, BenchmarkData, BenchmarkOutput, Metric, PublishedRow, \
    RunContext
from densecaption.evaluation.sdci import METRICS, PAPER_NAMES, SdciConfig

_TABLE = "DCI paper, Table 2/10"
# The published sDCI numbers (Urbanek et al. 2024), in METRICS order.
_PUBLISHED = (
    ("CLIP ViT-B/32 openai", (40.06, 60.79, 11.21, 24.06, 67.56, 41.34)),
    ("NegCLIP", (43.35, 56.00, 13.22, 4.82, 76.69, 50.84)),
    ("DAC-SAM", (37.90, 84.17, 6.70, 39.94, 89.66, 73.61)),
    ("ViT-L-14 datacomp_xl_s13b_b90k", (44.37, 63.19, 15.37, 22.43, 79.99, 59.45)),
    ("best sDCI fine-tune (Pick1, no neg loss, ImgGroup)", (64.02, 71.55, 31.60, 35.15, 78.57, 66.28)),
)


class SDCI(Benchmark):
    """The six sDCI tests (All SCM, All Neg, Pick5 SCM, Pick5 Neg, Base Neg, All Hard-Negs)."""

    name = "sdci"
    uses_crop_cache = True
    title = "sDCI"
    config_class = SdciConfig
    metrics = tuple(Metric(m, PAPER_NAMES[m]) for m in METRICS)
    published = tuple(PublishedRow(model, dict(zip(METRICS, values)), _TABLE) for model, values in _PUBLISHED)
    data_help = "A DCI folder with complete/ files, or 'sample'."

    def open(self, path: Any, split: str) -> BenchmarkData:
        """``path``: a DCI folder, 'sample', or an open ``DCIDataset``."""
        from densecaption.data.dci import DCIDataset
        from densecaption.errors import UserError
        from densecaption.evaluation.results import dataset_sha256

        dataset = path if isinstance(path, DCIDataset) else DCIDataset.open(path)
        if dataset.source != "complete":
            raise UserError(f"{dataset.root}: no complete/ folder: sDCI needs summaries and negatives")
        return BenchmarkData(path=dataset.given, sha256=dataset_sha256(dataset, split), split=split, handle=dataset)

    def run(self, model: Any, config: SdciConfig, data: BenchmarkData, context: RunContext) -> BenchmarkOutput:
        from densecaption.evaluation.features import FeatureStore
        from densecaption.evaluation.sdci import evaluate_sdci

        store = FeatureStore(model, num_workers=context.workers, cache_dir=context.cache_dir,
                             crop_cache=context.crop_cache_for(model))
        result = evaluate_sdci(data.handle, model, split=data.split, config=config, skip=context.skip, store=store,
                               progress=context.progress)
        if not any(result.counts.values()):
            raise DataError(f"{data.path}: no sDCI test has an entry in split {data.split!r}: "
                            f"{_why_empty(data.handle, data.split)}")
        return BenchmarkOutput(result.metrics, result.counts, extra={
            "images": result.images, "encoded_images": result.encoded_images,
            "encoded_texts": result.encoded_texts})

    def result_config(self, config: SdciConfig) -> dict[str, Any]:
        return {"batch_size": config.batch_size, "pick": config.pick, "pick_seed": config.pick_seed,
                "negative": config.negative_kind, "min_box": config.min_box,
                "drop_quality": sorted(config.drop_quality), "hard_kinds": list(config.hard_kinds)}


def _why_empty(dataset, split: str) -> str:
    """Why no record entered a test: records missing what the tests read, counted."""
    from densecaption.data.findings import SkipLog

    records = list(dataset.iter_images(split, SkipLog()))
    if not records:
        return "the split has no readable records"
    no_summaries = sum(1 for r in records if not r.summaries)
    no_scores = sum(1 for r in records if r.clip_scores is None)
    parts = [f"{n} of {len(records)} records have no {what}" for n, what in
             ((no_summaries, "summaries"), (no_scores, "clip_scores")) if n]
    hint = " (`densecaption data clip-scores` computes them)" if no_scores else ""
    return ("; ".join(parts) + hint) if parts else "no entry has the negatives the tests need"

"""SugarCrepe (Hsieh et al. 2023) on the benchmark interface (docs/compositional-benchmarks.md): seven files of
hard negatives on COCO val2017 photos; an item is right when the photo scores its caption strictly above the
negative caption (a tie is wrong, as the official script's ``>``); ``mean`` is the plain mean of the seven.
Items whose photo is missing are left out and counted in ``missing_images`` (the official script would stop).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densecaption.errors import DataError, UserError
from densecaption.evaluation.benchmark import Benchmark, BenchmarkData, BenchmarkOutput, Metric, RunContext, option
from densecaption.evaluation.compositional import Item, files_sha256, score_items, strictly_greater, whole_image

TASKS = ("add_obj", "add_att", "replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")


@dataclass(frozen=True)
class SugarCrepeConfig:
    """SugarCrepe's settings."""

    images: str | None = field(default=None, metadata=option(
        "Folder of the COCO val2017 photos (000000xxxxxx.jpg); default: --data/val2017."))


def read_task(path: Path) -> list[tuple[str, str, str]]:
    """(filename, caption, negative_caption) of each entry of one official file, in key order."""
    try:
        entries = json.loads(path.read_text())
        return [(e["filename"], e["caption"], e["negative_caption"]) for e in entries.values()]
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: expected {{\"N\": {{filename, caption, negative_caption}}}} ({e})") from None


class SugarCrepe(Benchmark):
    """SugarCrepe: seven hard-negative types (add, replace, swap of objects, attributes, relations)."""

    name = "sugarcrepe"
    title = "SugarCrepe"
    config_class = SugarCrepeConfig
    metrics = tuple(Metric(t, t) for t in TASKS) + (Metric("mean", "mean"),)
    data_help = "Folder with the seven official SugarCrepe json files (`densecaption data fetch sugarcrepe DIR`)."
    uses_splits = False

    def open(self, path: Any, split: str) -> BenchmarkData:
        root = Path(path).expanduser()
        files = [root / f"{t}.json" for t in TASKS]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise UserError(f"--data {root}: {', '.join(absent)} not found "
                            f"(`densecaption data fetch sugarcrepe {root}`)")
        return BenchmarkData(path=str(path), sha256=files_sha256(files, root), split=split, handle=root)

    def run(self, model: Any, config: SugarCrepeConfig, data: BenchmarkData, context: RunContext) -> BenchmarkOutput:
        root = data.handle
        images = Path(config.images).expanduser() if config.images else root / "val2017"
        if not images.is_dir():
            raise UserError(f"--images {images}: no such folder (the COCO val2017 photos)")
        items: dict[str, list[Item]] = {}
        missing: dict[str, int] = {}
        crops: dict[str, Any] = {}
        for task in TASKS:
            rows = read_task(root / f"{task}.json")
            for filename, _, _ in rows:
                if filename not in crops:
                    crops[filename] = whole_image(images / filename) if (images / filename).is_file() else None
            items[task] = [Item(crops[f], (c, n)) for f, c, n in rows if crops[f] is not None]
            missing[task] = len(rows) - len(items[task])
        scored = score_items(model, [it for t in TASKS for it in items[t]], context)
        metrics, counts, start = {}, {}, 0
        for task in TASKS:
            scores = scored.scores[start:start + len(items[task])]
            start += len(items[task])
            hits = [strictly_greater(s[0], s[1]) for s in scores]
            metrics[task] = 100.0 * sum(hits) / len(hits) if hits else float("nan")
            counts[task] = len(hits)
        metrics["mean"] = sum(metrics[t] for t in TASKS) / len(TASKS)
        counts["mean"] = sum(counts[t] for t in TASKS)
        return BenchmarkOutput(metrics, counts, {"images": str(images), "missing_images": missing,
                                                 "encoded_images": scored.encoded_images,
                                                 "encoded_texts": scored.encoded_texts})

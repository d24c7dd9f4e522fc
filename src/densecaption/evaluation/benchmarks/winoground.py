"""Winoground (Thrush et al. 2022) on the benchmark interface (docs/compositional-benchmarks.md): 400 items of
two photos and two captions with the same words in another order. With ``s(c, i)`` the score of caption c
with image i: text = s(c0,i0) > s(c1,i0) and s(c1,i1) > s(c0,i1); image = s(c0,i0) > s(c0,i1) and
s(c1,i1) > s(c1,i0); group = both (strict, a tie fails). Photos come from the release's parquet bytes."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from densecaption.errors import DataError, UserError
from densecaption.evaluation.benchmark import Benchmark, BenchmarkData, BenchmarkOutput, Metric, RunContext, option
from densecaption.evaluation.compositional import winoground_outcome

FIELDS = ("id", "image_0", "image_1", "caption_0", "caption_1")
BATCH = 32


@dataclass(frozen=True)
class WinogroundConfig:
    """Winoground's settings (the protocol has none to choose)."""

    batch_size: int = field(default=BATCH, metadata=option("Photos encoded per batch (changes no number).",
                                                           minimum=2))


def parquet_files(root: Path) -> list[Path]:
    """The release's parquet file(s): ROOT itself, or every *.parquet under it, sorted."""
    if root.is_file():
        return [root]
    return sorted(root.rglob("*.parquet"))


def read_items(files: list[Path]) -> list[dict[str, Any]]:
    """Rows with the five fields the test reads; a photo is its bytes (the datasets Image struct)."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for path in files:
        try:
            table = pq.read_table(path, columns=list(FIELDS))
        except Exception as e:  # pyarrow raises its own types for a bad file or a missing column
            raise DataError(f"{path}: cannot read the Winoground parquet ({str(e).splitlines()[0]})") from None
        rows += table.to_pylist()
    return rows


def decode(image: Any):
    """A PIL RGB image from the parquet cell ({bytes, path} or raw bytes)."""
    from PIL import Image

    raw = image.get("bytes") if isinstance(image, dict) else image
    if not raw:
        raise DataError("a Winoground photo cell holds no bytes")
    with Image.open(io.BytesIO(raw)) as im:
        return im.convert("RGB")


class Winoground(Benchmark):
    """Winoground: text, image and group scores over 400 pairs of pairs."""

    name = "winoground"
    title = "Winoground"
    config_class = WinogroundConfig
    metrics = (Metric("text", "Text"), Metric("image", "Image"), Metric("group", "Group"))
    data_help = ("Folder holding the facebook/winoground parquet (or the file itself); gated on the Hub: "
                 "`densecaption data fetch winoground DIR` says how.")
    uses_splits = False

    def open(self, path: Any, split: str) -> BenchmarkData:
        root = Path(path).expanduser()
        files = parquet_files(root) if root.exists() else []
        if not files:
            raise UserError(f"--data {root}: no .parquet file (`densecaption data fetch winoground {root}`)")
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        return BenchmarkData(path=str(path), sha256=h.hexdigest(), split=split, handle=files)

    def result_config(self, config: WinogroundConfig) -> dict[str, Any]:
        return {}  # the batch size changes no number

    def run(self, model: Any, config: WinogroundConfig, data: BenchmarkData, context: RunContext) -> BenchmarkOutput:
        import torch

        rows = read_items(data.handle)
        if not rows:
            raise DataError(f"{data.path}: the parquet holds no items")
        texts = list(dict.fromkeys(t for r in rows for t in (r["caption_0"], r["caption_1"])))
        index = {t: i for i, t in enumerate(texts)}
        advance = context.progress("encoding", 2 * len(rows) + len(texts))
        with torch.no_grad():
            text_features = torch.cat([model.encode_texts(texts[s:s + 256]) for s in range(0, len(texts), 256)])
            advance(len(texts))
            image_features = []
            blind = not getattr(model, "uses_images", True)
            for s in range(0, len(rows), config.batch_size // 2):
                chunk = rows[s:s + config.batch_size // 2]
                photos = [None if blind else decode(r[k]) for r in chunk for k in ("image_0", "image_1")]
                image_features.append(model.encode_images(photos))
                advance(len(photos))
            images = torch.cat(image_features)
            outcomes = []
            for n, r in enumerate(rows):
                s = model.similarity(images[2 * n:2 * n + 2], text_features[[index[r["caption_0"]],
                                                                              index[r["caption_1"]]]])
                outcomes.append(winoground_outcome(s.double().numpy().T))  # rows: captions, columns: images
        metrics, counts = {}, {}
        for k, key in enumerate(("text", "image", "group")):
            hits = [o[k] for o in outcomes]
            metrics[key], counts[key] = 100.0 * float(np.mean(hits)), len(hits)
        return BenchmarkOutput(metrics, counts, {"items": len(rows), "encoded_images": 2 * len(rows),
                                                 "encoded_texts": len(texts)})

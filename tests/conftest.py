"""Shared fixtures: small DCI folders built on the fly, so tests know every value by construction."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densecaption.data.schema import encode_mask_png

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config) -> None:
    """Under pytest-xdist, share the cores out between the workers: each one's torch would otherwise start a
    thread per core, and N workers x all cores threads run slower than one thread each."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(threads)


def shared_data_or_skip(*parts: str) -> Path:
    """A path under ../shared/data; skip when it is absent (a user's clone), but never in CI."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing in CI")
        pytest.skip(f"{path} is absent (shared data is only beside the project's own checkout)")
    return path


def rect_mask(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


def mask_entry(idx: int, parent: int, children: list[int], box: tuple[int, int, int, int], size: tuple[int, int],
               label: str = "thing", caption: str = "a thing", quality: int = 0) -> dict:
    width, height = size
    x0, y0, x1, y1 = box
    return {"idx": idx, "parent": parent, "requirements": children,
            "outer_mask": encode_mask_png(rect_mask(width, height, box)),
            "area": (x1 - x0) * (y1 - y0),
            "bounds": {"topLeft": {"x": x0, "y": y0}, "bottomRight": {"x": x1, "y": y1}},
            "label": label, "caption": caption, "mask_quality": quality}


def make_doc(size: tuple[int, int] = (400, 300), image: str = "photo.jpg") -> dict:
    """A valid annotation: mask 1 (top-level, 240x250 box) with child 2 (small), and mask 3 (top-level)."""
    width, height = size
    doc = {
        "image": image,
        "short_caption": "A red box.",
        "extra_caption": "A red box on a grey floor.",
        "height": height, "width": width,
        "mask_keys": ["1", "2", "3"],
        "mask_data": {
            "1": mask_entry(1, -1, [2], (10, 20, 250, 270), size, "box", "a red box"),
            "2": mask_entry(2, 1, [], (50, 60, 150, 160), size, "lid", "the lid"),
            "3": mask_entry(3, -1, [], (300, 0, 400, 100), size, "floor", "", quality=1),
        },
        "summaries": {"base": ["a red box on a floor", "a box"], "m-1-sc": ["the red box", "a box"]},
        "negatives": {"base": {"basic": ["a blue box"], "layout": ["a floor on a box"], "swaps": ["a floor box red"]},
                      "m-1-sc": {"basic": ["a green box"], "layout": ["a box under"], "swaps": ["box the red"]}},
        "clip_scores": {"base": {"sum": 30.5, "basic_0": 20.0, "layout_0": 25.25, "swaps_0": 31.0},
                        "m-1-sc": {"sum": 28.0, "basic_0": 27.5, "layout_0": 1.0, "swaps_0": 2.0}},
    }
    return doc


def write_dataset(root: Path, docs: dict[str, dict], splits: dict | None = None,
                  photo_size: tuple[int, int] = (400, 300), folder: str = "complete") -> Path:
    """Write ``docs`` (file name -> JSON object or raw text) as a DCI folder; returns the inner folder."""
    inner = root / "densely_captioned_images"
    for sub in ("photos", "annotations", "complete"):
        (inner / sub).mkdir(parents=True, exist_ok=True)
    photos = {d.get("image") for d in docs.values() if isinstance(d, dict) and isinstance(d.get("image"), str)}
    rng = np.random.default_rng(0)
    for name in photos:
        pixels = rng.integers(0, 255, (photo_size[1], photo_size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(inner / "photos" / name)
    for file, doc in docs.items():
        text = doc if isinstance(doc, str) else json.dumps(doc)
        (inner / folder / file).write_text(text)
    splits = splits if splits is not None else {"train": [], "valid": [], "test": list(docs)}
    (inner / "splits.json").write_text(json.dumps(splits))
    return inner


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path, {"1-data.json": make_doc()})


@pytest.fixture(scope="module", params=["open_clip", "hf"])
def tiny_clip_each(request, tmp_path_factory):
    """A tiny random CLIP of each backend (open_clip, transformers), written by ``models init-random`` and
    loaded back through ``load_model``: tests that must hold for both take it."""
    from typer.testing import CliRunner

    from densecaption.cli import build_app
    from densecaption.models.registry import load_model

    out = tmp_path_factory.mktemp(request.param)
    result = CliRunner().invoke(build_app(), ["models", "init-random", "ViT-B-32", str(out), "--tiny",
                                              "--backend", request.param])
    assert result.exit_code == 0, result.output
    prefix = "open_clip:local-dir:" if request.param == "open_clip" else "hf:"
    return load_model(prefix + str(out), device="cpu")

"""Build the bundled sample dataset from the hand-written sources in tools/sample_source/.

    .venv/bin/pip install -e '.[sample-build]'
    .venv/bin/python tools/build_sample.py [--out src/densecaption/data/sample] [--only NAME ...]

Photos come from packages (scikit-image, scikit-learn, matplotlib); masks are rasterised from the traced
shapes and intersected with their parent; the result is written in the official DCI layout and scored
with `data clip-scores` using a random-initialised open_clip ViT-B-32 (seed 0), as the sample README says.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from densecaption.data.clip_scores import compute_record_scores
from densecaption.data.dci import DCIWriter
from densecaption.data.schema import BASE_KEY, NEGATIVE_KINDS, Box, DCIImage, Mask, encode_mask_png, mask_key
from densecaption.data.sdci import MIN_BOX
from densecaption.tokens import ClipTokenCounter

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sample_source"
DEFAULT_OUT = HERE.parent / "src" / "densecaption" / "data" / "sample"
SPLIT_ORDER = ("train", "valid", "test")
SCORE_MODEL = "ViT-B-32"
SCORE_SEED = 0


def load_photo(photo: dict) -> Image.Image:
    package, ident = photo["package"], photo["id"]
    if package == "skimage":
        import skimage.data

        array = getattr(skimage.data, ident)()
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        return Image.fromarray(array).convert("RGB")
    if package == "sklearn":
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(ident)).convert("RGB")
    if package == "matplotlib":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data(ident) as f:
            return Image.open(f).convert("RGB")
    raise ValueError(f"unknown photo package {package!r}")


def rasterise(shapes: list[dict], size: tuple[int, int]) -> np.ndarray:
    canvas = Image.new("1", size, 0)
    draw = ImageDraw.Draw(canvas)
    for shape in shapes:
        (kind, value), = shape.items()
        if kind == "polygon":
            draw.polygon([tuple(p) for p in value], fill=1)
        elif kind == "ellipse":
            draw.ellipse(value, fill=1)
        elif kind == "rect":
            draw.rectangle(value, fill=1)
        else:
            raise ValueError(f"unknown shape {kind!r}")
    return np.asarray(canvas, dtype=bool)


def build_masks(src: dict, size: tuple[int, int], problems: list[str]) -> dict[int, Mask]:
    by_idx = {m["idx"]: m for m in src["masks"]}
    pixels: dict[int, np.ndarray] = {}

    def pixels_of(idx: int) -> np.ndarray:
        if idx not in pixels:
            m = by_idx[idx]
            mask = rasterise(m["shapes"], size) & ~rasterise(m.get("holes", []), size)
            if m["parent"] != -1:
                mask &= pixels_of(m["parent"])
            pixels[idx] = mask
        return pixels[idx]

    masks = {}
    for m in src["masks"]:
        mask = pixels_of(m["idx"])
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            problems.append(f"mask {m['idx']} is empty")
            continue
        box = Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        if mask.sum() < 5000:
            problems.append(f"mask {m['idx']} ({m['label']}) has only {int(mask.sum())} px")
        children = [c["idx"] for c in src["masks"] if c["parent"] == m["idx"]]
        masks[m["idx"]] = Mask(idx=m["idx"], parent=m["parent"], requirements=children,
                               outer_mask=encode_mask_png(mask), area=int(mask.sum()), box=box,
                               label=m["label"], caption=m["caption"], quality=m["quality"])
    return masks


def check_texts(key: str, summaries: list[str], negatives: dict, per_kind: int, count, problems: list[str]):
    if len(summaries) < 5:
        problems.append(f"{key}: {len(summaries)} summaries, want at least 5")
    for kind in NEGATIVE_KINDS:
        if len(negatives.get(kind, [])) != per_kind:
            problems.append(f"{key}: {len(negatives.get(kind, []))} {kind} negatives, want {per_kind}")
    texts = summaries + [t for kind in NEGATIVE_KINDS for t in negatives.get(kind, [])]
    for t in texts:
        if count(t) > 77:
            problems.append(f"{key}: {count(t)} CLIP tokens > 77: {t[:60]}...")
    if summaries and any(t == summaries[0] for kind in NEGATIVE_KINDS for t in negatives.get(kind, [])):
        problems.append(f"{key}: a negative equals its summary")


def build_record(src: dict, photo_dir: Path, count, problems: list[str]) -> DCIImage:
    photo = load_photo(src["photo"])
    name = f"{src['name']}.jpg"
    photo.save(photo_dir / name, quality=92)
    masks = build_masks(src, photo.size, problems)
    summaries = {BASE_KEY: src["summaries"]}
    negatives = {BASE_KEY: src["negatives"]}
    check_texts("base", src["summaries"], src["negatives"], 3, count, problems)
    for m in src["masks"]:
        if m["idx"] not in masks:
            continue
        box = masks[m["idx"]].box
        big = box.width >= MIN_BOX and box.height >= MIN_BOX
        if big != ("summaries" in m):
            problems.append(f"mask {m['idx']} ({m['label']}): box {box.width}x{box.height} but summaries "
                            f"{'present' if 'summaries' in m else 'missing'}")
        if "summaries" in m:
            key = mask_key(m["idx"])
            summaries[key] = m["summaries"]
            negatives[key] = m["negatives"]
            check_texts(key, m["summaries"], m["negatives"], 1, count, problems)
    return DCIImage(file=f"{src['name']}-data.json", image=name, short_caption=src["short_caption"],
                    extra_caption=src["extra_caption"], height=photo.height, width=photo.width,
                    mask_keys=[str(i) for i in masks], masks=masks, summaries=summaries, negatives=negatives,
                    photo_path=photo_dir / name)


def write_readme(out: Path, sources: list[dict], records: list[DCIImage]) -> None:
    lines = [
        "# The densecaption sample dataset",
        "",
        f"{len(records)} real images that ship inside Python packages (photos, and one clip-art silhouette: "
        "`horse`), annotated by hand for this project in the official DCI layout (`densely_captioned_images/{photos, annotations, complete, splits.json}`).",
        "Masks were traced as polygons, ellipses and rectangles over the real regions of each photo (no SAM);",
        "captions, summaries and negatives were written for what each photo shows. Build script:",
        "`tools/build_sample.py` from `tools/sample_source/*.json` in the repository.",
        "",
        f"**`clip_scores` here come from random weights**: open_clip `{SCORE_MODEL}` initialised at random "
        f"with seed {SCORE_SEED} (`densecaption models init-random {SCORE_MODEL} DIR --seed {SCORE_SEED}`, "
        "then `densecaption data clip-scores`). They exercise the hardest-negative code path and are not "
        "CLIP ViT-B/32 scores; recompute them with a real model for meaningful values.",
        "",
        "| record | photo | split | size | masks | sDCI entries | source | licence |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for src, rec in zip(sources, records):
        lines.append(f"| {rec.file} | {rec.image} | {src['split']} | {rec.width}x{rec.height} | {len(rec.masks)} "
                     f"| {len(rec.summaries)} | {src['source']} | {src['license']} |")
    lines += ["", "The annotations are released with the project (MIT); each photo keeps its own licence above.",
              ""]
    (out / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="*", help="build only these sources (for checking), into --out")
    parser.add_argument("--no-scores", action="store_true", help="skip the clip_scores pass")
    args = parser.parse_args(argv)

    paths = sorted(SOURCES.glob("*.json"))
    if args.only:
        paths = [p for p in paths if p.stem in args.only]
    sources = [json.loads(p.read_text()) for p in paths]
    count = ClipTokenCounter()
    inner = args.out / "densely_captioned_images"
    if inner.exists():
        shutil.rmtree(inner)
    writer = DCIWriter(args.out)
    records, failed = [], False
    for src in sources:
        problems: list[str] = []
        record = build_record(src, writer.root / "photos", count, problems)
        for p in problems:
            print(f"{src['name']}: {p}", file=sys.stderr)
        failed |= bool(problems)
        records.append(record)
    splits = {s: [r.file for src, r in zip(sources, records) if src["split"] == s] for s in SPLIT_ORDER}
    writer.write_splits(splits)
    if not args.no_scores:
        from densecaption.models.open_clip_backend import init_random_open_clip
        from densecaption.models.registry import load_model

        with tempfile.TemporaryDirectory() as tmp:
            folder = init_random_open_clip(SCORE_MODEL, Path(tmp) / "model", seed=SCORE_SEED)
            model = load_model(f"open_clip:local-dir:{folder}", device="cpu")
            for record in records:
                record.clip_scores = compute_record_scores(record, model)
    for record in records:
        writer.write(record)
    write_readme(args.out, sources, records)
    print(f"wrote {len(records)} records to {writer.root}" + (" (with problems above)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

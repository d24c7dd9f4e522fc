"""``densecaption masks ...``: make DCI mask trees (record skeletons to annotate) from SAM masks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from densecaption.cli._common import err_console, guarded, out_console, progress_stages
from densecaption.errors import DataError, UserError
from densecaption.files import remove_stale_temps, writable_folder

app = typer.Typer(help="Make DCI mask trees (unannotated record skeletons) from SAM masks, as DCI prepared its "
                       "photos (section 3.1).", no_args_is_help=True)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
ModeOpt = Annotated[str, typer.Option(help="default: the correct tree step; dci-reference: the release's "
                                           "behaviour, quirks included (see docs/masks.md).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder to write: <photo stem>-mask.json skeletons and "
                                                          "photos/ (every DCI command reads it).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Redo photos whose skeleton exists (default: skip them).")]
MinAreaOpt = Annotated[int, typer.Option(help="Masks under this many px are left out of mask_data (their idx "
                                              "stays in the parent's requirements).")]


def _mode(mode: str) -> str:
    from densecaption.masks import MODES

    if mode not in MODES:
        raise UserError(f"--mode {mode!r}: give one of {', '.join(MODES)}")
    return mode


def _finish(report, out: Path, manifest: dict) -> None:
    """Write the run manifest, print what happened, exit 1 when a photo failed."""
    from densecaption.files import atomic_write_text

    manifest = {**manifest, "written": len(report.written), "skipped": len(report.skipped),
                "failed": [{"file": n, "reason": r} for n, r in report.failed]}
    atomic_write_text(out / "masks-run.json", json.dumps(manifest, indent=1) + "\n")
    console, err = out_console(), err_console()
    for name, reason in report.failed:
        err.print(f"[red]failed[/] {name}: {reason}", highlight=False, markup=True)
    label = " (masks from random SAM weights: meaningless)" if manifest.get("weights") == "random" else ""
    console.print(f"{len(report.written)} skeleton(s) written, {len(report.skipped)} already there, "
                  f"{len(report.failed)} failed, in {out}{label}", highlight=False)
    if report.failed:
        raise typer.Exit(1)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("densecaption", "numpy", "pycocotools", "opencv-python-headless", "opencv-python", "torch",
                 "transformers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


@app.command("from-sam")
@guarded
def from_sam(
    records: Annotated[list[Path], typer.Argument(help="SA-1B-format mask JSON files (one per photo), or folders "
                                                       "of them.")],
    out: OutOpt,
    mode: ModeOpt = "default",
    images: Annotated[Optional[Path], typer.Option(help="Folder of the photos (default: beside each JSON, as in "
                                                        "SA-1B's tar files).")] = None,
    min_area: MinAreaOpt = 5000,
    overwrite: OverwriteOpt = False,
):
    """The tree step on masks that already exist, as SA-1B ships them (and SAM's coco_rle output writes them).

    Each JSON {"image": {"file_name", "width", "height"}, "annotations": [{"segmentation": COCO RLE, "area",
    "predicted_iou", "stability_score", ...}]} becomes OUT/<file_name stem>-mask.json, a DCI
    record with empty captions and labels, its photo linked into OUT/photos/. Masks are scored predicted_iou x
    stability_score^2. Re-runs skip finished photos; records that fail are listed with the reason (exit 1).
    """
    from densecaption.masks.io import expand_inputs, read_sam_record, run_items, sam_record_masks, skeleton, \
        skeleton_name
    from densecaption.masks.tree import build_tree, to_mask_data

    mode = _mode(mode)
    if images is not None and not images.is_dir():
        raise UserError(f"--images {images}: not a folder")
    files = expand_inputs(records, (".json",))
    if not files:
        raise UserError("no SA-1B-format JSON files among " + ", ".join(map(str, records)))
    writable_folder(out)
    remove_stale_temps(out)
    parsed: dict[Path, object] = {}
    missing_photos: list[str] = []

    def name_of(path: Path) -> str:
        parsed.clear()  # run_items asks for an item's name, then makes it: only the current record is held
        try:
            parsed[path] = read_sam_record(path)
            return skeleton_name(parsed[path].file_name)
        except (DataError, OSError) as e:
            parsed[path] = e
            return path.name

    def make(path: Path):
        record = parsed[path]
        if isinstance(record, BaseException):
            raise record
        tree = build_tree(sam_record_masks(record, mode), mode)
        doc = skeleton(record.file_name, record.width, record.height,
                       to_mask_data(tree, record.height, record.width, mode, min_area))
        photo = (images or path.parent) / record.file_name
        if not photo.is_file():
            missing_photos.append(record.file_name)
            photo = None
        return doc, photo

    with progress_stages() as stage:
        report = run_items(files, out, name_of, make, overwrite=overwrite, tick=stage("mask trees", len(files)))
    if missing_photos:
        err_console().print(f"[yellow]no photo for[/] {', '.join(missing_photos[:5])}"
                            f"{' ...' if len(missing_photos) > 5 else ''}: copy them into {out / 'photos'} "
                            "(or give --images)", highlight=False)
    _finish(report, out, {"command": "masks from-sam", "mode": mode, "min_area": min_area,
                          "inputs": [str(p) for p in records], "versions": _versions()})


@app.command()
@guarded
def extract(
    images: Annotated[Path, typer.Option(help="Folder of photos.")],
    out: OutOpt,
    sam: Annotated[str, typer.Option(help="SAM model: hf:facebook/sam-vit-huge (DCI's ViT-H), hf:facebook/sam-vit-large, "
                                          "hf:facebook/sam-vit-base, SAM 2 (hf:facebook/sam2.1-hiera-large ...), or hf:DIR (e.g. "
                                          "from `models init-random sam`).")]
    = "hf:facebook/sam-vit-huge",
    mode: ModeOpt = "default",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps ...")] = "auto",
    points_per_side: Annotated[int, typer.Option(help="Grid pass: points per side.")] = 50,
    points_per_batch: Annotated[int, typer.Option(help="Prompts per SAM decoder call.")] = 64,
    pred_iou_thresh: Annotated[float, typer.Option(help="Keep masks whose predicted IoU is above this.")] = 0.8,
    stability_thresh: Annotated[float, typer.Option(help="Keep masks whose stability is at least this.")] = 0.94,
    min_region_area: Annotated[int, typer.Option(help="Holes and islands under this many px are removed.")] = 1000,
    min_area: MinAreaOpt = 5000,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the edge-point shuffle and jitter (the release's "
                                                     "was unseeded).")] = 0,
    overwrite: OverwriteOpt = False,
):
    """SAM masks for every photo in --images, then the tree: DCI's mask preparation.

    Per photo: the image embedding once; a grid pass (points_per_side^2 prompts) and a pass on points near
    Canny edges (bilateral filter d 11, sigmas 61/39, Canny 100/250; 8 jittered copies per point; in
    dci-reference only the first point is prompted, as in the release); every multimask output kept when its
    predicted IoU is above --pred-iou-thresh and its stability at least --stability-thresh; box NMS 0.97; small
    regions removed. Score = predicted IoU x stability^2. Writes OUT/<photo stem>-mask.json with the
    photo in OUT/photos/. Resumable; photos that fail are listed with the reason (exit 1). Under `accelerate
    launch` each process takes every N-th photo.
    """
    import random

    import numpy as np

    from densecaption.distributed import process_state
    from densecaption.masks.edges import EdgeSettings
    from densecaption.masks.io import expand_inputs, run_items, skeleton, skeleton_name
    from densecaption.masks.sam import SamRunner, SamSettings, photo_masks
    from densecaption.masks.tree import build_tree, to_mask_data
    from densecaption.models.registry import resolve_device

    mode = _mode(mode)
    if not images.is_dir():
        raise UserError(f"--images {images}: not a folder")
    if points_per_side < 1 or points_per_batch < 1:
        raise UserError("--points-per-side and --points-per-batch must be at least 1")
    photos = expand_inputs([images], PHOTO_SUFFIXES)
    if not photos:
        raise UserError(f"--images {images}: no photos ({', '.join(PHOTO_SUFFIXES)})")
    state = process_state()
    main = state is None or state.is_main_process
    if main:
        writable_folder(out)
        remove_stale_temps(out)
    if state is not None:
        state.wait_for_everyone()
        photos = photos[state.process_index::state.num_processes]
    runner = SamRunner.load(sam, str(state.device) if state is not None else resolve_device(device))
    settings = SamSettings(points_per_side=points_per_side, points_per_batch=points_per_batch,
                           pred_iou_thresh=pred_iou_thresh, stability_thresh=stability_thresh,
                           min_region_area=min_region_area)

    def make(path: Path):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                rgb = np.array(im.convert("RGB"))
        except UnidentifiedImageError:
            raise DataError(f"{path}: not an image") from None
        rng = random.Random(None if seed is None else f"{seed}:{path.name}")
        masks = photo_masks(runner, rgb, mode, settings, EdgeSettings(), rng)
        height, width = rgb.shape[:2]
        return skeleton(path.name, width, height, to_mask_data(build_tree(masks, mode), height, width, mode,
                                                               min_area)), path

    with progress_stages(enabled=main) as stage:
        report = run_items(photos, out, lambda p: skeleton_name(p.name), make, overwrite=overwrite,
                           tick=stage("SAM masks and trees", len(photos)))
    manifest = {"command": "masks extract", "mode": mode, "sam": sam, "weights": runner.weights,
                "settings": settings.__dict__, "edges": EdgeSettings().__dict__, "min_area": min_area, "seed": seed,
                "images": str(images), "versions": _versions()}
    if state is not None:  # the main process reports every process's photos
        from accelerate.utils import gather_object

        from densecaption.masks.io import RunReport

        report = RunReport(gather_object(report.written), gather_object(report.skipped), gather_object(report.failed))
        manifest["processes"] = state.num_processes
        if not main:
            raise typer.Exit(1 if report.failed else 0)
    _finish(report, out, manifest)

"""From a DCI folder to written caption sets: what ``compose set`` and ``compose grid`` run.

A grid resumes: each set's manifest is written last and atomically, so a set folder with its manifest (and
the files it lists) is complete and is kept by the next run of the same grid; a set folder without one was
cut short and is written again. Sets of another configuration (other options, seed, formats, tokenizers or
data) in the folder stop the run unless ``overwrite``, which starts over.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from densecaption.captionsets.compose import CaptionSetConfig, compose_set
from densecaption.captionsets.export import GRID_KIND, MANIFEST, image_set, prepare_out, read_manifest, set_outputs, \
    write_grid_manifest, write_set
from densecaption.captionsets.source import Prepared, prepare_dataset
from densecaption.captionsets.tokens import TextTokenizer, token_report
from densecaption.data.dci import DCIDataset
from densecaption.data.findings import SkipLog
from densecaption.errors import UserError
from densecaption.files import writable_folder, writing


SET_FOLDER = re.compile(r"p[^_/]+_k\d+")
DATA_PLACE = ("path", "root")
"""Where the data was read from: not part of a grid's configuration (the same data by sha256 may move)."""


def set_folder_name(precision: float, submasks: int) -> str:
    """``p<P>_k<K>``: ``p0.25_k2``, ``p1_k0``."""
    return f"p{precision:g}_k{submasks}"


def data_info(dataset: DCIDataset, split: str | None) -> dict[str, Any]:
    from densecaption.evaluation.results import dataset_sha256

    return {"path": dataset.given, "root": str(dataset.root), "source": dataset.source, "split": split or "all",
            "images": len(dataset.files(split)), "sha256": dataset_sha256(dataset, split),
            "sha256_of": "annotation files of the split (name and bytes, in split order)"}


def write_one(prepared: Prepared, config: CaptionSetConfig, out: Path, formats: Sequence[str], data: dict[str, Any],
              tokenizers: Sequence[TextTokenizer], overwrite: bool,
              images: dict[str, Any] | None = None) -> dict[str, Any]:
    cset = compose_set(prepared.images, config)
    cset.unusable = dict(prepared.unusable)
    return write_set(cset, out, formats, data=data, tokens=token_report(cset.captions, tokenizers),
                     overwrite=overwrite, images=images)


def grid_images(prepared: Prepared, submasks: Sequence[int], short: str) -> tuple[Prepared, dict[str, Any]]:
    """The one image set every cell of a grid holds, chosen before any cell is composed, so cells differ only
    in their captions (recall is not confounded with which images a cell has). ``skip``: only images with at
    least max(K) usable submasks; ``keep``: every image (short ones get fewer subcaptions in the larger-K
    cells, as upstream). Returns the images kept and the record of the choice (rule, dropped with reasons)."""
    need = max(submasks) if short == "skip" else 0
    kept = [img for img in prepared.images if len(img.submasks) >= need]
    dropped = [{"file": img.file, "photo": img.photo,
                "reason": f"{len(img.submasks)} usable submasks, fewer than max(K) = {need}"}
               for img in prepared.images if len(img.submasks) < need]
    if not kept:
        raise UserError(f"no image has {need} usable submasks (the grid's largest K): every cell would be empty; "
                        "use smaller --submasks or --short keep")
    record = {"rule": f"images with at least {need} usable submasks (max K, --short skip)" if short == "skip"
              else "every image (--short keep)", "min_submasks": need, **image_set(img.photo for img in kept),
              "dropped": dropped}
    return replace(prepared, images=kept), record


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON, to compare with a manifest."""
    return json.loads(json.dumps(value))


def _first_difference(there: dict[str, Any], now: dict[str, Any]) -> str | None:
    """``KEY: X there, Y now`` for the first key whose values differ, or None."""
    for key in dict.fromkeys([*now, *there]):
        if there.get(key) != now.get(key):
            return f"{key}: {there.get(key)} there, {now.get(key)} now"
    return None


def _data_identity(data: dict[str, Any]) -> dict[str, Any]:
    return {f"data {k}": v for k, v in data.items() if k not in DATA_PLACE}


def set_identity(config: CaptionSetConfig, formats: Sequence[str], tokenizers: Sequence[TextTokenizer],
                 data: dict[str, Any], min_submasks: int | None = None) -> dict[str, Any]:
    """What decides a set folder's content, as its manifest records it (see ``_manifest_identity``);
    ``min_submasks``: a grid's image rule."""
    return _plain({**config.to_dict(), "formats": sorted(formats), "tokenizers": [t.spec for t in tokenizers],
                   "images min submasks": min_submasks, **_data_identity(data)})


def _manifest_identity(manifest: dict[str, Any]) -> dict[str, Any]:
    return {**manifest.get("config", {}), "formats": sorted(manifest.get("files", {})),
            "tokenizers": [t.get("spec") for t in manifest.get("tokens", [])],
            "images min submasks": (manifest.get("image_set") or {}).get("min_submasks"),
            **_data_identity(manifest.get("data", {}))}


def grid_identity(precisions: Sequence[float], submasks: Sequence[int], config: dict[str, Any],
                  data: dict[str, Any]) -> dict[str, Any]:
    """What decides a grid's content, as its grid manifest records it."""
    return _plain({"kind": GRID_KIND, "precisions": list(precisions), "submasks": list(submasks), **config,
                   **_data_identity(data)})


def complete_set(folder: Path, identity: dict[str, Any]) -> bool:
    """Whether ``folder`` holds this very set, complete (manifest and the files it lists): True to keep it,
    False to write it (again). A complete set of another configuration is a ``UserError``."""
    if not (folder / MANIFEST).is_file():
        return False
    manifest = read_manifest(folder)
    if any(not (folder / name).exists() for name in manifest.get("files", {}).values()):
        return False
    difference = _first_difference(_manifest_identity(manifest), identity)
    if difference:
        raise UserError(f"{folder}: holds a caption set of another configuration ({difference}); use "
                        "--overwrite to replace it, or another --out")
    return True


def _check_grid(out: Path, names: Sequence[str], identity: dict[str, Any]) -> None:
    """Refuse a folder holding another grid: by its grid manifest, or by set folders this grid has not."""
    if (out / MANIFEST).is_file():
        m = read_manifest(out)
        there = {"kind": m.get("kind"), "precisions": m.get("precisions"), "submasks": m.get("submasks"),
                 **(m.get("config") or {}), **_data_identity(m.get("data") or {})}
        difference = _first_difference(there, identity)
        if difference:
            raise UserError(f"{out}: holds another caption grid ({difference}); use --overwrite to replace it, "
                            "or another --out")
    others = sorted(p.name for p in out.iterdir() if SET_FOLDER.fullmatch(p.name) and p.name not in names
                    and set_outputs(p))
    if others:
        more = " ..." if len(others) > 4 else ""
        raise UserError(f"{out}: holds sets of another grid ({', '.join(others[:4])}{more}); use --overwrite to "
                        "replace them, or another --out")


def _clear_grid(out: Path) -> None:
    """Start over (``--overwrite``): the grid manifest and every set folder's outputs go."""
    with writing(out):
        (out / MANIFEST).unlink(missing_ok=True)
    for folder in out.iterdir():
        if SET_FOLDER.fullmatch(folder.name) and folder.is_dir():
            prepare_out(folder, overwrite=True)


def build_grid(dataset: DCIDataset, split: str | None, base: CaptionSetConfig, precisions: Sequence[float],
               submasks: Sequence[int], out: Path, formats: Sequence[str], tokenizers: Sequence[TextTokenizer],
               skip: SkipLog, overwrite: bool = False,
               progress: Callable[[str, int | None], Callable[[int], None]] | None = None, *,
               on_kept: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every (P, K) set under ``out/p<P>_k<K>/`` and one grid manifest in ``out`` (written last).

    Resumes a grid cut short (see the module doc): complete sets are kept (``on_kept`` hears each name),
    the others written; the records are read only when some set is to be written."""
    if not precisions or not submasks:
        raise UserError("--precisions and --submasks need at least one value each")
    configs = [replace(base, precision=float(p), submasks=int(k)) for p in precisions for k in submasks]
    for c in configs:  # validate every value before any work
        CaptionSetConfig(**c.to_dict())
    names = [set_folder_name(c.precision, c.submasks) for c in configs]
    writable_folder(out)
    data = data_info(dataset, split)
    grid_config = {k: v for k, v in base.to_dict().items() if k not in ("precision", "submasks")}
    if overwrite:
        _clear_grid(out)
    else:
        _check_grid(out, names, grid_identity(precisions, submasks, grid_config, data))
    need = max(int(k) for k in submasks) if base.short == "skip" else 0
    kept = [name for name, c in zip(names, configs)
            if complete_set(out / name, set_identity(c, formats, tokenizers, data, need))]
    for name in kept:
        if on_kept:
            on_kept(name)
    todo = [(name, c) for name, c in zip(names, configs) if name not in kept]
    written: dict[str, dict[str, Any]] = {}
    images: dict[str, Any] | None = None
    if todo:
        tick = progress("reading records", len(dataset.files(split))) if progress else None
        prepared, images = grid_images(prepare_dataset(dataset, split, base, skip, tick), submasks, base.short)
        tick = progress("writing sets", len(todo)) if progress else None
        for name, c in todo:  # a set cut short has no manifest: its outputs are replaced
            written[name] = write_one(prepared, c, out / name, formats, data, tokenizers, True,
                                      {"min_submasks": need, "rule": images["rule"], "dropped": images["dropped"]})
            if tick:
                tick(1)
    sets = [(name, written[name] if name in written else read_manifest(out / name)) for name in names]
    if images is None:  # every set kept from an earlier run: the choice is in their manifests
        first = sets[0][1].get("image_set") or {}
        images = {k: first.get(k) for k in ("rule", "min_submasks", "count", "sha256", "sha256_of", "dropped")}
    return write_grid_manifest(out, sets, config=grid_config, data=data, precisions=precisions,
                               submasks=submasks, images=images)

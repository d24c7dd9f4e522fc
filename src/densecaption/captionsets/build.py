"""From a DCI folder to written caption sets: what ``compose set`` and ``compose grid`` run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from densecaption.captionsets.compose import CaptionSetConfig, compose_set
from densecaption.captionsets.export import MANIFEST, write_grid_manifest, write_set
from densecaption.captionsets.source import Prepared, prepare_dataset
from densecaption.captionsets.tokens import TextTokenizer, token_report
from densecaption.data.dci import DCIDataset
from densecaption.data.findings import SkipLog
from densecaption.errors import UserError


def set_folder_name(precision: float, submasks: int) -> str:
    """``p<P>_k<K>``: ``p0.25_k2``, ``p1_k0``."""
    return f"p{precision:g}_k{submasks}"


def data_info(dataset: DCIDataset, split: str | None) -> dict[str, Any]:
    from densecaption.evaluation.results import dataset_sha256

    return {"path": dataset.given, "root": str(dataset.root), "source": dataset.source, "split": split or "all",
            "images": len(dataset.files(split)), "sha256": dataset_sha256(dataset, split),
            "sha256_of": "annotation files of the split (name and bytes, in split order)"}


def write_one(prepared: Prepared, config: CaptionSetConfig, out: Path, formats: Sequence[str], data: dict[str, Any],
              tokenizers: Sequence[TextTokenizer], overwrite: bool) -> dict[str, Any]:
    cset = compose_set(prepared.images, config)
    cset.unusable = dict(prepared.unusable)
    return write_set(cset, out, formats, data=data, tokens=token_report(cset.captions, tokenizers),
                     overwrite=overwrite)


def build_grid(dataset: DCIDataset, split: str | None, base: CaptionSetConfig, precisions: Sequence[float],
               submasks: Sequence[int], out: Path, formats: Sequence[str], tokenizers: Sequence[TextTokenizer],
               skip: SkipLog, overwrite: bool = False,
               progress: Callable[[str, int | None], Callable[[int], None]] | None = None) -> dict[str, Any]:
    """Every (P, K) set under ``out/p<P>_k<K>/`` and one grid manifest in ``out``."""
    if not precisions or not submasks:
        raise UserError("--precisions and --submasks need at least one value each")
    configs = [replace(base, precision=float(p), submasks=int(k)) for p in precisions for k in submasks]
    for c in configs:  # validate every value before any work
        CaptionSetConfig(**c.to_dict())
    if (out / MANIFEST).exists() and not overwrite:
        raise UserError(f"{out}: already holds a caption grid (manifest.json); use --overwrite")
    data = data_info(dataset, split)
    tick = progress("reading records", len(dataset.files(split))) if progress else None
    prepared = prepare_dataset(dataset, split, base, skip, tick)
    tick = progress("writing sets", len(configs)) if progress else None
    written = []
    for c in configs:
        name = set_folder_name(c.precision, c.submasks)
        written.append((name, write_one(prepared, c, out / name, formats, data, tokenizers, overwrite)))
        if tick:
            tick(1)
    grid_config = {k: v for k, v in base.to_dict().items() if k not in ("precision", "submasks")}
    return write_grid_manifest(out, written, config=grid_config, data=data, precisions=precisions,
                               submasks=submasks)

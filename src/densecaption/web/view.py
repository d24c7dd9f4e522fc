"""``densecaption view``: browse a DCI folder (index, one page per record, mask PNGs, photos).

Imported only when the command runs (the CLI imports it lazily), so FastAPI is imported at the top."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from densecaption.data.dci import DCIDataset
from densecaption.data.findings import RecordError
from densecaption.data.schema import DCIImage, parse_mask_key
from densecaption.web.common import MAX_NAME, MAX_QUERY, Thumbnails, base_app, file_under, photo_size, templates
from densecaption.web.index import RecordIndex
from densecaption.web.masks import KINDS, MaskImages
from densecaption.web.records import MaskText, description_pieces, total_words

PAGE_SIZE = 60
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
           "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
           "#808000", "#ffd8b1", "#000075", "#808080")
"""Distinct mask colours, cycled in mask order."""


@dataclass(frozen=True)
class ViewConfig:
    """What ``create_view_app`` serves: a dataset path the CLI accepts and where the index cache lives."""

    path: str
    cache_dir: Path | None = None
    page_size: int = PAGE_SIZE
    allowed_hosts: tuple[str, ...] = ()
    """``Host`` names answered (empty: any); see ``common.served_hosts``."""


def mask_tree(record: DCIImage) -> list[dict[str, Any]]:
    """The masks as nested ``{"idx", "children"}`` nodes from the top level down; never loops on a cyclic
    tree, and masks that no walk reaches are added at the top level."""
    seen: set[int] = set()

    def node(idx: int) -> dict[str, Any]:
        seen.add(idx)
        return {"idx": idx, "children": [node(c) for c in record.children(idx) if c not in seen]}

    roots = [node(i) for i in record.children(-1) if i not in seen]
    roots += [node(i) for i in record.masks if i not in seen]
    return roots


def depth_of(record: DCIImage, idx: int) -> int:
    depth, seen = 0, {idx}
    while (parent := record.masks[idx].parent) in record.masks and parent not in seen:
        seen.add(parent)
        idx, depth = parent, depth + 1
    return depth


def page_data(record: DCIImage, size: tuple[int, int] | None) -> dict[str, Any]:
    """The record as the page's script needs it (masks with colour and box, the photo's size)."""
    width, height = size or (record.width or 0, record.height or 0)
    masks = []
    for n, m in enumerate(record.masks.values()):
        masks.append({"idx": m.idx, "parent": m.parent, "label": m.label, "caption": m.caption,
                      "quality": m.quality, "colour": PALETTE[n % len(PALETTE)], "depth": depth_of(record, m.idx),
                      "box": [m.box.x0, m.box.y0, m.box.x1, m.box.y1]})
    return {"id": record.id, "width": width, "height": height, "masks": masks}


def sdci_sections(record: DCIImage) -> list[dict[str, Any]]:
    """One section per summarised entry (base first, then masks by idx): summaries, negatives, scores."""
    keys = list(dict.fromkeys([*(record.summaries or {}), *(record.negatives or {}), *(record.clip_scores or {})]))
    keys.sort(key=lambda k: -1 if parse_mask_key(k) is None else parse_mask_key(k))
    return [{"key": k, "mask": parse_mask_key(k), "summaries": (record.summaries or {}).get(k, []),
             "negatives": (record.negatives or {}).get(k, {}), "clip_scores": (record.clip_scores or {}).get(k, {})}
            for k in keys]


def create_view_app(config: ViewConfig, progress: Callable[[int], None] | None = None) -> FastAPI:
    """The explorer app over ``config.path``; the index is built (or read from its cache) here."""
    dataset = DCIDataset.open(config.path)
    index = RecordIndex.open(dataset, config.cache_dir, progress)
    masks = MaskImages()
    thumbs = Thumbnails()
    pages = templates()
    app = base_app("densecaption view", config.allowed_hosts)
    app.state.index, app.state.masks = index, masks
    Stem = PathParam(max_length=MAX_NAME)

    def row_or_404(stem: str):
        row = index.get(stem)
        if row is None:
            raise HTTPException(404, f"no record {stem!r}")
        return row

    def photo_path(stem: str) -> Path:
        row = row_or_404(stem)
        path = file_under(dataset.photo_dir, row.image) if row.image else None
        if path is None:
            raise HTTPException(404, f"no photo for {stem!r}")
        return path

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, split: str = Query("", max_length=MAX_NAME),
             q: str = Query("", max_length=MAX_QUERY), page: int = Query(1, ge=1, le=10**6)):
        rows = index.filter(split or None, q)
        pages_n = max(1, math.ceil(len(rows) / config.page_size))
        page = min(page, pages_n)
        shown = rows[(page - 1) * config.page_size: page * config.page_size]
        return pages.TemplateResponse(request, "index.html", {
            "title": f"{dataset.root.name} ({dataset.source}/)", "root": str(dataset.root), "rows": shown,
            "total": len(index.rows), "matched": len(rows), "split": split, "q": q, "page": page,
            "pages": pages_n, "splits": index.splits()})

    @app.get("/image/{stem}", response_class=HTMLResponse)
    def record_page(request: Request, stem: str = Stem):
        row = row_or_404(stem)
        prev, nxt = index.neighbours(stem)
        context: dict[str, Any] = {"title": stem, "row": row, "prev": prev, "next": nxt, "error": None}
        try:
            record = dataset.read(row.file)
        except RecordError as e:
            context["error"] = str(e)
            return pages.TemplateResponse(request, "record.html", context, status_code=422)
        path = file_under(dataset.photo_dir, record.image)
        size = photo_size(path) if path is not None else None
        by_idx = {m.idx: m for m in record.masks.values()}
        texts = {i: MaskText(by_idx[i].label, by_idx[i].caption, by_idx[i].quality) for i in sorted(by_idx)}
        data = page_data(record, size)
        context.update({
            "record": record, "data": data, "colours": {m["idx"]: m["colour"] for m in data["masks"]},
            "photo_error": None if size else f"photo {record.image!r} is missing or not an image",
            "tree": mask_tree(record), "pieces": description_pieces(record.short_caption, record.extra_caption,
                                                                    texts),
            "words": total_words(record.short_caption, record.extra_caption, texts.values()),
            "sdci": sdci_sections(record)})
        return pages.TemplateResponse(request, "record.html", context)

    @app.get("/image/{stem}/mask/{idx}/{kind}.png")
    def mask_png(stem: str = Stem, idx: int = PathParam(ge=0, le=10**9), kind: str = PathParam(max_length=16)):
        row = row_or_404(stem)
        if kind not in KINDS:
            raise HTTPException(404, f"no mask image kind {kind!r}")
        try:
            png = masks.get(row.file, lambda: dataset.read(row.file), idx, kind)
        except RecordError as e:
            raise HTTPException(422, str(e)) from None
        if png is None:
            raise HTTPException(404, f"{stem!r} has no mask {idx}")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})

    @app.get("/photo/{stem}")
    def photo(stem: str = Stem):
        return FileResponse(photo_path(stem))

    @app.get("/thumb/{stem}")
    def thumb(stem: str = Stem):
        data = thumbs.get(photo_path(stem))
        if data is None:
            raise HTTPException(404, f"the photo of {stem!r} is not an image")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/favicon.ico")
    def favicon():
        return RedirectResponse("/static/favicon.svg")

    return app

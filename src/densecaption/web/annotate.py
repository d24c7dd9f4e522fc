"""``densecaption annotate``: DCI's three annotation stages for photos with mask skeletons.

Skeletons are records with ``mask_data`` (``<photo stem>-mask.json`` from the mask pipeline, or any DCI
record). Work in progress lives in ``DCI_DIR/.annotate/<stem>.json``, rewritten atomically on every
autosave under a per-photo lock (a thread lock and a file lock, so two tabs or two servers cannot interleave
their saves). A finished photo becomes ``DCI_DIR/annotations/<stem>-data.json`` in the official layout, its
photo is copied to ``DCI_DIR/photos/`` and its file name added to ``DCI_DIR/splits.json``. See docs/web.md.

Imported only when the command runs (the CLI imports it lazily), so FastAPI is imported at the top.
"""

from __future__ import annotations

import json
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from fastapi import FastAPI, HTTPException, Path as PathParam, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from densecaption.data.dci import INNER, image_to_json, json_files, load_json_file, parse_image
from densecaption.data.findings import RecordError
from densecaption.data.schema import DCIImage
from densecaption.errors import UserError
from densecaption.files import atomic_write_text, lock_file
from densecaption.web.common import MAX_NAME, base_app, file_under, photo_size, templates
from densecaption.web.masks import KINDS, MaskImages
from densecaption.web.records import MaskText, annotation_order, context_crop, step_done, total_words

MAX_LABEL = 300
MAX_CAPTION = 10_000
MAX_OVERALL = 50_000
STATE_DIR = ".annotate"
SKELETON_SUFFIXES = ("-mask.json", "-data.json", ".json")


class MaskPatch(BaseModel):
    """One mask's three fields as the page sends them (strings are kept as typed, not trimmed)."""

    label: str = Field("", max_length=MAX_LABEL)
    caption: str = Field("", max_length=MAX_CAPTION)
    mask_quality: int = Field(0, ge=0, le=2)


class StatePatch(BaseModel):
    """An autosave: the fields that changed (absent ones stay as they were)."""

    step: int | None = Field(None, ge=-1, le=1_000_000)
    short_caption: str | None = Field(None, max_length=MAX_OVERALL)
    extra_caption: str | None = Field(None, max_length=MAX_OVERALL)
    masks: dict[str, MaskPatch] = Field(default_factory=dict, max_length=10_000)


@dataclass(frozen=True)
class AnnotateConfig:
    """What ``create_annotate_app`` serves: the skeleton folder, the output DCI folder, where photos are
    (default: beside the skeletons, or in a ``photos/`` folder there or one level up) and the split that
    finished records join in ``splits.json``."""

    skeletons: Path
    out: Path
    photos: Path | None = None
    split: str = "train"
    allowed_hosts: tuple[str, ...] = ()
    """``Host`` names answered (empty: any); see ``common.served_hosts``."""


def skeleton_stem(name: str) -> str:
    """A skeleton file's name less its suffix (``-mask.json``, ``-data.json`` or ``.json``):
    ``sa_1-mask.json`` -> ``sa_1``; the finished record is then ``sa_1-data.json``."""
    for suffix in SKELETON_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def skeleton_folder(path: Path) -> Path:
    """Where the skeleton files are: ``path`` itself, or its ``annotations/`` (or
    ``densely_captioned_images/annotations/``) when it is laid out as a DCI folder, as ``masks`` writes."""
    if not path.is_dir():
        raise UserError(f"{path}: no such folder (give the folder of skeleton records)")
    for inner in (path / INNER / "annotations", path / "annotations"):
        if inner.is_dir():
            return inner
    return path


def output_root(out: Path) -> Path:
    """The folder that holds ``annotations/``: ``out``, or ``out/densely_captioned_images`` if that exists."""
    return out / INNER if (out / INNER).is_dir() else out


def empty_state() -> dict[str, Any]:
    return {"step": -1, "short_caption": "", "extra_caption": "", "masks": {}}


def merge_state(state: dict[str, Any], patch: StatePatch) -> dict[str, Any]:
    """``state`` with ``patch`` applied (a new dict; mask entries replaced whole)."""
    out = {**state, "masks": dict(state.get("masks", {}))}
    for key in ("step", "short_caption", "extra_caption"):
        value = getattr(patch, key)
        if value is not None:
            out[key] = value
    for idx, m in patch.masks.items():
        out["masks"][idx] = m.model_dump()
    return out


def mask_texts(record: DCIImage, state: dict[str, Any]) -> dict[int, MaskText]:
    """Each mask's fields from ``state`` (blank where not yet written), in ``mask_data`` order."""
    saved = state.get("masks", {})
    out = {}
    for idx in record.masks:
        m = saved.get(str(idx), {})
        out[idx] = MaskText(m.get("label", ""), m.get("caption", ""), int(m.get("mask_quality", 0)))
    return out


def annotated_record(skeleton: DCIImage, state: dict[str, Any], file: str,
                     size: tuple[int, int] | None) -> DCIImage:
    """The finished record: the skeleton's masks with the annotator's fields, both captions, ``mask_keys``
    in ascending numeric order, width and height from the photo when it can be read."""
    texts = mask_texts(skeleton, state)
    masks = {idx: replace(m, label=texts[idx].label, caption=texts[idx].caption, quality=texts[idx].quality,
                          extra=dict(m.extra)) for idx, m in skeleton.masks.items()}
    width, height = size or (skeleton.width, skeleton.height)
    return replace(skeleton, file=file, short_caption=state.get("short_caption", ""),
                   extra_caption=state.get("extra_caption", ""), width=width, height=height,
                   mask_keys=[str(i) for i in sorted(masks)], masks=masks, summaries=None, negatives=None,
                   clip_scores=None, bare_summary_keys=frozenset())


class AnnotationStore:
    """Skeletons in, work-in-progress state and finished records out (all file access of the app)."""

    def __init__(self, config: AnnotateConfig):
        self.config = config
        self.skeleton_dir = skeleton_folder(Path(config.skeletons))
        self.root = output_root(Path(config.out))
        self.state_dir = self.root / STATE_DIR
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._cache: dict[str, tuple[int, DCIImage]] = {}
        files = json_files(self.skeleton_dir)
        if any(f.endswith("-mask.json") for f in files):  # the mask pipeline's own files, not its run log
            files = [f for f in files if f.endswith("-mask.json")]
        self.files = {skeleton_stem(f): f for f in files}
        if not self.files:
            raise UserError(f"{self.skeleton_dir}: no skeleton records (*.json) in it")

    # ------------------------------------------------------------------ skeletons and photos
    def stems(self) -> list[str]:
        return list(self.files)

    def skeleton(self, stem: str) -> DCIImage:
        """The parsed skeleton (re-read when its file changed); ``RecordError`` when it does not parse."""
        file = self.files[stem]
        path = self.skeleton_dir / file
        mtime = path.stat().st_mtime_ns
        hit = self._cache.get(stem)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        obj, findings = load_json_file(path, file)
        if findings:
            raise RecordError(findings)
        record, findings = parse_image(obj, file)
        if record is None:
            raise RecordError([f for f in findings if f.severity == "error"])
        self._cache[stem] = (mtime, record)
        return record

    def photo_dirs(self) -> list[Path]:
        if self.config.photos is not None:
            return [Path(self.config.photos)]
        return [self.skeleton_dir, self.skeleton_dir / "photos", self.skeleton_dir.parent / "photos"]

    def photo(self, record: DCIImage) -> Path | None:
        for folder in self.photo_dirs():
            path = file_under(folder, record.image)
            if path is not None:
                return path
        return None

    # ------------------------------------------------------------------ state
    @contextmanager
    def locked(self, stem: str) -> Iterator[None]:
        """Hold the photo's lock: a thread lock (this server) and a file lock (another server)."""
        from filelock import FileLock

        with self._guard:
            lock = self._locks.setdefault(stem, threading.Lock())
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with lock, FileLock(lock_file(self.state_path(stem)), thread_local=False):
            yield

    def state_path(self, stem: str) -> Path:
        return self.state_dir / f"{stem}.json"

    def state(self, stem: str) -> dict[str, Any]:
        path = self.state_path(stem)
        if not path.is_file():
            return empty_state()
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return empty_state()  # unreadable work in progress starts again rather than failing the page
        return {**empty_state(), **obj} if isinstance(obj, dict) else empty_state()

    def save(self, stem: str, patch: StatePatch) -> dict[str, Any]:
        """Apply an autosave under the photo's lock; a mask key the skeleton lacks is a ``UserError``."""
        record = self.skeleton(stem)
        unknown = [k for k in patch.masks if not k.lstrip("-").isdigit() or int(k) not in record.masks]
        if unknown:
            raise UserError(f"{stem}: no mask {', '.join(unknown[:5])}")
        with self.locked(stem):
            state = merge_state(self.state(stem), patch)
            atomic_write_text(self.state_path(stem), json.dumps(state, ensure_ascii=False))
        return state

    # ------------------------------------------------------------------ finished records
    def record_file(self, stem: str) -> str:
        return f"{stem}-data.json"

    def finished(self, stem: str) -> bool:
        return (self.root / "annotations" / self.record_file(stem)).is_file()

    def finish(self, stem: str) -> Path:
        """Write the finished record atomically, copy its photo, add it to ``splits.json``. A mask that may
        not move on yet (no label, or no description for a good mask) is a ``UserError`` naming it."""
        record = self.skeleton(stem)
        with self.locked(stem):
            state = self.state(stem)
            texts = mask_texts(record, state)
            missing = [idx for idx in annotation_order(record.masks) if not step_done(texts[idx])]
            if missing:
                raise UserError(f"{stem}: mask(s) {', '.join(map(str, missing[:10]))} still need a label and a "
                                "description (or a low-quality or bad mark)")
            photo = self.photo(record)
            size = photo_size(photo) if photo is not None else None
            done = annotated_record(record, state, self.record_file(stem), size)
            path = self.root / "annotations" / done.file
            atomic_write_text(path, json.dumps(image_to_json(done, with_sdci=False), indent=1,
                                               ensure_ascii=False) + "\n")
            if photo is not None:
                dst = self.root / "photos" / record.image
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not dst.exists():
                    shutil.copyfile(photo, dst)
        self._add_to_split(done.file)
        return path

    def _add_to_split(self, file: str) -> None:
        from filelock import FileLock

        path = self.root / "splits.json"
        with FileLock(lock_file(path), thread_local=False):
            splits: dict[str, list[str]] = {}
            if path.is_file():
                obj, findings = load_json_file(path, "splits.json")
                if findings or not isinstance(obj, dict):
                    raise UserError(f"{path}: cannot add {file}: not a readable splits.json")
                splits = obj
            if any(file in names for names in splits.values() if isinstance(names, list)):
                return
            splits.setdefault(self.config.split, []).append(file)
            atomic_write_text(path, json.dumps(splits, indent=1) + "\n")

    # ------------------------------------------------------------------ what the pages show
    def progress(self, stem: str) -> dict[str, Any]:
        """One photo's progress for the list page (or the error that keeps it from loading)."""
        try:
            record = self.skeleton(stem)
        except (RecordError, OSError) as e:
            return {"stem": stem, "error": str(e), "masks": 0, "done": 0, "finished": False, "started": False}
        state = self.state(stem)
        texts = mask_texts(record, state)
        return {"stem": stem, "error": None, "image": record.image, "masks": len(record.masks),
                "done": sum(step_done(t) for t in texts.values()),
                "finished": self.finished(stem), "started": self.state_path(stem).is_file()}

    def task(self, stem: str) -> dict[str, Any]:
        """Everything the annotation page needs for one photo."""
        record = self.skeleton(stem)
        photo = self.photo(record)
        size = photo_size(photo) if photo is not None else None
        width, height = size or (record.width or 0, record.height or 0)
        masks = {}
        for m in record.masks.values():
            parent = record.masks[m.parent].box if m.parent in record.masks else None
            crop = context_crop(m.box, parent, width, height)
            masks[str(m.idx)] = {"idx": m.idx, "parent": m.parent, "children": record.children(m.idx),
                                 "box": [m.box.x0, m.box.y0, m.box.x1, m.box.y1],
                                 "crop": [crop.x0, crop.y0, crop.x1, crop.y1]}
        stems = self.stems()
        i = stems.index(stem)
        return {"stem": stem, "image": record.image, "width": width, "height": height,
                "photo_ok": size is not None, "order": annotation_order(record.masks), "masks": masks,
                "top": record.children(-1), "state": self.state(stem), "finished": self.finished(stem),
                "record_file": self.record_file(stem), "position": i + 1, "photos": len(stems),
                "next": stems[i + 1] if i + 1 < len(stems) else None}


def words_of(record: DCIImage, state: dict[str, Any]) -> int:
    texts = mask_texts(record, state)
    return total_words(state.get("short_caption", ""), state.get("extra_caption", ""),
                       [texts[i] for i in sorted(texts)])


def create_annotate_app(config: AnnotateConfig) -> FastAPI:
    """The annotation app over ``config`` (skeletons listed now; each one parsed when first opened)."""
    store = AnnotationStore(config)
    masks = MaskImages()
    pages = templates()
    app = base_app("densecaption annotate", config.allowed_hosts)
    app.state.store, app.state.masks = store, masks
    Stem = PathParam(max_length=MAX_NAME)

    def known(stem: str) -> str:
        if stem not in store.files:
            raise HTTPException(404, f"no photo {stem!r}")
        return stem

    def skeleton_or_422(stem: str) -> DCIImage:
        try:
            return store.skeleton(known(stem))
        except RecordError as e:
            raise HTTPException(422, str(e)) from None

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request):
        rows = [store.progress(s) for s in store.stems()]
        return pages.TemplateResponse(request, "annotate_index.html", {
            "title": "annotate", "rows": rows, "out": str(store.root), "skeletons": str(store.skeleton_dir),
            "finished": sum(r["finished"] for r in rows), "total": len(rows)})

    @app.get("/task/{stem}", response_class=HTMLResponse)
    def task_page(request: Request, stem: str = Stem):
        known(stem)
        context = {"title": stem, "stem": stem, "error": None}
        try:
            store.skeleton(stem)
        except RecordError as e:
            context["error"] = str(e)
            return pages.TemplateResponse(request, "annotate.html", context, status_code=422)
        return pages.TemplateResponse(request, "annotate.html", context)

    @app.get("/api/task/{stem}")
    def task(stem: str = Stem):
        skeleton_or_422(stem)
        return store.task(stem)

    @app.put("/api/task/{stem}")
    @app.post("/api/task/{stem}")
    def save(patch: StatePatch, stem: str = Stem):
        record = skeleton_or_422(stem)
        try:
            state = store.save(stem, patch)
        except UserError as e:
            raise HTTPException(422, str(e)) from None
        return {"state": state, "words": words_of(record, state), "progress": store.progress(stem)}

    @app.post("/api/task/{stem}/finish")
    def finish(stem: str = Stem):
        skeleton_or_422(stem)
        try:
            path = store.finish(stem)
        except UserError as e:
            return JSONResponse({"detail": str(e)}, status_code=409)
        return {"file": f"annotations/{path.name}", "progress": store.progress(stem)}

    @app.get("/task/{stem}/photo")
    def photo(stem: str = Stem):
        path = store.photo(skeleton_or_422(stem))
        if path is None:
            raise HTTPException(404, f"no photo for {stem!r}")
        return FileResponse(path)

    @app.get("/task/{stem}/mask/{idx}/{kind}.png")
    def mask_png(stem: str = Stem, idx: int = PathParam(ge=0, le=10**9), kind: str = PathParam(max_length=16)):
        skeleton_or_422(stem)
        if kind not in KINDS:
            raise HTTPException(404, f"no mask image kind {kind!r}")
        try:
            png = masks.get(stem, lambda: store.skeleton(stem), idx, kind)
        except RecordError as e:
            raise HTTPException(422, str(e)) from None
        if png is None:
            raise HTTPException(404, f"{stem!r} has no mask {idx}")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})

    return app

"""Synthetic captions -> caption set (Captions4T2I section 4): the output of ``densecaption caption`` becomes a
set folder in the layout ``compose set`` writes, so ``train t2i`` and ``quality`` read it as they read a
composed set (docs/caption-sets-and-quality.md, "Caption sets from synthetic captions").

The paper asked its captioners for captions under 77 CLIP tokens; a captioner does not always obey, so the
captions over 77 are counted and reported, and by choice dropped or asked again with a shorter prompt.
Each caption is one part (there are no subcaptions), so the token report's cut subcaptions stay 0.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from densecaption.captionsets.export import IMAGES, JSONL, KIND, MANIFEST, PACKAGES, image_set, link_or_copy
from densecaption.captionsets.tokens import TextTokenizer, token_report
from densecaption.errors import DataError, UserError
from densecaption.evaluation.results import versions
from densecaption.files import atomic_write_text, file_sha256, pid_alive, writing

OverLimit = Literal["keep", "drop", "reask"]
OVER_LIMITS = ("keep", "drop", "reask")
CLIP_LIMIT = 77
"""The paper's limit: captions under 77 CLIP tokens (start and end tokens included, as ``compose`` counts)."""
DEFAULT_REASK_PROMPT = "Describe the image concisely in one short sentence"


@dataclass(frozen=True)
class BridgeConfig:
    """What decides a bridged set's content besides the captions file."""

    over_limit: OverLimit = "keep"
    vlm: str | None = None
    reask_prompt: str = DEFAULT_REASK_PROMPT
    reask_max_tokens: int = CLIP_LIMIT

    def __post_init__(self) -> None:
        if self.over_limit not in OVER_LIMITS:
            raise UserError(f"--over-limit should be one of {', '.join(OVER_LIMITS)}, got {self.over_limit!r}")
        if self.over_limit == "reask" and not self.vlm:
            raise UserError("--over-limit reask needs --vlm (the model to ask again)")


@dataclass
class SyntheticCaption:
    """One line of a ``caption`` output file."""

    line: int
    file: str
    caption: str
    image: Path
    coco_id: int | None = None
    tokens: int = 0
    original: dict[str, Any] | None = None
    """Set when the caption was asked again: the first caption and its tokens."""

    @property
    def image_id(self) -> str:
        return str(self.coco_id) if self.coco_id is not None else self.file


@dataclass
class Captioner:
    model: str
    prompt: str | None
    weights: str


@dataclass
class Bridged:
    """The captions kept, and what the over-limit policy did."""

    captions: list[SyntheticCaption]
    captioner: Captioner
    over_limit: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ reading
def read_caption_file(path: Path, images: Path) -> tuple[list[SyntheticCaption], Captioner]:
    """The lines of a ``caption`` output file, each with its image under ``images``; errors name the line."""
    if not path.is_file():
        raise UserError(f"--captions {path}: no such file")
    if not images.is_dir():
        raise UserError(f"--images {images}: no such folder")
    rows: list[SyntheticCaption] = []
    models: dict[str, int] = {}
    prompts, weights = set(), set()
    with writing(path), path.open("rb") as handle:
        for n, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise DataError(f"{path}:{n}: not UTF-8 text") from None
            if not text:
                continue
            try:
                obj = json.loads(text)
            except ValueError as e:
                raise DataError(f"{path}:{n}: not a JSON line ({e})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("file"), str) \
                    or not isinstance(obj.get("caption"), str) or not obj["caption"].strip():
                raise DataError(f"{path}:{n}: a line of `densecaption caption` output needs 'file' and a non-empty "
                                "'caption'")
            image = images / obj["file"]
            if not image.is_file():
                raise DataError(f"{path}:{n}: image {obj['file']!r} not found under {images}")
            model = str(obj.get("model") or "unknown")
            models.setdefault(model, n)
            prompts.add(obj.get("prompt"))
            weights.add(str(obj.get("weights") or "unknown"))
            coco_id = obj.get("coco_id") if isinstance(obj.get("coco_id"), int) else None
            rows.append(SyntheticCaption(line=n, file=obj["file"], caption=obj["caption"].strip(), image=image,
                                         coco_id=coco_id))
    if not rows:
        raise DataError(f"{path}: no captions")
    if len(models) > 1:
        where = ", ".join(f"{m!r} (line {n})" for m, n in list(models.items())[:3])
        raise UserError(f"{path}: captions of {len(models)} captioners ({where}); one set holds one captioner's "
                        "captions: split the file by 'model'")
    seen: dict[str, int] = {}
    for r in rows:
        if r.file in seen:
            raise DataError(f"{path}:{r.line}: image {r.file!r} captioned twice (also line {seen[r.file]})")
        seen[r.file] = r.line
    prompt = prompts.pop() if len(prompts) == 1 else None
    weight = "random" if "random" in weights else weights.pop() if len(weights) == 1 else "unknown"
    return rows, Captioner(model=next(iter(models)), prompt=prompt, weights=weight)


# ------------------------------------------------------------------------------------------------ limits
def apply_over_limit(rows: Sequence[SyntheticCaption], counter: TextTokenizer, config: BridgeConfig,
                     ask: Callable[[list[SyntheticCaption]], list[str | None]] | None = None) -> dict[str, Any]:
    """Count the captions over ``counter.limit`` tokens and apply the policy; returns the report. Rows dropped
    by ``drop`` are marked with ``tokens = -1`` (the caller leaves them out); ``reask`` replaces a caption by
    the model's reply when it fits, else keeps the shorter of the two. ``ask`` gives one reply (or None for a
    failed request) per row."""
    for r in rows:
        r.tokens = counter.count(r.caption)
    over = [r for r in rows if r.tokens > counter.limit]
    longest = max(rows, key=lambda r: r.tokens) if rows else None
    report: dict[str, Any] = {
        "limit": counter.limit, "tokenizer": counter.name, "policy": config.over_limit, "captions": len(rows),
        "over": len(over), "share_over": len(over) / len(rows) if rows else None,
        "longest": {"file": longest.file, "tokens": longest.tokens} if longest else None,
        "over_files": [r.file for r in over]}
    if config.over_limit == "drop":
        for r in over:
            r.tokens = -1
        report["dropped"] = [r.file for r in over]
    elif config.over_limit == "reask" and over:
        replies = ask(list(over)) if ask else [None] * len(over)
        asked = []
        for r, reply in zip(over, replies):
            before = {"caption": r.caption, "tokens": r.tokens}
            n = counter.count(reply) if reply else None
            kept = "reply" if n is not None and n < r.tokens else "original"
            if kept == "reply":
                r.original, r.caption, r.tokens = before, reply, n
            asked.append({"file": r.file, "tokens_before": before["tokens"], "tokens_reply": n, "kept": kept,
                          "fits": r.tokens <= counter.limit, "failed": reply is None})
        report["reasked"] = asked
        report["still_over"] = sum(not a["fits"] for a in asked)
        report["reask_prompt"] = config.reask_prompt
        report["reask_vlm"] = config.vlm
    return report


def reask_with(vlm: str, prompt: str, max_tokens: int, seed: int,
               options: Any = None) -> Callable[[list[SyntheticCaption]], list[str | None]]:
    """Ask ``vlm`` again about each row's image, through the backends ``caption`` uses (chatter stripped)."""
    from densecaption.generation.backends import BackendOptions, Request, load_backend
    from densecaption.generation.replies import strip_chatter

    def ask(rows: list[SyntheticCaption]) -> list[str | None]:
        backend = load_backend(vlm, options or BackendOptions())
        try:
            if not backend.reads_images:
                raise UserError(f"--vlm {vlm}: a text-only model cannot caption images")
            requests = [Request(prompt=prompt, max_tokens=max_tokens, images=(str(r.image),), seed=seed)
                        for r in rows]
            replies = backend.generate_many(requests)
        finally:
            backend.close()
        return [strip_chatter(x).strip() or None if isinstance(x, str) else None for x in replies]

    return ask


# ------------------------------------------------------------------------------------------------ writing
def _temp_folder(out: Path) -> Path:
    return out.parent / f".{out.name}.{os.getpid()}.bridge-tmp"


def remove_stale_folders(out: Path) -> None:
    """Temporary folders of killed bridge runs into ``out`` (their writer is dead)."""
    for p in out.parent.glob(f".{out.name}.*.bridge-tmp"):
        pid = p.name[len(out.name) + 2:].split(".")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: not a folder (a file of that name is in the way)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: already holds files (a caption set?); use --overwrite to replace it")


def write_bridged(bridged: Bridged, out: Path, *, tokenizers: Sequence[TextTokenizer], source: dict[str, Any],
                  config: BridgeConfig, overwrite: bool) -> dict[str, Any]:
    """Write the set into a temporary folder beside ``out`` and rename it into place (a killed run leaves no
    half set). Returns the manifest."""
    check_out(out, overwrite)
    remove_stale_folders(out)
    tmp = _temp_folder(out)
    with writing(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / IMAGES).mkdir(parents=True)
        try:
            manifest = _write(bridged, tmp, tokenizers, source, config)
            if out.exists():
                old = out.parent / f".{out.name}.{os.getpid()}.old-bridge-tmp"
                os.replace(out, old)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return manifest


def _write(bridged: Bridged, folder: Path, tokenizers: Sequence[TextTokenizer], source: dict[str, Any],
           config: BridgeConfig) -> dict[str, Any]:
    rows = bridged.captions
    meta, lines = [], []
    for r in rows:
        target = folder / IMAGES / r.file
        target.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(r.image, target)
        meta.append({"file_name": r.file, "text": r.caption, "image_id": r.image_id})
        lines.append({"image_id": r.image_id, "photo": r.file, "image": f"{IMAGES}/{r.file}", "text": r.caption,
                      "parts": [{"text": r.caption, "source": "caption"}], "model": bridged.captioner.model,
                      **({"coco_id": r.coco_id} if r.coco_id is not None else {}),
                      **({"original": r.original} if r.original else {})})
    dump = lambda items: "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in items)  # noqa: E731
    atomic_write_text(folder / IMAGES / "metadata.jsonl", dump(meta))
    atomic_write_text(folder / JSONL, dump(lines))
    as_parts = [SimpleNamespace(parts=[SimpleNamespace(text=r.caption)]) for r in rows]
    manifest = {
        "kind": KIND, "format_version": 1, "source": "captions",
        "captioner": asdict(bridged.captioner),
        "config": {"from": "captions", **asdict(config)},
        "data": source,
        "image_set": image_set([r.file for r in rows]),
        "counts": {"captions": len(rows)},
        "over_limit": bridged.over_limit,
        "tokens": token_report(as_parts, tokenizers),
        "files": {"folder": IMAGES, "jsonl": JSONL},
        "versions": versions(PACKAGES),
    }
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest


def bridge(captions: Path, images: Path, out: Path, *, tokenizers: Sequence[TextTokenizer], config: BridgeConfig,
           overwrite: bool = False,
           ask: Callable[[list[SyntheticCaption]], list[str | None]] | None = None) -> dict[str, Any]:
    """Read, apply the over-limit policy (``tokenizers[0]`` is CLIP at 77), write; returns the manifest."""
    check_out(out, overwrite)  # before any model is asked
    rows, captioner = read_caption_file(captions, images)
    report = apply_over_limit(rows, tokenizers[0], config, ask)
    kept = [r for r in rows if r.tokens >= 0]
    if not kept:
        raise DataError(f"{captions}: every caption is over {tokenizers[0].limit} tokens and --over-limit drop "
                        "left none")
    source = {"captions_file": str(captions), "sha256": file_sha256(captions),
              "sha256_of": "the captions file's bytes", "images": str(images), "lines": len(rows)}
    return write_bridged(Bridged(kept, captioner, report), out, tokenizers=tokenizers, source=source,
                         config=config, overwrite=overwrite)

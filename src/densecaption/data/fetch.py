"""``data fetch``: the public files of ARO, SugarCrepe, VL-CheckList and Winoground, and T2I-CompBench's
prompt files, from their official locations into the layouts the ``bench`` and ``t2i`` commands read
(docs/compositional-benchmarks.md, docs/constructed-sets.md). ``--constructed`` sets are written by
``densecaption.data.minisets`` instead.

Each file streams through ``download.fetch`` (resumable ``.partial``, retries, a SHA-256 check where one is
known); a zip is extracted into a temporary folder beside its target and renamed into place, with a marker,
so a killed run never leaves a tree that looks whole and a second run skips finished parts. Files that are
not public (Flickr30k photos, Winoground's gated parquet, VL-CheckList's photo sets) are named, not fetched.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from densecaption.data.download import MARKER, FetchConfig, Offline, fetch, read_marker
from densecaption.data.minisets import MARKER as MINI_MARKER
from densecaption.data.minisets import BUILDERS, is_constructed
from densecaption.errors import DataError, UserError
from densecaption.files import atomic_write_text, pid_alive

_DRIVE = "https://drive.google.com/uc?export=download&confirm=t&id="
_SFR = "https://storage.googleapis.com/sfr-vision-language-research/datasets/"
_SUGARCREPE = "https://raw.githubusercontent.com/RAIVNLab/sugar-crepe/main/data/"
_COCO = "http://images.cocodataset.org/zips/"
# T2I-CompBench at a fixed commit, so the prompts (and their checksums) never change under a user's results:
# upstream de-duplicated the colour prompts in 2025 (docs/constructed-sets.md).
_COMPBENCH = "https://raw.githubusercontent.com/Karine-Huang/T2I-CompBench/1b7094991a57f3c22abdd4f6e8ba6c1a15517073/"
_COMPBENCH_FILES = (  # examples/dataset/<name>: SHA-256, bytes
    ("color_val.txt", "1634259756dbc77d13093d907d414480080ec9790a8c97ad09efaea7b2534f2d", 11871),
    ("shape_val.txt", "37e1a276906c7ea9516cbd7ac8501be896006c0c17ca7344f260562834455bae", 15935),
    ("texture_val.txt", "fbb5363515b4a28009e360afaaaf389d2dd2289e50dbb0c6ef4ea0c7fe4f3d4f", 14211),
    ("spatial_val.txt", "8707a1d7e42ce3002d95363cf55f74bd043c843ae27108f5125aaaa7840ca988", 9213),
    ("non_spatial_val.txt", "04c56cc9ac441dc9ea6c5157652058bd1635b5308526dd31bb29a1caab9a758d", 17750),
    ("complex_val.txt", "1b808018b8d9916db3d47d5aa2ef18377a3549a56901a474156f799824cdf3b4", 22724),
    ("complex_val_spatial.txt", "6c7ac0ab75c7c9080cfc7b421fb059b9b0febb98471707aeedf58771088abc02", 2898),
    ("complex_val_action.txt", "d49ee4c7f99e3f3379fb8704a54ff5288b83bb412971edf616a4721c2473308e", 17698),
    ("numeracy_val.txt", "dad8df141604b70ba7554bec724e3db0a80023680769b5c514854ea2d2527bbe", 10863),
    ("new_objects.txt", "f39a3d2ff6067d7738673cbf465dc659ccc750776162989a5d9916f1d5f3e231", 1568),
)


@dataclass(frozen=True)
class Part:
    """One file to fetch: saved as ``name`` in DIR; a zip is unpacked to ``unzip_to`` (its single top folder,
    or its whole content when ``keep_top`` is False) and deleted. ``photos``: a large photo archive, fetched
    only when asked."""

    name: str
    url: str
    sha256: str | None = None
    size: int | None = None
    unzip_to: str | None = None
    keep_top: bool = False
    photos: bool = False


PARTS: dict[str, tuple[Part, ...]] = {
    "aro": (
        Part("visual_genome_relation.json", _DRIVE + "1kX2iCHEv0CADL8dSO1nMdW-V0NqIAiP3"),
        Part("visual_genome_attribution.json", _DRIVE + "13tWvOrNOLHxl3Rm9cR3geAdHx2qR3-Tw"),
        Part("vgr_vga_images.zip", _DRIVE + "1qaPlrwhGNMrR3a11iopZUT_GPP_LrgP9", unzip_to="images", keep_top=True),
        Part("coco_karpathy_test.json", _SFR + "coco_karpathy_test.json"),
        Part("flickr30k_test.json", _SFR + "flickr30k_test.json"),
        Part("val2014.zip", _COCO + "val2014.zip", unzip_to="val2014", keep_top=True, photos=True),
    ),
    "sugarcrepe": tuple(Part(f"{t}.json", f"{_SUGARCREPE}{t}.json") for t in (
        "add_obj", "add_att", "replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")) + (
        Part("val2017.zip", _COCO + "val2017.zip", unzip_to="val2017", keep_top=True, photos=True),),
    "vlchecklist": (
        Part("VL-CheckList-3bb214e.zip", "https://github.com/om-ai-lab/VL-CheckList/archive/3bb214e.zip",
             unzip_to="VL-CheckList", keep_top=True),),
    "winoground": (),
    "compbench": tuple(Part(name, f"{_COMPBENCH}examples/dataset/{name}", sha256=sha, size=size)
                       for name, sha, size in _COMPBENCH_FILES) + (
        Part("LICENSE", _COMPBENCH + "LICENSE", sha256="905b2fb8de6611b855171c41985efc7a36698016c083f1b39485a6f9e9d4ae00",
             size=1079),),
}
BY_HAND = {
    "aro": "Flickr30k photos (flickr30k-images/) only after the form at forms.illinois.edu/sec/229675",
    "sugarcrepe": "",
    "vlchecklist": ("photos under IMAGES_ROOT: vg/VG_100K and vg/VG_100K_2 (Visual Genome parts 1 and 2), swig/ "
                    "(SWiG images_512.zip), hake/ (the HAKE image sets), as the VL-CheckList README lists"),
    "winoground": ("the gated facebook/winoground dataset on the Hugging Face Hub: accept its terms, then "
                   "`huggingface-cli download facebook/winoground --repo-type dataset --local-dir DIR` "
                   "(data/test-00000-of-00001.parquet, 367,365,762 bytes)"),
    "compbench": "",
}
NEXT = {
    "aro": "densecaption bench aro --data {dest} --model SPEC (COCO-Order needs val2014/: add --photos)",
    "sugarcrepe": "densecaption bench sugarcrepe --data {dest} --model SPEC (photos in {dest}/val2017: --photos)",
    "vlchecklist": "densecaption bench vlchecklist --data {dest}/VL-CheckList --images IMAGES_ROOT --model SPEC",
    "winoground": "densecaption bench winoground --data {dest} --model SPEC",
    "compbench": "densecaption t2i generate --compbench-dir {dest} --category color --model SPEC --out RUN",
}
NEXT_CONSTRUCTED = {name: f"densecaption bench {name} --data {{dest}} --model SPEC" for name in BUILDERS} | {
    "compbench": NEXT["compbench"]}


@dataclass(frozen=True)
class Fetched:
    done: list[str]
    skipped: list[str]


def parts_for(name: str, *, photos: bool = False, mirror: str | None = None) -> tuple[Part, ...]:
    """The parts of benchmark ``name`` (photo archives only with ``photos``); ``mirror`` replaces each URL's
    folder (MIRROR/NAME)."""
    if name not in PARTS:
        raise UserError(f"data fetch {name!r}: choose from {', '.join(PARTS)}")
    chosen = tuple(p for p in PARTS[name] if photos or not p.photos)
    return tuple(replace(p, url=f"{mirror.rstrip('/')}/{p.name}") for p in chosen) if mirror else chosen


def target(dest: Path, part: Part) -> Path:
    return dest / (part.unzip_to or part.name)


def is_done(dest: Path, part: Part) -> bool:
    """A plain file is whole once it exists (``fetch`` renames it into place); a tree once it has its marker."""
    path = target(dest, part)
    return (read_marker(path) or {}).get("name") == part.name if part.unzip_to else path.is_file()


def fetch_benchmark(name: str, dest: Path | str, *, photos: bool = False, mirror: str | None = None,
                    config: FetchConfig = FetchConfig(),
                    stage: Callable[[str, int | None], Callable] | None = None) -> Fetched:
    """Fetch every public part of ``name`` into ``dest``; parts finished before are skipped. Without network,
    one ``DataError`` line naming every file to download by hand."""
    dest = Path(dest).expanduser()
    parts = parts_for(name, photos=photos, mirror=mirror)
    if not parts:
        raise UserError(f"{name}: nothing public to fetch; download by hand {BY_HAND[name]}")
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest}: not a folder")
    if is_constructed(dest):
        raise UserError(f"{dest} holds a constructed set ({MINI_MARKER}); fetch the real files into another folder")
    dest.mkdir(parents=True, exist_ok=True)
    noop = lambda *a, **k: (lambda n=1: None)  # noqa: E731
    stage = stage or noop
    done, skipped = [], []
    for part in parts:
        if is_done(dest, part):
            skipped.append(part.name)
            continue
        try:
            bar = stage(f"downloading {part.name} (bytes)", part.size)
            path = fetch(part.url, dest / part.name, sha256=part.sha256, config=config, progress=bar,
                         on_total=getattr(bar, "set_total", None))
        except Offline:
            listing = "; ".join(f"{p.url} -> {dest / p.name}" for p in parts if not is_done(dest, p))
            raise DataError(f"cannot reach the {name} servers (no network?): download by hand {listing}, "
                            f"then run this command again to unpack") from None
        check_payload(path, part)
        if part.unzip_to:
            unzip(path, dest, part, stage(f"unpacking {part.name} (files)", None))
            path.unlink(missing_ok=True)
        done.append(part.name)
    return Fetched(done, skipped)


def check_payload(path: Path, part: Part) -> None:
    """Refuse a web page where a file was expected (Google Drive's warning page for a large file)."""
    with open(path, "rb") as handle:
        head = handle.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        path.unlink(missing_ok=True)
        raise DataError(f"{part.url} answered with a web page, not {part.name}: download it by hand in a browser "
                        f"into {path} and run again")
    if part.size is not None and path.stat().st_size != part.size:
        raise DataError(f"{path}: {path.stat().st_size} bytes, expected {part.size}")


def unzip(archive: Path, dest: Path, part: Part, progress: Callable[[int], None] | None = None) -> Path:
    """Extract ``archive`` into a temporary folder, keep its single top folder (``keep_top``) or all of it,
    mark it and rename it to ``dest/part.unzip_to``. Entries with absolute paths or ``..`` are refused."""
    remove_stale_unzips(dest)
    tmp = dest / f".{part.unzip_to}.unpack.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.filename.startswith("/") or ".." in Path(info.filename).parts:
                    raise DataError(f"{archive}: unsafe entry {info.filename!r}")
                zf.extract(info, tmp)
                if progress:
                    progress(1)
        tops = [p for p in tmp.iterdir()]
        tree = tops[0] if part.keep_top and len(tops) == 1 and tops[0].is_dir() else tmp
        atomic_write_text(tree / MARKER, json.dumps({"name": part.name, "url": part.url}, indent=1) + "\n")
        final = dest / part.unzip_to
        if final.exists():
            raise UserError(f"{final} already exists and was not unpacked by this command; move it away")
        os.replace(tree, final)
    except zipfile.BadZipFile as e:
        archive.unlink(missing_ok=True)
        raise DataError(f"{archive}: not a readable zip ({e}); it was deleted, run again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def remove_stale_unzips(dest: Path) -> None:
    """Delete the temporary folders of killed unpacks (``.NAME.unpack.<pid>`` whose process is gone)."""
    for path in dest.glob(".*.unpack.*"):
        pid = path.name.rsplit(".", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)

"""Filling a DCI folder's ``photos/`` from SA-1B: the tar as downloaded (streamed once, never unpacked
whole) or a folder of SA-1B photos. Only the photos the annotations name are written, each atomically, and
photos already there are skipped, so a killed run is resumed by running it again. See docs/real-data.md."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterable

from densecaption.data.dci import DCIDataset, json_files
from densecaption.errors import DataError, UserError
from densecaption.files import atomic_write, remove_stale_temps

Progress = Callable[[int], None]


@dataclass
class PhotoReport:
    written: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    """Named photos already in ``photos/`` (skipped)."""
    missing: list[str] = field(default_factory=list)
    """Named photos the source did not have."""


def named_photos(dataset: DCIDataset, progress: Progress | None = None) -> set[str]:
    """The photo names (``image``) of every annotation file, read as plain JSON (a record with other errors
    still names its photo). Files without a string ``image`` are left out."""
    names = set()
    folder = dataset.annotation_dir
    for file in json_files(folder):
        try:
            doc = json.loads((folder / file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = None
        image = doc.get("image") if isinstance(doc, dict) else None
        if isinstance(image, str) and image and PurePosixPath(image).name == image:
            names.add(image)
        if progress:
            progress(1)
    return names


class _Counting:
    """A read-only file that reports the bytes read (progress over a tar read as a stream)."""

    def __init__(self, handle: BinaryIO, progress: Progress | None):
        self.handle, self.progress = handle, progress

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        if self.progress:
            self.progress(len(data))
        return data


def _write_from(stream: BinaryIO, dst: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)

    atomic_write(dst, write)


def photos_from_tar(tar_path: Path, photo_dir: Path, wanted: set[str], progress: Progress | None = None,
                    report: PhotoReport | None = None) -> PhotoReport:
    """Stream ``tar_path`` once and write the members whose file name is in ``wanted`` (SA-1B's tars hold
    ``sa_<n>.jpg`` and ``sa_<n>.json`` at the top, perhaps under ``./``). Stops reading once every wanted
    photo is found."""
    report = report or PhotoReport()
    todo = set(wanted)
    try:
        with open(tar_path, "rb") as raw, tarfile.open(fileobj=_Counting(raw, progress), mode="r|*") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                if not member.isfile() or name not in todo:
                    continue
                todo.discard(name)
                _write_from(tar.extractfile(member), photo_dir / name)
                report.written.append(name)
                if not todo:
                    break
    except tarfile.TarError as e:
        raise DataError(f"--from {tar_path}: not a readable tar archive ({e}); photos written so far are kept, "
                        f"run again with a whole tar") from None
    report.missing.extend(sorted(todo))
    return report


def photos_from_folder(folder: Path, photo_dir: Path, wanted: set[str], progress: Progress | None = None,
                       report: PhotoReport | None = None) -> PhotoReport:
    """Copy (hard-link where the file system allows) the wanted photos found in ``folder``."""
    report = report or PhotoReport()
    for name in sorted(wanted):
        src = folder / name
        if not src.is_file():
            report.missing.append(name)
            continue
        try:
            os.link(src, photo_dir / name)
        except OSError:
            with open(src, "rb") as handle:
                _write_from(handle, photo_dir / name)
        report.written.append(name)
        if progress:
            progress(1)
    return report


def fill_photos(dataset: DCIDataset, source: Path, stage: Callable[[str, int | None], Progress]) -> PhotoReport:
    """Write the photos ``dataset``'s annotations name, and that ``photos/`` lacks, from ``source`` (an SA-1B
    tar or a folder of photos)."""
    source = source.expanduser()
    if not source.exists():
        raise UserError(f"--from {source}: no such file or folder")
    photo_dir = dataset.photo_dir
    photo_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(photo_dir, recursive=False)
    files = json_files(dataset.annotation_dir)
    wanted = named_photos(dataset, stage("reading annotations", len(files)))
    if not wanted:
        raise DataError(f"{dataset.annotation_dir}: no annotation names a photo")
    present = _already(photo_dir, wanted)
    report = PhotoReport(present=sorted(present))
    todo = wanted - present
    if not todo:
        return report
    if source.is_dir():
        return photos_from_folder(source, photo_dir, todo, stage("copying photos", len(todo)), report)
    return photos_from_tar(source, photo_dir, todo, stage(f"reading {source.name} (bytes)", source.stat().st_size),
                           report)


def _already(photo_dir: Path, names: Iterable[str]) -> set[str]:
    return {n for n in names if (photo_dir / n).is_file()}

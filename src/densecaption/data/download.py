"""Downloading and unpacking released archives (the DCI annotations, DCI's LoRA adapters).

A download streams into ``<archive>.partial`` and resumes it with an HTTP ``Range`` request after a dropped
connection (retried by tenacity) or a killed run; the whole file is checked against its SHA-256 before it is
renamed to ``<archive>``, and a wrong one is deleted. Unpacking extracts into a temporary folder beside the
destination, writes a marker into the tree, and renames it into place: a killed run never leaves a tree
that looks complete, and a second run finds the marker and does nothing. See docs/real-data.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from densecaption.errors import DataError, UserError
from densecaption.files import atomic_write_text, pid_alive

MARKER = ".densecaption-download.json"

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Resource:
    """A released archive: where it is, its SHA-256, and the folder it unpacks to (``name``)."""

    name: str
    url: str
    sha256: str
    what: str

    @property
    def archive(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1] or f"{self.name}.tar.gz"


# From DCI's own download script (dataset/scripts/download.py of facebookresearch/DCI).
_DCI_BASE = "https://dl.fbaipublicfiles.com/densely_captioned_images"
DCI = Resource("densely_captioned_images", f"{_DCI_BASE}/dci.tar.gz",
               "d865c244150168d3f25daaad0bf5b70b2123cf3e83ca7b0e207d5b26943c5fc7", "the DCI annotations")
ADAPTERS = {
    "dci_pick1": Resource("dci_pick1", f"{_DCI_BASE}/dci_pick1.tar.gz",
                          "225b9e1c88a00a2dd62cd5b0e23d4133efbbffe8d28b6de796ba894db1a2aa6a",
                          "DCI's LoRA adapter (Pick1, with the negatives loss)"),
    "dci_pick1_nl0": Resource("dci_pick1_nl0", f"{_DCI_BASE}/dci_pick1_nl0.tar.gz",
                              "2943daaba2489492c274284631223e02933cc9436db201c23abe5939ed01d446",
                              "DCI's LoRA adapter (Pick1, no negatives loss: NL0)"),
}
ADAPTER_BASE = "hf:openai/clip-vit-base-patch32"
"""The model DCI's adapters were trained on (HF CLIP ViT-B/32, peft LoRA)."""


@dataclass(frozen=True)
class FetchConfig:
    """Retries of a dropped download (each resumes where the last stopped) and the first wait between them
    (doubling, at most 30 s); ``timeout`` is seconds without a byte before a try counts as dropped."""

    retries: int = 5
    wait_s: float = 1.0
    timeout: float = 30.0


class Offline(DataError):
    """The server could not be reached at all (no network, a wrong host)."""


# --------------------------------------------------------------------------------------------- hashing
def sha256_of(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            if progress:
                progress(len(block))
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------- fetching
def fetch(url: str, dest: Path, *, sha256: str | None, config: FetchConfig = FetchConfig(),
          progress: Progress | None = None, on_total: Callable[[int], None] | None = None) -> Path:
    """Download ``url`` to the file ``dest`` (resuming ``dest.partial``), check its SHA-256, rename it into
    place. A wrong checksum deletes the download and raises ``DataError``; an unreachable server raises
    ``Offline``; a connection that keeps dropping raises ``DataError`` after ``config.retries`` tries (the
    partial file is kept for the next run)."""
    import httpx
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    partial = dest.with_name(dest.name + ".partial")
    received = [0]  # bytes received in this run, over all tries

    def retryable(e: BaseException) -> bool:
        if isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout)):
            return received[0] > 0  # no server at all: say so now; a flaky one: try again
        if isinstance(e, httpx.HTTPStatusError):
            return e.response.status_code >= 500  # a server's bad moment; 4xx will not change
        return isinstance(e, (httpx.TransportError, _Short))

    if progress and partial.exists():
        progress(partial.stat().st_size)  # resumed from an earlier run
    try:
        with httpx.Client(follow_redirects=True, timeout=config.timeout) as client:
            for attempt in Retrying(retry=retry_if_exception(retryable), stop=stop_after_attempt(config.retries),
                                    wait=wait_exponential(multiplier=config.wait_s, max=30), reraise=True):
                with attempt:
                    _stream(client, url, partial, progress, on_total, received)
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:
        raise Offline(f"cannot reach {url} ({_reason(e)}): no network? Download that file by hand (sha256 "
                      f"{sha256}) and run again with --from FILE") from None
    except (httpx.TransportError, _Short) as e:
        raise DataError(f"{url}: the download kept failing ({_reason(e)}); run the command again to resume "
                        f"from {partial}") from None
    except httpx.HTTPStatusError as e:
        raise DataError(f"{url}: the server answered {e.response.status_code} {e.response.reason_phrase}") from None
    check_sha256(partial, sha256, url)
    os.replace(partial, dest)
    return dest


class _Short(Exception):
    """The server ended a response before the bytes it announced."""


def _reason(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _stream(client, url: str, partial: Path, progress: Progress | None,
            on_total: Callable[[int], None] | None, received: list[int]) -> None:
    """One try: ask for the bytes after what ``partial`` holds and append them (counted in ``received``)."""
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    got = 0
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416:  # nothing after ``have``: the partial file is whole (checked next)
            return
        response.raise_for_status()
        resumed = response.status_code == 206
        if not resumed:
            have = 0  # the server ignored the Range: start again
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        if total is not None and on_total:
            on_total(total)
        with open(partial, "ab" if resumed else "wb") as handle:
            for chunk in response.iter_bytes():  # as received: a drop keeps every byte that came
                handle.write(chunk)
                handle.flush()  # what arrived is on disk for a resume, even after a kill
                got += len(chunk)
                received[0] += len(chunk)
                if progress:
                    progress(len(chunk))
    if total is not None and have + got < total:
        raise _Short(f"{have + got} of {total} bytes")


def check_sha256(path: Path, expected: str | None, source: str) -> None:
    """Delete ``path`` and raise ``DataError`` when its SHA-256 is not ``expected`` (no check when None)."""
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected.lower():
        path.unlink(missing_ok=True)
        raise DataError(f"{source}: wrong sha256 {actual} (expected {expected}); the file was deleted")


# --------------------------------------------------------------------------------------------- unpacking
def read_marker(tree: Path) -> dict | None:
    try:
        marker = json.loads((tree / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def unpack(archive: Path, dest: Path, resource: Resource, locate: Callable[[Path], Path],
           progress: Progress | None = None) -> Path:
    """Extract ``archive`` into a temporary folder in ``dest``, pick the tree to keep (``locate(tmp)``), mark
    it and rename it to ``dest/resource.name``. Only regular files and folders are extracted (tarfile's
    ``data`` filter: no links out of the tree, no absolute paths)."""
    tmp = dest / f".{resource.name}.unpack.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                tar.extract(member, tmp, filter="data")
                if progress:
                    progress(1)
        tree = locate(tmp)
        marker = {"name": resource.name, "url": resource.url, "sha256": resource.sha256,
                  "unpacked": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        atomic_write_text(tree / MARKER, json.dumps(marker, indent=1) + "\n")
        target = dest / resource.name
        os.replace(tree, target)
    except tarfile.TarError as e:
        raise DataError(f"{archive}: not a readable tar archive ({e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def remove_stale_unpacks(dest: Path) -> None:
    """Delete the temporary folders of killed unpacks (``.NAME.unpack.<pid>`` whose process is gone)."""
    if not dest.is_dir():
        return
    for entry in dest.iterdir():
        parts = entry.name.rsplit(".unpack.", 1)
        if entry.name.startswith(".") and len(parts) == 2 and parts[1].isdigit() and not pid_alive(int(parts[1])):
            shutil.rmtree(entry, ignore_errors=True)


def locate_dci(tmp: Path) -> Path:
    """The ``densely_captioned_images`` folder of an unpacked release (at the top or one level down)."""
    for candidate in (tmp / DCI.name, *(p / DCI.name for p in sorted(tmp.iterdir()) if p.is_dir())):
        if candidate.is_dir():
            return candidate
    raise DataError(f"the archive has no {DCI.name}/ folder: not the DCI release layout")


def locate_adapter(tmp: Path) -> Path:
    """The folder holding ``adapter_config.json`` (the archive's top, or its one top-level folder)."""
    if (tmp / "adapter_config.json").is_file():
        return tmp
    found = sorted(p.parent for p in tmp.glob("*/adapter_config.json"))
    if len(found) != 1:
        raise DataError("the archive holds no peft adapter (adapter_config.json) at its top or in one folder")
    return found[0]


# --------------------------------------------------------------------------------------------- both
@dataclass(frozen=True)
class Outcome:
    path: Path
    done_before: bool


def download_resource(resource: Resource, dest: Path | str, locate: Callable[[Path], Path], *,
                      source_file: Path | None = None, config: FetchConfig = FetchConfig(),
                      stage: Callable[[str, int | None], Callable] | None = None) -> Outcome:
    """Fetch (or take ``source_file``), check and unpack ``resource`` into ``dest/resource.name``; nothing to do
    when a previous run finished it (its marker names the same SHA-256). ``stage(name, total)`` gives a
    progress callable per stage (``cli._common.progress_stages``)."""
    dest = Path(dest).expanduser()
    target = dest / resource.name
    marker = read_marker(target)
    if marker is not None and marker.get("sha256") == resource.sha256:
        return Outcome(target, True)
    if target.exists():
        raise UserError(f"{target} already exists and was not unpacked by this command (or from another "
                        f"archive); move it away, or give another DEST")
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest}: not a folder (a file of that name is in the way)")
    dest.mkdir(parents=True, exist_ok=True)
    remove_stale_unpacks(dest)
    noop = lambda *a, **k: (lambda n=1: None)  # noqa: E731
    stage = stage or noop
    if source_file is not None:
        archive = Path(source_file).expanduser()
        if not archive.is_file():
            raise UserError(f"--from {archive}: no such file")
        hashing = stage(f"checking {archive.name}", archive.stat().st_size)
        actual = sha256_of(archive, hashing)
        if actual != resource.sha256:
            raise DataError(f"--from {archive}: wrong sha256 {actual} (expected {resource.sha256})")
    else:
        archive = dest / resource.archive
        if not (archive.is_file() and sha256_of(archive) == resource.sha256):  # a run killed while unpacking
            bar = stage(f"downloading {resource.archive} (bytes)", None)
            fetch(resource.url, archive, sha256=resource.sha256, config=config, progress=bar,
                  on_total=getattr(bar, "set_total", None))
    path = unpack(archive, dest, resource, locate, stage(f"unpacking {archive.name} (files)", None))
    if source_file is None:
        archive.unlink(missing_ok=True)
    return Outcome(path, False)

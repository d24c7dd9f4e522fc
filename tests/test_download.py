"""``data download dci`` and ``data photos`` against a local file server (tests/http_files.py): a release-layout
tarball downloaded, resumed after a dropped connection and after a killed run (bytes equal), refused with a
wrong checksum (nothing left), an offline error, a second run that does nothing; SA-1B-layout tars."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.download import DCI, MARKER, FetchConfig, Offline, fetch
from densecaption.errors import DataError
from tests.conftest import make_doc, write_dataset
from tests.http_files import FileServer, closed_port


def tar_of(folder: Path, arcname: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=arcname or folder.name)
    return buf.getvalue()


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[bytes, str]:
    """A dci.tar.gz in the release layout (densely_captioned_images/ at the top) holding two records."""
    root = tmp_path_factory.mktemp("release")
    inner = write_dataset(root, {"1-data.json": make_doc(image="sa_1.jpg"), "2-data.json": make_doc(image="sa_2.jpg")},
                          folder="annotations")
    for photo in (inner / "photos").iterdir():  # the release ships no photos
        photo.unlink()
    data = tar_of(inner)
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(release):
    srv = FileServer({"/dci.tar.gz": release[0]})
    yield srv
    srv.close()


def run(*args: str):
    return CliRunner().invoke(build_app(), ["data", *args])


def test_download_unpacks_marks_and_a_second_run_does_nothing(server, release, tmp_path):
    url, sha = f"{server.url}/dci.tar.gz", release[1]
    result = run("download", "dci", str(tmp_path), "--url", url, "--sha256", sha)
    assert result.exit_code == 0, result.output
    inner = tmp_path / "densely_captioned_images"
    assert sorted(p.name for p in (inner / "annotations").iterdir()) == ["1-data.json", "2-data.json"]
    assert json.loads((inner / MARKER).read_text())["sha256"] == sha
    assert sorted(p.name for p in tmp_path.iterdir()) == ["densely_captioned_images"]  # archive removed
    requests = len(server.ranges)
    again = run("download", "dci", str(tmp_path), "--url", url, "--sha256", sha)
    assert again.exit_code == 0 and "already unpacked" in again.output
    assert len(server.ranges) == requests  # not even asked

def test_dropped_connection_is_resumed_with_range(server, release, tmp_path):
    data, sha = release
    server.drop_after["/dci.tar.gz"] = 1000
    out = fetch(f"{server.url}/dci.tar.gz", tmp_path / "dci.tar.gz", sha256=sha, config=FetchConfig(wait_s=0))
    assert out.read_bytes() == data
    assert server.ranges == [None, "bytes=1000-"]
    assert not (tmp_path / "dci.tar.gz.partial").exists()


def test_killed_run_resumes_from_its_partial_file(server, release, tmp_path):
    data, sha = release
    server.drop_after["/dci.tar.gz"] = len(data) // 2
    url = f"{server.url}/dci.tar.gz"
    with pytest.raises(DataError, match="run the command again to resume"):
        fetch(url, tmp_path / "dci.tar.gz", sha256=sha, config=FetchConfig(retries=1))
    assert (tmp_path / "dci.tar.gz.partial").read_bytes() == data[:len(data) // 2]
    result = run("download", "dci", str(tmp_path), "--url", url, "--sha256", sha)
    assert result.exit_code == 0, result.output
    assert server.ranges[-1] == f"bytes={len(data) // 2}-"
    assert (tmp_path / "densely_captioned_images" / "annotations" / "2-data.json").is_file()


def test_a_killed_process_resumes_where_it_stopped(server, release, tmp_path):
    """The CLI in a process of its own, killed (SIGKILL) once half the archive has arrived; the next run asks
    for the second half only, and the archive it unpacks is byte for byte the served one."""
    data, sha = release
    half = len(data) // 2
    server.stall_after["/dci.tar.gz"] = half
    url = f"{server.url}/dci.tar.gz"
    partial = tmp_path / "dci.tar.gz.partial"
    proc = subprocess.Popen([sys.executable, "-m", "densecaption", "data", "download", "dci", str(tmp_path), "--url",
                             url, "--sha256", sha], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size == half) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert partial.read_bytes() == data[:half]
    fetch(url, tmp_path / "dci.tar.gz", sha256=sha)  # resumes the same partial file
    assert server.ranges[-1] == f"bytes={half}-"
    assert (tmp_path / "dci.tar.gz").read_bytes() == data
    result = run("download", "dci", str(tmp_path), "--url", url, "--sha256", sha)  # unpacks what is there
    assert result.exit_code == 0, result.output
    assert server.ranges[-1] == f"bytes={half}-"  # no new request
    assert sorted(p.name for p in tmp_path.iterdir()) == ["densely_captioned_images"]


def test_wrong_checksum_is_refused_and_nothing_is_left(server, tmp_path):
    result = run("download", "dci", str(tmp_path / "d"), "--url", f"{server.url}/dci.tar.gz", "--sha256", "0" * 64)
    assert result.exit_code == 1
    assert "wrong sha256" in result.output and "Traceback" not in result.output
    assert list((tmp_path / "d").iterdir()) == []


def test_offline_is_one_line_naming_what_to_fetch(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/dci.tar.gz"
    with pytest.raises(Offline):
        fetch(url, tmp_path / "x", sha256=None)
    result = run("download", "dci", str(tmp_path), "--url", url, "--sha256", "a" * 64)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach") and "--from" in lines[0]


def test_from_a_file_downloaded_by_hand(release, tmp_path):
    archive = tmp_path / "dci.tar.gz"
    archive.write_bytes(release[0])
    result = run("download", "dci", str(tmp_path / "d"), "--from", str(archive), "--sha256", release[1])
    assert result.exit_code == 0, result.output
    assert archive.is_file()  # the user's file is kept
    assert (tmp_path / "d" / "densely_captioned_images" / "splits.json").is_file()


def test_official_url_and_checksum_are_kept_in_code():
    assert DCI.url == "https://dl.fbaipublicfiles.com/densely_captioned_images/dci.tar.gz"
    assert DCI.sha256 == "d865c244150168d3f25daaad0bf5b70b2123cf3e83ca7b0e207d5b26943c5fc7"


# --------------------------------------------------------------------------------------------- photos
def sa1b_tar(path: Path, photos: dict[str, bytes]) -> Path:
    """A tar in SA-1B's layout: ``./sa_<n>.jpg`` beside ``./sa_<n>.json`` (the SAM masks), uncompressed."""
    with tarfile.open(path, "w") as tar:
        for name, data in photos.items():
            for member, payload in ((name, data), (name.replace(".jpg", ".json"), b"{}")):
                info = tarfile.TarInfo(f"./{member}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def unpacked(tmp_path) -> Path:
    inner = write_dataset(tmp_path / "dci", {"1-data.json": make_doc(image="sa_1.jpg"),
                                             "2-data.json": make_doc(image="sa_2.jpg"),
                                             "3-data.json": make_doc(image="sa_9.jpg")}, folder="annotations")
    for photo in (inner / "photos").iterdir():
        photo.unlink()
    return inner


def test_photos_from_an_sa1b_tar_writes_only_named_ones_and_lists_the_missing(unpacked, tmp_path):
    tar = sa1b_tar(tmp_path / "sa_000138.tar", {"sa_1.jpg": b"one", "sa_2.jpg": b"two", "sa_5.jpg": b"five"})
    result = run("photos", str(unpacked), "--from", str(tar))
    assert result.exit_code == 1  # sa_9.jpg is not in the tar
    assert "1 named photo(s) are not in" in result.output and "sa_9.jpg" in result.output
    photos = unpacked / "photos"
    assert sorted(p.name for p in photos.iterdir()) == ["sa_1.jpg", "sa_2.jpg"]
    assert (photos / "sa_2.jpg").read_bytes() == b"two"
    (photos / "sa_1.jpg").write_bytes(b"kept")  # a second run skips what is there
    again = run("photos", str(unpacked), "--from", str(tar))
    assert "wrote 0 photos" in again.output and "(2 already there)" in again.output
    assert (photos / "sa_1.jpg").read_bytes() == b"kept"


def test_photos_from_a_folder(unpacked, tmp_path):
    folder = tmp_path / "sa1b"
    folder.mkdir()
    for name in ("sa_1.jpg", "sa_2.jpg", "sa_9.jpg", "sa_7.jpg"):
        (folder / name).write_bytes(name.encode())
    result = run("photos", str(unpacked.parent), "--from", str(folder))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (unpacked / "photos").iterdir()) == ["sa_1.jpg", "sa_2.jpg", "sa_9.jpg"]


def test_photos_from_a_broken_tar_is_one_line(unpacked, tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar" * 100)
    result = run("photos", str(unpacked), "--from", str(bad))
    assert result.exit_code == 1 and "not a readable tar" in result.output and "Traceback" not in result.output


def test_a_run_killed_while_unpacking_is_finished_without_downloading_again(server, release, tmp_path):
    data, sha = release
    (tmp_path / "dci.tar.gz").write_bytes(data)  # checked and renamed, then killed while unpacking
    stale = tmp_path / ".densely_captioned_images.unpack.999999999"
    (stale / "densely_captioned_images").mkdir(parents=True)
    result = run("download", "dci", str(tmp_path), "--url", f"{server.url}/dci.tar.gz", "--sha256", sha)
    assert result.exit_code == 0, result.output
    assert server.ranges == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["densely_captioned_images"]


def test_a_server_error_is_one_line(server, tmp_path):
    result = run("download", "dci", str(tmp_path), "--url", f"{server.url}/nothing.tar.gz", "--sha256", "a" * 64)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: {server.url}/nothing.tar.gz: the server answered 404 "
                                                  f"Not Found"]

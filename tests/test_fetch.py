"""`data fetch` against a local HTTP server (tests/http_files.py): files land in the layout `bench` reads,
a zip is unpacked into place, a dropped connection resumes, a finished part is skipped, a web page in place of
a file is refused, and without network one line names what to download by hand."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.fetch import PARTS, parts_for
from tests.http_files import FileServer, closed_port


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _aro_files() -> dict[str, bytes]:
    files = {f"/{p.name}": json.dumps([{"n": p.name}]).encode() for p in parts_for("aro") if not p.unzip_to}
    files["/vgr_vga_images.zip"] = _zip({"images/1.jpg": b"jpeg bytes", "images/2.jpg": b"more bytes"})
    return files


@pytest.fixture()
def server():
    srv = FileServer(_aro_files())
    yield srv
    srv.close()


def run(*args: str):
    return CliRunner().invoke(build_app(), ["data", "fetch", *args])


def test_official_locations_are_recorded():
    urls = [p.url for p in PARTS["aro"]]
    assert "https://drive.google.com/uc?export=download&confirm=t&id=1kX2iCHEv0CADL8dSO1nMdW-V0NqIAiP3" in urls
    assert all(p.url.startswith("https://raw.githubusercontent.com/RAIVNLab/sugar-crepe/") for p in
               parts_for("sugarcrepe"))
    assert [p.name for p in parts_for("sugarcrepe", photos=True)][-1] == "val2017.zip"


def test_fetch_aro_resumes_unpacks_and_skips(server, tmp_path):
    server.drop_after["/visual_genome_relation.json"] = 5  # the first try is cut after 5 bytes
    out = run("aro", str(tmp_path / "aro"), "--mirror", server.url, "--retries", "3")
    assert out.exit_code == 0, out.output
    root = tmp_path / "aro"
    assert json.loads((root / "visual_genome_relation.json").read_text()) == [{"n": "visual_genome_relation.json"}]
    assert "bytes=5-" in server.ranges  # the second try asked for the rest only
    assert (root / "images" / "1.jpg").read_bytes() == b"jpeg bytes" and not (root / "vgr_vga_images.zip").exists()
    assert "Flickr30k" in out.output and "bench aro" in out.output
    asked = len(server.ranges)
    again = run("aro", str(root), "--mirror", server.url)
    assert again.exit_code == 0 and "already there" in again.output and len(server.ranges) == asked


def test_a_web_page_instead_of_a_file_is_refused(server, tmp_path):
    server.files["/visual_genome_relation.json"] = b"<!DOCTYPE html><html>virus scan warning</html>"
    out = run("aro", str(tmp_path / "aro"), "--mirror", server.url)
    assert out.exit_code == 1 and out.output.strip().splitlines()[-1].startswith("error:") and "web page" in out.output
    assert not (tmp_path / "aro" / "visual_genome_relation.json").exists()


def test_offline_names_the_files_in_one_line(tmp_path):
    out = run("sugarcrepe", str(tmp_path / "sc"), "--mirror", f"http://127.0.0.1:{closed_port()}")
    assert out.exit_code == 1
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "add_obj.json" in lines[0]


def test_winoground_is_gated(tmp_path):
    out = run("winoground", str(tmp_path / "wg"))
    assert out.exit_code == 2 and "facebook/winoground" in out.output
    assert run("nope", str(tmp_path)).exit_code == 2

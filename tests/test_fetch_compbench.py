"""`data fetch compbench` against a local HTTP server (tests/http_files.py) serving the real prompt files from
../shared/data: they land as `t2i generate --compbench-dir` reads them, checked against the pinned SHA-256s;
a dropped connection resumes, a changed file is refused, a second run skips, offline is one line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.fetch import PARTS, parts_for
from densecaption.evaluation.compbench.prompts import prompt_file, read_prompts
from tests.conftest import shared_data_or_skip
from tests.http_files import FileServer, closed_port

CATEGORIES = ("color", "shape", "texture", "spatial", "non_spatial", "complex", "numeracy")


def run(*args: str):
    return CliRunner().invoke(build_app(), ["data", "fetch", *args])


@pytest.fixture()
def server():
    shared = shared_data_or_skip("t2i-compbench")
    srv = FileServer({f"/{p.name}": (shared / p.name).read_bytes() for p in parts_for("compbench")})
    yield srv
    srv.close()


def test_official_urls_at_a_pinned_commit():
    urls = {p.name: p.url for p in PARTS["compbench"]}
    base = "https://raw.githubusercontent.com/Karine-Huang/T2I-CompBench/1b7094991a57f3c22abdd4f6e8ba6c1a15517073/"
    for category in CATEGORIES:
        assert urls[f"{category}_val.txt"] == f"{base}examples/dataset/{category}_val.txt"
    assert urls["LICENSE"] == base + "LICENSE"
    assert {"complex_val_spatial.txt", "complex_val_action.txt", "new_objects.txt"} <= set(urls)
    assert all(p.sha256 and len(p.sha256) == 64 and p.size for p in PARTS["compbench"])


def test_fetch_resumes_checks_and_skips(server, tmp_path):
    server.drop_after["/color_val.txt"] = 100  # the first try is cut after 100 bytes
    dest = tmp_path / "compbench"
    out = run("compbench", str(dest), "--mirror", server.url, "--retries", "3")
    assert out.exit_code == 0, out.output
    assert "bytes=100-" in server.ranges and "--compbench-dir" in out.output
    for category in CATEGORIES:
        assert len(read_prompts(prompt_file(dest, category))) >= 290  # 300 upstream, a few de-duplicated
    asked = len(server.ranges)
    again = run("compbench", str(dest), "--mirror", server.url)
    assert again.exit_code == 0 and "already there" in again.output and len(server.ranges) == asked


def test_a_changed_file_is_refused(server, tmp_path):
    server.files["/shape_val.txt"] = b"X" + server.files["/shape_val.txt"][1:]  # same size, other bytes
    out = run("compbench", str(tmp_path / "cb"), "--mirror", server.url)
    assert out.exit_code == 1 and out.output.strip().splitlines()[-1].startswith("error:")
    assert "sha256" in out.output.lower() and not (tmp_path / "cb" / "shape_val.txt").exists()


def test_offline_names_the_files_in_one_line(tmp_path):
    out = run("compbench", str(tmp_path / "cb"), "--mirror", f"http://127.0.0.1:{closed_port()}")
    assert out.exit_code == 1
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "color_val.txt" in lines[0]

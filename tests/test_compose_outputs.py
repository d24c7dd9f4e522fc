"""``compose set|grid`` robustness: text that cannot be written (lone surrogates) refused at reading, an --out
that cannot be written as one error line, and a grid that resumes after a kill."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from tests.conftest import make_doc, write_dataset

GRID = ["--precisions", "0,0.5", "--submasks", "0,1", "--split", "all", "--format", "folder,jsonl"]


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def last_line(result) -> str:
    return result.output.strip().splitlines()[-1]


# --------------------------------------------------------------------------------------------- lone surrogates
@pytest.fixture
def surrogate_data(tmp_path) -> Path:
    """Two records; the second's base summary holds a lone surrogate (JSON ``"\\ud800"``)."""
    bad = make_doc(image="b.jpg")
    bad["summaries"]["base"][0] = "a red box \ud800 on a floor"
    write_dataset(tmp_path / "dci", {"1-data.json": make_doc(image="a.jpg"), "2-data.json": bad})
    assert "\\ud800" in (tmp_path / "dci" / "densely_captioned_images" / "complete" / "2-data.json").read_text()
    return tmp_path / "dci"


@pytest.mark.parametrize("command", [["set", "--precision", "0.5", "--submasks", "0", "--split", "all"],
                                     ["grid", "--precisions", "0,1", "--submasks", "0", "--split", "all"]])
def test_a_lone_surrogate_skips_its_record_or_stops_with_strict(surrogate_data, tmp_path, command):
    where = "2-data.json#/summaries/base/0: a string with a lone UTF-16 surrogate"
    result = invoke("compose", *command, "--data", surrogate_data, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert f"skipped {where}" in result.output and "1 record(s) skipped" in result.output
    folders = [tmp_path / "out"] if command[0] == "set" else sorted((tmp_path / "out").glob("p*_k0"))
    for folder in folders:
        lines = (folder / "captions.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["image_id"] for line in lines] == ["1-data"]
    strict = invoke("compose", *command, "--data", surrogate_data, "--out", tmp_path / "strict", "--strict")
    assert strict.exit_code == 1 and last_line(strict) == f"error: {where} (a \\ud800-\\udfff escape without " \
                                                           "its pair), which is not text"


def test_validate_reports_a_lone_surrogate_with_its_pointer(surrogate_data):
    from densecaption.data.validate import validate_dataset

    errors = [(f.file, f.pointer) for f in validate_dataset(surrogate_data).errors]
    assert errors == [("complete/2-data.json", "/summaries/base/0")]


# --------------------------------------------------------------------------------------------- --out
@pytest.mark.parametrize("command", [["set", "--precision", "0.5", "--submasks", "1"], ["grid", *GRID]])
def test_out_that_is_a_file_or_cannot_be_written(tmp_path, monkeypatch, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = invoke("compose", *command, "--data", "sample", "--out", blocker)
    assert result.exit_code == 2, result.output
    assert last_line(result) == f"error: {blocker}: not a folder (a file of that name is in the way)"
    below = invoke("compose", *command, "--data", "sample", "--out", blocker / "sets")
    assert below.exit_code == 2 and last_line(below) == f"error: {blocker / 'sets'}: Not a directory"

    import densecaption.files as files

    def no_permission(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    with monkeypatch.context() as m:  # tests run as root: a read-only folder is simulated at the write check
        m.setattr(files.tempfile, "mkstemp", no_permission)
        early = invoke("compose", *command, "--data", "sample", "--out", tmp_path / "ro")
    assert early.exit_code == 2 and last_line(early) == f"error: {tmp_path / 'ro'}: Permission denied"

    import densecaption.captionsets.export as export

    def denied(path, text):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(export, "atomic_write_text", denied)
    late = invoke("compose", *command, "--data", "sample", "--out", tmp_path / "late", "--format", "folder")
    assert late.exit_code == 2, late.output
    assert last_line(late).startswith(f"error: {tmp_path / 'late'}") and last_line(late).endswith(
        "metadata.jsonl: Permission denied")


# --------------------------------------------------------------------------------------------- grid resume
def test_grid_resumes_after_a_kill_and_equals_a_clean_run(tmp_path):
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    for out in (clean, resumed):
        result = invoke("compose", "grid", "--data", "sample", "--out", out, *GRID)
        assert result.exit_code == 0, result.output
    # a kill: the grid manifest not yet written, one set cut short (no manifest, a torn file), one not begun
    (resumed / "manifest.json").unlink()
    (resumed / "p0.5_k1" / "manifest.json").unlink()
    (resumed / "p0.5_k1" / "captions.jsonl").write_text('{"torn": ')
    shutil.rmtree(resumed / "p0_k1")
    kept = {name: os.stat(resumed / name / "manifest.json").st_ino for name in ("p0_k0", "p0.5_k0")}

    again = invoke("compose", "grid", "--data", "sample", "--out", resumed, *GRID)
    assert again.exit_code == 0, again.output
    assert "kept 2 sets complete from an earlier run (p0_k0, p0.5_k0)" in again.output
    assert "wrote 2 sets" in again.output
    assert {name: os.stat(resumed / name / "manifest.json").st_ino for name in kept} == kept  # not redone
    assert tree(resumed) == tree(clean)

    done = invoke("compose", "grid", "--data", "sample", "--out", resumed, *GRID)  # complete: all kept
    assert done.exit_code == 0 and "kept 4 sets" in done.output and tree(resumed) == tree(clean)


def test_grid_refuses_another_configuration_unless_overwrite(tmp_path):
    out = tmp_path / "grid"
    assert invoke("compose", "grid", "--data", "sample", "--out", out, *GRID).exit_code == 0
    seed = invoke("compose", "grid", "--data", "sample", "--out", out, *GRID, "--seed", "1")
    assert seed.exit_code == 2 and last_line(seed) == f"error: {out}: holds another caption grid (seed: 0 there, " \
                                                      "1 now); use --overwrite to replace it, or another --out"
    (out / "manifest.json").unlink()  # killed before the grid manifest: the sets still tell
    seed = invoke("compose", "grid", "--data", "sample", "--out", out, *GRID, "--seed", "1")
    assert seed.exit_code == 2 and "p0_k0: holds a caption set of another configuration (seed: 0 there, 1 now)" \
        in last_line(seed)
    fewer = invoke("compose", "grid", "--data", "sample", "--out", out, *GRID[:2], "--submasks", "0", *GRID[4:])
    assert fewer.exit_code == 2 and "holds sets of another grid (p0.5_k1, p0_k1)" in last_line(fewer)
    formats = invoke("compose", "grid", "--data", "sample", "--out", out, *GRID[:-1], "jsonl")
    assert formats.exit_code == 2 and "(formats: ['folder', 'jsonl'] there, ['jsonl'] now)" in last_line(formats)
    again = invoke("compose", "grid", "--data", "sample", "--out", out, *GRID, "--seed", "1", "--overwrite")
    assert again.exit_code == 0 and "from an earlier run" not in again.output and "wrote 4 sets" in again.output
    assert {json.loads((p / "manifest.json").read_text())["config"]["seed"] for p in out.glob("p*")} == {1}

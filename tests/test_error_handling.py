"""Generic error handling: one "error:" per line, operating-system errors as one line and an exit code,
records whose masks do not fit their photo skipped, stale temporaries cleared, tables that fit 80 columns."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from PIL import Image
from rich.table import Table
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.cli._common import guarded, out_console
from densecaption.cli.bench import prepare_out, print_result
from densecaption.data.clip_scores import compute_record_scores
from densecaption.data.dci import DCIDataset, DCIWriter
from densecaption.data.findings import Finding, RecordError, SkipLog
from densecaption.data.sdci import records_with_sizes
from densecaption.data.show import render_annotation
from densecaption.data.validate import validate_dataset
from densecaption.errors import UserError
from densecaption.evaluation.benchmarks.sdci import SDCI
from densecaption.evaluation.results import dataset_sha256
from densecaption.files import JsonlLog, atomic_write, atomic_write_text, remove_stale_temps, temp_writer_pid
from tests.conftest import make_doc, write_dataset
from tests.test_broken_inputs import deny

FILE = "1-data.json"


def invoke(*args: object, columns: int = 80):
    return CliRunner(env={"COLUMNS": str(columns)}).invoke(build_app(), [str(a) for a in args])


def one_error_per_line(output: str) -> bool:
    return all(line.count("error:") <= 1 for line in output.splitlines())


# --------------------------------------------------------------------------------------------- "error:" once
def test_a_record_error_says_error_once(tmp_path):
    doc = make_doc()
    del doc["short_caption"]
    write_dataset(tmp_path, {FILE: doc})
    result = invoke("data", "stats", tmp_path, "--strict")
    assert result.exit_code == 1
    assert "error: 1-data.json#/short_caption: missing key" in result.output
    assert "error: error:" not in result.output and one_error_per_line(result.output)


def test_a_finding_keeps_its_severity_and_a_record_error_leaves_it_to_the_cli():
    finding = Finding("a.json", "/x", "bad")
    assert str(finding) == "error: a.json#/x: bad" and finding.message == "a.json#/x: bad"
    assert str(RecordError([finding, finding])) == "a.json#/x: bad (and 1 more)"


def test_a_skipped_record_is_one_warning_line(tmp_path):
    doc = make_doc()
    del doc["short_caption"]
    write_dataset(tmp_path, {FILE: doc, "2-data.json": make_doc()})
    result = invoke("data", "stats", tmp_path)
    assert result.exit_code == 0
    assert "skipped 1-data.json#/short_caption: missing key" in result.output
    assert "error:" not in result.output


# --------------------------------------------------------------------------------------------- OS errors
def _guarded_exit(raise_it: Exception) -> int:
    @guarded
    def command() -> None:
        raise raise_it

    with pytest.raises(typer.Exit) as caught:
        command()
    return caught.value.exit_code


@pytest.mark.parametrize("error, code, line", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/x.json"), 2, "error: /data/x.json: Permission denied"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/out"), 2, "error: /out: Is a directory"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/f/x"), 2, "error: /f/x: Not a directory"),
    (FileExistsError(errno.EEXIST, "File exists", "/out"), 2, "error: /out: File exists"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/res"), 2, "error: /ro/res: Read-only file system"),
    (OSError(errno.ENOSPC, "No space left on device", "/full/r.json"), 1,
     "error: /full/r.json: No space left on device"),
    (OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"), 2,
     "error: /a -> /b: Invalid cross-device link"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), 1, "error: Connection refused"),
    (OSError("cannot identify image file\n'x.jpg'"), 1, "error: cannot identify image file 'x.jpg'"),
])
def test_guarded_turns_os_errors_into_one_line(error, code, line, capsys):
    assert _guarded_exit(error) == code
    assert capsys.readouterr().err.strip() == line


def test_an_unreadable_annotation_is_skipped_or_stops_with_strict(tmp_path, monkeypatch):
    inner = write_dataset(tmp_path, {FILE: make_doc(), "2-data.json": make_doc()})
    deny(monkeypatch, [inner / "complete" / FILE])
    soft = invoke("data", "stats", tmp_path)
    assert soft.exit_code == 0, soft.output
    assert "skipped complete/1-data.json: cannot read: Permission denied" in soft.output
    strict = invoke("data", "stats", tmp_path, "--strict")
    assert strict.exit_code == 1 and "Traceback" not in strict.output
    assert "error: complete/1-data.json: cannot read: Permission denied" in strict.output


def _deny_listing(monkeypatch, folder: Path) -> None:
    """Listing ``folder`` raises ``PermissionError`` (a folder without read permission, to a user not root)."""
    real_listdir = os.listdir

    def listdir(path="."):
        if os.path.abspath(path) == os.path.abspath(folder):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)


def test_an_unreadable_annotation_folder_is_one_line_or_a_finding(tmp_path, monkeypatch):
    inner = write_dataset(tmp_path, {FILE: make_doc()})
    (inner / "splits.json").unlink()  # every file of the folder is read: it must be listed
    _deny_listing(monkeypatch, inner / "complete")
    stats = invoke("data", "stats", tmp_path)
    assert stats.exit_code == 2 and stats.output == f"error: {inner / 'complete'}: Permission denied\n"
    validate = invoke("data", "validate", tmp_path)
    assert validate.exit_code == 1 and "error complete/: cannot read: Permission denied" in validate.output


def test_an_unreadable_photo_is_named_with_its_reason(tmp_path, monkeypatch):
    inner = write_dataset(tmp_path, {FILE: make_doc(), "2-data.json": make_doc(image="other.jpg")})
    deny(monkeypatch, [inner / "photos" / "photo.jpg"])
    report = validate_dataset(tmp_path)
    assert [f.reason for f in report.errors] == ["photo 'photo.jpg' cannot be read: Permission denied"]
    log = SkipLog()
    assert [r.file for r, _ in records_with_sizes(DCIDataset.open(tmp_path), "test", log)] == ["2-data.json"]
    assert str(log.skipped[0]) == (f"complete/1-data.json#/image: photo {inner / 'photos' / 'photo.jpg'}: "
                                   "Permission denied")


def test_a_missing_photo_names_the_record_once(tmp_path):
    inner = write_dataset(tmp_path, {FILE: make_doc()})
    (inner / "photos" / "photo.jpg").unlink()
    log = SkipLog()
    assert list(records_with_sizes(DCIDataset.open(tmp_path), "test", log)) == []
    assert str(log.skipped[0]) == "complete/1-data.json#/image: photo 'photo.jpg' not found"


def test_a_dataset_writer_names_the_file_in_its_folders_place(tmp_path):
    (tmp_path / "out").write_text("a file\n")
    with pytest.raises(UserError, match=f"^{tmp_path / 'out'}: not a folder"):
        DCIWriter(tmp_path / "out")


def test_an_unreadable_annotation_does_not_stop_the_data_hash(tmp_path, monkeypatch):
    inner = write_dataset(tmp_path, {FILE: make_doc(), "2-data.json": make_doc()})
    dataset = DCIDataset.open(tmp_path)
    whole = dataset_sha256(dataset, "test")
    deny(monkeypatch, [inner / "complete" / FILE])
    assert dataset_sha256(dataset, "test") != whole  # no PermissionError; the file's bytes are left out
    assert SDCI().open(dataset, "test").sha256 == dataset_sha256(dataset, "test")


def test_bench_out_naming_a_file_fails_before_the_model_loads(tmp_path):
    write_dataset(tmp_path / "d", {FILE: make_doc()})
    (tmp_path / "res").write_text("a file\n")
    result = invoke("bench", "sdci", "--data", tmp_path / "d", "--model", "open_clip:local-dir:/no/such/model",
                    "--out", tmp_path / "res")
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {tmp_path / 'res'}: ") and "model" not in result.output


def test_bench_out_on_a_read_only_file_system_is_one_line(tmp_path, monkeypatch):
    write_dataset(tmp_path / "d", {FILE: make_doc()})
    out = tmp_path / "ro" / "res"
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    result = invoke("bench", "sdci", "--data", tmp_path / "d", "--model", "open_clip:local-dir:/no/such/model",
                    "--out", out)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == f"error: {out}: Read-only file system"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes whatever the mode bits say")
def test_a_real_read_only_out_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(UserError, match="Permission denied"):
            prepare_out(folder / "res")
    finally:
        folder.chmod(0o700)


def test_a_full_disk_names_the_file_being_written(tmp_path):
    def fill(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # what a write on a full disk raises: no name

    target = tmp_path / "r.json"
    with pytest.raises(OSError) as caught:
        atomic_write(target, fill)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []  # no temporary left behind


def test_a_full_disk_names_the_log(tmp_path, monkeypatch):
    log = JsonlLog(tmp_path / "log.jsonl")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError) as caught:
        log.append({"a": 1})
    assert caught.value.filename == str(tmp_path / "log.jsonl")


def test_a_full_disk_under_guarded_exits_1_naming_the_file(tmp_path, capsys):
    def fill(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    @guarded
    def command() -> None:
        atomic_write(tmp_path / "r.json", fill)

    with pytest.raises(typer.Exit) as caught:
        command()
    assert caught.value.exit_code == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'r.json'}: No space left on device"


# --------------------------------------------------------------------------------------------- photo size
def _one_by_one(tmp_path: Path, doc: dict | None = None) -> Path:
    inner = write_dataset(tmp_path, {FILE: doc or make_doc(), "2-data.json": make_doc(image="other.jpg")})
    Image.new("RGB", (1, 1)).save(inner / "photos" / "photo.jpg")  # the annotation still says 400x300
    return inner


def test_masks_outside_a_replaced_photo_skip_the_record_naming_both_sizes(tmp_path):
    _one_by_one(tmp_path)
    log = SkipLog()
    kept = [r.file for r, _ in records_with_sizes(DCIDataset.open(tmp_path), "test", log)]
    assert kept == ["2-data.json"]
    reason = str(log.skipped[0])
    assert reason.startswith("complete/1-data.json#/mask_data/1/bounds")
    assert "is 1x1" in reason and "400x300" in reason
    with pytest.raises(RecordError, match="1x1"):
        list(records_with_sizes(DCIDataset.open(tmp_path), "test", SkipLog(strict=True)))


def test_stale_width_height_with_masks_that_fit_the_photo_is_still_read(tmp_path):
    doc = make_doc()
    doc["height"] = 1000  # the release's quirk: the photo's size is used
    write_dataset(tmp_path, {FILE: doc})
    log = SkipLog()
    assert [size for _, size in records_with_sizes(DCIDataset.open(tmp_path), "test", log)] == [(400, 300)]
    assert log.skipped == []


def test_validate_reports_a_replaced_photo_as_errors(tmp_path):
    _one_by_one(tmp_path)
    report = validate_dataset(tmp_path)
    assert not report.ok()
    assert {f.file for f in report.errors} == {"complete/1-data.json"}


def test_show_and_clip_scores_refuse_masks_outside_the_photo(tmp_path):
    _one_by_one(tmp_path)
    record = DCIDataset.open(tmp_path).read(FILE)
    with pytest.raises(RecordError, match="1x1"):
        render_annotation(record, tmp_path / "x.png")
    with pytest.raises(RecordError, match="complete/1-data.json.*1x1"):
        compute_record_scores(record, model=None, file="complete/1-data.json")
    result = invoke("data", "show", tmp_path, FILE, "-o", tmp_path / "x.png")
    assert result.exit_code == 1 and result.output.startswith("error: 1-data.json#/mask_data/1/bounds")


# --------------------------------------------------------------------------------------------- temporaries
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_remove_stale_temps_deletes_only_dead_writers_temporaries(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / f".r.json.{dead}.0123abcd.tmp", tmp_path / "sub" / f".x.pt.{dead}.deadbeef.tmp"]
    kept = [tmp_path / f".r.json.{alive}.0123abcd.tmp", tmp_path / "r.json", tmp_path / ".notes.tmp",
            tmp_path / f".r.json.{dead}.xyz.tmp"]
    for path in stale + kept:
        path.write_text("x")
    assert remove_stale_temps(tmp_path, recursive=False) == [stale[0]]
    assert sorted(remove_stale_temps(tmp_path)) == [stale[1]]
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)
    assert remove_stale_temps(tmp_path / "absent") == []


def test_temp_names_are_the_ones_atomic_write_makes(tmp_path):
    seen = []
    atomic_write_text(tmp_path / "a.json", "{}")
    atomic_write(tmp_path / "b.json", lambda tmp: seen.append(tmp.name) or tmp.write_text("{}"))
    assert temp_writer_pid(seen[0]) == os.getpid()
    assert temp_writer_pid("b.json") is None


def test_a_bench_run_clears_stale_temporaries_in_its_out(tmp_path):
    stale = tmp_path / "res" / f".sdci_x.json.{_dead_pid()}.0123abcd.tmp"
    stale.parent.mkdir()
    stale.write_text("half a result")
    prepare_out(tmp_path / "res")
    assert not stale.exists()


# --------------------------------------------------------------------------------------------- 80 columns
RECORD = {"split": "test", "mode": "reference", "weights": "random",
          "model": "open_clip:local-dir:/a/very/long/path/to/some/models/folder/with/a/tiny/random/vit-b-32",
          "lora": "/another/long/path/to/runs/sdci-finetune-pick1-imggroup-negclip/best_adapter",
          "metrics": {m: 12345.678 for m in ("all_scm", "all_neg", "pick5_scm", "pick5_neg", "base_neg",
                                              "all_hard_negs")},
          "counts": {m: 1234567 for m in ("all_scm", "all_neg", "pick5_scm", "pick5_neg", "base_neg",
                                          "all_hard_negs")}}


def test_the_bench_table_fits_80_columns_with_whole_numbers(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    print_result(SDCI(), RECORD, Path("results/x.json"))
    out = capsys.readouterr().out
    table = out.split("weights: random:")[0]
    assert "…" not in out
    assert all(len(line) <= 80 for line in table.splitlines()), table
    assert table.count("12345.68") == 6 and table.count("1234567") == 6


def test_a_wide_table_folds_instead_of_cutting_numbers(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    table = Table(title="wide")
    for i in range(7):
        table.add_column(f"column {i}", justify="right")
    table.add_row(*["12,345,678.90"] * 7)
    out_console().print(table)
    out = capsys.readouterr().out
    assert "…" not in out and all(len(line) <= 80 for line in out.splitlines())


def test_data_stats_fits_80_columns(tmp_path):
    result = invoke("data", "stats", "sample")
    assert result.exit_code == 0 and "…" not in result.output
    lines = [line for line in result.output.splitlines() if "counting tokens" not in line]
    assert all(len(line) <= 80 for line in lines), result.output
    assert "605.00" in result.output

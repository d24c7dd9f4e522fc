"""`data validate`: one constructed broken file per kind of bad input, each found at its exact place."""

from __future__ import annotations

import base64
import json

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.schema import encode_mask_png
from densecaption.data.validate import validate_dataset
from tests.conftest import make_doc, rect_mask, write_dataset

FILE = "complete/1-data.json"


def _set(doc: dict, path: tuple, value) -> dict:
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def _del(doc: dict, path: tuple) -> dict:
    node = doc
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return doc


def _png_of_size(w: int, h: int) -> str:
    return encode_mask_png(rect_mask(w, h, (0, 0, 10, 10)))


# (name, broken document or raw text, expected (severity, pointer) findings in FILE)
ERROR_CASES = [
    ("empty file", "", [("error", "")]),
    ("not json", '{"image": ', [("error", "")]),
    ("not an object", "[1, 2]", [("error", "")]),
    ("missing key", _del(make_doc(), ("short_caption",)), [("error", "/short_caption")]),
    ("mistyped key", _set(make_doc(), ("height",), "300"), [("error", "/height")]),
    ("mistyped mask key", _set(make_doc(), ("mask_data", "2", "area"), 1.5), [("error", "/mask_data/2/area")]),
    ("bool is not an int", _set(make_doc(), ("mask_data", "2", "idx"), True), [("error", "/mask_data/2/idx")]),
    ("bad quality", _set(make_doc(), ("mask_data", "3", "mask_quality"), 5),
     [("error", "/mask_data/3/mask_quality")]),
    ("png does not decode", _set(make_doc(), ("mask_data", "2", "outer_mask"), base64.b64encode(b"nope").decode()),
     [("error", "/mask_data/2/outer_mask")]),
    ("mask size differs", _set(make_doc(), ("mask_data", "2", "outer_mask"), _png_of_size(200, 150)),
     [("error", "/mask_data/2/outer_mask")]),
    ("bounds outside image", _set(make_doc(), ("mask_data", "3", "bounds", "bottomRight", "x"), 401),
     [("error", "/mask_data/3/bounds")]),
    ("bounds do not enclose mask", _set(make_doc(), ("mask_data", "2", "bounds", "topLeft", "x"), 51),
     [("error", "/mask_data/2/bounds")]),
    ("empty bounds", _set(make_doc(), ("mask_data", "2", "bounds", "bottomRight", "x"), 50),
     [("error", "/mask_data/2/bounds")]),
    ("parent does not exist", _set(make_doc(), ("mask_data", "3", "parent"), 42), [("error", "/mask_data/3/parent")]),
    ("parent does not list child", _set(make_doc(), ("mask_data", "1", "requirements"), []),
     [("error", "/mask_data/2/parent")]),
    ("key does not match idx", _set(make_doc(), ("mask_data", "3", "idx"), 4), [("error", "/mask_data/3/idx")]),
    ("summary names missing mask", _set(make_doc(), ("summaries", "m-9-sc"), ["x"]),
     [("error", "/summaries/m-9-sc")]),
    ("negative names missing mask", _set(make_doc(), ("negatives", "m-9-sc"), {"basic": ["x"]}),
     [("error", "/negatives/m-9-sc")]),
    ("score names missing mask", _set(make_doc(), ("clip_scores", "m-9-sc"), {"sum": 1.0}),
     [("error", "/clip_scores/m-9-sc")]),
    ("malformed summary key", _set(make_doc(), ("summaries", "mask-1"), ["x"]), [("error", "/summaries/mask-1")]),
    ("score not a number", _set(make_doc(), ("clip_scores", "base", "sum"), "high"),
     [("error", "/clip_scores/base/sum")]),
    ("summary list holds a number", _set(make_doc(), ("summaries", "base"), ["ok", 3]),
     [("error", "/summaries/base/1")]),
]

WARNING_CASES = [
    ("requirements name dropped masks", _set(make_doc(), ("mask_data", "1", "requirements"), [2, 17]),
     [("warning", "/mask_data/1/requirements")]),
    ("stale width/height", _set(make_doc(), ("width",), 800), [("warning", "")]),
    ("missing width/height", _del(make_doc(), ("height",)), [("warning", "")]),
    ("bare string summary", _set(make_doc(), ("summaries", "base"), "one summary"), [("warning", "/summaries/base")]),
]


def _findings(tmp_path, doc):
    write_dataset(tmp_path, {"1-data.json": doc, "2-data.json": make_doc()})
    report = validate_dataset(tmp_path)
    return report, [(f.severity, f.pointer) for f in report.findings if f.file == FILE]


@pytest.mark.parametrize("name, doc, expected", ERROR_CASES + WARNING_CASES, ids=[c[0] for c in
                                                                                ERROR_CASES + WARNING_CASES])
def test_each_bad_input_is_found_at_its_place(tmp_path, name, doc, expected):
    report, found = _findings(tmp_path, doc)
    assert found == expected, [str(f) for f in report.findings]
    assert not [f for f in report.findings if f.file != FILE]  # the good neighbour stays clean
    assert report.ok() == (expected[0][0] == "warning")
    assert not report.ok(strict=True)


def test_valid_dataset_is_clean(tmp_path):
    write_dataset(tmp_path, {"1-data.json": make_doc()})
    report = validate_dataset(tmp_path)
    assert report.findings == [] and report.files_checked == 1


def test_undecodable_photo(tmp_path):
    inner = write_dataset(tmp_path, {"1-data.json": make_doc()})
    (inner / "photos" / "photo.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    report = validate_dataset(tmp_path)
    assert [(f.file, f.pointer) for f in report.errors] == [(FILE, "/image")]
    assert "does not decode" in report.errors[0].reason


def test_missing_photo(tmp_path):
    inner = write_dataset(tmp_path, {"1-data.json": make_doc()})
    (inner / "photos" / "photo.jpg").unlink()
    report = validate_dataset(tmp_path)
    assert [(f.file, f.pointer) for f in report.errors] == [(FILE, "/image")]
    assert "not found" in report.errors[0].reason


def test_unreadable_bytes(tmp_path):
    inner = write_dataset(tmp_path, {"1-data.json": make_doc()})
    (inner / "complete" / "1-data.json").write_bytes(b"\xff\xfe\x00garbage")
    report = validate_dataset(tmp_path)
    assert [(f.file, f.pointer) for f in report.errors] == [(FILE, "")]


def test_file_in_no_split_and_split_naming_missing_file(tmp_path):
    write_dataset(tmp_path, {"1-data.json": make_doc(), "2-data.json": make_doc()},
                  splits={"test": ["1-data.json", "3-data.json"]})
    report = validate_dataset(tmp_path)
    got = {(f.severity, f.file, f.pointer) for f in report.findings}
    assert got == {("warning", "complete/2-data.json", ""), ("error", "splits.json", "/test/1")}


def test_mask_pixels_outside_photo_size_of_stale_header(tmp_path):
    # a mask drawn at the photo's size is fine even when width/height are stale
    doc = _set(make_doc(), ("height",), 10)
    report, found = _findings(tmp_path, doc)
    assert found == [("warning", "")]


def test_pointer_escapes_slash_and_tilde(tmp_path):
    doc = _set(make_doc(), ("summaries", "a/b~c"), ["x"])
    _, found = _findings(tmp_path, doc)
    assert found == [("error", "/summaries/a~1b~0c")]


# ------------------------------------------------------------------------------------------------ the CLI
def test_cli_exit_codes_and_json(tmp_path):
    runner = CliRunner()
    app = build_app()
    write_dataset(tmp_path / "good", {"1-data.json": make_doc()})
    assert runner.invoke(app, ["data", "validate", str(tmp_path / "good")]).exit_code == 0

    write_dataset(tmp_path / "warn", {"1-data.json": _del(make_doc(), ("width",))})
    assert runner.invoke(app, ["data", "validate", str(tmp_path / "warn")]).exit_code == 0
    assert runner.invoke(app, ["data", "validate", str(tmp_path / "warn"), "--strict"]).exit_code == 1

    write_dataset(tmp_path / "bad", {"1-data.json": _set(make_doc(), ("mask_data", "3", "parent"), 42)})
    result = runner.invoke(app, ["data", "validate", str(tmp_path / "bad"), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["errors"] == 1
    assert report["findings"][0] == {"file": FILE, "pointer": "/mask_data/3/parent",
                                     "reason": "parent 42 does not exist", "severity": "error"}


def test_cli_bad_path_is_one_line_not_a_traceback(tmp_path):
    result = CliRunner().invoke(build_app(), ["data", "validate", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "no such folder" in result.output


# ------------------------------------------------------------------------------------ every error of a file
def _many_errors() -> dict:
    """Errors of every kind at once: a missing field, a mistyped mask field, a missing parent, a broken PNG
    in a mask that is fine otherwise and in one with other errors, plus a dropped child (a warning)."""
    doc = _del(make_doc(), ("short_caption",))
    _set(doc, ("mask_data", "2", "area"), 1.5)
    _set(doc, ("mask_data", "2", "label"), 7)
    _set(doc, ("mask_data", "2", "outer_mask"), "!!! not base64")
    _set(doc, ("mask_data", "3", "parent"), 42)
    _set(doc, ("mask_data", "3", "outer_mask"), base64.b64encode(b"nope").decode())
    _set(doc, ("mask_data", "1", "requirements"), [2, 17])
    _set(doc, ("summaries", "m-2-sc"), ["the lid"])  # names mask 2, which exists though it has errors
    return doc


MANY_ERRORS = [
    ("error", "/short_caption"),
    ("error", "/mask_data/2/area"),
    ("error", "/mask_data/2/label"),
    ("warning", "/mask_data/1/requirements"),
    ("error", "/mask_data/3/parent"),
    ("error", "/mask_data/2/outer_mask"),
    ("error", "/mask_data/3/outer_mask"),
]


def test_every_error_of_a_file_is_reported(tmp_path):
    report, found = _findings(tmp_path, _many_errors())
    assert found == MANY_ERRORS, [str(f) for f in report.findings]


def test_findings_keep_file_then_document_order(tmp_path):
    write_dataset(tmp_path, {"2-data.json": _many_errors(), "1-data.json": _many_errors()})
    report = validate_dataset(tmp_path)
    got = [(f.file, f.severity, f.pointer) for f in report.findings]
    assert got == [(f"complete/{n}-data.json", *f) for n in (1, 2) for f in MANY_ERRORS]
    assert validate_dataset(tmp_path).findings == report.findings


def test_broken_png_reasons_are_short_and_clear(tmp_path):
    report, _ = _findings(tmp_path, _many_errors())
    reasons = {f.pointer: f.reason for f in report.findings}
    assert reasons["/mask_data/2/outer_mask"].startswith("mask PNG does not decode: not base64")
    assert reasons["/mask_data/3/outer_mask"] == "mask PNG does not decode: the bytes are not an image"

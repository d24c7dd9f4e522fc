"""`data show`: labels that never cover one another, outlines that stay apart, the output path and errors."""

from __future__ import annotations

import base64
import errno
import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.dci import DCIDataset
from densecaption.data.findings import RecordError
from densecaption.data.schema import DCIImage
from densecaption.data.show import annotation_figure, render_annotation, shrink
from densecaption.data.validate import validate_dataset
from tests.conftest import make_doc, mask_entry, write_dataset

SIZE = (400, 300)
ROOT_CAN_WRITE_ANYWHERE = hasattr(os, "geteuid") and os.geteuid() == 0


def _record(tmp_path: Path, masks: list[dict]) -> DCIImage:
    doc = make_doc(SIZE)
    doc["mask_data"] = {str(m["idx"]): m for m in masks}
    doc["mask_keys"] = list(doc["mask_data"])
    for field in ("summaries", "negatives", "clip_scores"):
        doc[field] = {"base": doc[field]["base"]}
    write_dataset(tmp_path, {"1-data.json": doc}, photo_size=SIZE)
    return DCIDataset.open(tmp_path).read("1-data.json")


def _shared_corner_masks(n: int) -> list[dict]:
    """``n`` top-level masks whose boxes all start at (20, 20), from tiny to most of the photo."""
    return [mask_entry(i, -1, [], (20, 20, 20 + 12 * i, 20 + 9 * i), SIZE, f"thing number {i}")
            for i in range(1, n + 1)]


def _rects(fig) -> dict[str, list]:
    ax = fig.axes[0]
    labels = [t for t in ax.texts if (t.get_gid() or "").startswith("label-")]
    return {"text": [t.get_window_extent() for t in labels],
            "box": [t.get_bbox_patch().get_window_extent() for t in labels]}


def _intersect(a, b) -> bool:
    return min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)


# --------------------------------------------------------------------------------------------- labels
def test_labels_never_cover_one_another(tmp_path):
    record = _record(tmp_path, _shared_corner_masks(24))
    fig = annotation_figure(record)
    fig.canvas.draw()
    rects = _rects(fig)
    assert len(rects["text"]) == 24
    title = fig.axes[0].title.get_window_extent()
    for kind, boxes in rects.items():
        for a, b in itertools.combinations(boxes + [title], 2):
            assert not _intersect(a, b), (kind, a, b)
    # 24 labels do not all fit by their masks: some go to the column beside the photo, with leader lines
    frame = fig.axes[0].bbox
    beside = [r for r in rects["box"] if r.x0 >= frame.x1]
    assert beside and len(fig.axes[0].lines) == len(beside)


def test_labels_near_their_mask_when_there_is_room(tmp_path):
    record = _record(tmp_path, _shared_corner_masks(3))
    fig = annotation_figure(record)
    fig.canvas.draw()
    frame = fig.axes[0].bbox
    assert all(frame.x0 <= r.x0 and r.x1 <= frame.x1 for r in _rects(fig)["box"])
    assert not fig.axes[0].lines


# ------------------------------------------------------------------------------------------- outlines
def _outline_points(fig, idx: int) -> tuple[np.ndarray, float]:
    """Display-pixel vertices of mask ``idx``'s outline and its line width in pixels."""
    ax = fig.axes[0]
    (cs,) = [c for c in ax.collections if c.get_gid() == f"mask-{idx}"]
    points = np.concatenate([p.vertices for p in cs.get_paths() if len(p.vertices)])
    return ax.transData.transform(points), float(cs.get_linewidths()[0]) * fig.dpi / 72


def _gap(fig, a: int, b: int) -> float:
    """Least distance between the strokes of two outlines, in display pixels."""
    (pa, wa), (pb, wb) = _outline_points(fig, a), _outline_points(fig, b)
    nearest = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1)).min()
    return nearest - (wa + wb) / 2


def test_outlines_of_masks_sharing_an_edge_stay_apart(tmp_path):
    masks = [mask_entry(1, -1, [3], (20, 50, 200, 250), SIZE, "left"),
             mask_entry(2, -1, [], (200, 50, 380, 250), SIZE, "right"),    # shares x=200 with mask 1
             mask_entry(3, 1, [], (20, 50, 100, 150), SIZE, "corner")]     # shares mask 1's top-left corner
    fig = annotation_figure(_record(tmp_path, masks))
    assert _gap(fig, 1, 2) > 1.0
    assert _gap(fig, 1, 3) > 1.0


def test_shrink_keeps_thin_masks():
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:15, 5:25] = True
    assert shrink(mask, 2).sum() == 6 * 16 and shrink(mask, 0) is mask
    line = np.zeros((20, 30), dtype=bool)
    line[10, 3:27] = True
    assert shrink(line, 3).any()


# ------------------------------------------------------------------------------------------ out paths
def _show(tmp_path: Path, out: Path | str, doc: dict | None = None):
    write_dataset(tmp_path / "data", {"1-data.json": doc or make_doc()})
    return CliRunner().invoke(build_app(), ["data", "show", str(tmp_path / "data"), "1", "--out", str(out)])


def test_out_folder_gets_the_record_id(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    result = _show(tmp_path, folder)
    assert result.exit_code == 0, result.output
    assert (folder / "1-data.png").is_file() and not (tmp_path / "pictures.png").exists()
    assert result.output.strip() == f"wrote {folder / '1-data.png'}"


def test_out_without_suffix_prints_the_file_written(tmp_path):
    result = _show(tmp_path, tmp_path / "picture")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "picture.png").is_file()
    assert result.output.strip() == f"wrote {tmp_path / 'picture.png'}"


def _one_error_line(result, exit_code: int) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_out_under_a_file_is_one_error_line(tmp_path):
    (tmp_path / "plain").write_text("not a folder")
    line = _one_error_line(_show(tmp_path, tmp_path / "plain" / "x.png"), 2)
    assert str(tmp_path / "plain") in line


def test_unwritable_out_is_one_error_line(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def refuse(self, path, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(Figure, "savefig", refuse)
    out = tmp_path / "x.png"
    line = _one_error_line(_show(tmp_path, out), 2)
    assert line == f"error: {out}: {os.strerror(errno.EACCES)}"


@pytest.mark.skipif(ROOT_CAN_WRITE_ANYWHERE, reason="root writes through file permissions")
def test_read_only_file_and_folder_are_one_error_line(tmp_path):
    out = tmp_path / "x.png"
    out.write_bytes(b"")
    out.chmod(0o444)
    assert _one_error_line(_show(tmp_path, out), 2) == f"error: {out}: {os.strerror(errno.EACCES)}"
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    line = _one_error_line(_show(tmp_path, locked / "sub" / "x.png"), 2)
    assert line.endswith(os.strerror(errno.EACCES))


# ---------------------------------------------------------------------------------------- broken masks
@pytest.mark.parametrize("garbage", [base64.b64encode(b"nope").decode(), "!!! not base64"])
def test_broken_mask_png_is_one_error_line_like_validate(tmp_path, garbage):
    doc = make_doc()
    doc["mask_data"]["3"]["outer_mask"] = garbage
    line = _one_error_line(_show(tmp_path, tmp_path / "x.png", doc), 1)
    assert "1-data.json" in line and "#/mask_data/3/outer_mask: mask PNG does not decode" in line
    (finding,) = validate_dataset(tmp_path / "data").findings
    assert finding.pointer == "/mask_data/3/outer_mask" and line.endswith(finding.reason)
    assert not (tmp_path / "x.png").exists()


def test_broken_mask_png_raises_record_error(tmp_path):
    doc = make_doc()
    doc["mask_data"]["2"]["outer_mask"] = "AAAA"
    write_dataset(tmp_path, {"1-data.json": doc})
    record = DCIDataset.open(tmp_path).read("1-data.json")
    with pytest.raises(RecordError) as caught:
        render_annotation(record, tmp_path / "x.png")
    (finding,) = caught.value.findings
    assert (finding.file, finding.pointer) == ("1-data.json", "/mask_data/2/outer_mask")


@pytest.mark.parametrize("photo", [None, b"\xff\xd8 not really a jpeg"])
def test_missing_or_broken_photo_is_one_error_line(tmp_path, photo):
    write_dataset(tmp_path / "data", {"1-data.json": make_doc()})
    path = tmp_path / "data" / "densely_captioned_images" / "photos" / "photo.jpg"
    if photo is None:
        path.unlink()
    else:
        path.write_bytes(photo)
    result = CliRunner().invoke(build_app(), ["data", "show", str(tmp_path / "data"), "1", "--out",
                                              str(tmp_path / "x.png")])
    line = _one_error_line(result, 1)
    assert "1-data.json#/image: photo 'photo.jpg'" in line

"""What ``quality recall|precision|clipscore`` read and write: every caption file the toolkit writes (made by
the real commands on the bundled sample), bad bytes and bad text in a captions file, and where results go."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.fake_server import FakeChatServer
from densecaption.cli import build_app
from densecaption.data.sample import sample_root
from densecaption.quality.captions import parse_caption_line, read_captions
from tests.generation_fakes import fake_llm
from tests.test_quality_clipscore import tiny_clip  # noqa: F401  (a fixture)

PHOTOS = sample_root() / "photos"


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The caption files of the toolkit on the sample: a caption set (``compose set``: captions.jsonl and the
    diffusers images/metadata.jsonl) and ``caption``'s JSONL (against the fake server)."""
    root = tmp_path_factory.mktemp("written")
    result = invoke("compose", "set", "--data", "sample", "--precision", "0.5", "--submasks", "1", "--split",
                    "test", "--format", "folder,jsonl", "--out", root / "set")
    assert result.exit_code == 0, result.output
    with FakeChatServer(fake_llm) as server:
        result = invoke("caption", "--images", PHOTOS, "--vlm", f"openai:{server.url}#fake", "--out",
                        root / "caps.jsonl")
    assert result.exit_code == 0, result.output
    return root


def test_a_set_line_names_its_photo_not_its_annotation():
    line = {"image_id": "horse-data", "file": "horse-data.json", "photo": "horse.jpg", "text": "A horse.",
            "labels": [1], "subcaptions": 0, "short": False, "parts": [], "image": "images/horse.jpg"}
    record = parse_caption_line(line, 1)
    assert record.id == "horse.jpg" and record.image == "images/horse.jpg" and record.also == ("horse.jpg",)
    assert record.image_path(PHOTOS) == PHOTOS / "horse.jpg"
    assert parse_caption_line({"file": "a.jpg", "caption": "x"}, 1).image_path(Path("/nowhere")) == \
        Path("/nowhere/a.jpg")  # the first name, so a message can say what is missing
    assert parse_caption_line({"text": "x"}, 3).image_path(PHOTOS) is None


@pytest.mark.parametrize("captions, images", [
    ("caps.jsonl", PHOTOS),                               # `caption`: file + caption
    ("set/captions.jsonl", "set"),                        # `compose`: image = images/<photo> in the set
    ("set/captions.jsonl", "set/images"),                 # ... or its photo under the set's image folder
    ("set/captions.jsonl", PHOTOS),                       # ... or under DCI's photos/
    ("set/images/metadata.jsonl", "set/images"),          # the diffusers folder: file_name + text
    ("set", "set"),                                       # a set folder stands for its captions.jsonl
])
def test_clipscore_and_recall_read_every_caption_file_the_toolkit_writes(written, tiny_clip, captions,  # noqa: F811
                                                                        images, tmp_path):
    captions = written / captions
    images = images if isinstance(images, Path) else written / images
    lines = read_captions(captions)[0]
    result = invoke("quality", "clipscore", "--captions", captions, "--images", images, "--model",
                    f"open_clip:local-dir:{tiny_clip}", "--device", "cpu", "--out", tmp_path / "cs.json")
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.output
    data = json.loads((tmp_path / "cs.json").read_text())
    assert data["without_image"] == [] and len(data["per_caption"]) == len(lines) > 0
    assert {r["id"] for r in data["per_caption"]} <= {p.name for p in PHOTOS.iterdir()}
    recall = invoke("quality", "recall", "--captions", captions, "--out", tmp_path / "r.json")
    assert recall.exit_code == 0, recall.output
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["captions"] == len(lines)


def test_a_sets_two_caption_files_give_the_same_ids_and_scores(written, tiny_clip, tmp_path):  # noqa: F811
    scores = {}
    for name in ("captions.jsonl", "images/metadata.jsonl"):
        out = tmp_path / f"{name.replace('/', '_')}.json"
        result = invoke("quality", "clipscore", "--captions", written / "set" / name, "--images",
                        written / "set" / "images", "--model", f"open_clip:local-dir:{tiny_clip}", "--device",
                        "cpu", "--out", out)
        assert result.exit_code == 0, result.output
        data = json.loads(out.read_text())
        assert data["captioner"] == "set"  # the set's folder, not "captions" or "images"
        scores[name] = {r["id"]: r["clip_s"] for r in data["per_caption"]}
    assert scores["captions.jsonl"] == pytest.approx(scores["images/metadata.jsonl"])


def test_no_out_prints_only_and_writes_nothing(written, tiny_clip, tmp_path):  # noqa: F811
    before = tree(written)
    recall = invoke("quality", "recall", "--captions", written / "set" / "captions.jsonl")
    assert recall.exit_code == 0, recall.output
    assert "Caption recall" in recall.output and "wrote" not in recall.output
    clip = invoke("quality", "clipscore", "--captions", written / "caps.jsonl", "--images", PHOTOS, "--model",
                  f"open_clip:local-dir:{tiny_clip}", "--device", "cpu")
    assert clip.exit_code == 0, clip.output
    assert "wrote" not in clip.output
    assert tree(written) == before  # nothing beside the captions, nothing in the set
    for command in ("recall", "clipscore"):
        assert "nothing is written beside" in re.sub(r"[│\s]+", " ", invoke("quality", command, "--help").output)
    precision = invoke("quality", "precision", "--captions", written / "caps.jsonl", "--images", PHOTOS, "--llm",
                       "openai:http://127.0.0.1:9#x", "--vlm", "openai:http://127.0.0.1:9#x")
    assert precision.exit_code == 2 and "--out" in precision.output  # a job: its log needs a place


def _quality_commands(captions: Path, out: Path | None = None) -> list[list]:
    """Each quality command on ``captions``, stopping before any model loads."""
    url = "openai:http://127.0.0.1:9#x"
    tail = ["--out", out] if out is not None else []
    return [["quality", "recall", "--captions", captions, *tail],
            ["quality", "clipscore", "--captions", captions, "--images", PHOTOS, "--model",
             "open_clip:local-dir:/nowhere", *tail],
            ["quality", "precision", "--captions", captions, "--images", PHOTOS, "--llm", url, "--vlm", url,
             *(tail or ["--out", captions.with_suffix(".fs.json")])]]


def test_a_line_that_is_not_utf8_is_one_error_line_with_file_and_line(tmp_path):
    captions = tmp_path / "caps.jsonl"
    latin1 = b'{"file": "clock.jpg", "caption": "Une horloge \xe0 l\'heure."}\n'
    captions.write_bytes(b'{"file": "horse.jpg", "caption": "A horse."}\n' + latin1)
    for args in _quality_commands(captions):
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert lines[-1] == f"error: {captions}:2: not UTF-8 text (byte 0xe0 at column {latin1.index(0xe0) + 1}: " \
                            "invalid continuation byte); save the file as UTF-8", args


def test_a_lone_surrogate_in_a_caption_is_a_bad_line(tmp_path):
    captions = tmp_path / "caps.jsonl"
    captions.write_text('{"file": "horse.jpg", "caption": "A horse."}\n'
                        '{"file": "clock.jpg", "caption": "A clock \\ud800."}\n'
                        '{"file": "coffee.jpg", "caption": "Coffee.", "references": ["\\udfff"]}\n')
    records, skipped = read_captions(captions)
    assert [r.id for r in records] == ["horse.jpg"]
    assert skipped[0].startswith(f"{captions}:2: /caption holds a lone UTF-16 surrogate")
    assert skipped[1].startswith(f"{captions}:3: /references/0 holds a lone UTF-16 surrogate")
    out = tmp_path / "r.json"
    result = invoke("quality", "recall", "--captions", captions, "--out", out)
    assert result.exit_code == 0 and json.loads(out.read_text())["skipped_lines"] == 2
    strict = invoke("quality", "recall", "--captions", captions, "--strict")
    assert strict.exit_code == 2 and f"error: {captions}:2: /caption holds a lone" in strict.output


def test_out_in_a_place_that_cannot_be_written(tmp_path, monkeypatch):
    captions = tmp_path / "caps.jsonl"
    captions.write_text('{"file": "horse.jpg", "caption": "A horse."}\n')
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for args in _quality_commands(captions, blocker / "r.json"):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert f"error: {blocker}: not a folder (a file of that name is in the way)" in result.output

    import densecaption.quality.report as report

    def denied(path, text):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(report, "atomic_write_text", denied)
    result = invoke("quality", "recall", "--captions", captions, "--out", tmp_path / "r.json")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == f"error: {tmp_path / 'r.json'}: Permission denied"


def test_caption_out_in_a_place_that_cannot_be_written(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    early = invoke("caption", "--images", PHOTOS, "--vlm", "openai:http://127.0.0.1:9#x", "--out",
                   blocker / "caps.jsonl")
    assert early.exit_code == 2 and f"error: {blocker}: not a folder" in early.output

    import densecaption.generation.captions as captions

    def denied(path, text):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(captions, "atomic_write_text", denied)
    with FakeChatServer(fake_llm) as server:
        late = invoke("caption", "--images", PHOTOS, "--vlm", f"openai:{server.url}#fake", "--out",
                      tmp_path / "caps.jsonl")
    assert late.exit_code == 2, late.output
    assert late.output.strip().splitlines()[-1] == f"error: {tmp_path / 'caps.jsonl'}: Permission denied"

"""Every command that reads data, fed broken copies of the sample: each ends with an exit code of 0, 1 or 2,
no traceback, and at most one "error:" per line.

The inputs are a 3-record copy of the sample (with a captions JSONL over its photos and one sDCI result
file), each broken one way; the commands run in-process through ``CliRunner`` with a tiny random CLIP and,
for ``caption``, the fake chat server. Permission errors are simulated (tests run as root, who may read
anything): opening a denied path raises ``PermissionError`` as it would for another user.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image
from typer.testing import CliRunner

from benchmarks.fake_server import FakeChatServer
from densecaption.cli import build_app
from densecaption.data.sample import write_sample
from tests.generation_fakes import fake_llm

KEEP = ("astronaut", "china", "coffee")
BROKEN = "astronaut"  # the record each input breaks (first of its split, so --limit runs reach it)


@dataclass
class Inputs:
    """One broken copy: the DCI folder, the photos a captioner reads, captions over them, a result folder,
    and a folder for the commands' outputs."""

    data: Path
    images: Path
    captions: Path
    results: Path
    out: Path

    @property
    def inner(self) -> Path:
        return self.data / "densely_captioned_images"

    def annotations(self, name: str = BROKEN) -> list[Path]:
        return [self.inner / folder / f"{name}-data.json" for folder in ("annotations", "complete")]

    @property
    def photo(self) -> Path:
        return self.images / f"{BROKEN}.jpg"

    @property
    def result(self) -> Path:
        return next(self.results.glob("*.json"))


# --------------------------------------------------------------------------------------------- fixtures
def invoke(*args: object):
    return CliRunner(env={"COLUMNS": "80"}).invoke(build_app(), [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("tiny-clip")
    assert invoke("models", "init-random", "ViT-B-32", out, "--tiny").exit_code == 0
    return f"open_clip:local-dir:{out}"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, tiny) -> Path:
    """The sample cut to three records (one split each for train, test), its captions and one result."""
    base = tmp_path_factory.mktemp("pristine")
    inner = write_sample(base / "data")
    for folder in ("annotations", "complete", "photos"):
        for path in (inner / folder).iterdir():
            if path.name.split("-data")[0].split(".")[0] not in KEEP:
                path.unlink()
    files = [f"{name}-data.json" for name in KEEP]
    (inner / "splits.json").write_text(json.dumps({"train": files, "valid": [], "test": files}))
    lines = []
    for name in KEEP:
        doc = json.loads((inner / "complete" / f"{name}-data.json").read_text())
        lines.append(json.dumps({"file": doc["image"], "caption": doc["short_caption"][:200]}))
    (base / "captions.jsonl").write_text("\n".join(lines) + "\n")
    result = invoke("bench", "sdci", "--data", base / "data", "--model", tiny, "--device", "cpu", "--out",
                    base / "results")
    assert result.exit_code == 0, result.output
    return base


def copy_inputs(pristine: Path, tmp_path: Path) -> Inputs:
    shutil.copytree(pristine, tmp_path / "in")
    base = tmp_path / "in"
    return Inputs(data=base / "data", images=base / "data" / "densely_captioned_images" / "photos",
                  captions=base / "captions.jsonl", results=base / "results", out=tmp_path / "out")


# --------------------------------------------------------------------------------------------- broken inputs
def deny(monkeypatch, paths: list[Path]) -> None:
    """Opening any of ``paths`` raises ``PermissionError`` (what mode 000 does to a user who is not root)."""
    denied = {os.path.abspath(p) for p in paths}
    real_open = io.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(os.fspath(file)) in denied:
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(builtins, "open", guarded_open)


def _edit_annotations(inputs: Inputs, edit: Callable[[dict], None]) -> None:
    for path in inputs.annotations():
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))  # ensure_ascii: a lone surrogate is written as its \\ud800 escape


def damaged_json(inputs: Inputs, monkeypatch, args: list) -> None:
    for path in [*inputs.annotations(), inputs.result]:
        text = path.read_text()
        path.write_text(text[:len(text) // 2])
    with inputs.captions.open("a") as f:
        f.write('{"file": "china.jpg", "capt\n')
    inputs.photo.write_bytes(inputs.photo.read_bytes()[:200])  # a damaged JPEG for the captioner


def missing_photo(inputs: Inputs, monkeypatch, args: list) -> None:
    inputs.photo.unlink()


def garbage_mask(inputs: Inputs, monkeypatch, args: list) -> None:
    def edit(doc: dict) -> None:
        first = next(iter(doc["mask_data"]))
        doc["mask_data"][first]["outer_mask"] = "!!not*base64~~"
    _edit_annotations(inputs, edit)


def unreadable_annotation(inputs: Inputs, monkeypatch, args: list) -> None:
    deny(monkeypatch, [*inputs.annotations(), inputs.result, inputs.captions])


def unreadable_photo(inputs: Inputs, monkeypatch, args: list) -> None:
    deny(monkeypatch, [inputs.photo])


def out_is_a_file(inputs: Inputs, monkeypatch, args: list) -> None:
    """The command's --out names an existing file (where most commands expect a folder)."""
    for flag, value in zip(args, args[1:]):
        if flag in ("--out", "-o"):
            value.parent.mkdir(parents=True, exist_ok=True)
            value.write_text("an existing file\n")


def lone_surrogate(inputs: Inputs, monkeypatch, args: list) -> None:
    def edit(doc: dict) -> None:
        doc["short_caption"] = "an astronaut \ud800 in a suit"
        if "summaries" in doc:
            doc["summaries"]["base"][0] = "an astronaut \udfff smiling"
    _edit_annotations(inputs, edit)
    with inputs.captions.open("a") as f:
        f.write('{"file": "china.jpg", "caption": "a plate \\ud800 of china"}\n')
    result = json.loads(inputs.result.read_text())
    result["model"] += "\ud800"
    inputs.result.write_text(json.dumps(result))


def not_utf8(inputs: Inputs, monkeypatch, args: list) -> None:
    for path in inputs.annotations():
        path.write_bytes(path.read_bytes().replace(b'"short_caption": "', b'"short_caption": "caf\xe9 ', 1))
    with inputs.captions.open("ab") as f:
        f.write(b'{"file": "china.jpg", "caption": "caf\xe9 au lait"}\n')
    inputs.result.write_bytes(inputs.result.read_bytes().replace(b'"model": "', b'"model": "\xff', 1))


def stale_1x1_photo(inputs: Inputs, monkeypatch, args: list) -> None:
    Image.new("RGB", (1, 1), "red").save(inputs.photo)  # the annotation still says 512x512


def empty_dataset(inputs: Inputs, monkeypatch, args: list) -> None:
    for folder in ("annotations", "complete", "photos"):
        for path in (inputs.inner / folder).iterdir():
            path.unlink()
    (inputs.inner / "splits.json").write_text(json.dumps({"train": [], "valid": [], "test": []}))
    inputs.captions.write_text("")
    for path in inputs.results.iterdir():
        path.unlink()


BROKEN_INPUTS: dict[str, Callable[[Inputs, object, list], None]] = {
    "damaged-json": damaged_json, "missing-photo": missing_photo, "garbage-mask": garbage_mask,
    "unreadable-annotation": unreadable_annotation, "unreadable-photo": unreadable_photo,
    "out-is-a-file": out_is_a_file, "lone-surrogate": lone_surrogate, "not-utf8": not_utf8,
    "stale-1x1-photo": stale_1x1_photo, "empty-dataset": empty_dataset,
}


# --------------------------------------------------------------------------------------------- commands
def _commands(i: Inputs, tiny: str, llm: str) -> dict[str, list[object]]:
    data, out = i.data, i.out
    return {
        "data validate": ["data", "validate", data],
        "data stats": ["data", "stats", data],
        "data show": ["data", "show", data, BROKEN, "-o", out / "show.png"],
        "data clip-scores": ["data", "clip-scores", "--data", data, "--model", tiny, "--device", "cpu",
                             "--out", out / "scored"],
        "bench sdci": ["bench", "sdci", "--data", data, "--model", tiny, "--device", "cpu", "--out", out / "res"],
        "report sdci": ["report", "sdci", i.results],
        "compose set": ["compose", "set", "--data", data, "--precision", "0.5", "--submasks", "1", "--split",
                        "test", "--format", "jsonl", "--out", out / "set"],
        "compose grid": ["compose", "grid", "--data", data, "--precisions", "0,1", "--submasks", "0,1",
                         "--split", "test", "--format", "jsonl", "--out", out / "grid"],
        "quality recall": ["quality", "recall", "--captions", i.captions, "--out", out / "recall.json"],
        "quality clipscore": ["quality", "clipscore", "--captions", i.captions, "--images", i.images, "--model",
                              tiny, "--device", "cpu", "--out", out / "clipscore.json"],
        "caption": ["caption", "--images", i.images, "--vlm", llm, "--out", out / "captions.jsonl",
                    "--concurrency", "2"],
        "train clip": ["train", "clip", "--data", data, "--model", tiny, "--out", out / "run", "--epochs", "1",
                       "--batch-size", "4", "--split", "test", "--valid-split", ""],
        "generate negatives --rules": ["generate", "negatives", "--data", data, "--rules", "--out", out / "neg",
                                       "--split", "test", "--limit", "2", "--no-masks"],
    }


COMMANDS = list(_commands(Inputs(*[Path()] * 5), "", ""))


@pytest.fixture(scope="module", autouse=True)
def parsers_read_once():
    """`generate negatives --rules` runs once per broken input and would read WordNet (about 10 s) and load
    spaCy each time; the sweep breaks neither, so each is read once for the module (the real loaders, cached)."""
    import functools

    from densecaption import language
    from densecaption.generation import rules

    patch = pytest.MonkeyPatch()
    patch.setattr(rules, "_load_wordnet", functools.lru_cache(maxsize=None)(rules._load_wordnet))
    patch.setattr(language, "_spacy_load", functools.lru_cache(maxsize=None)(language._spacy_load))
    yield
    patch.undo()


@pytest.fixture(scope="module")
def llm():
    with FakeChatServer(fake_llm) as server:
        yield f"openai:{server.url}#fake"


def check_clean(result) -> None:
    """The sweep's contract: a known exit code, no traceback, one "error:" at most per line."""
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{type(result.exception).__name__}: {result.exception}\n{output}"
    assert result.exit_code in (0, 1, 2), output
    assert "Traceback" not in output, output
    assert all(line.count("error:") <= 1 for line in output.splitlines()), output


@pytest.mark.parametrize("broken", list(BROKEN_INPUTS))
@pytest.mark.parametrize("command", COMMANDS)
def test_broken_input(command, broken, pristine, tiny, llm, tmp_path, monkeypatch):
    inputs = copy_inputs(pristine, tmp_path)
    args = _commands(inputs, tiny, llm)[command]
    BROKEN_INPUTS[broken](inputs, monkeypatch, args)
    check_clean(invoke(*args))

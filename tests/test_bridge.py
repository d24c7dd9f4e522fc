"""``compose from-captions``: `caption` output -> a caption set that `train t2i` and `quality` read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from benchmarks.fake_server import FakeChatServer, last_user_text
from densecaption.cli import build_app

LONG = "a red cube " * 40  # 40 x 3 one-token words = 120 tokens, + start and end = 122 CLIP tokens
SHORT = "a red cube"  # 3 + 2 = 5 CLIP tokens


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for colour in ("red", "green", "blue"):
        Image.new("RGB", (32, 24), colour).save(folder / f"{colour}.jpg")
    return folder


def write_lines(path: Path, captions: dict[str, str], model: str = "hf:tiny", weights: str = "random") -> Path:
    path.write_text("".join(json.dumps({"file": f, "caption": c, "model": model, "prompt": "Describe the image "
                                        "concisely", "weights": weights}) + "\n" for f, c in captions.items()))
    return path


def test_bridged_set_keeps_and_reports_long_captions_and_is_read_by_train_and_quality(tmp_path, images):
    from densecaption.quality.captions import captioner_name, read_captions as quality_captions
    from densecaption.training.t2i_data import read_captions as train_captions

    caps = write_lines(tmp_path / "caps.jsonl", {"blue.jpg": LONG, "green.jpg": "a green square", "red.jpg": SHORT})
    result = invoke("compose", "from-captions", "--captions", caps, "--images", images, "--out", tmp_path / "set")
    assert result.exit_code == 0, result.output
    # 1 of 3 over 77 tokens: 33.3%, the longest 122 tokens
    assert "1 of 3 captions over 77 CLIP tokens (33.3%; longest 122 tokens: blue.jpg)" in result.output
    assert "(captioner weights: random)" in result.output
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["captioner"] == {"model": "hf:tiny", "prompt": "Describe the image concisely", "weights": "random"}
    assert manifest["data"]["sha256"] == hashlib.sha256(caps.read_bytes()).hexdigest()
    assert manifest["over_limit"]["over"] == 1 and manifest["over_limit"]["over_files"] == ["blue.jpg"]
    clip = manifest["tokens"][0]
    assert clip["limit"] == 77 and clip["captions_truncated"] == 1 and clip["tokens"]["max"] == 122
    names = "".join(n + "\n" for n in ["blue.jpg", "green.jpg", "red.jpg"])
    assert manifest["image_set"]["count"] == 3
    assert manifest["image_set"]["sha256"] == hashlib.sha256(names.encode()).hexdigest()
    data = train_captions(str(tmp_path / "set"))  # the real reader of train t2i, lineage included
    assert [r.text for r in data.rows] == [LONG.strip(), "a green square", SHORT]
    assert data.manifest["captioner"]["model"] == "hf:tiny" and data.parts_from == "captions.jsonl"
    records, skipped = quality_captions(tmp_path / "set")
    assert not skipped and len(records) == 3
    assert all(r.image_path(tmp_path / "set").is_file() for r in records)
    assert captioner_name(records, tmp_path / "set") == "hf:tiny"
    again = invoke("compose", "from-captions", "--captions", caps, "--images", images, "--out", tmp_path / "set")
    assert again.exit_code == 2 and "use --overwrite" in again.output
    assert not list(tmp_path.glob(".set.*"))  # no temporary folder left behind


def test_drop_leaves_long_captions_out_and_lists_them(tmp_path, images):
    caps = write_lines(tmp_path / "caps.jsonl", {"blue.jpg": LONG, "red.jpg": SHORT})
    result = invoke("compose", "from-captions", "--captions", caps, "--images", images, "--out", tmp_path / "set",
                    "--over-limit", "drop")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["over_limit"]["dropped"] == ["blue.jpg"] and manifest["counts"]["captions"] == 1
    assert manifest["tokens"][0]["captions_truncated"] == 0
    meta = (tmp_path / "set" / "images" / "metadata.jsonl").read_text().splitlines()
    assert [json.loads(m)["file_name"] for m in meta] == ["red.jpg"]


def test_reask_keeps_a_reply_that_fits_else_the_shorter(tmp_path, images):
    def respond(body):  # a fitting reply for the blue image only; the green one gets a still longer reply
        assert "concisely in one short sentence" in last_user_text(body)
        return SHORT if _asked_about(body) == "blue" else LONG + "more words"

    caps = write_lines(tmp_path / "caps.jsonl", {"blue.jpg": LONG, "green.jpg": LONG, "red.jpg": SHORT})
    with FakeChatServer(respond) as server:
        result = invoke("compose", "from-captions", "--captions", caps, "--images", images, "--out",
                        tmp_path / "set", "--over-limit", "reask", "--vlm", f"openai:{server.url}#fake")
        asked = len(server.requests)
    assert result.exit_code == 0, result.output
    assert asked == 2  # only the two captions over the limit
    report = json.loads((tmp_path / "set" / "manifest.json").read_text())["over_limit"]
    by_file = {a["file"]: a for a in report["reasked"]}
    assert by_file["blue.jpg"]["kept"] == "reply" and by_file["blue.jpg"]["tokens_reply"] == 5
    # the green reply: 122 - 2 + 2 ("more", "words") = 124 tokens > 122: the original (shorter) stays
    assert by_file["green.jpg"]["kept"] == "original" and by_file["green.jpg"]["tokens_reply"] == 124
    assert report["still_over"] == 1
    lines = [json.loads(x) for x in (tmp_path / "set" / "captions.jsonl").read_text().splitlines()]
    assert lines[0]["text"] == SHORT and lines[0]["original"]["tokens"] == 122


def _asked_about(body) -> str:
    """The colour of the (one-colour) image a request carries."""
    import base64
    import io

    for message in body["messages"]:
        for part in message.get("content") if isinstance(message.get("content"), list) else []:
            if part.get("type") == "image_url":
                data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                r, g, b = Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))
                return "blue" if b > max(r, g) else "green" if g > r else "red"
    return ""


def test_bad_input_ends_in_one_line(tmp_path, images):
    mixed = tmp_path / "mixed.jsonl"
    write_lines(mixed, {"red.jpg": SHORT})
    with mixed.open("a") as f:
        f.write(json.dumps({"file": "blue.jpg", "caption": SHORT, "model": "other"}) + "\n")
    result = invoke("compose", "from-captions", "--captions", mixed, "--images", images, "--out", tmp_path / "a")
    assert result.exit_code == 2 and "2 captioners" in result.output and "split the file" in result.output
    missing = write_lines(tmp_path / "missing.jsonl", {"red.jpg": SHORT, "nope.jpg": SHORT})
    result = invoke("compose", "from-captions", "--captions", missing, "--images", images, "--out", tmp_path / "b")
    assert result.exit_code == 1 and f"{missing}:2: image 'nope.jpg' not found" in result.output
    result = invoke("compose", "from-captions", "--captions", missing, "--images", images, "--out", tmp_path / "c",
                    "--over-limit", "reask")
    assert result.exit_code == 2 and "needs --vlm" in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

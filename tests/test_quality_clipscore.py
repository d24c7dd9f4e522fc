"""``quality clipscore``: CLIPScore and RefCLIPScore against an independent computation with open_clip, on a
tiny random model and photos of the bundled sample."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from densecaption.cli import build_app, quality
from densecaption.data.sample import sample_root

PHOTOS = sample_root() / "photos"
CAPTIONS = [("horse.jpg", "A horse on a field."), ("clock.jpg", "A clock on a wall."),
            ("horse.jpg", "A brown animal."), ("coffee.jpg", "A cup of coffee.")]
REFS = {"horse.jpg": ["A horse.", "An animal in a meadow."], "coffee.jpg": ["Coffee in a mug."]}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-clip")
    result = CliRunner().invoke(build_app(), ["models", "init-random", "ViT-B-32", str(out), "--tiny", "--seed", "5"])
    assert result.exit_code == 0, result.output
    return out


def independent(folder, prefix="A photo depicts "):
    net, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    net.eval()

    def text(t):
        with torch.no_grad():
            f = net.encode_text(tokenizer([prefix + t])).double()
        return f / f.norm()

    def image(name):
        with torch.no_grad():
            f = net.encode_image(preprocess(Image.open(PHOTOS / name).convert("RGB")).unsqueeze(0)).double()
        return f / f.norm()

    clip_s, ref_s = [], []
    for name, caption in CAPTIONS:
        c = text(caption)
        s = 2.5 * max(float(image(name) @ c.T), 0.0)
        clip_s.append(s)
        refs = REFS.get(name)
        if refs:
            r = max(max(float(text(ref) @ c.T) for ref in refs), 0.0)
            ref_s.append(0.0 if s + r == 0 else 2 * s * r / (s + r))
    return clip_s, ref_s


def test_clipscore_and_refclipscore_match_an_independent_computation(tmp_path, tiny_clip):
    captions = tmp_path / "caps.jsonl"
    captions.write_text("".join(json.dumps({"file": f, "caption": c}) + "\n" for f, c in CAPTIONS)
                        + json.dumps({"file": "nowhere.jpg", "caption": "A ghost."}) + "\n")
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"file": "horse.jpg", "references": REFS["horse.jpg"]}) + "\n"
                    + json.dumps({"file": "coffee.jpg", "text": REFS["coffee.jpg"][0]}) + "\n")
    result = CliRunner().invoke(quality.app, ["clipscore", "--captions", str(captions), "--images", str(PHOTOS),
                                              "--model", f"open_clip:local-dir:{tiny_clip}", "--references",
                                              str(refs), "--device", "cpu", "--out", str(tmp_path / "cs.json")])
    assert result.exit_code == 0, result.output
    assert "weights: random" in result.output and "skipped" in result.output
    data = json.loads((tmp_path / "cs.json").read_text())
    clip_s, ref_s = independent(tiny_clip)
    assert [r["clip_s"] for r in data["per_caption"]] == pytest.approx(clip_s, abs=1e-5)
    assert data["clip_s"] == pytest.approx(sum(clip_s) / len(clip_s), abs=1e-5)
    # the two horse captions share the horse references; clock has none
    assert [r["refclip_s"] for r in data["per_caption"] if "refclip_s" in r] == pytest.approx(ref_s, abs=1e-5)
    assert data["refclip_s"] == pytest.approx(sum(ref_s) / len(ref_s), abs=1e-5)
    assert data["with_references"] == 3 and data["without_image"] == ["nowhere.jpg"]
    assert data["weights"] == "random" and data["prefix"] == "A photo depicts "
    assert min(clip_s) > 0  # this seed gives positive cosines, so the test checks more than the clamp


def test_clipscore_without_prefix_or_references(tmp_path, tiny_clip):
    captions = tmp_path / "caps.jsonl"
    captions.write_text("".join(json.dumps({"file_name": f, "text": c}) + "\n" for f, c in CAPTIONS))
    result = CliRunner().invoke(quality.app, ["clipscore", "--captions", str(captions), "--images", str(PHOTOS),
                                              "--model", f"open_clip:local-dir:{tiny_clip}", "--prefix", "",
                                              "--device", "cpu", "--out", str(tmp_path / "caps.clipscore.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "caps.clipscore.json").read_text())
    clip_s, _ = independent(tiny_clip, prefix="")
    assert [r["clip_s"] for r in data["per_caption"]] == pytest.approx(clip_s, abs=1e-5)
    assert "refclip_s" not in data


def test_clip_s_clamps_and_harmonic_mean():
    from densecaption.quality.clipscore import clip_s, harmonic

    assert float(clip_s(-0.3)) == 0 and float(clip_s(0.4)) == pytest.approx(1.0)
    assert harmonic(0.0, 0.5) == 0 and harmonic(1.0, 0.5) == pytest.approx(2 / 3)


def test_a_damaged_image_is_named(tmp_path, tiny_clip):
    photos = tmp_path / "photos"
    photos.mkdir()
    good = next(p for p in sorted(PHOTOS.iterdir()) if p.suffix == ".jpg")
    (photos / "good.jpg").write_bytes(good.read_bytes())
    (photos / "cut.jpg").write_bytes(good.read_bytes()[:200])  # a JPEG cut short
    captions = tmp_path / "caps.jsonl"
    captions.write_text("".join(json.dumps({"file_name": f, "text": "a photo"}) + "\n" for f in ("good.jpg", "cut.jpg")))
    result = CliRunner().invoke(build_app(), ["quality", "clipscore", "--captions", str(captions), "--images",
                                              str(photos), "--model", f"open_clip:local-dir:{tiny_clip}",
                                              "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert f"{photos / 'cut.jpg'}: cannot read the image" in result.output and "Traceback" not in result.output

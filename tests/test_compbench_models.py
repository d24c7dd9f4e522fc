"""T2I-CompBench's models through their real loading paths: a tiny random BLIP VQA and OWL-ViT saved to folders,
and OpenCV's real Haar cascades on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from densecaption.errors import UserError
from densecaption.evaluation.compbench.models import (DetectorSpec, load_blip_vqa, load_detector, nms_per_label)
from densecaption.evaluation.compbench.scoring import Box, Detection
from densecaption.models.tiny_blip import init_random_blip_vqa
from densecaption.models.tiny_detector import init_random_owlvit
from densecaption.models.weights import MARKER

PHOTOS = Path(__file__).resolve().parents[1] / "src/densecaption/data/sample/densely_captioned_images/photos"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory) -> Path:
    return init_random_blip_vqa(tmp_path_factory.mktemp("blip"))


@pytest.fixture(scope="module")
def owl_dir(tmp_path_factory) -> Path:
    return init_random_owlvit(tmp_path_factory.mktemp("owl"))


def composed_photo() -> Image.Image:
    """The astronaut (face at x ~ 225) on the left, chelsea the cat on the right (x from 512)."""
    left = Image.open(PHOTOS / "astronaut.jpg").convert("RGB")
    right = Image.open(PHOTOS / "chelsea.jpg").convert("RGB")
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), (128, 128, 128))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    return canvas


def test_tiny_blip_folder_is_labelled_and_loads(blip_dir):
    marker = json.loads((blip_dir / MARKER).read_text())
    assert marker["weights"] == "random" and "test tokenizer" in marker["tokenizer"]
    vqa = load_blip_vqa(str(blip_dir))
    assert vqa.weights == "random" and vqa.question_start == "[ENC]"
    tok = vqa.processor.tokenizer
    assert type(tok).__name__ in ("BertTokenizer", "BertTokenizerFast")
    assert tok.convert_ids_to_tokens([vqa.yes_id, vqa.no_id]) == ["yes", "no"]
    images = [Image.new("RGB", (64, 48), (200, 10, 10)), Image.new("RGB", (30, 90), (0, 200, 0))]
    probs = vqa.yes_probabilities(images, [["a red bench?", "a cat?"], []])
    assert len(probs[0]) == 2 and probs[1] == [] and all(0.0 < p < 1.0 for p in probs[0])
    assert vqa.yes_probabilities(images, [["a red bench?"], ["a red bench?"]])[0] == pytest.approx(probs[0][:1])


def test_blip_runs_upstreams_way(blip_dir):
    """480 px images (position embeddings interpolated from the folder's 384), [ENC] first, [DEC] to start."""
    vqa = load_blip_vqa(f"hf:{blip_dir}")
    seen = {}

    def vision_hook(module, args, output):
        seen["patches"] = output.last_hidden_state.shape[1]

    def encoder_hook(module, args, kwargs):
        seen["first_ids"] = kwargs["input_ids"][:, 0].tolist()

    def decoder_hook(module, args, kwargs):
        seen["start"] = kwargs["input_ids"][:, 0].tolist()

    handles = [vqa.model.vision_model.register_forward_hook(vision_hook),
               vqa.model.text_encoder.register_forward_pre_hook(encoder_hook, with_kwargs=True),
               vqa.model.text_decoder.register_forward_pre_hook(decoder_hook, with_kwargs=True)]
    try:
        vqa.yes_probabilities([Image.new("RGB", (50, 50))], [["a cat?", "a green dog?"]])
    finally:
        for h in handles:
            h.remove()
    assert seen["patches"] == (480 // 16) ** 2 + 1
    assert seen["first_ids"] == [vqa.enc_id] * 2
    assert seen["start"] == [vqa.model.config.text_config.bos_token_id] * 2


def test_vqa_model_errors(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        load_blip_vqa(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="no config.json"):
        load_blip_vqa(str(tmp_path))
    with pytest.raises(UserError, match="hub"):
        load_blip_vqa("Salesforce/blip-vqa-capfilt-large")  # offline: a clear message, no traceback


def test_detector_specs():
    assert DetectorSpec.parse("owlv2:google/owlv2-base-patch16-ensemble") == DetectorSpec(
        "owlv2", "google/owlv2-base-patch16-ensemble")
    assert DetectorSpec.parse("opencv-haar") == DetectorSpec("opencv-haar", "")
    for bad, message in (("yolo:x", r"unknown detector kind 'yolo' \(known: .*opencv-haar"),
                         ("owlvit", "hub id or folder"), ("opencv-haar:x", "no model")):
        with pytest.raises(UserError, match=message):
            DetectorSpec.parse(bad)


def test_tiny_owlvit_detects_through_the_real_path(owl_dir, blip_dir):
    detector = load_detector(f"owlvit:{owl_dir}", threshold=0.0)
    assert detector.weights == "random" and detector.kind == "owlvit"
    images = [Image.new("RGB", (120, 80), (200, 10, 10)), Image.new("RGB", (50, 90), (0, 100, 0)),
              Image.new("RGB", (40, 40))]
    found = detector.detect(images, [["cat", "person"], ["dog"], []])
    assert found[2] == [] and found[0] and found[1]
    for dets, wanted in zip(found, (["cat", "person"], ["dog"])):
        assert {d.label for d in dets} <= set(wanted)
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    strict = load_detector(f"owlvit:{owl_dir}", threshold=0.99999)
    assert all(d.score > 0.99999 for dets in strict.detect(images, [["cat"]] * 3) for d in dets)
    with pytest.raises(UserError, match="not 'owlv2'"):
        load_detector(f"owlv2:{owl_dir}")
    with pytest.raises(UserError, match="not 'owlvit'"):
        load_detector(f"owlvit:{blip_dir}")


def test_nms_per_label():
    a = Detection("cat", 0.9, Box(0, 0, 100, 100))
    b = Detection("cat", 0.95, Box(10, 0, 110, 100))    # IoU 0.82 with a: suppressed by the better b
    c = Detection("dog", 0.5, Box(0, 0, 100, 100))
    d = Detection("cat", 0.7, Box(300, 0, 400, 100))
    assert nms_per_label([a, b, c, d]) == [b, d, c]


def test_haar_cascades_on_real_photos():
    detector = load_detector("opencv-haar", threshold=0.5)
    assert detector.weights == "pretrained"
    photo = composed_photo()
    found = detector.detect([photo, photo], [["person", "cat", "dog"], ["dog"]])
    people = [d for d in found[0] if d.label == "person"]
    assert people and people[0].box.center[0] < 512 and people[0].score == 1.0  # the astronaut's face
    assert all(d.label in ("person", "cat") for d in found[0]) and found[1] == []  # no cascade for dogs
    cats = [d for d in found[0] if d.label == "cat"]
    if cats:
        assert cats[0].box.center[0] > 512

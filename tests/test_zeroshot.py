"""``bench zeroshot``: ImageNet-style folders through clip_benchmark, checked against numbers worked by hand
(a stub embedding model with one-hot features) and against the argmax computed here from a tiny random
CLIP's own features; text-only and pair-scoring models refused in one line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.errors import UserError
from densecaption.evaluation.run import evaluate
from densecaption.models.base import EmbeddingModel

CLASSES = ("ant", "bee", "cat", "dog", "eel")
COLOURS = {"ant": (200, 30, 30), "bee": (230, 200, 20), "cat": (30, 160, 40), "dog": (30, 40, 200),
           "eel": (120, 120, 120)}


def write_image_folder(root: Path, per_class: dict[str, dict[str, Sequence[str]]] | None = None) -> Path:
    """``root/<split>/<class>/<i>.jpg``; ``per_class[split][class]`` lists the colour class of each photo
    (default: two photos per class in train/ and val/, each of its own class's colour)."""
    per_class = per_class or {split: {c: (c, c) for c in CLASSES} for split in ("train", "val")}
    for split, classes in per_class.items():
        for name, looks in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i, look in enumerate(looks):
                r, g, b = COLOURS[look]
                Image.new("RGB", (16 + i, 12), (r, g + i, b)).save(root / split / name / f"{i}.jpg", quality=95)
    return root


class OneHotModel(EmbeddingModel):
    """A test double: an image's feature is the one-hot of the class whose colour is nearest its mean colour,
    a text's the one-hot of the class name it contains."""

    logit_scale = 100.0

    def __init__(self):
        self.spec, self.weights, self.device = "stub:one-hot", "random", "cpu"

    def encode_images(self, images) -> torch.Tensor:
        out = torch.zeros(len(images), len(CLASSES))
        for row, im in enumerate(images):
            mean = torch.tensor(im.convert("RGB").resize((1, 1)).getpixel((0, 0)), dtype=torch.float)
            dist = [float((mean - torch.tensor(COLOURS[c], dtype=torch.float)).norm()) for c in CLASSES]
            out[row, dist.index(min(dist))] = 1.0
        return out

    def encode_texts(self, texts) -> torch.Tensor:
        out = torch.zeros(len(texts), len(CLASSES))
        for row, text in enumerate(texts):
            out[row, next(i for i, c in enumerate(CLASSES) if c in re.findall(r"[a-z]+", text))] = 1.0
        return out


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from densecaption.models.random_init import RANDOM_MODELS
    from densecaption.models.registry import load_model

    folder = RANDOM_MODELS.get("clip")("ViT-B-32", tmp_path_factory.mktemp("clip") / "m", seed=0, tiny=True)
    return load_model(f"open_clip:local-dir:{folder}", device="cpu")


def test_metrics_worked_by_hand(tmp_path):
    # val: ant has 2 photos, one of them bee-coloured; the other classes 1 photo each: 6 photos.
    # The stub predicts the colour's class: 5 of 6 right -> top-1 = 5/6 = 83.33 %.
    # Per-class recall: ant 1/2, bee 1, cat 1, dog 1, eel 1 -> mean (0.5 + 4) / 5 = 90 %.
    # Five classes, so every photo's class is in its top 5 -> top-5 = 100 %.
    val = {"ant": ("ant", "bee"), "bee": ("bee",), "cat": ("cat",), "dog": ("dog",), "eel": ("eel",)}
    data = write_image_folder(tmp_path / "in", {"val": val})
    result = evaluate("zeroshot", OneHotModel(), str(data))
    assert result.metrics == pytest.approx({"acc1": 500 / 6, "acc5": 100.0, "mean_per_class_recall": 90.0})
    assert result.counts == {"acc1": 6, "acc5": 6, "mean_per_class_recall": 6}
    assert result.extra["classes"] == 5 and result.extra["templates"] == 80  # CLIP's ImageNet prompts
    assert result.extra["encoded_images"] == 6 and result.extra["encoded_texts"] == 5 * 80


def test_fewer_than_five_classes_has_no_top5(tmp_path):
    # Two classes, both photos right: top-1 100 %; clip_benchmark gives no top-5 below five classes.
    data = write_image_folder(tmp_path / "in", {"val": {"ant": ("ant",), "dog": ("dog",)}})
    result = evaluate("zeroshot", OneHotModel(), str(data))
    assert result.metrics["acc1"] == 100.0 and result.counts["acc5"] == 0


def test_argmax_matches_the_models_own_features(tiny_clip, tmp_path):
    data = write_image_folder(tmp_path / "in")
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of a {c}.\n{c}\n")
    result = evaluate("zeroshot", tiny_clip, str(data), templates=str(templates))
    # By hand: class vector = normalise(mean over templates of the text features), photo class = argmax.
    files = sorted((data / "val").glob("*/*.jpg"))
    targets = torch.tensor([CLASSES.index(f.parent.name) for f in files])
    images = tiny_clip.encode_images([Image.open(f).convert("RGB") for f in files])
    weights = torch.stack([torch.nn.functional.normalize(
        tiny_clip.encode_texts([f"a photo of a {c}.", c]), dim=-1).mean(0) for c in CLASSES])
    weights = torch.nn.functional.normalize(weights, dim=-1)
    predicted = (images @ weights.T).argmax(1)
    expected = 100 * float((predicted == targets).float().mean())
    assert result.metrics["acc1"] == pytest.approx(expected) and result.metrics["acc5"] == 100.0
    recall = [float((predicted[targets == k] == k).float().mean()) for k in range(5)]
    assert result.metrics["mean_per_class_recall"] == pytest.approx(100 * sum(recall) / 5)
    assert result.weights == "random"


def test_class_names_from_a_file_and_bad_files(tmp_path):
    from densecaption.evaluation.clip_benchmark_adapter import class_names, templates

    names = tmp_path / "names.txt"
    names.write_text("an ant\na bee\n")
    assert class_names(str(names), ["n01", "n02"]) == ["an ant", "a bee"]
    assert class_names("auto", ["hot_dog", "x"]) == ["hot dog", "x"]
    assert class_names("auto", [f"n{i:08d}" for i in range(1000)])[0] == "tench"  # clip_benchmark's ImageNet
    with pytest.raises(UserError, match="2 names for 3 class folders"):
        class_names(str(names), ["a", "b", "c"])
    bad = tmp_path / "t.txt"
    bad.write_text("a photo\n")
    with pytest.raises(UserError, match=r"\{c\}"):
        templates(str(bad))


@pytest.mark.parametrize("task", ["zeroshot", "linear-probe"])
def test_text_only_and_pair_scorers_are_refused(task, tmp_path):
    from densecaption.models.random_init import RANDOM_MODELS

    data = write_image_folder(tmp_path / "in")
    lm = RANDOM_MODELS.get("llama")("llama", tmp_path / "lm", seed=0)
    blip = RANDOM_MODELS.get("blip-itm")("blip-itm", tmp_path / "blip", seed=0)
    runner = CliRunner()
    for spec, why in ((f"lm:{lm}", "text-only language prior"), (f"hf:{blip}", "#head=itc")):
        out = runner.invoke(build_app(), ["bench", task, "--data", str(data), "--model", spec, "--device", "cpu",
                                          "--out", str(tmp_path / "out")])
        assert out.exit_code == 2 and why in out.output and "Traceback" not in out.output
        errors = [line for line in out.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and why in errors[0], out.output  # (transformers' loading bar may precede it)


def test_missing_split_is_one_line(tmp_path):
    out = CliRunner().invoke(build_app(), ["bench", "zeroshot", "--data", str(tmp_path), "--model", "stub:x",
                                           "--out", str(tmp_path / "o")])
    assert out.exit_code == 2 and "no such folder" in out.output

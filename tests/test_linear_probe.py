"""``bench linear-probe``: clip_benchmark's linear probe on features from the model contract, on constructed
ImageNet-style folders whose answers are known by hand (one-hot features of a stub model)."""

from __future__ import annotations

import pytest
import torch

from densecaption.errors import DataError
from densecaption.evaluation.run import evaluate
from tests.test_zeroshot import CLASSES, OneHotModel, write_image_folder


def test_separable_features_are_learned_and_a_look_alike_is_missed(tmp_path):
    # train: two photos per class in its own colour -> one-hot features, linearly separable.
    # val: ant has 2 photos, one bee-coloured (its feature is bee's one-hot, so the probe says bee); the
    # other classes 1 photo each. Top-1 = 5/6 = 83.33 %; recall ant 1/2, others 1 -> (0.5 + 4) / 5 = 90 %.
    val = {"ant": ("ant", "bee"), "bee": ("bee",), "cat": ("cat",), "dog": ("dog",), "eel": ("eel",)}
    data = write_image_folder(tmp_path / "in", {"train": {c: (c, c) for c in CLASSES}, "val": val})
    result = evaluate("linear-probe", OneHotModel(), str(data))
    assert result.metrics == pytest.approx({"lp_acc1": 500 / 6, "lp_mean_per_class_recall": 90.0})
    assert result.counts == {"lp_acc1": 6, "lp_mean_per_class_recall": 6}
    assert result.extra["train_images"] == 10 and result.extra["encoded_images"] == 16
    assert result.extra["weight_decay"] == 0  # no --val-proportion: clip_benchmark trains without a sweep
    assert result.extra["lp_acc5"] is None  # clip_benchmark gives top-5 only when the largest label is >= 5


def test_weight_decay_sweep_and_same_seed_same_result(tmp_path):
    data = write_image_folder(tmp_path / "in", {split: {c: (c,) * 4 for c in CLASSES} for split in ("train", "val")})
    first = evaluate("linear-probe", OneHotModel(), str(data), val_proportion=0.25, seed=3, epochs=2)
    again = evaluate("linear-probe", OneHotModel(), str(data), val_proportion=0.25, seed=3, epochs=2)
    assert first.metrics == again.metrics and first.extra["weight_decay"] == again.extra["weight_decay"]
    assert 1e-6 <= first.extra["weight_decay"] <= 100  # from clip_benchmark's grid, logspace(-6, 2)
    assert first.extra["train_images"] == 20


def test_mismatched_class_folders_are_refused(tmp_path):
    data = write_image_folder(tmp_path / "in", {"train": {"ant": ("ant",)}, "val": {"bee": ("bee",)}})
    with pytest.raises(DataError, match="different class folders"):
        evaluate("linear-probe", OneHotModel(), str(data))


def test_probe_leaves_cuda_methods_as_they_were():
    from densecaption.evaluation.clip_benchmark_adapter import probe_device

    before = (torch.nn.Module.cuda, torch.Tensor.cuda)
    with probe_device() as device:
        assert device == "cuda"  # what clip_benchmark asserts, on any machine
    assert (torch.nn.Module.cuda, torch.Tensor.cuda) == before

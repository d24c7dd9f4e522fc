"""Losses and samplers of CLIP fine-tuning against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from densecaption.training.losses import (DenseCaptionLoss, bce_negative_loss, clip_loss, negclip_loss,
                                          pool_positives)
from densecaption.training.samplers import ImageGroupBatches, RandomBatches


def lse(*xs: float) -> float:
    return math.log(sum(math.exp(x) for x in xs))


SCORES = torch.tensor([[1.0, 3.0, 5.0, 2.0],    # image 0: own positives 1, 3; entry 1's 5, 2
                       [2.0, 7.0, 4.0, 0.0]])   # image 1: entry 0's 2, 7; own 4, 0
POOLED = [[1.0, 5.0], [7.0, 0.0]]                # own: worst (min); other: best (max)


def test_pick_n_pooling_min_on_the_diagonal_max_elsewhere():
    assert pool_positives(SCORES, 2).tolist() == POOLED
    assert pool_positives(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), 1).tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_clip_loss_by_hand():
    i2t = ((lse(1, 5) - 1) + (lse(7, 0) - 0)) / 2
    t2i = ((lse(1, 7) - 1) + (lse(5, 0) - 0)) / 2
    assert clip_loss(torch.tensor(POOLED)).item() == pytest.approx((i2t + t2i) / 2, rel=1e-6)


def test_bce_negative_loss_by_hand():
    def softplus(x):
        return math.log1p(math.exp(x))

    expected = ((softplus(-1) + softplus(2)) / 2 + (softplus(0) + softplus(-1)) / 2) / 2
    got = bce_negative_loss(torch.tensor([1.0, 0.0]), torch.tensor([2.0, -1.0]))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_negclip_appends_the_negative_column_to_image_to_text_only():
    negatives = torch.tensor([[0.0, 9.0], [1.0, 1.0]])
    i2t = ((lse(1, 5, 0, 9) - 1) + (lse(7, 0, 1, 1) - 0)) / 2
    t2i = ((lse(1, 7) - 1) + (lse(5, 0) - 0)) / 2
    assert negclip_loss(torch.tensor(POOLED), negatives).item() == pytest.approx((i2t + t2i) / 2, rel=1e-6)


def test_total_loss_weights_and_kinds():
    negative_scores = torch.tensor([[0.5, 9.0], [1.0, -2.0]])
    clip = clip_loss(torch.tensor(POOLED)).item()
    bce = bce_negative_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.5, -2.0])).item()
    out = DenseCaptionLoss("bce", alpha=2.0, beta=9.0)(SCORES, 2, negative_scores)
    assert out["loss"].item() == pytest.approx(2 * clip + 9 * bce, rel=1e-6)
    assert DenseCaptionLoss("none")(SCORES, 2)["loss"].item() == pytest.approx(clip, rel=1e-6)
    negclip = DenseCaptionLoss("negclip")(SCORES, 2, negative_scores)["loss"].item()
    assert negclip == pytest.approx(negclip_loss(torch.tensor(POOLED), negative_scores).item(), rel=1e-6)
    with pytest.raises(ValueError):
        DenseCaptionLoss("hinge")


def test_losses_have_gradients():
    scores = SCORES.clone().requires_grad_()
    DenseCaptionLoss("bce")(scores, 2, torch.zeros(2, 2))["loss"].backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0


def test_random_batches_cover_every_entry_once_and_depend_on_the_epoch():
    sampler = RandomBatches(10, 4, seed=3)
    first = list(sampler)
    assert [len(b) for b in first] == [4, 4, 2]
    assert sorted(i for b in first for i in b) == list(range(10))
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_image_groups_stay_together_and_nothing_is_dropped():
    groups = [[0, 1, 2], [3], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [14, 15], [16, 17, 18, 19]]
    sampler = ImageGroupBatches(groups, batch_size=4, seed=0)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(20))  # every entry once, last batch kept
        assert all(len(b) <= 4 for b in batches)
        for g in groups:
            if len(g) <= 4:  # a group that fits a batch is never split
                assert sum(1 for b in batches if set(g) & set(b)) == 1
        big = [b for b in batches if set(b) & set(groups[2])]
        assert sum(len(set(b) & set(groups[2])) for b in big) == 10 and len(big) == 3

"""Losses for fine-tuning CLIP-style models on dense captions (DCI section 5, appendix C).

Inputs are score matrices (logit_scale x cosine). With N positives per entry (PickN), scores are pooled
first: an entry's own cell takes its WORST positive (min), another entry's cell its BEST (max), so the loss
sees the hardest case on both sides. (Upstream's pooling max-pools the diagonal too; this does not.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pool_positives(scores: torch.Tensor, n_positives: int) -> torch.Tensor:
    """(B, B*N) image-by-text scores, entry j's positives at columns j*N..j*N+N-1 -> pooled (B, B)."""
    b = scores.shape[0]
    grouped = scores.view(b, b, n_positives)
    pooled = grouped.max(dim=2).values
    diagonal = grouped.diagonal(dim1=0, dim2=1).min(dim=0).values  # (B,): worst own positive
    return pooled - torch.diag_embed(pooled.diagonal()) + torch.diag_embed(diagonal)


def clip_loss(pooled: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: (CE(P, I) + CE(P^T, I)) / 2."""
    target = torch.arange(pooled.shape[0], device=pooled.device)
    return (F.cross_entropy(pooled, target) + F.cross_entropy(pooled.T, target)) / 2


def bce_negative_loss(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Upstream's pairwise loss: mean_i [softplus(-p_i) + softplus(n_i)] / 2 (what the paper's numbers used)."""
    return ((F.softplus(-positive) + F.softplus(negative)) / 2).mean()


def negclip_loss(pooled: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """NegCLIP: every entry's negative caption is an extra column of the image-to-text softmax.

    ``negatives[i, j]`` is image i against entry j's negative caption; the image-to-text side is
    CE([P | Neg], I), the text-to-image side CE(P^T, I) as in CLIP.
    """
    target = torch.arange(pooled.shape[0], device=pooled.device)
    image_to_text = F.cross_entropy(torch.cat([pooled, negatives], dim=1), target)
    return (image_to_text + F.cross_entropy(pooled.T, target)) / 2


class DenseCaptionLoss(nn.Module):
    """L = alpha * L_clip + beta * L_neg, with ``neg_loss`` one of ``bce`` (upstream's, the default),
    ``negclip`` (negatives inside the image-to-text softmax; then L_clip is that NegCLIP loss and beta
    scales nothing) or ``none``."""

    def __init__(self, neg_loss: str = "bce", alpha: float = 1.0, beta: float = 1.0):
        super().__init__()
        if neg_loss not in ("bce", "negclip", "none"):
            raise ValueError(f"neg_loss {neg_loss!r}: choose bce, negclip or none")
        self.neg_loss, self.alpha, self.beta = neg_loss, alpha, beta

    def forward(self, scores: torch.Tensor, n_positives: int,
                negative_scores: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``scores``: (B, B*N) against the batch's positives; ``negative_scores``: (B, B) against the
        batch's negatives (needed unless ``neg_loss`` is none). Returns the total and its parts."""
        pooled = pool_positives(scores, n_positives)
        if self.neg_loss == "negclip":
            contrastive = negclip_loss(pooled, negative_scores)
            return {"loss": self.alpha * contrastive, "clip": contrastive}
        contrastive = clip_loss(pooled)
        out = {"clip": contrastive}
        total = self.alpha * contrastive
        if self.neg_loss == "bce":
            neg = bce_negative_loss(pooled.diagonal(), negative_scores.diagonal())
            out["neg"] = neg
            total = total + self.beta * neg
        out["loss"] = total
        return out

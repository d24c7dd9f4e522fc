"""The contract every image-text model meets, so that benchmarks and data tools need not know the backend.

A model turns images and texts into features and features into a score matrix. Embedding models (CLIP,
SigLIP) score with ``logit_scale * cosine (+ logit_bias)``; other scorers (the text-only language prior)
fit the same three calls, so the benchmark encodes every unique crop and text once whatever the backend.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Sequence

import torch
from PIL.Image import Image


class ImageTextModel(ABC):
    """Scores (image, text) pairs; higher means a better match.

    Attributes every backend sets: ``spec`` (as given), ``weights`` (``pretrained``, ``random`` or
    ``unknown``), ``device``, ``truncated_texts`` (texts longer than the model's context so far, which its
    tokenizer truncated) and ``notes`` (lines that results must carry, e.g. what a score means).
    """

    spec: str
    weights: str
    device: str = "cpu"
    lora: str | None = None
    truncated_texts: int = 0
    notes: tuple[str, ...] = ()
    uses_images: bool = True
    """False for scorers that ignore the image: callers may then skip decoding photos."""
    context_length: int | None = None
    """Text tokens the model reads, start and end included (77 for CLIP); None: no fixed window."""
    sort_texts: bool = True
    """Batch texts by token length (results in the given order) so batches carry little padding; False:
    batches in the given order, the previous path, kept for speed comparisons (docs/speed.md)."""
    encoded_text_tokens: int = 0
    """Text tokens sent through the text encoder so far, padding included (0 where not counted)."""
    text_token_floor: int = 0
    """The same texts' own token counts (cut to the context), the least any batching could encode."""

    def count_tokens(self, text: str) -> int | None:
        """The model's own token count of ``text`` uncut, start and end included; None without a tokenizer."""
        return None

    @abstractmethod
    def encode_images(self, images: Sequence[Image]) -> torch.Tensor:
        """One feature row per image, float32 on the CPU."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """One feature row per text, float32 on the CPU."""

    @abstractmethod
    def similarity(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """The (n_images, n_texts) score matrix of already encoded features."""

    def score(self, images: Sequence[Image], texts: Sequence[str]) -> torch.Tensor:
        return self.similarity(self.encode_images(images), self.encode_texts(texts))


class EmbeddingModel(ImageTextModel):
    """A model that embeds images and texts apart (CLIP, SigLIP); features are L2-normalised."""

    logit_bias: float = 0.0
    model: torch.nn.Module

    @property
    def logit_scale(self) -> float:
        """The wrapped model's learned temperature, exponentiated (100 for OpenAI CLIP)."""
        return float(self.model.logit_scale.detach().exp())

    def similarity(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * image_features @ text_features.T + self.logit_bias


def autocast(device: str):
    """Mixed precision on a GPU, nothing on the CPU."""
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return contextlib.nullcontext()


def length_batches(lengths: Sequence[int], size: int, slack: float = 0.05) -> list[list[int]]:
    """Indices into ``lengths`` in batches of at most ``size``, shortest first (a stable sort: equal lengths
    keep their order). A batch also ends before a text longer than ``1 + slack`` times its first one, so
    padding every text to its batch's longest adds at most ``slack`` to the tokens encoded."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if not batches or len(batches[-1]) >= size or lengths[i] > (1 + slack) * lengths[batches[-1][0]]:
            batches.append([])
        batches[-1].append(i)
    return batches


def batched(items: Sequence, size: int):
    """Consecutive slices of ``items`` of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]

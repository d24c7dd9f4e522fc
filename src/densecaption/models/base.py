"""The contract every image-text model meets, so that benchmarks and data tools need not know the backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import torch
from PIL.Image import Image


class ImageTextModel(ABC):
    """Scores (image, text) pairs. ``weights`` is ``pretrained``, ``random`` or ``unknown``."""

    spec: str
    weights: str

    @abstractmethod
    def score(self, images: Sequence[Image], texts: Sequence[str]) -> torch.Tensor:
        """A (len(images), len(texts)) matrix of scores; higher means a better match."""


class EmbeddingModel(ImageTextModel):
    """A model that embeds images and texts apart (CLIP, SigLIP): score = logit_scale * cosine.

    Benchmarks call ``encode_images``/``encode_texts`` directly so each item is encoded once.
    """

    @abstractmethod
    def encode_images(self, images: Sequence[Image]) -> torch.Tensor:
        """L2-normalised image embeddings, one row per image, as float32 on the CPU."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings, one row per text, as float32 on the CPU."""

    @property
    @abstractmethod
    def logit_scale(self) -> float:
        """The learned temperature, already exponentiated (100 for OpenAI CLIP)."""

    def score(self, images: Sequence[Image], texts: Sequence[str]) -> torch.Tensor:
        return self.logit_scale * self.encode_images(images) @ self.encode_texts(texts).T

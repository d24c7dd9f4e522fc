"""``#long=MODE`` on any model spec: how a text past the text tower's window is read (docs/long-text.md).

``truncate`` is what the tokenizer does anyway (the first tokens, the last made end-of-text); ``native``
refuses such a text; ``chunk-mean`` and ``chunk-max`` cut it at sentence boundaries into chunks that fit
and pool them, a baseline any 77-token model gets; ``parts-mean`` pools the text's own lines (DCI's
parts). The mean modes give one feature row per text (the re-normalised mean of the chunk features), so
they work in every benchmark; ``chunk-max`` scores a text by its best chunk, which no single row can hold:
``bench sdci-full`` pools its scores, and elsewhere a text of more than one chunk is refused.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from PIL.Image import Image

from densecaption.errors import UserError
from densecaption.evaluation.long_text import LONG_MODES, chunk_text, mean_pool, split_parts
from densecaption.models.base import ImageTextModel

CHUNK_MODES = ("chunk-mean", "chunk-max", "parts-mean")


class LongTextModel(ImageTextModel):
    """A model of the contract whose texts past ``context_length`` are read as ``long_mode`` says; images
    and scores are the wrapped model's."""

    def __init__(self, inner: ImageTextModel, long_mode: str):
        if long_mode not in LONG_MODES:
            raise UserError(f"model spec {inner.spec!r}: #long={long_mode}: choose from {', '.join(LONG_MODES)}")
        window = getattr(inner, "context_length", None)
        if window is None or inner.count_tokens("a") is None:
            raise UserError(f"model spec {inner.spec!r}: #long= needs a text tower with a token window and a "
                            f"tokenizer that counts tokens (open_clip: or hf: CLIP-style models)")
        self.inner = inner
        self.long_mode = long_mode
        self.context_length = int(window)
        self.spec, self.weights, self.device = inner.spec, inner.weights, inner.device
        self.uses_images = inner.uses_images
        self.notes = tuple(inner.notes) + (_NOTES[long_mode].format(window=self.context_length),)
        self._count = lru_cache(maxsize=65536)(inner.count_tokens)

    @property
    def truncated_texts(self) -> int:  # type: ignore[override]
        """Texts the wrapped tokenizer cut; chunks always fit, so only ``truncate`` adds to it."""
        return self.inner.truncated_texts

    @truncated_texts.setter
    def truncated_texts(self, value: int) -> None:
        self.inner.truncated_texts = value

    def count_tokens(self, text: str) -> int | None:
        return self._count(text)

    def chunks(self, text: str) -> list[str]:
        """The text's chunks in a chunk mode (sentence-packed to fit the window); else the text itself."""
        if self.long_mode not in CHUNK_MODES:
            return [text]
        split = split_parts if self.long_mode == "parts-mean" else chunk_text
        return split(text, self._count, self.context_length)

    def encode_images(self, images: Sequence[Image]) -> torch.Tensor:
        return self.inner.encode_images(images)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        texts = list(texts)
        if self.long_mode == "native":
            over = sum(self._count(t) > self.context_length for t in texts)
            if over:
                raise UserError(f"model spec {self.spec!r}: {over} of {len(texts)} texts are longer than its "
                                f"{self.context_length}-token window (#long=native refuses them; use "
                                f"#long=truncate, chunk-mean, chunk-max or parts-mean)")
        if self.long_mode in ("native", "truncate"):
            return self.inner.encode_texts(texts)
        chunked = [self.chunks(t) for t in texts]
        if self.long_mode == "chunk-max" and any(len(c) > 1 for c in chunked):
            raise UserError(f"model spec {self.spec!r}: #long=chunk-max scores a text by its best chunk, which "
                            f"one feature row cannot hold; only `bench sdci-full` pools scores (use "
                            f"#long=chunk-mean here)")
        unique = list(dict.fromkeys(c for cs in chunked for c in cs))
        features = self.inner.encode_texts(unique).numpy()
        row = {c: i for i, c in enumerate(unique)}
        pooled = [mean_pool(features[[row[c] for c in cs]]) for cs in chunked]
        return torch.from_numpy(np.stack(pooled)).float() if pooled else torch.empty(0, features.shape[-1])

    def similarity(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return self.inner.similarity(image_features, text_features)


_NOTES = {
    "truncate": "texts past the {window}-token window are cut to it (#long=truncate)",
    "native": "texts past the {window}-token window are refused (#long=native)",
    "chunk-mean": "texts past the {window}-token window are chunked at sentence boundaries; a text's feature is "
                  "the re-normalised mean of its chunk features (#long=chunk-mean)",
    "chunk-max": "texts past the {window}-token window are chunked at sentence boundaries; a text scores as its "
                 "best chunk (#long=chunk-max)",
    "parts-mean": "texts past the {window}-token window are split into their lines (DCI's parts), each cut to fit; "
                  "a text's feature is the re-normalised mean of their features (#long=parts-mean)",
}


def with_long_mode(model: ImageTextModel, long_mode: str) -> LongTextModel:
    """``model`` reading long texts as ``long_mode`` says (the ``#long=`` spec option)."""
    return LongTextModel(model, long_mode)

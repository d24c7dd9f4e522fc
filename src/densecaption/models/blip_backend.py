"""BLIP image-text matching models behind the common contract: ``hf:ID_OR_DIR[#head=itm|itc]`` on a folder or
hub id whose config is a BLIP retrieval model (e.g. ``Salesforce/blip-itm-base-coco``).

Two heads share BLIP's vision encoder (docs/scorers-and-classification.md):

- ``itc`` (image-text contrastive): image and text are embedded apart and compared by cosine, so it is an
  ``EmbeddingModel`` and every crop and text is encoded once;
- ``itm`` (image-text matching, the default): the text encoder reads the text while cross-attending to the
  image's patch tokens and a two-way head says match / no match. Nothing can be embedded apart: image
  "features" are the patch tokens, text "features" the token ids, and ``similarity`` runs the fusion encoder
  on every (image, text) pair given, n x m forward passes. The score is the head's log-odds of "match",
  logit(match) - logit(no match): the order of P(match), without float32 saturation at 1.
"""

from __future__ import annotations

from typing import Sequence

import torch
from PIL.Image import Image

from densecaption.errors import UserError
from densecaption.models.base import EmbeddingModel, ImageTextModel, autocast, batched
from densecaption.models.hf_backend import rgb_pixel_values
from densecaption.models.registry import ModelSpec

HEADS = ("itm", "itc")
ITM_NOTE = ("{name} ITM head: score = log-odds of 'match' from the fusion encoder, run on every (image, text) "
            "pair (n x m passes)")
ITC_NOTE = "{name} ITC head: score = cosine of the projected [CLS] features (no temperature)"


def head_option(parsed: ModelSpec, spec: str, *, default: str) -> str:
    """The ``#head=`` option (``itm`` or ``itc``); any other option is refused."""
    unknown = set(parsed.options) - {"head", "long"}
    if unknown:
        raise UserError(f"model spec {spec!r}: unknown option(s) {', '.join(sorted(unknown))} (known: head)")
    head = parsed.options.get("head", default)
    if head not in HEADS:
        raise UserError(f"model spec {spec!r}: #head={head}: choose itm (image-text matching) or itc (contrastive)")
    return head


class TokenIdsMixin:
    """Tokenisation shared by the BERT-tokenised scorers: truncation to the model's window, counted."""

    tokenizer: object
    context_length: int
    truncated_texts: int

    def count_tokens(self, text: str) -> int | None:
        return len(self.tokenizer(text, verbose=False)["input_ids"])

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenised once; only texts over the window are tokenised again, with the tokenizer's own truncation
        (which keeps the end token), then all are padded to the longest."""
        texts = list(texts)
        ids = self.tokenizer(texts, verbose=False)["input_ids"]
        long = [i for i, row in enumerate(ids) if len(row) > self.context_length]
        self.truncated_texts += len(long)
        if long:
            cut = self.tokenizer([texts[i] for i in long], truncation=True, max_length=self.context_length)
            for i, row in zip(long, cut["input_ids"]):
                ids[i] = row
        tokens = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def pixel_values(self, images: Sequence[Image]) -> torch.Tensor:
        return rgb_pixel_values(self.image_processor, images)


class PairwiseScorer(TokenIdsMixin, ImageTextModel):
    """A fusion scorer: image features are flattened patch tokens, text features the token ids (as float32,
    padded to the context); ``similarity`` scores every pair with ``pair_scores``."""

    batch_size: int = 32
    pair_batch: int = 64
    """(image, text) pairs per fusion pass; pairs of several images share a pass."""
    token_shape: tuple[int, int] = (0, 0)

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, width) of what the fusion encoder attends to."""
        raise NotImplementedError

    def pair_scores(self, image_tokens: torch.Tensor, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor) -> torch.Tensor:
        """One score per row: image_tokens[k] with text k."""
        raise NotImplementedError

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image]) -> torch.Tensor:
        out = [torch.empty(0, self.token_shape[0] * self.token_shape[1])]
        for batch in batched(list(images), self.batch_size):
            with autocast(self.device):
                tokens = self.image_tokens(self.pixel_values(batch).to(self.device))
            out.append(tokens.float().flatten(1).cpu())
        return torch.cat(out)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        ids = torch.full((len(texts), self.context_length), float(self.pad_token_id))
        for start, batch in zip(range(0, len(texts), self.batch_size), batched(list(texts), self.batch_size)):
            tokens = self.tokenize(batch)["input_ids"]
            ids[start:start + len(batch), :tokens.shape[1]] = tokens.float()
        return ids

    @torch.inference_mode()
    def similarity(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        ids = text_features.long()
        mask = (ids != self.pad_token_id).long()
        width = int(mask.sum(1).max()) if len(ids) else 0
        ids, mask = ids[:, :max(width, 1)].to(self.device), mask[:, :max(width, 1)].to(self.device)
        tokens = image_features.reshape(len(image_features), *self.token_shape)
        n, m = len(image_features), len(ids)
        scores = torch.empty(n * m)
        for start in range(0, n * m, self.pair_batch):  # pair k = (image k // m, text k % m)
            pairs = torch.arange(start, min(start + self.pair_batch, n * m))
            rows, cols = pairs // m, (pairs % m).to(self.device)
            with autocast(self.device):
                out = self.pair_scores(tokens[rows].to(self.device), ids[cols], mask[cols])
            scores[pairs] = out.float().cpu()
        return scores.reshape(n, m)


class BlipITMModel(PairwiseScorer):
    """BLIP's image-text matching head: the text encoder cross-attends to the image's patch tokens."""

    def __init__(self, model, processor, *, spec: str, weights: str, device: str):
        self.model = model.eval().to(device)
        self.tokenizer, self.image_processor = processor.tokenizer, processor.image_processor
        self.context_length = blip_context_length(model.config, self.tokenizer)
        self.pad_token_id = int(self.tokenizer.pad_token_id)
        vision = model.config.vision_config
        self.token_shape = ((vision.image_size // vision.patch_size) ** 2 + 1, vision.hidden_size)
        self.spec, self.weights, self.device = spec, weights, device
        self.notes = (ITM_NOTE.format(name="BLIP"),)

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.vision_model(pixel_values=pixel_values).last_hidden_state

    def pair_scores(self, image_tokens, input_ids, attention_mask) -> torch.Tensor:
        image_mask = torch.ones(image_tokens.shape[:-1], dtype=torch.long, device=image_tokens.device)
        hidden = self.model.text_encoder(input_ids=input_ids, attention_mask=attention_mask,
                                         encoder_hidden_states=image_tokens,
                                         encoder_attention_mask=image_mask).last_hidden_state
        logits = self.model.itm_head(hidden[:, 0, :]).float()
        return logits[:, 1] - logits[:, 0]


class BlipITCModel(TokenIdsMixin, EmbeddingModel):
    """BLIP's contrastive head: projected, L2-normalised [CLS] features of each encoder on its own."""

    logit_scale = 1.0  # BlipForImageTextRetrieval's ITC score is the plain cosine
    batch_size = 64

    def __init__(self, model, processor, *, spec: str, weights: str, device: str):
        self.model = model.eval().to(device)
        self.tokenizer, self.image_processor = processor.tokenizer, processor.image_processor
        self.context_length = blip_context_length(model.config, self.tokenizer)
        self.embed_dim = int(model.config.image_text_hidden_size)
        self.spec, self.weights, self.device = spec, weights, device
        self.notes = (ITC_NOTE.format(name="BLIP"),)

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image]) -> torch.Tensor:
        out = [torch.empty(0, self.embed_dim)]
        for batch in batched(list(images), self.batch_size):
            with autocast(self.device):
                tokens = self.model.vision_model(pixel_values=self.pixel_values(batch).to(self.device)).last_hidden_state
                out.append(unit(self.model.vision_proj(tokens[:, 0, :])))
        return torch.cat(out)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        out = [torch.empty(0, self.embed_dim)]
        for batch in batched(list(texts), self.batch_size):
            inputs = {k: v.to(self.device) for k, v in self.tokenize(batch).items()}
            with autocast(self.device):
                hidden = self.model.text_encoder(**inputs).last_hidden_state
                out.append(unit(self.model.text_proj(hidden[:, 0, :])))
        return torch.cat(out)


def unit(features: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(features.float(), dim=-1).cpu()


def blip_context_length(config, tokenizer) -> int:
    """The text window: the position table, capped by a sane tokenizer limit (BERT's 512)."""
    positions = int(config.text_config.max_position_embeddings)
    limit = getattr(tokenizer, "model_max_length", None)
    return min(positions, int(limit)) if isinstance(limit, int) and 0 < limit < 10**6 else positions


def load_blip(parsed: ModelSpec, *, source: str, spec: str, weights: str, device: str,
              lora: str | None = None) -> ImageTextModel:
    """A BLIP retrieval folder or hub id as an ITM pair scorer (default) or an ITC embedding model."""
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    from densecaption.models.lora import apply_lora

    head = head_option(parsed, spec, default="itm")
    model = BlipForImageTextRetrieval.from_pretrained(source, dtype=torch.float32)
    processor = BlipProcessor.from_pretrained(source)
    if lora is not None:
        model = apply_lora(model, lora)
    kind = BlipITMModel if head == "itm" else BlipITCModel
    return kind(model, processor, spec=spec, weights=weights, device=device)

"""FLAVA behind the common contract: ``hf:ID_OR_DIR[#head=itc|itm]`` on a FLAVA folder or hub id (e.g.
``facebook/flava-full``).

- ``itc`` (the default, FLAVA's global contrastive score): the image and text encoders' [CLS] states through
  FLAVA's projections, L2-normalised, scored ``exp(logit_scale) * cosine`` as FLAVA was trained; an
  ``EmbeddingModel``, every crop and text encoded once.
- ``itm``: FLAVA's image-text matching head on its multimodal encoder, which reads the projected image and
  text tokens together; a pair scorer like BLIP's ITM (see ``models/blip_backend.py``), n x m passes of the
  multimodal encoder, each text encoded once. Score: log-odds of "match".
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch
from PIL.Image import Image

from densecaption.models.base import EmbeddingModel, ImageTextModel, autocast, batched
from densecaption.models.blip_backend import ITC_NOTE, ITM_NOTE, PairwiseScorer, TokenIdsMixin, \
    blip_context_length, head_option, unit
from densecaption.models.registry import ModelSpec


class FlavaITCModel(TokenIdsMixin, EmbeddingModel):
    """FLAVA's contrastive score: projected [CLS] features of its image and text encoders."""

    batch_size = 64

    def __init__(self, model, processor, *, spec: str, weights: str, device: str):
        self.model = model.eval().to(device)  # a FlavaModel: logit_scale is its own
        self.tokenizer, self.image_processor = processor.tokenizer, processor.image_processor
        self.context_length = blip_context_length(model.config, self.tokenizer)
        self.embed_dim = int(model.config.projection_dim)
        self.spec, self.weights, self.device = spec, weights, device
        self.notes = (ITC_NOTE.format(name="FLAVA").replace("(no temperature)", "times exp(logit_scale)"),)

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image]) -> torch.Tensor:
        out = [torch.empty(0, self.embed_dim)]
        for batch in batched(list(images), self.batch_size):
            with autocast(self.device):
                projected = self.model.get_image_features(pixel_values=self.pixel_values(batch).to(self.device))
                out.append(unit(projected.pooler_output[:, 0, :]))
        return torch.cat(out)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        out = [torch.empty(0, self.embed_dim)]
        for batch in batched(list(texts), self.batch_size):
            inputs = {k: v.to(self.device) for k, v in self.tokenize(batch).items()}
            with autocast(self.device):
                out.append(unit(self.model.get_text_features(**inputs).pooler_output[:, 0, :]))
        return torch.cat(out)


class FlavaITMModel(PairwiseScorer):
    """FLAVA's ITM head: its multimodal encoder over [image tokens; text tokens], both projected."""

    def __init__(self, model, processor, *, spec: str, weights: str, device: str):
        self.model = model.eval().to(device)  # a FlavaForPreTraining: .flava and .itm_head
        self.tokenizer, self.image_processor = processor.tokenizer, processor.image_processor
        self.context_length = blip_context_length(model.config, self.tokenizer)
        self.pad_token_id = int(self.tokenizer.pad_token_id)
        image = model.config.image_config
        self.token_shape = ((image.image_size // image.patch_size) ** 2 + 1, model.config.multimodal_config.hidden_size)
        self.spec, self.weights, self.device = spec, weights, device
        self.notes = (ITM_NOTE.format(name="FLAVA"),)

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        flava = self.model.flava
        states = flava.image_model(pixel_values=pixel_values, output_hidden_states=True).hidden_states
        return flava.image_to_mm_projection(states[-1])  # FLAVA feeds the states before the final norm

    def pair_scores(self, image_tokens, input_ids, attention_mask) -> torch.Tensor:
        flava = self.model.flava
        states = flava.text_model(input_ids=input_ids, attention_mask=attention_mask,
                                  output_hidden_states=True).hidden_states
        text_tokens = flava.text_to_mm_projection(states[-1])
        image_mask = torch.ones(image_tokens.shape[0], image_tokens.shape[1] + 1, device=image_tokens.device)
        mask = torch.cat([image_mask, attention_mask.to(image_mask.dtype)], dim=1)  # +1: the multimodal [CLS]
        fused = flava.multimodal_model(torch.cat([image_tokens, text_tokens], dim=1), attention_mask=mask)
        logits = self.model.itm_head(fused.last_hidden_state).float()
        return logits[:, 1] - logits[:, 0]


def load_flava(parsed: ModelSpec, *, source: str, spec: str, weights: str, device: str,
               lora: str | None = None) -> ImageTextModel:
    """A FLAVA folder or hub id as a contrastive embedding model (default) or an ITM pair scorer."""
    from transformers import FlavaForPreTraining, FlavaModel, FlavaProcessor

    from densecaption.models.lora import apply_lora

    head = head_option(parsed, spec, default="itc")
    with quiet_transformers():  # FlavaModel from a pre-training checkpoint: a report of the unused heads
        model = (FlavaModel if head == "itc" else FlavaForPreTraining).from_pretrained(source, dtype=torch.float32)
    processor = FlavaProcessor.from_pretrained(source)
    if lora is not None:
        model = apply_lora(model, lora)
    kind = FlavaITCModel if head == "itc" else FlavaITMModel
    return kind(model, processor, spec=spec, weights=weights, device=device)


@contextlib.contextmanager
def quiet_transformers():
    """transformers' loading messages off for the block, its level restored after."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)

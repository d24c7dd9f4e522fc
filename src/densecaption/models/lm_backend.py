"""The text-only language prior: ``lm:ID_OR_DIR[#gguf=FILE]`` scores a caption by a causal LM's likelihood.

A baseline for sDCI that never looks at the image: each caption's score is the mean log-likelihood (nats per
token) of its tokens under a causal language model, the first token scored too by prepending the
tokenizer's BOS token where it has one. On the negatives tests this tells how much of a score a model
can get from the fluency of the texts alone; on the SCM tests it is at chance by construction.
"""

from __future__ import annotations

from typing import Sequence

import torch
from PIL.Image import Image

from densecaption.errors import UserError
from densecaption.models.base import ImageTextModel, batched
from densecaption.models.lora import apply_lora
from densecaption.models.registry import ModelSpec
from densecaption.models.weights import transformers_source

TEXT_ONLY_NOTE = ("text-only language prior: the image is ignored, so its SCM scores are image-independent "
                  "(at chance by construction) and only the Neg tests are meaningful")


class LanguagePriorModel(ImageTextModel):
    """Scores (image, text) by the text's mean token log-likelihood under a causal LM; the image is ignored."""

    uses_images = False

    def __init__(self, model, tokenizer, *, spec: str, weights: str, device: str, batch_size: int = 16):
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.spec = spec
        self.weights = weights
        self.device = device
        self.batch_size = batch_size
        self.bos_token_id = tokenizer.bos_token_id
        self.pad_token_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if i is not None))
        self.max_positions = max_positions(model.config, tokenizer)
        self.truncated_texts = 0
        name = getattr(model.config, "name_or_path", "") or spec
        self.notes = (TEXT_ONLY_NOTE,
                      f"score = mean log-likelihood per token (nats) of the text under the causal LM {name}"
                      + (", with its BOS token prepended" if self.bos_token_id is not None else
                         "; its tokenizer has no BOS token, so the first token of each text is not scored"))

    def encode_images(self, images: Sequence[Image]) -> torch.Tensor:
        return torch.zeros(len(images), 1)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        texts = list(texts)
        ids = [self.token_ids(t) for t in texts]
        scores = torch.empty(len(texts))
        # Similar lengths together to waste little on padding; the result keeps the texts' order.
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        for batch in batched(order, self.batch_size):
            scores[batch] = self.mean_log_likelihood([ids[i] for i in batch])
        return scores.unsqueeze(1)

    def similarity(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return text_features.reshape(1, -1).float().cpu().expand(len(image_features), -1).clone()

    def token_ids(self, text: str) -> list[int]:
        """The ids the model reads: BOS (where the tokenizer has one) and the text, cut to the context."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.bos_token_id is not None:
            ids = [self.bos_token_id] + ids
        if self.max_positions is not None and len(ids) > self.max_positions:
            self.truncated_texts += 1
            ids = ids[:self.max_positions]
        return ids

    @torch.inference_mode()
    def mean_log_likelihood(self, sequences: list[list[int]]) -> torch.Tensor:
        """Mean over each sequence's predicted tokens (all but the first) of log p(token | before); right padded."""
        length = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, seq in enumerate(sequences):
            input_ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            attention_mask[row, :len(seq)] = 1
        logits = self.model(input_ids=input_ids.to(self.device),
                            attention_mask=attention_mask.to(self.device)).logits
        out = torch.empty(len(sequences))
        for row, seq in enumerate(sequences):  # row by row: a second (batch, length, vocab) tensor is large
            n = len(seq) - 1
            if n < 1:  # nothing to predict (an empty text, or one token without a BOS)
                out[row] = float("nan")
                continue
            step = logits[row, :n].float()
            targets = input_ids[row, 1:n + 1].to(step.device)
            picked = step.gather(1, targets.unsqueeze(1)).squeeze(1)
            out[row] = (picked - torch.logsumexp(step, dim=-1)).mean().cpu()
        return out


def max_positions(config, tokenizer) -> int | None:
    """The longest input the model takes: its position table, else the tokenizer's (sane) maximum."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 10**7 else None


def load_lm(parsed: ModelSpec, *, spec: str, device: str, lora: str | None = None) -> LanguagePriorModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target, gguf = parsed.target, parsed.options.get("gguf")
    unknown = set(parsed.options) - {"gguf"}
    if unknown:
        raise UserError(f"model spec {spec!r}: unknown option(s) {', '.join(sorted(unknown))} (known: gguf)")
    resolved = transformers_source(target, label=f"model spec {spec!r}", gguf=gguf, gguf_ok=True)
    source, weights = resolved.path_or_id, resolved.weights
    extra = {"gguf_file": gguf} if gguf is not None else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **extra)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        where = "the folder" if resolved.is_local else "the hub id"
        raise UserError(f"model spec {spec!r}: could not load a causal language model from {where} "
                        f"({first_line(e)}). Without network access, download the model elsewhere and give "
                        f"its local folder (lm:DIR, with #gguf=FILE for a GGUF file).") from e
    if lora is not None:
        model = apply_lora(model, lora)
    return LanguagePriorModel(model, tokenizer, spec=spec, weights=weights, device=device)


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

"""open_clip models: ``open_clip:ARCH[:PRETRAINED]`` and ``open_clip:local-dir:DIR``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from PIL.Image import Image

from densecaption.errors import UserError
from densecaption.models.base import EmbeddingModel, autocast, batched, length_batches
from densecaption.models.attention import split_attention
from densecaption.models.lora import apply_lora
from densecaption.models.registry import ModelSpec
from densecaption.models.weights import weights_of_folder, write_marker


class OpenClipModel(EmbeddingModel):
    def __init__(self, model, preprocess, tokenizer, *, spec: str, weights: str, device: str,
                 batch_size: int = 64):
        self.model = model.eval().to(device)
        self.context_length = getattr(tokenizer, "context_length", 77)
        self.embed_dim = int(getattr(model.visual, "output_dim", 0))
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.spec = spec
        self.weights = weights
        self.device = device
        self.batch_size = batch_size

    # Hooks for fine-tuning (training/clip.py): LoRA targets, CPU-side preprocessing, differentiable features.
    lora_targets = ("q_proj", "k_proj", "v_proj", "out_proj", "c_fc", "c_proj")

    def prepare_for_lora(self) -> None:
        split_attention(self.model)

    def pixel_values(self, images: Sequence[Image]) -> torch.Tensor:
        return torch.stack([self.preprocess(im) for im in images])

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return {"text": self.tokenizer(list(texts))}

    def image_embeds(self, net, pixel_values: torch.Tensor) -> torch.Tensor:
        return net.encode_image(pixel_values, normalize=True)

    def text_embeds(self, net, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return net.encode_text(tokens["text"], normalize=True)

    def encode_images(self, images: Sequence[Image]) -> torch.Tensor:
        return self.encode_pixels(self.pixel_values(images) if len(images) else torch.empty(0))

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Features of already preprocessed images (``pixel_values``, e.g. made in loader workers)."""
        out = [torch.empty(0, self.embed_dim)]
        for start in range(0, len(pixels), self.batch_size):
            batch = pixels[start:start + self.batch_size].to(self.device, non_blocking=True)
            with autocast(self.device):
                out.append(self.model.encode_image(batch, normalize=True).float().cpu())
        return torch.cat(out)

    def count_tokens(self, text: str) -> int | None:
        """CLIP BPE tokens plus start and end (None for tokenizers without ``encode``)."""
        encode = getattr(self.tokenizer, "encode", None)
        return len(encode(text)) + 2 if encode is not None else None

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        encode = getattr(self.tokenizer, "encode", None)
        if not self.sort_texts or encode is None or getattr(self.tokenizer, "reduction_fn", None) is not None:
            return self._encode_texts_in_order(list(texts))
        # CLIP's BPE, tokenised once: the ids give the truncation count, the length order and the batches.
        ctx, sot, eot = self.context_length, self.tokenizer.sot_token_id, self.tokenizer.eot_token_id
        rows = [[sot, *encode(t), eot] for t in texts]
        self.truncated_texts += sum(len(r) > ctx for r in rows)
        rows = [r if len(r) <= ctx else [*r[:ctx - 1], eot] for r in rows]  # the tokenizer's own cut
        self.text_token_floor += sum(map(len, rows))
        trim = trimmable(self.model)
        out = torch.empty(len(rows), self.embed_dim)
        for batch in length_batches([len(r) for r in rows], self.batch_size):
            tokens = torch.zeros(len(batch), max(len(rows[i]) for i in batch) if trim else ctx, dtype=torch.long)
            for j, i in enumerate(batch):
                tokens[j, :len(rows[i])] = torch.tensor(rows[i])
            self.encoded_text_tokens += tokens.numel()
            with autocast(self.device):
                features = (encode_text_trimmed(self.model, tokens.to(self.device)) if trim
                            else self.model.encode_text(tokens.to(self.device), normalize=True))
            out[batch] = features.float().cpu()
        return out

    def _encode_texts_in_order(self, texts: list[str]) -> torch.Tensor:
        """Batches in the given order, each padded to the full context (the path before length sorting)."""
        out = [torch.empty(0, self.embed_dim)]
        encode = getattr(self.tokenizer, "encode", None)
        for batch in batched(texts, self.batch_size):
            if encode is not None:  # CLIP's BPE: count what the tokenizer is about to cut
                lengths = [len(encode(t)) + 2 for t in batch]
                self.truncated_texts += sum(n > self.context_length for n in lengths)
                self.text_token_floor += sum(min(n, self.context_length) for n in lengths)
            tokens = self.tokenizer(batch).to(self.device)
            self.encoded_text_tokens += tokens.numel()
            with autocast(self.device):
                out.append(self.model.encode_text(tokens, normalize=True).float().cpu())
        return torch.cat(out)


def trimmable(net) -> bool:
    """Whether ``net`` is an open_clip CLIP whose text tower reads its end token through a causal mask (argmax
    pooling): then columns after the longest text of a batch change nothing and can be left out."""
    import open_clip

    return (isinstance(net, open_clip.CLIP) and getattr(net, "text_pool_type", None) == "argmax"
            and getattr(net, "attn_mask", None) is not None)


def encode_text_trimmed(net, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``encode_text`` on a batch cut to its longest text: the position table and the causal mask
    are sliced to the batch's width (docs/speed.md)."""
    from open_clip.transformer import text_global_pool

    width = tokens.shape[1]
    cast = net.transformer.get_cast_dtype()
    x = net.token_embedding(tokens).to(cast) + net.positional_embedding[:width].to(cast)
    x = net.ln_final(net.transformer(x, attn_mask=net.attn_mask[:width, :width]))
    x = text_global_pool(x, tokens, net.text_pool_type, eos_token_id=getattr(net, "text_eos_id", None))
    x = net.text_projection(x) if isinstance(net.text_projection, torch.nn.Linear) else x @ net.text_projection
    return torch.nn.functional.normalize(x, dim=-1)


def load_open_clip(parsed: ModelSpec, *, spec: str, device: str, lora: str | None = None) -> OpenClipModel:
    import open_clip

    target = parsed.target
    if target.startswith("long-clip:"):  # a Long-CLIP checkpoint, its two position tables merged
        from densecaption.models.long_clip import load_long_clip

        return load_long_clip(Path(target[len("long-clip:"):]).expanduser(), spec=spec, device=device, lora=lora)
    if target.startswith("local-dir:"):
        folder = Path(target[len("local-dir:"):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise UserError(f"model spec {spec!r}: {folder} has no open_clip_config.json")
        name, pretrained, weights = f"local-dir:{folder}", None, weights_of_folder(folder)
    else:
        name, _, pretrained = target.partition(":")
        if name not in open_clip.list_models():
            raise UserError(f"model spec {spec!r}: open_clip has no architecture {name!r} "
                            f"(see open_clip.list_models())")
        if not pretrained:
            weights = "random"
        elif Path(pretrained).expanduser().is_file():
            weights = weights_of_folder(Path(pretrained).expanduser().parent)
        else:
            if pretrained not in open_clip.list_pretrained_tags_by_model(name):
                raise UserError(f"model spec {spec!r}: {pretrained!r} is neither a file nor an open_clip "
                                f"pretrained tag of {name}")
            weights = "pretrained"
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained or None)
    except (RuntimeError, OSError, ValueError) as e:
        raise UserError(f"model spec {spec!r}: could not load the weights ({e}). Without network access, "
                        f"download them elsewhere and pass the checkpoint file as PRETRAINED.") from e
    tokenizer = open_clip.get_tokenizer(name)
    if lora is not None:
        split_attention(model)  # adapters are trained on the split attention (see models/attention.py)
        model = apply_lora(model, lora)
    return OpenClipModel(model, preprocess, tokenizer, spec=spec, weights=weights, device=device)


TINY_OVERRIDES = {"embed_dim": 64,
                  "vision_cfg": {"width": 64, "layers": 2, "head_width": 32},
                  "text_cfg": {"width": 64, "layers": 2, "heads": 2}}


def model_config(arch: str, *, tiny: bool = False) -> dict:
    """open_clip's config of ``arch``; with ``tiny``, widths and depths shrunk for fast tests."""
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise UserError(f"open_clip has no architecture {arch!r}")
    if tiny:
        for key, value in TINY_OVERRIDES.items():
            cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    return cfg


def init_random_open_clip(arch: str, out: Path, *, seed: int = 0, tiny: bool = False) -> Path:
    """Write a random-initialised open_clip model as a ``local-dir`` folder with the random marker."""
    import open_clip
    from safetensors.torch import save_file

    cfg = model_config(arch, tiny=tiny)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    out.mkdir(parents=True, exist_ok=True)
    preprocess = {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
                  "interpolation": "bicubic", "resize_mode": "shortest"}
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess},
                                                          indent=1) + "\n")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    write_marker(out, weights="random", backend="open_clip", arch=arch, seed=seed, tiny=tiny)
    return out

"""transformers CLIP and SigLIP models: ``hf:ID_OR_DIR``, a hub id or a local folder.

The kind comes from the folder's ``config.json`` (``model_type``), and the tokenizer and image processor
from the same folder, so a model is preprocessed the way it was trained. Hub ids need network access or the
Hugging Face cache; the build machines have neither, so tests write random models to a folder
(``init_random_hf_clip``) and load them back through the same path a user's download takes.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Sequence

import torch
from PIL.Image import Image

from densecaption.errors import UserError
from densecaption.models.base import EmbeddingModel, autocast, batched, length_batches
from densecaption.models.lora import apply_lora
from densecaption.models.registry import ModelSpec
from densecaption.models.weights import transformers_source, write_marker

# model_type -> transformers class name; the only kinds an embedding benchmark can score.
KINDS = {"clip": "CLIPModel", "siglip": "SiglipModel"}
# model_type -> loader of the pair scorers that are not CLIP-style (own modules; #head=itm|itc).
SCORER_KINDS = {"blip": "densecaption.models.blip_backend:load_blip",
                "flava": "densecaption.models.flava_backend:load_flava"}


class HFEmbeddingModel(EmbeddingModel):
    """A transformers CLIPModel or SiglipModel behind the common contract.

    ``kind`` is the config's ``model_type``. SigLIP texts are padded to the full context and fed without an
    attention mask, as SigLIP was trained (its text tower pools the last position, and its pad is its EOS);
    CLIP texts are padded to the longest in the batch with a mask (its causal mask makes padding inert).
    """

    def __init__(self, model, tokenizer, image_processor, *, kind: str, spec: str, weights: str, device: str,
                 batch_size: int = 64):
        self.model = model.eval().to(device)
        self.kind = kind
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.context_length = context_length(model.config, tokenizer)
        self.embed_dim = embed_dim(model.config)
        self.spec = spec
        self.weights = weights
        self.device = device
        self.batch_size = batch_size
        self.logit_bias = float(model.logit_bias.detach()) if kind == "siglip" else 0.0

    # Hooks for fine-tuning (training/clip.py): LoRA targets as upstream DCI, CPU-side preprocessing,
    # differentiable features.
    lora_targets = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "visual_projection", "text_projection")

    def prepare_for_lora(self) -> None:
        """transformers' attention already has separate projections: nothing to do."""

    def pixel_values(self, images: Sequence[Image]) -> torch.Tensor:
        return rgb_pixel_values(self.image_processor, images)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Model inputs for ``texts``, truncated to the model's context (SigLIP: full-length, no mask)."""
        padding = "max_length" if self.kind == "siglip" else True
        tokens = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=self.context_length,
                                return_tensors="pt")
        inputs = {"input_ids": tokens["input_ids"]}
        if self.kind == "clip" and "attention_mask" in tokens:
            inputs["attention_mask"] = tokens["attention_mask"]
        return inputs

    def image_embeds(self, net, pixel_values: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(pooled(net.get_image_features(pixel_values=pixel_values)), dim=-1)

    def text_embeds(self, net, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.normalize(pooled(net.get_text_features(**tokens)), dim=-1)

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image]) -> torch.Tensor:
        out = [torch.empty(0, self.embed_dim)]
        for batch in batched(list(images), self.batch_size):
            out.append(self.encode_pixels(self.pixel_values(batch)))
        return torch.cat(out)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Features of already preprocessed images (``pixel_values``, e.g. made in loader workers)."""
        out = [torch.empty(0, self.embed_dim)]
        for start in range(0, len(pixels), self.batch_size):
            batch = pixels[start:start + self.batch_size].to(self.device, non_blocking=True)
            with autocast(self.device):
                features = pooled(self.model.get_image_features(pixel_values=batch))
            out.append(normalize(features))
        return torch.cat(out)

    def count_tokens(self, text: str) -> int | None:
        """The tokenizer's ids for ``text`` uncut, special tokens included."""
        return len(self.tokenizer(text, verbose=False)["input_ids"])

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Tokenised once, uncut (verbose=False: no too-long warning): the ids give the truncation count,
        the length order of the batches (CLIP) and, cut and padded per batch, the model inputs."""
        texts = list(texts)
        ctx = self.context_length
        ids = self.tokenizer(texts, verbose=False)["input_ids"] if texts else []
        self.truncated_texts += sum(len(row) > ctx for row in ids)
        # a text over the context is rare: let the tokenizer cut it, its own way
        ids = [row if len(row) <= ctx else self.tokenizer(texts[i], truncation=True, max_length=ctx)["input_ids"]
               for i, row in enumerate(ids)]
        self.text_token_floor += sum(map(len, ids))
        order = list(range(len(ids)))
        batches = (length_batches([len(row) for row in ids], self.batch_size) if self.sort_texts
                   else list(batched(order, self.batch_size)))
        out = torch.empty(len(ids), self.embed_dim)
        for batch in batches:
            padding = {"padding": "max_length", "max_length": ctx} if self.kind == "siglip" else {"padding": True}
            tokens = self.tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt", **padding)
            inputs = {"input_ids": tokens["input_ids"]}
            if self.kind == "clip" and "attention_mask" in tokens:
                inputs["attention_mask"] = tokens["attention_mask"]
            self.encoded_text_tokens += inputs["input_ids"].numel()
            with autocast(self.device):
                features = pooled(self.model.get_text_features(**{k: v.to(self.device) for k, v in inputs.items()}))
            out[batch] = normalize(features)
        return out


def pooled(output) -> torch.Tensor:
    """The projected features: transformers 5 returns an output object (projection in ``pooler_output``),
    older versions a tensor."""
    if isinstance(output, torch.Tensor):
        return output
    features = getattr(output, "pooler_output", None)
    return features if features is not None else output[0]


def normalize(features: torch.Tensor) -> torch.Tensor:
    features = features.float()
    return (features / features.norm(dim=-1, keepdim=True)).cpu()


def context_length(config, tokenizer) -> int:
    """The text length the model takes: the tokenizer's limit, capped by the position table. A CLIP whose
    table is longer than CLIP's 77 (a Long-CLIP port, 248) reads its whole table: such ports often keep
    the 77 of the tokenizer they were copied from (docs/long-text.md)."""
    positions = int(config.text_config.max_position_embeddings)
    if getattr(config, "model_type", "") == "clip" and positions > 77:
        return positions
    limit = getattr(tokenizer, "model_max_length", None)
    return min(positions, int(limit)) if isinstance(limit, int) and limit > 0 else positions


def embed_dim(config) -> int:
    """The feature width: CLIP's projection_dim, SigLIP's text hidden size (its head keeps the width)."""
    if getattr(config, "model_type", "") == "clip":
        return int(config.projection_dim)
    return int(config.text_config.hidden_size)


def load_hf(parsed: ModelSpec, *, spec: str, device: str, lora: str | None = None) -> HFEmbeddingModel:
    import transformers
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    target = parsed.target
    resolved = transformers_source(target, label=f"model spec {spec!r}")
    source, weights = resolved.path_or_id, resolved.weights
    try:
        config = AutoConfig.from_pretrained(source)
        kind = getattr(config, "model_type", None)
        if kind in SCORER_KINDS:  # BLIP and FLAVA: own modules, ITM and ITC heads (docs/scorers-and-classification.md)
            module, _, name = SCORER_KINDS[kind].partition(":")
            return getattr(importlib.import_module(module), name)(parsed, source=source, spec=spec,
                                                                  weights=weights, device=device, lora=lora)
        if kind not in KINDS:
            raise UserError(f"model spec {spec!r}: model_type {kind!r} is not an embedding model this backend "
                            f"scores (known: {', '.join(sorted(KINDS))})")
        model = getattr(transformers, KINDS[kind]).from_pretrained(source, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(source)
        image_processor = AutoImageProcessor.from_pretrained(source)
    except ImportError as e:  # e.g. SigLIP's sentencepiece tokenizer needs sentencepiece and protobuf
        raise UserError(f"model spec {spec!r}: a package the model's tokenizer or processor needs is missing "
                        f"({first_line(e)}); install it, e.g. pip install sentencepiece "
                        f"protobuf") from e
    except (OSError, ValueError) as e:
        if not resolved.is_local:
            raise UserError(f"model spec {spec!r}: could not load {target!r} from the hub: there is no network "
                            f"access or Hugging Face cache for it ({first_line(e)}). Download the model "
                            f"elsewhere and pass its folder: hf:/path/to/folder") from e
        raise UserError(f"model spec {spec!r}: could not load the model folder ({first_line(e)})") from e
    if lora is not None:
        model = apply_lora(model, lora)
    return HFEmbeddingModel(model, tokenizer, image_processor, kind=kind, spec=spec, weights=weights,
                            device=device)


def first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


TINY = {"hidden": 64, "layers": 2, "heads": 2, "projection": 64, "image_size": 224, "patch_size": 32}


def init_random_hf_clip(arch: str, out: Path, *, seed: int = 0, tiny: bool = False) -> Path:
    """Write a random transformers CLIP folder (model, CLIP tokenizer, image processor, random marker).

    Sizes follow open_clip's config of ``arch`` (or a few tiny layers with ``tiny``). The tokenizer is
    built from open_clip's shipped BPE vocabulary, so its ids are those of open_clip and of OpenAI CLIP.
    """
    import open_clip
    from transformers import CLIPConfig, CLIPModel

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise UserError(f"open_clip has no architecture {arch!r}")
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    if (not isinstance(vision.get("layers"), int) or "timm_model_name" in vision or "hf_model_name" in text
            or "hf_tokenizer_name" in text or text.get("vocab_size") != 49408):
        raise UserError(f"{arch}: --backend hf builds ViT CLIP architectures with the CLIP tokenizer "
                        f"(e.g. ViT-B-32, ViT-B-16, ViT-L-14), not this one")
    act = "quick_gelu" if cfg.get("quick_gelu") else "gelu"
    if tiny:
        t = TINY
        vision_config = dict(hidden_size=t["hidden"], intermediate_size=4 * t["hidden"],
                             num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                             image_size=t["image_size"], patch_size=t["patch_size"])
        text_config = dict(hidden_size=t["hidden"], intermediate_size=4 * t["hidden"],
                           num_hidden_layers=t["layers"], num_attention_heads=t["heads"])
        projection_dim = t["projection"]
    else:
        width = vision["width"]
        vision_config = dict(hidden_size=width, intermediate_size=int(width * vision.get("mlp_ratio", 4.0)),
                             num_hidden_layers=vision["layers"],
                             num_attention_heads=width // vision.get("head_width", 64),
                             image_size=vision["image_size"], patch_size=vision["patch_size"])
        text_config = dict(hidden_size=text["width"], intermediate_size=int(text["width"] * text.get("mlp_ratio", 4.0)),
                           num_hidden_layers=text["layers"], num_attention_heads=text["heads"])
        projection_dim = cfg["embed_dim"]
    context = int(text.get("context_length", 77))
    text_config.update(vocab_size=49408, max_position_embeddings=context, hidden_act=act,
                       bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    vision_config.update(hidden_act=act)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text_config, vision_config=vision_config,
                                 projection_dim=projection_dim))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor = clip_processor(out, image_size=int(vision_config["image_size"]), context_length=context)
    processor.save_pretrained(out)
    processor.image_processor.save_pretrained(out)  # preprocessor_config.json too, the layout of hub folders
    write_marker(out, weights="random", backend="hf", arch=arch, seed=seed, tiny=tiny)
    return out


def clip_processor(folder: Path, *, image_size: int = 224, context_length: int = 77):
    """A CLIPProcessor whose tokenizer is open_clip's BPE vocabulary (``vocab.json`` + ``merges.txt``
    written into ``folder``) and whose image processor is OpenAI CLIP's resize, crop and normalisation."""
    import open_clip
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    simple = SimpleTokenizer()
    vocab = dict(simple.encoder)  # open_clip names the two special tokens differently from transformers
    vocab["<|startoftext|>"] = vocab.pop("<start_of_text>")
    vocab["<|endoftext|>"] = vocab.pop("<end_of_text>")
    merges = sorted(simple.bpe_ranks, key=simple.bpe_ranks.__getitem__)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), model_max_length=context_length)
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size},
                                         image_mean=list(open_clip.OPENAI_DATASET_MEAN),
                                         image_std=list(open_clip.OPENAI_DATASET_STD))
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def rgb_pixel_values(image_processor, images: Sequence[Image]) -> torch.Tensor:
    """``pixel_values`` of ``images`` converted to RGB first (photos may be L, RGBA or P)."""
    rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
    return image_processor(images=rgb, return_tensors="pt")["pixel_values"]

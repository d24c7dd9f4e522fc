"""Long-CLIP-style text towers (248 tokens): the position-table stretching of Long-CLIP, a loader of a local
Long-CLIP checkpoint into open_clip (``open_clip:long-clip:FILE``) and a random 248-token transformers
CLIP for tests (``models init-random long-clip OUT --backend hf``).

Facts from Long-CLIP (beichenzbc/Long-CLIP, arXiv 2403.15378); restated in docs/long-text.md.
"""

from __future__ import annotations

from pathlib import Path

import torch

from densecaption.errors import UserError

KEEP = 20
"""Rows of CLIP's 77-row table Long-CLIP keeps as they are (the well-trained short positions)."""
RATIO = 4
LONG_CONTEXT = RATIO * 77 - (RATIO - 1) * KEEP  # 248
POSITION_KEY = "text_model.embeddings.position_embedding.weight"


def stretch_positions(table: torch.Tensor, keep: int = KEEP, ratio: int = RATIO) -> torch.Tensor:
    """Stretch an (n, d) position table to ratio * n - (ratio - 1) * keep rows, as Long-CLIP initialises it:
    rows below ``keep`` copied; rows keep .. n-1 interpolated ``ratio`` times,
    Q[keep + ratio*j + k] = ((ratio - k) P[keep + j] + k P[keep + j + 1]) / ratio; and the last ``ratio``
    rows extrapolated past the end, Q[-ratio + k] = P[n-1] + k (P[n-1] - P[n-2]) / ratio."""
    n = table.shape[0]
    rows = [table[i] for i in range(keep)]
    for j in range(n - 1 - keep):
        a, b = table[keep + j], table[keep + j + 1]
        rows += [((ratio - k) * a + k * b) / ratio for k in range(ratio)]
    last, step = table[n - 1], (table[n - 1] - table[n - 2]) / ratio
    rows += [last + k * step for k in range(ratio)]
    return torch.stack(rows)


def merge_position_tables(frozen: torch.Tensor, residual: torch.Tensor, keep: int = KEEP) -> torch.Tensor:
    """Long-CLIP's two tables as one: rows below ``keep`` of the frozen table, the rest of the trained
    residual one (the model adds them under complementary masks)."""
    if frozen.shape != residual.shape:
        raise ValueError(f"position tables differ in shape: {tuple(frozen.shape)} vs {tuple(residual.shape)}")
    return torch.cat([frozen[:keep], residual[keep:]])


def long_clip_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Long-CLIP checkpoint's state dict (OpenAI CLIP names plus ``positional_embedding_res`` and the
    ``mask1``/``mask2`` buffers) as a plain CLIP state dict with one merged position table."""
    state = dict(state.get("state_dict", state))
    if "positional_embedding" not in state or "positional_embedding_res" not in state:
        raise UserError("not a Long-CLIP checkpoint: it lacks positional_embedding and positional_embedding_res")
    state["positional_embedding"] = merge_position_tables(state["positional_embedding"],
                                                          state.pop("positional_embedding_res"))
    for buffer in ("mask1", "mask2"):
        state.pop(buffer, None)
    return state


def load_long_clip(path: Path, *, spec: str, device: str, lora: str | None = None):
    """A Long-CLIP checkpoint file (LongCLIP-B/L ``.pt``) as an open_clip model with a 248-token tokenizer
    (which cuts longer texts to 248, the last token made end-of-text, as Long-CLIP's ``truncate=True``)."""
    import open_clip
    from open_clip.model import build_model_from_openai_state_dict

    from densecaption.models.attention import split_attention
    from densecaption.models.lora import apply_lora
    from densecaption.models.open_clip_backend import OpenClipModel
    from densecaption.models.weights import weights_of_folder

    if not path.is_file():
        raise UserError(f"model spec {spec!r}: no Long-CLIP checkpoint file at {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise UserError(f"model spec {spec!r}: {path} is not a readable torch checkpoint ({e})") from e
    try:
        state = long_clip_state_dict(raw)
    except UserError as e:
        raise UserError(f"model spec {spec!r}: {path}: {e}") from e
    model = build_model_from_openai_state_dict(state, quick_gelu=True, cast_dtype=None).float()
    context = int(state["positional_embedding"].shape[0])
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
    if lora is not None:
        split_attention(model)
        model = apply_lora(model, lora)
    return OpenClipModel(model, preprocess, tokenizer, spec=spec, weights=weights_of_folder(path.parent),
                         device=device)


def init_random_long_clip(arch: str, out: Path, *, seed: int = 0, tiny: bool = False) -> Path:
    """A random transformers CLIP with a 248-token text window, made as Long-CLIP makes its own: a 77-token
    CLIP (ViT-B-16 sized, LongCLIP-B's tower, or tiny) whose position table is stretched."""
    from transformers import CLIPModel

    from densecaption.models.hf_backend import clip_processor, init_random_hf_clip
    from densecaption.models.weights import write_marker

    init_random_hf_clip("ViT-B-16", out, seed=seed, tiny=tiny)
    short = CLIPModel.from_pretrained(out)
    state = {k: v for k, v in short.state_dict().items() if not k.endswith("position_ids")}
    state[POSITION_KEY] = stretch_positions(state[POSITION_KEY])
    config = short.config
    config.text_config.max_position_embeddings = LONG_CONTEXT
    long = CLIPModel(config)
    missing, unexpected = long.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith("position_ids") for k in missing):
        raise RuntimeError(f"stretched CLIP state does not fit: missing {missing}, unexpected {unexpected}")
    long.save_pretrained(out)
    image_size = int(config.vision_config.image_size)
    clip_processor(out, image_size=image_size, context_length=LONG_CONTEXT).save_pretrained(out)
    write_marker(out, weights="random", backend="hf", arch="long-clip", seed=seed, tiny=tiny)
    return out

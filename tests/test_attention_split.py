"""The LoRA-friendly attention computes what nn.MultiheadAttention computes."""

from __future__ import annotations

import torch
from torch import nn

from densecaption.models.attention import SplitMultiheadAttention, split_attention


def test_matches_multihead_attention_with_masks():
    torch.manual_seed(0)
    for batch_first in (True, False):
        mha = nn.MultiheadAttention(16, 4, batch_first=batch_first).eval()
        split = SplitMultiheadAttention.from_mha(mha).eval()
        x = torch.randn(3, 5, 16) if batch_first else torch.randn(5, 3, 16)
        causal = torch.full((5, 5), float("-inf")).triu(1)
        padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]])
        for kwargs in ({}, {"attn_mask": causal}, {"key_padding_mask": padding},
                       {"attn_mask": causal.isinf(), "key_padding_mask": padding}):
            expected = mha(x, x, x, need_weights=False, **kwargs)[0]
            got = split(x, x, x, need_weights=False, **kwargs)[0]
            assert torch.allclose(got, expected, atol=1e-5), kwargs


def test_split_open_clip_model_gives_the_same_features():
    import open_clip

    from densecaption.models.open_clip_backend import model_config

    torch.manual_seed(0)
    model = open_clip.CLIP(**model_config("ViT-B-32", tiny=True)).eval()
    pixels, tokens = torch.randn(2, 3, 224, 224), open_clip.tokenize(["a red car", "two dogs on grass"])
    with torch.no_grad():
        before = model.encode_image(pixels), model.encode_text(tokens)
        assert split_attention(model) == 4  # 2 vision + 2 text layers
        assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
        after = model.encode_image(pixels), model.encode_text(tokens)
    assert torch.allclose(after[0], before[0], atol=1e-5) and torch.allclose(after[1], before[1], atol=1e-5)

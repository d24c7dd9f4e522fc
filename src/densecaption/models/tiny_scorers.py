"""Tiny random BLIP image-text matching and FLAVA folders, for tests and demos of the ``hf:`` scorers.

Both use the WordPiece *test* tokenizer of ``models/tiny_blip.py`` (BLIP's and FLAVA's real BERT vocabulary
comes from the hub, which the build machines cannot reach) and 64-pixel images so that pairwise ITM scoring
stays fast. The folders load like downloaded ``Salesforce/blip-itm-base-coco`` and ``facebook/flava-full``
folders (``BlipForImageTextRetrieval`` + ``BlipProcessor``; ``FlavaForPreTraining`` + ``FlavaProcessor``); their
marker labels the weights ``random``. Their scores mean nothing.
"""

from __future__ import annotations

from pathlib import Path

from densecaption.models.weights import write_marker

IMAGE_SIZE = 64
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
TOKENIZER_NOTE = "WordPiece test tokenizer trained by densecaption on generated sentences, not BERT's vocabulary"


def init_random_blip_itm(out: Path | str, *, seed: int = 0) -> Path:
    """Write a tiny random ``BlipForImageTextRetrieval`` folder (ITM and ITC heads) to ``out``."""
    import torch
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor

    from densecaption.models.tiny_blip import build_test_tokenizer

    out = Path(out)
    tokenizer = build_test_tokenizer()
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = BlipProcessor(image_processor=BlipImageProcessor(size=size), tokenizer=tokenizer)
    text = dict(TINY, vocab_size=len(tokenizer), max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                sep_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.convert_tokens_to_ids("[DEC]"),
                encoder_hidden_size=TINY["hidden_size"])
    vision = dict(TINY, image_size=IMAGE_SIZE, patch_size=16)
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=32, image_text_hidden_size=32)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    BlipForImageTextRetrieval(config).save_pretrained(out)
    processor.save_pretrained(out)
    write_marker(out, weights="random", backend="hf", arch="blip-itm (tiny)", seed=seed, tokenizer=TOKENIZER_NOTE)
    return out


def init_random_flava(out: Path | str, *, seed: int = 0) -> Path:
    """Write a tiny random ``FlavaForPreTraining`` folder (contrastive and ITM heads) to ``out``."""
    import torch
    from transformers import FlavaConfig, FlavaForPreTraining, FlavaImageProcessor, FlavaProcessor

    from densecaption.models.tiny_blip import build_test_tokenizer

    out = Path(out)
    tokenizer = build_test_tokenizer()
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    image_processor = FlavaImageProcessor(size=size, crop_size=size)
    processor = FlavaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = FlavaConfig(
        image_config=dict(TINY, image_size=IMAGE_SIZE, patch_size=16),
        text_config=dict(TINY, vocab_size=len(tokenizer), max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id),
        multimodal_config=dict(TINY),
        image_codebook_config=dict(hidden_size=8, num_groups=1, num_blocks_per_group=1, vocab_size=64),
        hidden_size=32, projection_dim=32, init_codebook=False)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    FlavaForPreTraining(config).save_pretrained(out)
    processor.save_pretrained(out)
    write_marker(out, weights="random", backend="hf", arch="flava (tiny)", seed=seed, tokenizer=TOKENIZER_NOTE)
    return out

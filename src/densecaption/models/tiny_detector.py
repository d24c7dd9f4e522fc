"""A tiny random-initialised OWL-ViT folder, for tests and demos of T2I-CompBench's detector-based scoring.

No detector weights can be downloaded on the build machines, so this folder exercises the ``owlvit:DIR`` path
(``AutoModelForZeroShotObjectDetection`` + ``AutoProcessor``) exactly as a downloaded ``google/owlvit-*``
folder would. Its tokenizer is CLIP's real BPE vocabulary (shipped by open_clip, as OWL-ViT uses), its weights
are random (marker ``random``): its boxes mean nothing.
"""

from __future__ import annotations

from pathlib import Path

from densecaption.models.weights import write_marker

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
IMAGE_SIZE = 64
PATCH_SIZE = 16
CONTEXT = 16  # OWL-ViT's text context


def init_random_owlvit(out: Path | str, *, seed: int = 0) -> Path:
    """Write the tiny random OWL-ViT folder to ``out`` (detector spec ``owlvit:OUT``); returns the folder."""
    import torch
    from transformers import OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessor, OwlViTProcessor

    from densecaption.models.hf_backend import clip_processor

    out = Path(out)
    tokenizer = clip_processor(out, image_size=IMAGE_SIZE, context_length=CONTEXT).tokenizer
    image_processor = OwlViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                           crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                           do_center_crop=False)
    config = OwlViTConfig(text_config=dict(TINY, max_position_embeddings=CONTEXT, vocab_size=49408),
                          vision_config=dict(TINY, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE), projection_dim=32)
    torch.manual_seed(seed)
    OwlViTForObjectDetection(config).save_pretrained(out)
    OwlViTProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    write_marker(out, weights="random", backend="hf", arch="owlvit (tiny)", seed=seed,
                 tokenizer="CLIP BPE vocabulary from open_clip")
    return out

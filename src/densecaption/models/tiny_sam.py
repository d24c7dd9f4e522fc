"""A tiny random-initialised SAM folder, for tests and demos of ``masks extract``.

No SAM weights can be downloaded on the build machines, so this folder exercises the ``hf:DIR`` path
(``SamModel`` + ``SamProcessor``) exactly as a downloaded ``facebook/sam-vit-*`` folder would: 64 px input,
about 40k parameters. ``init_random_sam2`` writes the same for SAM 2 (``Sam2Model``; used by the tests, no
``init-random`` entry). Their weights are random (marker ``random``): their masks mean nothing.
"""

from __future__ import annotations

from pathlib import Path

from densecaption.models.weights import write_marker

IMAGE_SIZE = 64


def init_random_sam(out: Path | str, *, seed: int = 0) -> Path:
    """Write the tiny random SAM folder to ``out`` (``masks extract --sam hf:OUT``); returns the folder."""
    import torch
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    out = Path(out)
    config = SamConfig(
        vision_config=dict(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2,
                           image_size=IMAGE_SIZE, patch_size=8, window_size=4, global_attn_indexes=[1],
                           num_pos_feats=8, mlp_dim=64),
        prompt_encoder_config=dict(hidden_size=16, image_size=IMAGE_SIZE, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_attention_heads=2, iou_head_hidden_dim=16),
    )
    torch.manual_seed(seed)
    SamModel(config).save_pretrained(out)
    processor = SamImageProcessor(size={"longest_edge": IMAGE_SIZE}, pad_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                  mask_size={"longest_edge": IMAGE_SIZE // 4},
                                  mask_pad_size={"height": IMAGE_SIZE // 4, "width": IMAGE_SIZE // 4})
    SamProcessor(image_processor=processor).save_pretrained(out)
    write_marker(out, weights="random", backend="hf", arch="sam (tiny)", seed=seed)
    return out


def init_random_sam2(out: Path | str, *, seed: int = 0) -> Path:
    """Write a tiny random SAM 2 folder (``Sam2Model`` + ``Sam2Processor``, 64 px, a 4-stage Hiera of 5
    blocks, about 345k parameters) to ``out`` (``masks extract --sam hf:OUT``); returns the folder."""
    import torch
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor

    out = Path(out)
    size = IMAGE_SIZE
    hiera = dict(model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1, image_size=[size, size],
                 blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                 num_attention_heads_per_stage=[1, 1, 2, 2], window_size_per_stage=[4, 4, 2, 2],
                 global_attention_blocks=[3],  # a global block must not open a stage (stages open at 0, 1, 2, 4)
                 window_positional_embedding_background_size=[2, 2])
    config = Sam2Config(
        vision_config=dict(backbone_config=hiera, backbone_channel_list=[128, 64, 32, 16],
                           backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]], fpn_hidden_size=32),
        prompt_encoder_config=dict(hidden_size=32, image_size=size, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=16),
    )
    torch.manual_seed(seed)
    Sam2Model(config).save_pretrained(out)
    processor = Sam2ImageProcessor(size={"height": size, "width": size}, mask_size={"height": size // 4, "width": size // 4})
    Sam2Processor(image_processor=processor).save_pretrained(out)
    write_marker(out, weights="random", backend="hf", arch="sam2 (tiny)", seed=seed)
    return out

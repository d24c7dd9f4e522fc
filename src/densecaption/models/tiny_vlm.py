"""A tiny random-initialised LLaVA (image-text-to-text) folder, for tests and demos of ``caption``.

No captioning model can be downloaded on the build machines, so the local vision-language path is exercised
with this one: a 1-layer CLIP vision tower and a 1-layer Llama, a word-level *test* tokenizer built here
(not a real one), a LLaVA processor with a small chat template, and the marker that labels its outputs
``weights: random``. Its captions are random words; what it proves is that ``hf:DIR`` loads and runs an
image-text-to-text model through the same code a real downloaded model takes.
"""

from __future__ import annotations

from pathlib import Path

from densecaption.models.weights import write_marker

WORDS = ("a the photo of dog cat red green blue on in with sits stands grass table tree sky man woman small "
         "large white black road car house water").split()
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
CHAT_TEMPLATE = ("{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
                 "{% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}")


def init_random_llava(out: Path | str, *, seed: int = 0) -> Path:
    """Write the tiny random LLaVA folder to ``out`` (loadable as ``hf:OUT``); returns the folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    out = Path(out)
    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>",
                                        extra_special_tokens={"image_token": "<image>"})
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                               image_token="<image>", num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                                bos_token_id=1, eos_token_id=2, pad_token_id=3),
        image_token_index=vocab["<image>"], vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(config).save_pretrained(out)
    processor.save_pretrained(out)
    write_marker(out, weights="random", backend="hf", arch="llava (tiny)", seed=seed,
                 tokenizer="word-level test tokenizer built by densecaption, not a real one")
    return out

"""A tiny random-initialised causal LM folder, for tests and demos of the text-only language prior (``lm:DIR``).

No language model can be downloaded on the build machines, so ``lm:`` is exercised with this one: a 2-layer
Llama with a word-level *test* tokenizer over a small caption vocabulary (not a real tokenizer; other words
become ``<unk>``), saved like any local checkpoint, with the marker that labels its scores ``weights: random``.
Its context is 32 positions, so longer texts are truncated (and counted) as with a real model's window.
"""

from __future__ import annotations

from pathlib import Path

from densecaption.models.weights import write_marker

WORDS = ("a an the of on in with and under near next to is are two three dog cat man woman person bird horse car "
         "tree grass sky table chair road house water wall red green blue white black brown yellow small large "
         "old young sits stands runs lies holds wooden").split()
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]
CONTEXT = 32


def init_random_lm(out: Path | str, *, seed: int = 0) -> Path:
    """Write the tiny random Llama folder to ``out`` (model spec ``lm:OUT``); returns the folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(out)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=CONTEXT,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    LlamaForCausalLM(config).save_pretrained(out)
    write_marker(out, weights="random", backend="lm", arch="llama (tiny)", seed=seed,
                 tokenizer="word-level test tokenizer over a small caption vocabulary, not a real one")
    return out

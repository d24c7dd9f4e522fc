"""A tiny random-initialised BLIP VQA folder, for tests and demos of T2I-CompBench's BLIP-VQA scoring.

BLIP's real tokenizer (BERT's WordPiece vocabulary) comes from the hub, which the build machines cannot reach,
so the folder carries a *test* tokenizer: a BERT-style WordPiece vocabulary trained here with the ``tokenizers``
library on a few hundred generated sentences (with "yes" and "no" as whole tokens, BERT's special tokens and
BLIP's [DEC] and [ENC]), saved as transformers' BERT tokenizer. The folder loads like a downloaded
``Salesforce/blip-vqa-*`` folder (``BlipForQuestionAnswering`` + ``BlipProcessor``); its marker labels the
weights ``random`` and the tokenizer a test tokenizer. Its answers mean nothing.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from densecaption.models.weights import write_marker

COLOURS = "red green blue yellow black white brown pink purple orange gray".split()
THINGS = ("bench bowl cake cat dog person car chair table book apple vase bag bottle cup bird horse sheep frog "
          "lamp giraffe mouse key girl boy man woman hat coat rack phone").split()
WORDS = "a an the and on of in with is was top side left right next to near bottom yes no".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BLIP_SPECIAL = ["[DEC]", "[ENC]"]
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 max_position_embeddings=64)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   image_size=384, patch_size=16)  # 384: the hub checkpoints' size; scoring runs at 480


def training_sentences() -> list[str]:
    """A few hundred sentences over a small vocabulary, punctuation and "yes"/"no" included."""
    phrases = [f"a {c} {t}" for c, t in itertools.product(COLOURS, THINGS)]
    sentences = [f"{a} and {b}?" for a, b in zip(phrases, phrases[7:] + phrases[:7])]
    sentences += [f"{p} on the {w} of the {t}." for p, w, t in zip(phrases, itertools.cycle(("left", "right",
                  "top", "bottom", "side")), itertools.cycle(THINGS))]
    sentences += [" ".join(WORDS), "yes", "no", "yes.", "no."] * 3
    return sentences


def build_test_tokenizer(sentences: list[str] | None = None):
    """A BERT-style WordPiece tokenizer (lower case, [CLS] ... [SEP]) whose vocabulary is every character (alone
    and as a ``##`` continuation) and every whole word of ``sentences``, in sorted order: the same files on
    every run and in every process (the WordPiece trainer is not: its ties fall differently per process)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    pieces = [piece for text in (sentences or training_sentences()) for piece in re.findall(r"\w+|[^\w\s]",
                                                                                                 text.lower())]
    chars = sorted({c for piece in pieces for c in piece})
    tokens = [*SPECIAL, *chars, *(f"##{c}" for c in chars), *sorted(set(pieces) - set(chars))]
    backend = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer = BertTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", sep_token="[SEP]",
                                  pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]", bos_token="[DEC]",
                                  extra_special_tokens={"enc_token": "[ENC]"})
    for word in ("yes", "no", "[DEC]", "[ENC]"):
        if tokenizer.convert_tokens_to_ids(word) in (None, tokenizer.unk_token_id):
            raise RuntimeError(f"test tokenizer: {word!r} did not become a whole token")
    return tokenizer


def init_random_blip_vqa(out: Path | str, *, seed: int = 0) -> Path:
    """Write the tiny random BLIP VQA folder to ``out`` (a VQA model spec: the folder); returns the folder."""
    import torch
    from transformers import BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor

    out = Path(out)
    tokenizer = build_test_tokenizer()
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 384, "width": 384}),
                              tokenizer=tokenizer)
    text = dict(TINY_TEXT, vocab_size=len(tokenizer), bos_token_id=tokenizer.convert_tokens_to_ids("[DEC]"),
                pad_token_id=tokenizer.pad_token_id, sep_token_id=tokenizer.sep_token_id,
                encoder_hidden_size=TINY_VISION["hidden_size"])
    config = BlipConfig(text_config=text, vision_config=dict(TINY_VISION), projection_dim=32)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    BlipForQuestionAnswering(config).save_pretrained(out)
    processor.save_pretrained(out)
    write_marker(out, weights="random", backend="hf", arch="blip-vqa (tiny)", seed=seed,
                 tokenizer="WordPiece test tokenizer trained by densecaption on generated sentences, "
                           "not BLIP's (BERT's) vocabulary")
    return out

"""The transformers backend (``hf:``): CLIP and SigLIP folders loaded through the real path and checked
against transformers' own forward pass; the CLIP tokenizer built offline; truncation; LoRA; hub errors."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.errors import UserError
from densecaption.models.registry import load_model

TEXTS = ["a photo of a cat", "A RED box, on the floor!", "two dogs; one sleeping", "x"]
LONG = " ".join(["word"] * 120)


@pytest.fixture(scope="module")
def tiny_hf_clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-hf-clip")
    result = CliRunner().invoke(build_app(), ["models", "init-random", "ViT-B-32", str(out), "--backend", "hf",
                                              "--tiny", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert f"hf:{out}" in result.output
    return out


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in [(120, 90), (64, 200)]]


def clip_logits(model, processor, images, texts) -> torch.Tensor:
    """What transformers itself says: CLIP's logits_per_image for a padded batch."""
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits_per_image


def test_tokenizer_ids_match_open_clip(tiny_hf_clip):
    import open_clip
    from transformers import AutoTokenizer

    sentences = ["A photo of a CAT.", "Hello, World!! It's 3 o'clock; what's up?", "  spaces\tand\nnewlines ",
                 "naïve café — (brackets) & 42%", "don't STOP-me now..."]
    hf = AutoTokenizer.from_pretrained(str(tiny_hf_clip))
    ours = open_clip.get_tokenizer("ViT-B-32")(sentences)
    for sentence, row in zip(sentences, ours.tolist()):
        expected = row[:row.index(49407) + 1]  # open_clip pads with 0 after the end token
        assert hf(sentence)["input_ids"] == expected, sentence


def test_random_clip_loads_and_scores_like_transformers(tiny_hf_clip, images):
    from transformers import CLIPModel, CLIPProcessor

    model = load_model(f"hf:{tiny_hf_clip}", device="cpu")
    assert (model.weights, model.kind, model.context_length, model.logit_bias) == ("random", "clip", 77, 0.0)
    features = model.encode_texts(TEXTS)
    assert features.dtype == torch.float32 and torch.allclose(features.norm(dim=-1), torch.ones(len(TEXTS)))
    model.batch_size = 3  # batching must not change anything
    ours = model.score(images, TEXTS)
    reference = clip_logits(CLIPModel.from_pretrained(str(tiny_hf_clip)), CLIPProcessor.from_pretrained(str(tiny_hf_clip)),
                            images, TEXTS)
    assert ours.shape == (2, len(TEXTS))
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


def test_long_texts_are_truncated_and_counted(tiny_hf_clip):
    model = load_model(f"hf:{tiny_hf_clip}", device="cpu")
    features = model.encode_texts(["short", LONG, LONG + " and more beyond the cut"])
    assert model.truncated_texts == 2
    torch.testing.assert_close(features[1], features[2])  # both cut to the same first 77 tokens
    model.encode_texts(["short again"])
    assert model.truncated_texts == 2


def test_unknown_hub_id_is_a_user_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import, so patch it too
    spec = "hf:nobody-here/no-such-clip"
    with pytest.raises(UserError, match="no network") as info:
        load_model(spec, device="cpu")
    assert spec in str(info.value) and "folder" in str(info.value)


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load_model(f"hf:{tmp_path}", device="cpu")
    with pytest.raises(UserError, match="not a folder"):
        load_model(f"hf:{tmp_path / 'missing'}", device="cpu")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UserError, match="'bert'"):
        load_model(f"hf:{tmp_path}", device="cpu")


def write_test_siglip(folder, *, bias: float, scale: float):
    """A tiny random SigLIP with a test tokenizer: a unigram model trained here on 200 generated sentences
    (SigLIP's own sentencepiece vocabulary comes from the hub), EOS appended and used as pad like SigLIP's."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipImageProcessor, SiglipModel

    rng = random.Random(0)
    words = "a the red blue green cat dog box sits on under near small large photo of with and tree house".split()
    sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(200)]
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.train_from_iterator(sentences, trainers.UnigramTrainer(vocab_size=64, unk_token="<unk>",
                                                                   special_tokens=["<pad>", "</s>", "<unk>"]))
    eos = backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", pad_token="</s>",
                                        unk_token="<unk>", model_max_length=16)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = SiglipConfig(text_config=dict(small, vocab_size=backend.get_vocab_size(), max_position_embeddings=16,
                                           pad_token_id=eos, eos_token_id=eos, bos_token_id=None),
                          vision_config=dict(small, image_size=32, patch_size=16))
    torch.manual_seed(0)
    model = SiglipModel(config)
    with torch.no_grad():  # transformers initialises both at 0; set them so that both show in the scores
        model.logit_scale.fill_(math.log(scale))
        model.logit_bias.fill_(bias)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def test_siglip_applies_logit_bias_like_transformers(tmp_path, images):
    from transformers import AutoImageProcessor, AutoTokenizer, SiglipModel

    write_test_siglip(tmp_path, bias=-3.0, scale=10.0)
    model = load_model(f"hf:{tmp_path}", device="cpu")
    assert (model.kind, model.weights, model.context_length) == ("siglip", "unknown", 16)
    assert model.logit_bias == pytest.approx(-3.0) and model.logit_scale == pytest.approx(10.0)
    ours = model.score(images, TEXTS)
    cosine = model.encode_images(images) @ model.encode_texts(TEXTS).T
    torch.testing.assert_close(ours, 10.0 * cosine - 3.0)

    tokenizer, processor = AutoTokenizer.from_pretrained(str(tmp_path)), AutoImageProcessor.from_pretrained(str(tmp_path))
    ids = tokenizer(TEXTS, padding="max_length", truncation=True, return_tensors="pt")["input_ids"]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():  # as SigLIP was trained: padded to the full length, no attention mask
        reference = SiglipModel.from_pretrained(str(tmp_path))(input_ids=ids, pixel_values=pixels).logits_per_image
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


def test_lora_adapter_is_applied(tiny_hf_clip, tmp_path, images):
    from peft import LoraConfig, get_peft_model
    from transformers import CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    peft_model = get_peft_model(CLIPModel.from_pretrained(str(tiny_hf_clip)),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    peft_scores = clip_logits(peft_model.eval(), CLIPProcessor.from_pretrained(str(tiny_hf_clip)), images, TEXTS)

    adapted = load_model(f"hf:{tiny_hf_clip}", device="cpu", lora=str(tmp_path / "adapter"))
    assert adapted.lora == str(tmp_path / "adapter")
    ours = adapted.score(images, TEXTS)
    torch.testing.assert_close(ours, peft_scores, atol=1e-4, rtol=1e-4)
    base = load_model(f"hf:{tiny_hf_clip}", device="cpu").score(images, TEXTS)
    assert (ours - base).abs().max() > 1e-3


def test_adapter_made_elsewhere_loads_with_a_note_when_it_names_another_base(tiny_hf_clip, tmp_path):
    import json

    from peft import LoraConfig, get_peft_model
    from transformers import CLIPModel

    folder = tmp_path / "adapter"  # as DCI's released adapters: peft files only, trained on a hub id
    get_peft_model(CLIPModel.from_pretrained(str(tiny_hf_clip)),
                   LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(str(folder))
    assert load_model(f"hf:{tiny_hf_clip}", device="cpu", lora=str(folder)).notes == ()
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path":
                                                            "openai/clip-vit-base-patch32"}))
    notes = load_model(f"hf:{tiny_hf_clip}", device="cpu", lora=str(folder)).notes
    assert len(notes) == 1 and "openai/clip-vit-base-patch32" in notes[0]


def test_adapter_for_other_layers_is_refused(tiny_hf_clip, tmp_path):
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import CLIPModel

    folder = tmp_path / "adapter"
    get_peft_model(CLIPModel.from_pretrained(str(tiny_hf_clip)),
                   LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(str(folder))
    weights = load_file(str(folder / "adapter_model.safetensors"))  # layer 7 of a deeper model
    save_file({k.replace("layers.1.", "layers.7."): v for k, v in weights.items()},
              str(folder / "adapter_model.safetensors"))
    with pytest.raises(UserError, match="match no layer of this model"):
        load_model(f"hf:{tiny_hf_clip}", device="cpu", lora=str(folder))

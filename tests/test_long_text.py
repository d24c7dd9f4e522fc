"""Texts past a model's window: chunking, pooling, recall and buckets worked by hand; Long-CLIP's position
stretching; the ``#long=`` spec option and the random 248-token CLIP through the real loading path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.errors import UserError
from densecaption.evaluation.long_text import bucket_labels, chunk_text, length_bucket, max_pool_scores, \
    mean_pool, recall_hits, split_parts, split_sentences
from densecaption.models.base import ImageTextModel
from densecaption.models.long_clip import LONG_CONTEXT, merge_position_tables, stretch_positions
from densecaption.models.long_text import LongTextModel
from densecaption.models.registry import load_model


def words(text: str) -> int:
    """A stand-in tokenizer: one token per word, plus start and end."""
    return len(text.split()) + 2


def chars(text: str) -> int:
    return len(text) + 2


# ------------------------------------------------------------------------------------------------ chunking

def test_sentences_break_after_end_marks_and_at_newlines():
    assert split_sentences("A cat. A dog!  Why?\nred: a box\n\nend") == ["A cat.", "A dog!", "Why?", "red: a box",
                                                                       "end"]
    assert split_sentences("v1.5 is here") == ["v1.5 is here"]  # a period inside a word is no break


def test_a_text_that_fits_is_one_chunk_itself():
    # "a b c d": 4 words + 2 = 6 tokens = the window: kept whole, sentences not split
    assert chunk_text("a b. c d", words, 6) == ["a b. c d"]


def test_a_text_just_over_the_window_splits_at_its_sentence():
    # "a b. c d e.": 5 words + 2 = 7 > 6; "a b." (4) + "c d e." (5) joined would be 5 words = 7 > 6
    assert chunk_text("a b. c d e.", words, 6) == ["a b.", "c d e."]


def test_sentences_are_packed_greedily_and_a_long_sentence_is_cut():
    # window 6 = 4 words. Sentences: "A b c." (3 words), "D e!" (2), "F g h i j k." (6: cut into 4 + 2), "L" (1).
    # "A b c." + "D e!" = 5 words > 4 -> emit; "D e!" + "F g h i" = 6 > 4 -> emit; "F g h i" + "j k." = 6 -> emit;
    # "j k." + "L" = 3 words -> one chunk.
    assert chunk_text("A b c. D e! F g h i j k. L", words, 6) == ["A b c.", "D e!", "F g h i", "j k. L"]


def test_a_word_longer_than_the_window_is_cut_between_characters():
    # chars: len + 2 <= 5 -> at most 3 characters per piece: "abcdefg" -> "abc", "def", "g"
    assert chunk_text("abcdefg", chars, 5) == ["abc", "def", "g"]


def test_every_chunk_fits_and_no_word_is_lost():
    text = "One two three. " * 7 + "Four five six seven eight nine ten eleven twelve."
    chunks = chunk_text(text, words, 8)
    assert all(words(c) <= 8 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_parts_are_the_lines_without_the_header_each_cut_to_fit():
    text = ("A box.\nA red box on a floor. It is big.\nThe following can also be seen in the image:\n"
            "lid: the lid\nfloor")
    # 2 + 2 + 8 + 8 + 3 + 1 words = 24 + 2 > 8: split into lines; the header goes; "A red box on a floor. It is big."
    # (8 words + 2 > 8) is chunked at its sentence: "A red box on a floor." (6 + 2 = 8) and "It is big."
    assert split_parts(text, words, 8) == ["A box.", "A red box on a floor.", "It is big.", "lid: the lid", "floor"]
    assert split_parts("a\nb", words, 8) == ["a\nb"]  # fits: itself


# ------------------------------------------------------------------------------------------------- pooling

def test_mean_pool_renormalises_the_mean_of_unit_rows():
    # [3, 4] -> [0.6, 0.8]; [0, 2] -> [0, 1]; mean [0.3, 0.9]; norm sqrt(0.09 + 0.81) = 0.948683
    pooled = mean_pool(np.array([[3.0, 4.0], [0.0, 2.0]]))
    assert pooled == pytest.approx([0.3 / 0.948683, 0.9 / 0.948683], abs=1e-6)


def test_max_pool_takes_each_texts_best_chunk():
    # chunks 0 and 1 belong to text 0, chunk 2 to text 1: row 0 -> max(1, 5) = 5, 2; row 1 -> max(4, 0) = 4, 3
    scores = max_pool_scores(np.array([[1.0, 5.0, 2.0], [4.0, 0.0, 3.0]]), [0, 0, 1], 2)
    assert scores.tolist() == [[5.0, 2.0], [4.0, 3.0]]
    with pytest.raises(ValueError, match="text 1 has no chunk"):
        max_pool_scores(np.ones((1, 2)), [0, 0], 2)


def test_recall_ranks_ties_by_the_lower_index():
    scores = np.array([[0.9, 0.9, 0.1],   # true 0.9 at 0: nothing higher, no earlier tie -> rank 0
                       [0.2, 0.5, 0.5],   # true 0.5 at 1: the tie at 2 comes later -> rank 0
                       [0.3, 0.3, 0.3]])  # true 0.3 at 2: ties at 0 and 1 come first -> rank 2
    assert recall_hits(scores, 1) == [True, True, False]
    assert recall_hits(scores, 2) == [True, True, False]
    assert recall_hits(scores, 3) == [True, True, True]


def test_length_buckets():
    assert [length_bucket(n) for n in (5, 77, 78, 248, 249, 1024, 1025)] == \
        ["<=77", "<=77", "78-248", "78-248", "249-512", "513-1024", ">1024"]
    assert bucket_labels((10, 20)) == ["<=10", "11-20", ">20"]


# ------------------------------------------------------------------------------------- Long-CLIP stretching

def test_stretching_by_hand_on_a_small_table():
    # P = [0, 10, 20, 30, 50], keep 2, ratio 2 -> 2 * 5 - 1 * 2 = 8 rows: 0, 10 kept; 20..30 and 30..50
    # interpolated by 2: 20, 25, 30, 40; tail 50 + k * (50 - 30) / 2: 50, 60
    table = torch.tensor([[0.0], [10.0], [20.0], [30.0], [50.0]])
    assert stretch_positions(table, keep=2, ratio=2).flatten().tolist() == [0, 10, 20, 25, 30, 40, 50, 60]


def test_stretching_clips_table_gives_longclips_248_rows():
    table = torch.randn(77, 3)
    q = stretch_positions(table)
    assert q.shape == (LONG_CONTEXT, 3) == (248, 3)
    assert torch.equal(q[:20], table[:20])
    # Q[20 + 4j + k] = ((4 - k) P[20 + j] + k P[21 + j]) / 4, e.g. j = 3, k = 1
    assert torch.allclose(q[20 + 12 + 1], (3 * table[23] + table[24]) / 4)
    assert torch.allclose(q[247], table[76] + 3 * (table[76] - table[75]) / 4)


def test_merging_the_two_tables_keeps_20_frozen_rows():
    frozen, residual = torch.zeros(248, 2), torch.ones(248, 2)
    merged = merge_position_tables(frozen, residual)
    assert merged[:20].sum() == 0 and torch.equal(merged[20:], residual[20:])


# ------------------------------------------------------------------------------------ the #long= option

class WordModel(ImageTextModel):
    """A test double: a 2-dim feature per known text, one token per word."""

    weights, spec, context_length = "random", "double:words", 6

    def __init__(self, table: dict[str, list[float]]):
        self.table = table
        self.seen: list[str] = []

    def count_tokens(self, text):
        return words(text)

    def encode_images(self, images):
        return torch.tensor(images, dtype=torch.float32)

    def encode_texts(self, texts):
        self.seen += list(texts)
        self.truncated_texts += sum(words(t) > self.context_length for t in texts)
        return torch.tensor([self.table[t] for t in texts], dtype=torch.float32)

    def similarity(self, image_features, text_features):
        return image_features @ text_features.T


def test_chunk_mean_is_one_row_per_text_from_each_unique_chunk():
    inner = WordModel({"a b.": [1.0, 0.0], "c d e.": [0.0, 1.0], "x": [0.6, 0.8]})
    model = LongTextModel(inner, "chunk-mean")
    rows = model.encode_texts(["a b. c d e.", "x", "c d e."])
    # text 0: mean of [1, 0] and [0, 1] = [0.5, 0.5], re-normalised [0.7071, 0.7071]; the others as encoded
    assert rows.flatten().tolist() == pytest.approx([0.707107, 0.707107, 0.6, 0.8, 0.0, 1.0], abs=1e-6)
    assert sorted(inner.seen) == ["a b.", "c d e.", "x"] and model.truncated_texts == 0
    # parts-mean: 5 words + 2 = 7 > 6, so the lines "a b c" and "d e", each fitting: mean of [0, 1] and [1, 0]
    inner = WordModel({"a b c": [0.0, 1.0], "d e": [1.0, 0.0]})
    parts = LongTextModel(inner, "parts-mean").encode_texts(["a b c\nd e"])
    assert parts.flatten().tolist() == pytest.approx([0.707107, 0.707107], abs=1e-6)


def test_native_refuses_and_chunk_max_needs_the_benchmark():
    inner = WordModel({"x": [1.0, 0.0]})
    with pytest.raises(UserError, match="1 of 2 texts are longer than its 6-token window"):
        LongTextModel(inner, "native").encode_texts(["x", "a b c d e"])
    with pytest.raises(UserError, match="sdci-full"):
        LongTextModel(inner, "chunk-max").encode_texts(["a b. c d e."])
    assert LongTextModel(inner, "chunk-max").encode_texts(["x"]).tolist() == [[1.0, 0.0]]
    with pytest.raises(UserError, match="choose from truncate, native, chunk-mean, chunk-max, parts-mean"):
        LongTextModel(inner, "chunk-median")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("clip")
    made = CliRunner().invoke(build_app(), ["models", "init-random", "ViT-B-32", str(out), "--tiny"])
    assert made.exit_code == 0, made.output
    return str(out)


def test_long_option_in_the_spec_chunks_a_77_token_model(tiny_clip):
    spec = f"open_clip:local-dir:{tiny_clip}#long=chunk-mean"
    model = load_model(spec, device="cpu")
    assert (model.spec, model.weights, model.long_mode, model.context_length) == (spec, "random", "chunk-mean", 77)
    long = "A cat sits on a red mat near the door. " * 12  # 12 x 11 tokens + 2 = 134 > 77
    assert model.count_tokens(long) == 134
    chunks = model.chunks(long)
    assert len(chunks) == 2 and all(model.count_tokens(c) <= 77 for c in chunks)
    rows = model.encode_texts([long, "a cat"])
    assert rows.shape[0] == 2 and torch.allclose(rows.norm(dim=1), torch.ones(2))
    assert model.truncated_texts == 0 and "chunk-mean" in model.notes[-1]
    plain = load_model(f"open_clip:local-dir:{tiny_clip}", device="cpu")
    assert torch.allclose(plain.encode_texts(["a cat"]), rows[1:], atol=1e-6)
    with pytest.raises(UserError, match="#long=sideways"):
        load_model(f"open_clip:local-dir:{tiny_clip}#long=sideways", device="cpu")


def test_a_longclip_checkpoint_loads_into_open_clip(tiny_clip, tmp_path):
    """A Long-CLIP-format file (OpenAI names, two stretched tables, masks) built from a tiny CLIP."""
    from safetensors.torch import load_file

    state = load_file(f"{tiny_clip}/open_clip_model.safetensors")
    frozen = stretch_positions(state["positional_embedding"])
    state.update(positional_embedding=frozen, positional_embedding_res=frozen + 1.0,
                 mask1=torch.zeros(248, 1), mask2=torch.ones(248, 1))
    torch.save(state, tmp_path / "longclip-tiny.pt")
    model = load_model(f"open_clip:long-clip:{tmp_path / 'longclip-tiny.pt'}", device="cpu")
    table = model.model.positional_embedding.detach()
    assert model.context_length == 248 and table.shape[0] == 248
    assert torch.equal(table[:20], frozen[:20]) and torch.equal(table[20:], frozen[20:] + 1.0)
    text = "word " * 200  # 202 tokens: fits 248, not 77
    model.encode_texts([text, "word " * 300])
    assert model.truncated_texts == 1
    with pytest.raises(UserError, match="not a Long-CLIP checkpoint"):
        torch.save({"positional_embedding": frozen}, tmp_path / "plain.pt")
        load_model(f"open_clip:long-clip:{tmp_path / 'plain.pt'}", device="cpu")


def test_random_248_token_clip_is_written_and_loaded_through_the_real_path(tmp_path):
    out = tmp_path / "long"
    made = CliRunner().invoke(build_app(), ["models", "init-random", "long-clip", str(out), "--backend", "hf",
                                            "--tiny"])
    assert made.exit_code == 0, made.output
    model = load_model(f"hf:{out}", device="cpu")
    assert (model.kind, model.weights, model.context_length) == ("clip", "random", 248)
    assert model.count_tokens("word " * 200) == 202
    rows = model.encode_texts(["word " * 200, "word " * 260])
    assert rows.shape == (2, model.embed_dim) and model.truncated_texts == 1  # 262 > 248; 202 fits
    # the table is the stretched table of the 77-token CLIP the same seed makes
    from transformers import CLIPModel

    from densecaption.models.hf_backend import init_random_hf_clip
    from densecaption.models.long_clip import POSITION_KEY

    short = CLIPModel.from_pretrained(init_random_hf_clip("ViT-B-16", tmp_path / "short", seed=0, tiny=True))
    expected = stretch_positions(short.state_dict()[POSITION_KEY])
    assert torch.allclose(model.model.state_dict()[POSITION_KEY], expected)


def test_a_clip_config_longer_than_77_sets_the_window():
    from types import SimpleNamespace as NS

    from densecaption.models.hf_backend import context_length

    def config(kind: str, positions: int):
        return NS(model_type=kind, text_config=NS(max_position_embeddings=positions))

    # a Long-CLIP port that kept the 77 of the tokenizer it was copied from reads its 248 positions
    assert context_length(config("clip", 248), NS(model_max_length=77)) == 248
    assert context_length(config("clip", 77), NS(model_max_length=77)) == 77
    assert context_length(config("siglip", 64), NS(model_max_length=16)) == 16  # others: the smaller

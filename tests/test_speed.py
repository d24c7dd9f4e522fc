"""The fast sDCI path changes no number: texts batched by token length come back in the given order, crops
preprocessed in loader workers encode as before, and the six numbers equal those of the plain path."""

from __future__ import annotations

import pytest
import torch

from benchmarks.naive_sdci import PreviousImages
from densecaption.data.dci import DCIDataset
from densecaption.evaluation.features import FeatureStore
from densecaption.evaluation.sdci import evaluate_sdci
from densecaption.models.base import length_batches


@pytest.fixture(scope="module")
def model(tiny_clip_each):
    return tiny_clip_each


def test_length_batches_sort_stably_and_cut_to_size_and_slack():
    # lengths 5, 3, 9, 3, 7 sorted: index 1 (3), 3 (3, after 1: stable), 0 (5), 4 (7), 2 (9)
    # any slack, two per batch: [1, 3] then 0 (5 > 1.05 * 3) starts one, 4 (7 > 1.05 * 5), 2 (9 > 1.05 * 7)
    assert length_batches([5, 3, 9, 3, 7], 2) == [[1, 3], [0], [4], [2]]
    # slack 1 (up to twice the first): [1, 3] full at two; [0, 4] (7 <= 2 * 5) full; [2]
    assert length_batches([5, 3, 9, 3, 7], 2, slack=1.0) == [[1, 3], [0, 4], [2]]
    # slack 1, three per batch: [1, 3, 0] (5 <= 6) full; [4, 2] (9 <= 14)
    assert length_batches([5, 3, 9, 3, 7], 3, slack=1.0) == [[1, 3, 0], [4, 2]]
    assert length_batches([], 4) == []


def test_sorted_batches_return_rows_in_the_given_order_and_pad_little(model):
    # one BPE token per word: "cat" is start + cat + end = 3 tokens, "red cat" 4, "cat cat" 4, "a big red cat" 6
    texts = ["a big red cat", "cat", "red cat", "cat cat"]
    model.batch_size, model.encoded_text_tokens, model.text_token_floor = 2, 0, 0
    try:
        together = model.encode_texts(texts)
        # floor 6 + 3 + 4 + 4 = 17; batches [cat] (3), [red cat, cat cat] (4 > 1.05 * 3 starts it; 4, 4) and
        # [a big red cat] (6 > 1.05 * 4): 3 + 2 * 4 + 6 = 17 tokens encoded, no padding
        assert model.text_token_floor == 17
        assert model.encoded_text_tokens == 17
        model.encoded_text_tokens = 0
        model.sort_texts = False  # file order: [a big red cat, cat] and [red cat, cat cat]
        model.encode_texts(texts)
        # open_clip pads every text to 77: 4 * 77 = 308; transformers to the batch's longest: 2 * 6 + 2 * 4 = 20
        assert model.encoded_text_tokens == (308 if "open_clip" in model.spec else 20)
        model.sort_texts = True
        alone = torch.cat([model.encode_texts([t]) for t in texts])
        torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
        model.sort_texts = False
        torch.testing.assert_close(model.encode_texts(texts), together, rtol=0, atol=1e-5)
    finally:
        model.batch_size, model.sort_texts = 64, True


def test_six_numbers_equal_the_plain_path(model):
    ds = DCIDataset.open("sample")
    fast_store = FeatureStore(model)
    fast = evaluate_sdci(ds, model, store=fast_store)
    model.sort_texts = False
    try:
        plain = evaluate_sdci(ds, PreviousImages(model))
    finally:
        model.sort_texts = True
    assert fast.metrics == plain.metrics
    assert fast.counts == plain.counts
    assert (fast.encoded_images, fast.encoded_texts) == (plain.encoded_images, plain.encoded_texts)
    assert 0 < model.text_token_floor <= model.encoded_text_tokens


def test_worker_preprocessing_gives_the_same_features(model):
    ds = DCIDataset.open("sample")
    photo = ds.read(ds.files("test")[0]).photo_path
    from densecaption.data.schema import Box
    from densecaption.data.subcrop import CropKey

    crops = [CropKey(photo, Box(0, 0, 120, 90)), CropKey(photo, Box(10, 20, 60, 200))]
    tensors = FeatureStore(model, num_workers=1).encode(crops, ["cat"])[0]
    plain = FeatureStore(PreviousImages(model)).encode(crops, ["cat"])[0]
    torch.testing.assert_close(tensors, plain, rtol=0, atol=1e-5)

"""sDCI scores on hand-made matrices, batching and skip rules on constructed records."""

from __future__ import annotations

import numpy as np
import pytest

from densecaption.data.dci import parse_image
from densecaption.data.schema import Box
from densecaption.evaluation.features import CropKey
from densecaption.evaluation.sdci import Item, SdciConfig, items_for_record, make_batches, score_subrun
from densecaption.evaluation.sdci_metrics import hardest_negative, neg_correct, scm_correct
from tests.conftest import make_doc


def test_scm_one_positive_is_plain_argmax():
    assert scm_correct(np.array([[5.0, 1.0], [2.0, 3.0]]), [0, 1]) == [True, True]
    assert scm_correct(np.array([[1.0, 5.0], [2.0, 3.0]]), [0, 1]) == [False, True]


def test_scm_pools_min_over_own_and_max_over_others():
    # image 0: own positives 5 and 1 -> min 1; entry 1's positives 3 and 0 -> max 3: wrong
    # image 1: entry 0's positives 0, 0 -> max 0; own 4, 4 -> min 4: right
    scores = np.array([[5.0, 1.0, 3.0, 0.0],
                       [0.0, 0.0, 4.0, 4.0]])
    assert scm_correct(scores, [0, 0, 1, 1]) == [False, True]
    # with max pooling over its own positives image 0 would have won (5 > 3): the min matters
    assert scm_correct(np.array([[5.0, 2.9, 3.0, 0.0], [0, 0, 4, 4]]), [0, 0, 1, 1]) == [False, True]


def test_scm_ties_go_to_the_lowest_index():
    scores = np.array([[2.0, 2.0], [2.0, 2.0]])
    assert scm_correct(scores, [0, 1]) == [True, False]


def test_scm_batch_of_one_is_always_correct():
    assert scm_correct(np.array([[-7.0, -9.0]]), [0, 0]) == [True]


def test_neg_needs_a_strictly_higher_worst_positive():
    assert neg_correct([3.0, 2.0], 1.9)
    assert not neg_correct([3.0, 2.0], 2.0)
    assert not neg_correct([3.0, 2.0], 2.5)


def test_hardest_negative_stable_sort_last_wins():
    negatives = {"basic": ["b0", "b1"], "layout": ["l0"], "swaps": ["s0"]}
    scores = {"basic_0": 1.0, "basic_1": 3.0, "layout_0": 3.0, "swaps_0": 2.0, "sum": 9.0}
    assert hardest_negative(negatives, scores) == ("layout_0", "l0")  # tie 3.0: the later candidate
    assert hardest_negative({"swaps": ["s0"], "basic": ["b0", "b1"]}, scores) == ("basic_1", "b1")
    assert hardest_negative(negatives, {"basic_0": 1.0}) is None
    assert hardest_negative({}, scores) is None
    # only the chosen kinds compete (and only they need scores)
    assert hardest_negative(negatives, scores, kinds=("basic", "swaps")) == ("basic_1", "b1")
    assert hardest_negative(negatives, {"swaps_0": 1.0}, kinds=("swaps",)) == ("swaps_0", "s0")
    assert hardest_negative(negatives, scores, kinds=()) is None


def test_hard_negs_ignore_rule_negatives_by_default():
    doc = make_doc()
    doc["negatives"]["base"]["rule_swap"] = ["floor a red box on"]
    doc["clip_scores"]["base"]["rule_swap_0"] = 99.0  # scored highest: would win if it competed
    runs = items_for_record(_record(doc), (400, 300), SdciConfig())
    assert runs["hard"][0].negative == "a floor box red"
    every = SdciConfig(hard_kinds=("basic", "layout", "swaps", "rule_swap"))
    assert items_for_record(_record(doc), (400, 300), every)["hard"][0].negative == "floor a red box on"


def _items(image: str, n: int) -> list[Item]:
    return [Item(image, f"k{i}", CropKey(None, Box(i, 0, i + 1, 1)), (f"{image}{i}",), f"neg{image}{i}")
            for i in range(n)]


def test_reference_batches_spill_across_images_and_image_group_does_not():
    items = _items("a", 10) + _items("b", 3)
    ref = make_batches(items, "reference", 8)
    assert [len(b) for b in ref] == [8, 5]
    assert {it.image for it in ref[1]} == {"a", "b"}
    grouped = make_batches(items, "image-group", 8)
    assert [len(b) for b in grouped] == [10, 3]


def test_score_subrun_on_a_known_matrix():
    items = _items("a", 3)
    crop_index = {it.crop: i for i, it in enumerate(items)}
    texts = [t for it in items for t in (*it.positives, it.negative)]
    text_index = {t: i for i, t in enumerate(texts)}
    # rows: images; columns: a0, nega0, a1, nega1, a2, nega2
    table = np.array([[9, 1, 2, 0, 3, 0],     # image 0: own 9 wins; negative 1 < 9
                      [5, 0, 4, 4, 1, 0],     # image 1: own 4 < a0's 5: SCM wrong; negative 4 == 4: Neg wrong
                      [0, 0, 0, 0, 1, 0.5]],  # image 2: own 1 wins; negative 0.5 < 1
                     dtype=float)

    def similarity(rows, cols):
        return table[np.ix_(rows, cols)]

    assert score_subrun([items], similarity, crop_index, text_index) == (2, 2)
    # batches of one: SCM always right, Neg unchanged
    assert score_subrun([[it] for it in items], similarity, crop_index, text_index) == (3, 2)


def _record(doc):
    record, _ = parse_image(doc, "1-data.json")
    return record


def test_items_and_skip_rules():
    doc = make_doc()
    doc["summaries"]["m-1-sc"] = ["s1", "s2", "s3", "s4", "s5", "s6"]
    runs = items_for_record(_record(doc), (400, 300), SdciConfig())
    assert [it.key for it in runs["all"]] == ["base", "m-1-sc"]
    assert [it.key for it in runs["pick5"]] == ["m-1-sc"]  # base has 2 summaries
    assert runs["pick5"][0].positives == ("s1", "s2", "s3", "s4", "s5")
    assert [it.key for it in runs["base"]] == ["base"]
    assert [(it.key, it.negative) for it in runs["hard"]] == [("base", "a floor box red"), ("m-1-sc", "a green box")]
    assert runs["all"][1].negative == "box the red" and runs["all"][1].crop.box == Box(0, 0, 286, 300)

    def sampled(seed):
        return items_for_record(_record(doc), (400, 300), SdciConfig(pick_seed=seed))["pick5"][0].positives

    samples = {sampled(seed) for seed in range(6)}
    assert all(len(set(p)) == 5 and set(p) <= set(doc["summaries"]["m-1-sc"]) for p in samples)
    assert len(samples) > 1 and sampled(3) == sampled(3)

    no_scores = make_doc()
    del no_scores["clip_scores"]
    assert all(not v for v in items_for_record(_record(no_scores), (400, 300), SdciConfig()).values())

    only_base = make_doc()
    del only_base["negatives"]["m-1-sc"]
    runs = items_for_record(_record(only_base), (400, 300), SdciConfig())
    assert [len(runs[s]) for s in ("all", "pick5", "base", "hard")] == [0, 0, 1, 0]


@pytest.mark.parametrize("mode", ["reference", "image-group"])
def test_unknown_mode_is_rejected(mode):
    assert make_batches(_items("a", 2), mode, 8)
    with pytest.raises(ValueError):
        make_batches(_items("a", 2), "bogus", 8)

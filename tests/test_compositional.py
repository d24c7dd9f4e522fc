"""The pure parts of the compositional core: tie rules, ARO's caption clean-up and the four Order
perturbations on fixed sentences (with a fixed seed the draws are fixed, so outputs are exact)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from densecaption.evaluation.compositional import MAX_WORDS, OrderPerturber, argmax_is, grouped_accuracy, \
    pre_caption, shuffle_allbut_nouns_and_adj, shuffle_nouns_and_adj, shuffle_trigrams, shuffle_within_trigrams, \
    strictly_greater, trigrams, winoground_outcome, word_tokenizer


def test_argmax_ties_go_to_the_lowest_index():
    assert argmax_is([0.2, 0.3], 1) and not argmax_is([0.3, 0.3], 1)  # VG sets: true at 1, a tie is wrong
    assert argmax_is([0.5, 0.5, 0.1, 0.5, 0.2], 0)  # Order sets: the caption at 0, a tie is right
    assert not argmax_is([0.5, 0.6, 0.1, 0.5, 0.2], 0)


def test_strict_rule_and_winoground():
    assert strictly_greater(0.3, 0.2) and not strictly_greater(0.3, 0.3)
    # s[c, i]: text needs 3 > 1 and 4 > 2; image needs 3 > 2 and 4 > 1.
    assert winoground_outcome(np.array([[3.0, 2.0], [1.0, 4.0]])) == (True, True, True)
    # text: 3 > 1 but 2 > 2 fails; image: 3 > 2 and 2 > 1: image only, group fails.
    assert winoground_outcome(np.array([[3.0, 2.0], [1.0, 2.0]])) == (False, True, False)


def test_grouped_accuracy():
    assert grouped_accuracy(["b", "a", "b", "b"], [True, False, False, True]) == {"a": (0.0, 1), "b": (2 / 3, 3)}


def test_pre_caption():
    assert pre_caption('A "Dog" (big): runs!  Fast; ~ok*#\n') == "a dog big runs fast ok"
    long = " ".join(f"w{i}" for i in range(40))
    assert pre_caption(long) == " ".join(f"w{i}" for i in range(MAX_WORDS))
    assert pre_caption("  Two  spaces. ") == "two spaces"


TOKENS = ["two", "big", "dogs", "chase", "a", "small", "cat", "in", "a", "park"]
TAGS = ["CD", "JJ", "NNS", "VBP", "DT", "JJ", "NN", "IN", "DT", "NN"]


def test_noun_and_adjective_shuffle_is_numpys_permutation():
    # Nouns sit at 2, 6, 9 (dogs, cat, park), adjectives at 1, 5 (big, small). RandomState(1) draws the
    # permutation [0, 2, 1] for the 3 nouns -> dogs, park, cat; then [1, 0] for the 2 adjectives -> small, big.
    rng = np.random.RandomState(1)
    assert [list(rng.permutation(3)), list(rng.permutation(2))] == [[0, 2, 1], [1, 0]]
    out = shuffle_nouns_and_adj(TOKENS, TAGS, np.random.RandomState(1))
    assert out == "two small dogs chase a big park in a cat"


def test_all_but_nouns_and_adjectives_shuffle():
    # The other places: 0, 3, 4, 7, 8 (two, chase, a, in, a); RandomState(1).permutation(5) is [2, 1, 4, 0, 3]:
    # a, chase, a, two, in go back to places 0, 3, 4, 7, 8.
    assert list(np.random.RandomState(1).permutation(5)) == [2, 1, 4, 0, 3]
    out = shuffle_allbut_nouns_and_adj(TOKENS, TAGS, np.random.RandomState(1))
    assert out == "a big dogs chase a small cat two in park"


def test_trigram_shuffles_are_pythons_shuffle():
    assert trigrams(list("abcdefg")) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    # random.Random(1).shuffle turns 3 items [x0, x1, x2] into [x1, x2, x0].
    first = [0, 1, 2]
    random.Random(1).shuffle(first)
    assert first == [1, 2, 0]
    # Groups [a b c], [d]: the first becomes b c a; a 1-item shuffle draws nothing.
    assert shuffle_within_trigrams(list("abcd"), random.Random(1)) == "b c a d"
    # Groups [abc][def][g] shuffled as [x1, x2, x0]: [def][g][abc].
    assert shuffle_trigrams(list("abcdefg"), random.Random(1)) == "d e f g a b c"


def test_word_tokenizer_splits_like_word_tokenize():
    tokenize, name = word_tokenizer()
    assert name
    assert tokenize("A man's dog, running. Fast!") == ["A", "man", "'s", "dog", ",", "running", ".", "Fast", "!"]


@pytest.fixture(scope="module")
def perturber():
    return OrderPerturber(seed=1)


def test_order_options_with_spacy_and_seed_1(perturber):
    perturber.reseed(1)
    caption = "Two big dogs chase a small cat in a park."
    tagged = perturber.tag([caption])[0]
    assert tagged[1] == TAGS + ["."]  # spaCy en_core_web_sm tags, as in TAGS above, plus the full stop
    options = perturber.options(caption, tagged)
    assert options[0] == "two big dogs chase a small cat in a park"
    # (1) as the numpy test above (the full stop is neither noun nor adjective and stays last).
    assert options[1] == "two small dogs chase a big park in a cat"
    # (2) the same RandomState goes on: Two, chase, a, in, a, "." permuted among places 0, 3, 4, 7, 8, 10;
    # nouns and adjectives stay in place; pre_caption then drops the full stop.
    assert options[2] == "big dogs a a small cat in chase park two"
    words = options[2].split()
    assert [words[i] for i in (0, 1, 4, 5, 8)] == ["big", "dogs", "small", "cat", "park"]
    # (3) NLTK tokens in groups [Two big dogs][chase a small][cat in a][park .]; Random(1)'s first shuffle
    # gives [x1, x2, x0] = big dogs Two, as in the test above.
    assert options[3] == "big dogs two small chase a cat a in park"
    # (4) the groups' order shuffled by the same Random.
    assert options[4] == "chase a small cat in a two big dogs park"
    assert sorted(options[4].split()) == sorted(options[0].split())
    perturber.reseed(1)
    assert perturber.options(caption, tagged) == options  # reseeding replays the same draws

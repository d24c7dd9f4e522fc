"""T2I-CompBench formulas on constructed inputs, against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from densecaption.evaluation.compbench.scoring import (
    Box, CountedObject, Detection, Token, boxes_duplicate, canonical_object, clip_text, complex_objects,
    complex_prompt_type, cosine, dedup_detections, find_relation, numeracy_objects, numeracy_score, position_score,
    simple_objects, spatial_score, three_in_one, vqa_image_score, vqa_noun_phrases, vqa_question, yes_probability)

LEFT = Box(0, 0, 100, 100)          # centre (50, 50)
RIGHT = Box(300, 0, 400, 100)       # centre (350, 50): dx = +300 from LEFT, dy = 0
BELOW = Box(0, 300, 100, 400)       # centre (50, 350): dy = +300 from LEFT


def toks(spec: str) -> list[Token]:
    """'word/POS word/POS ...' -> tokens (a token followed by '|' has no trailing space)."""
    out = []
    for item in spec.split():
        ws = "" if item.endswith("|") else " "
        text, pos = item.rstrip("|").rsplit("/", 1)
        out.append(Token(text, pos, ws))
    return out


# ---- BLIP-VQA ------------------------------------------------------------------------------------------------

def test_noun_phrases_drop_upstream_phrases_and_cap_at_8():
    assert vqa_noun_phrases(["a cat", "top", "the left", "the right", "the side", "a dog"]) == ["a cat", "a dog"]
    assert vqa_noun_phrases(["the top", "the left side"]) == ["the top", "the left side"]  # only exact matches go
    assert vqa_noun_phrases([f"np{i}" for i in range(11)]) == [f"np{i}" for i in range(8)]
    assert vqa_noun_phrases([]) == []


def test_question_is_preprocessed_like_blip():
    assert vqa_question("a green bench") == "a green bench?"
    assert vqa_question("The Red hat") == "the red hat?"
    assert vqa_question('a "big" (red) car.') == "a big red car?"
    assert vqa_question(" ".join(["w"] * 60)).count("w") == 50


def test_yes_probability_is_the_softmax_ratio():
    assert yes_probability(0.0, 0.0) == 0.5
    assert yes_probability(2.0, 0.0) == pytest.approx(math.exp(2) / (math.exp(2) + 1))
    # against an explicit softmax over a constructed vocabulary (yes = 3, no = 1)
    logits = [0.3, -1.2, 4.0, 2.5, 0.0]
    z = sum(math.exp(v) for v in logits)
    p_yes, p_no = math.exp(2.5) / z, math.exp(-1.2) / z
    assert yes_probability(logits[3], logits[1]) == pytest.approx(p_yes / (p_yes + p_no))
    assert yes_probability(-800.0, 0.0) == pytest.approx(0.0) and yes_probability(800.0, 0.0) == 1.0  # no overflow


def test_vqa_image_score_is_the_product():
    assert vqa_image_score([0.5, 0.8]) == pytest.approx(0.4)
    assert vqa_image_score([0.9]) == pytest.approx(0.9)
    assert vqa_image_score([]) == 1.0  # no noun phrase: upstream's missing questions count 1


# ---- spatial ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("relation, box1, box2, expected", [
    ("on the left of", LEFT, RIGHT, 1.0),
    ("on the left of", RIGHT, LEFT, 0.0),
    ("on the right of", RIGHT, LEFT, 1.0),
    ("on the right of", LEFT, RIGHT, 0.0),
    ("on the top of", LEFT, BELOW, 1.0),      # dy > 0: object 1 above object 2 (y grows downward)
    ("on the top of", BELOW, LEFT, 0.0),
    ("on the bottom of", BELOW, LEFT, 1.0),
    ("on the bottom of", LEFT, BELOW, 0.0),
    ("on the left of", LEFT, BELOW, 0.0),     # dx = 0: sign fails
    ("on top of", LEFT, BELOW, 0.0),          # upstream vocabulary entry without a branch
    (None, LEFT, RIGHT, 0.0),
])
def test_position_relations_and_signs(relation, box1, box2, expected):
    assert position_score(relation, box1, box2) == expected


def test_position_axis_must_dominate():
    diagonal = Box(200, 250, 300, 350)  # centre (250, 300): dx = 200, dy = 250 from LEFT
    assert position_score("on the left of", LEFT, diagonal) == 0.0
    assert position_score("on the top of", LEFT, diagonal) == 1.0
    wide = Box(300, 100, 400, 200)  # dx = 300, dy = 100
    assert position_score("on the left of", LEFT, wide) == 1.0
    assert position_score("on the top of", LEFT, wide) == 0.0


def test_position_iou_branch():
    overlapping = Box(50, 0, 150, 100)  # dx = 50, dy = 0; IoU = 5000 / 15000 = 1/3
    assert position_score("on the left of", LEFT, overlapping) == pytest.approx(0.1 / (1 / 3))
    barely = Box(95, 0, 195, 100)  # IoU = 500 / 19500 < 0.1
    assert position_score("on the left of", LEFT, barely) == 1.0


@pytest.mark.parametrize("relation", ["next to", "near", "on side of"])
def test_near_150_px_rule(relation):
    def at(dx, dy):
        return Box(dx, dy, 100 + dx, 100 + dy)

    assert position_score(relation, LEFT, at(200, 100)) == 1.0          # |dy| < 150
    assert position_score(relation, LEFT, at(100, 400)) == 1.0          # |dx| < 150
    assert position_score(relation, LEFT, at(300, 200)) == pytest.approx(0.5)
    assert position_score(relation, LEFT, at(-300, -400)) == pytest.approx(150 / 400)
    assert position_score(relation, LEFT, at(150, 150)) == pytest.approx(1.0)  # 150 is not < 150: 150/150


def test_find_relation_uses_upstream_order():
    assert find_relation("a cat on the left of a dog") == "on the left of"
    assert find_relation("a cat on top of a dog") == "on top of"
    assert find_relation("a cat on the top of a dog") == "on the top of"
    assert find_relation("a cat near a dog") == "near"
    assert find_relation("a cat and a dog") is None


def det(label, score, box):
    return Detection(label, score, box)


def test_spatial_score_both_found():
    s = spatial_score("on the left of", "cat", "dog", [det("cat", 0.9, LEFT), det("dog", 0.8, RIGHT)])
    assert s.score == pytest.approx(0.25 * 0.9 + 0.25 * 0.8 + 0.5) and s.position == 1.0
    overlapping = Box(50, 0, 150, 100)
    s = spatial_score("on the left of", "cat", "dog", [det("cat", 1.0, LEFT), det("dog", 1.0, overlapping)])
    assert s.score == pytest.approx(0.5 + 0.5 * 0.3)


def test_spatial_score_floor_and_missing_objects():
    wrong_side = [det("cat", 1.0, RIGHT), det("dog", 1.0, LEFT)]
    assert spatial_score("on the left of", "cat", "dog", wrong_side).score == 0.5  # 0.5 is not below 0.5
    weak = [det("cat", 0.9, RIGHT), det("dog", 0.9, LEFT)]
    s = spatial_score("on the left of", "cat", "dog", weak)
    assert s.raw == pytest.approx(0.45) and s.score == 0.0
    one = spatial_score("on the left of", "cat", "dog", [det("cat", 1.0, LEFT)])
    assert one.raw == 0.25 and one.score == 0.0 and one.last is None
    other = spatial_score("on the left of", "cat", "dog", [det("dog", 0.8, LEFT)])
    assert other.raw == pytest.approx(0.2) and other.score == 0.0
    assert spatial_score("on the left of", "cat", "dog", [det("bird", 1.0, LEFT)]).raw == 0.0
    assert spatial_score("on the left of", None, None, []).score == 0.0


def test_spatial_uses_first_matching_detection():
    dets = [det("cat", 0.9, LEFT), det("cat", 0.95, Box(600, 0, 700, 100)), det("dog", 0.9, RIGHT)]
    s = spatial_score("on the left of", "cat", "dog", dets)
    assert s.first.box == LEFT and s.position == 1.0


def test_simple_objects_first_and_last_noun_with_person():
    tokens = toks("a/DET girl/NOUN on/ADP the/DET left/NOUN of/ADP a/DET frog/NOUN")
    assert simple_objects(tokens) == ("person", "frog")
    assert simple_objects(toks("a/DET cat/NOUN next/ADJ to/ADP a/DET woman/NOUN")) == ("cat", "person")
    assert simple_objects(toks("hello/INTJ")) == (None, None)
    assert canonical_object("men") == "men" and canonical_object("boy") == "person"


def test_complex_objects_around_the_preposition():
    hat = toks("The/DET red/ADJ hat/NOUN was/AUX on/ADP top/NOUN of/ADP the/DET brown/ADJ coat/NOUN "
               "rack/NOUN| ./PUNCT")
    assert complex_objects(hat) == ("hat", "coat")  # upstream takes the first noun after it
    propn = toks("a/DET dog/NOUN near/ADP London/PROPN| ./PUNCT")
    assert complex_objects(propn) == ("dog", "London")
    no_phrase = toks("The/DET black/ADJ phone/NOUN was/AUX resting/VERB on/ADP the/DET charger/NOUN")
    assert complex_objects(no_phrase) == (None, None)
    three = toks("a/DET cat/NOUN near/ADP a/DET dog/NOUN next/ADJ to/ADP a/DET man/NOUN")
    assert complex_objects(three) == (None, None)  # three objects: upstream uses none
    person = toks("a/DET woman/NOUN on/ADP the/DET left/NOUN of/ADP a/DET car/NOUN")
    assert complex_objects(person) == ("person", "car")


# ---- CLIP, 3-in-1 ----------------------------------------------------------------------------------------------

def test_clip_text_and_cosine():
    tokens = toks("The/DET red/ADJ hat/NOUN was/AUX on/ADP the/DET rack/NOUN| ./PUNCT")
    assert clip_text("The red hat was on the rack.", tokens, complex_prompt=True) == "The hat was on the rack ."
    assert clip_text("The red hat.", tokens, complex_prompt=False) == "The red hat."
    assert cosine([1, 0], [0, 1]) == 0.0 and cosine([1, 1], [-1, -1]) == pytest.approx(-1.0)  # raw: no clamp


def test_three_in_one_per_prompt_type():
    assert three_in_one("spatial", attribute=0.6, spatial=0.5, action=0.3) == pytest.approx(0.55)
    assert three_in_one("action", attribute=0.6, spatial=0.5, action=0.3) == pytest.approx(0.45)
    assert three_in_one("spatial-action", attribute=0.6, spatial=0.5, action=0.3) == pytest.approx(1.4 / 3)
    with pytest.raises(ValueError):
        three_in_one("other", 0, 0, 0)
    spatial, action = {"a", "b"}, {"b", "c"}
    assert complex_prompt_type("b", spatial, action) == "spatial"  # spatial list wins, as upstream checks it first
    assert complex_prompt_type("c", spatial, action) == "action"
    assert complex_prompt_type("d", spatial, action) == "spatial-action"


# ---- numeracy --------------------------------------------------------------------------------------------------

PAIRS = [("cat", "cats"), ("dog", "dogs"), ("man", "men"), ("fish", "fish"), ("wine glass", "wine glasses"),
         ("glass", "glasses")]


def test_numeracy_objects_number_words():
    assert numeracy_objects("two cats and a dog".split(), PAIRS) == [CountedObject("cat", 2, "cat"),
                                                                     CountedObject("dog", 1, "dog")]
    assert numeracy_objects("three men".split(), PAIRS) == [CountedObject("person", 3, "man")]
    assert numeracy_objects("two wine glasses".split(), PAIRS) == [CountedObject("wine glass", 2, "wine glass")]
    assert numeracy_objects("a fish".split(), PAIRS) == [CountedObject("fish", 1, "fish")]
    assert numeracy_objects("eight fish".split(), PAIRS) == [CountedObject("fish", 8, "fish")]
    assert numeracy_objects("one dog".split(), PAIRS) == [CountedObject("dog", 1, "dog")]
    assert numeracy_objects("an elephant".split(), PAIRS) == []
    assert numeracy_objects("two".split(), PAIRS) == []
    # where upstream would crash or lose the count, the number word is used
    assert numeracy_objects("two dog".split(), PAIRS) == [CountedObject("dog", 2, "dog")]


def test_duplicate_boxes_iou_or_containment():
    assert boxes_duplicate(Box(0, 0, 100, 100), Box(1, 1, 100, 100))          # IoU > 0.9
    assert boxes_duplicate(Box(0, 0, 100, 100), Box(10, 10, 50, 50))          # contained
    assert not boxes_duplicate(Box(0, 0, 100, 100), Box(50, 0, 150, 100))    # IoU 1/3, half of each
    kept = dedup_detections([det("cat", 0.9, Box(0, 0, 100, 100)), det("cat", 0.8, Box(1, 1, 100, 100)),
                             det("dog", 0.7, Box(1, 1, 100, 100))])
    assert [d.label for d in kept] == ["cat", "dog"]  # same box, other label: kept


def test_numeracy_score():
    asked = [CountedObject("cat", 2, "cat"), CountedObject("dog", 1, "dog")]
    a, a_dup = det("cat", 0.9, Box(0, 0, 100, 100)), det("cat", 0.8, Box(1, 1, 100, 100))
    b, dog = det("cat", 0.9, Box(200, 0, 300, 100)), det("dog", 0.9, Box(0, 200, 100, 300))
    assert numeracy_score(asked, [a, a_dup, b, dog]).score == pytest.approx(1.0)
    s = numeracy_score(asked, [a, a_dup, dog])
    assert s.score == pytest.approx(0.25 + 0.5) and s.detected == {"cat": 1, "dog": 1}
    assert numeracy_score(asked, [a, b]).score == pytest.approx(0.5)
    assert numeracy_score(asked, []).score == 0.0
    assert numeracy_score([], [a]).score == 0.0
    # a detected label containing the object's name counts as it
    glass = [CountedObject("glass", 1, "glass")]
    assert numeracy_score(glass, [det("wine glass", 0.9, Box(0, 0, 10, 10))]).score == pytest.approx(1.0)

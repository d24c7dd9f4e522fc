"""T2I-CompBench's scoring formulas as pure functions (docs/t2i-compbench.md; upstream Karine-Huang/T2I-CompBench).

No model and no spaCy here: prompts arrive as ``Token`` lists and noun-chunk texts, images as ``Detection``
lists, VQA answers as logits, so every formula is tested on constructed inputs. Where upstream's code would crash
or misalign (e.g. a numeracy prompt with no known object), the function's docstring says what is done instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Token:
    """One spaCy token: its text, coarse part of speech (``pos_``) and trailing whitespace."""

    text: str
    pos: str
    ws: str = " "


@dataclass(frozen=True)
class Box:
    """A box in image pixels: (x0, y0) top-left, (x1, y1) bottom-right; y grows downward."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    @property
    def area(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def as_list(self) -> list[float]:
        return [round(float(v), 2) for v in (self.x0, self.y0, self.x1, self.y1)]


@dataclass(frozen=True)
class Detection:
    """A detector's answer: the queried label it matched, its confidence and its box."""

    label: str
    score: float
    box: Box

    def as_dict(self) -> dict:
        return {"label": self.label, "score": round(float(self.score), 6), "box": self.box.as_list()}


# --------------------------------------------------------------------------------------------------------------
# Colour, shape, texture: BLIP-VQA

EXCLUDED_NOUN_PHRASES = ("top", "the side", "the left", "the right")
MAX_NOUN_PHRASES = 8
MAX_QUESTION_WORDS = 50


def vqa_noun_phrases(noun_chunks: Iterable[str]) -> list[str]:
    """The prompt's spaCy noun chunks minus {"top", "the side", "the left", "the right"}, at most 8, in order
    (upstream's ``np_num=8``)."""
    return [c for c in noun_chunks if c not in EXCLUDED_NOUN_PHRASES][:MAX_NOUN_PHRASES]


def vqa_question(noun_phrase: str) -> str:
    """``"{noun phrase}?"`` as BLIP's VQA loader feeds it (``pre_question``): lower case, the characters
    ``. ! " ( ) * # : ; ~`` removed, trailing spaces removed, at most 50 words."""
    question = re.sub(r"[.!\"()*#:;~]", "", f"{noun_phrase}?".lower()).rstrip(" ")
    words = question.split(" ")
    return " ".join(words[:MAX_QUESTION_WORDS]) if len(words) > MAX_QUESTION_WORDS else question


def yes_probability(logit_yes: float, logit_no: float) -> float:
    """p = P(yes) / (P(yes) + P(no)) of the first answer token's softmax, which equals
    sigmoid(logit_yes - logit_no) (the other tokens' mass cancels); computed that way, it cannot underflow."""
    d = float(logit_yes) - float(logit_no)
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)
    return e / (1.0 + e)


def vqa_image_score(probabilities: Iterable[float]) -> float:
    """Image score = product of p over the questions (1 when the prompt has no noun phrase, as upstream: a
    missing question counts 1)."""
    score = 1.0
    for p in probabilities:
        score *= float(p)
    return score


# --------------------------------------------------------------------------------------------------------------
# Spatial (2D): detector geometry

# Upstream's vocabulary in its order: the first one found in the prompt (substring match) is the relation.
SPATIAL_RELATIONS = ("on side of", "next to", "near", "on the left of", "on the right of", "on the bottom of",
                     "on the top of", "on top of")
NEAR_RELATIONS = ("next to", "on side of", "near")
PERSON_WORDS = ("girl", "boy", "man", "woman")
# Complex prompts: the phrases around which upstream looks for the two objects.
COMPLEX_PREPOSITIONS = ("on top of", "on bottom of", "on the left", "on the right", "next to", "on side of", "near")
IOU_THRESHOLD = 0.1
DISTANCE_THRESHOLD = 150.0
SCORE_FLOOR = 0.5


def find_relation(prompt: str) -> str | None:
    """The first of upstream's spatial phrases (in its vocabulary order) that occurs in the prompt, else None."""
    return next((r for r in SPATIAL_RELATIONS if r in prompt), None)


def canonical_object(word: str | None) -> str | None:
    """girl, boy, man, woman -> "person" (the detector's label); other words unchanged."""
    return "person" if word in PERSON_WORDS else word


def simple_objects(tokens: Sequence[Token]) -> tuple[str | None, str | None]:
    """Simple prompts: the first and the last NOUN (None, None when there is none: upstream would crash)."""
    nouns = [t.text for t in tokens if t.pos == "NOUN"]
    if not nouns:
        return None, None
    return canonical_object(nouns[0]), canonical_object(nouns[-1])


def _span_text(tokens: Sequence[Token]) -> str:
    return "".join(t.text + t.ws for t in tokens[:-1]) + tokens[-1].text if tokens else ""


def complex_objects(tokens: Sequence[Token]) -> tuple[str | None, str | None]:
    """Complex prompts (upstream's ``--complex`` branch): at each of COMPLEX_PREPOSITIONS (tried as 3-, 2- then
    1-token spans), the nearest NOUN or PROPN before it and the nearest NOUN after it (else the first PROPN after
    it that the next token does not continue). The two objects count only when exactly two were found."""
    n, objects = len(tokens), []
    for i in range(n):
        k = next((k for k in (3, 2, 1) if _span_text(tokens[i:i + k]) in COMPLEX_PREPOSITIONS), None)
        if k is None:
            continue
        for j in range(i - 1, -1, -1):
            if tokens[j].pos in ("NOUN", "PROPN"):
                objects.append(tokens[j].text)
                break
        reached_end = False
        for j in range(i + k, n):
            if tokens[j].pos == "NOUN":
                objects.append(tokens[j].text)
                break
            if j == n - 1:
                reached_end = True
        if reached_end:
            for j in range(i + k, n - 1):
                if tokens[j].pos == "PROPN" and tokens[j + 1].pos != "PROPN":
                    objects.append(tokens[j].text)
                    break
    if len(objects) != 2:
        return None, None
    return canonical_object(objects[0]), canonical_object(objects[1])


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when both are empty)."""
    w = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    h = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = w * h
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def position_score(relation: str | None, box1: Box, box2: Box, *, iou_threshold: float = IOU_THRESHOLD,
                   distance_threshold: float = DISTANCE_THRESHOLD) -> float:
    """How well box 1 (the first object) and box 2 (the last) fit the relation (upstream ``determine_position``).

    dx, dy = centre of box 2 - centre of box 1, in image coordinates (y down).
    "next to", "on side of", "near": 1 if |dx| < 150 or |dy| < 150, else 150 / max(|dx|, |dy|).
    "on the left of": dx > 0; "on the right of": dx < 0; "on the top of": dy > 0 (object 1 above);
    "on the bottom of": dy < 0; and the matching axis must dominate (|dx| > |dy| for left/right, |dy| > |dx|
    for top/bottom); when both hold: 1 if IoU < 0.1 else 0.1 / IoU; otherwise 0.
    "on top of" (in upstream's vocabulary, without a branch) and no relation: 0.
    """
    (x1, y1), (x2, y2) = box1.center, box2.center
    dx, dy = x2 - x1, y2 - y1
    if relation in NEAR_RELATIONS:
        if abs(dx) < distance_threshold or abs(dy) < distance_threshold:
            return 1.0
        return distance_threshold / max(abs(dx), abs(dy))
    rules = {  # relation -> (sign holds, axis dominates)
        "on the left of": (dx > 0, abs(dx) > abs(dy)),
        "on the right of": (dx < 0, abs(dx) > abs(dy)),
        "on the top of": (dy > 0, abs(dy) > abs(dx)),
        "on the bottom of": (dy < 0, abs(dy) > abs(dx)),
    }
    if relation not in rules or not all(rules[relation]):
        return 0.0
    iou = box_iou(box1, box2)
    return 1.0 if iou < iou_threshold else iou_threshold / iou


def first_detection(detections: Sequence[Detection], label: str | None) -> Detection | None:
    """The first detection with this label, in the detector's order (highest confidence first)."""
    if label is None:
        return None
    return next((d for d in detections if d.label == label), None)


@dataclass(frozen=True)
class SpatialScore:
    score: float
    raw: float
    position: float | None
    first: Detection | None
    last: Detection | None


def spatial_score(relation: str | None, obj1: str | None, obj2: str | None,
                  detections: Sequence[Detection]) -> SpatialScore:
    """Both objects found: 0.25 * conf1 + 0.25 * conf2 + 0.5 * position; one found: 0.25 * its conf; none: 0;
    then any score below 0.5 becomes 0 (so one object alone always scores 0)."""
    d1, d2 = first_detection(detections, obj1), first_detection(detections, obj2)
    position = None
    if d1 is not None and d2 is not None:
        position = position_score(relation, d1.box, d2.box)
        raw = 0.25 * d1.score + 0.25 * d2.score + 0.5 * position
    elif d1 is not None:
        raw = 0.25 * d1.score
    elif d2 is not None:
        raw = 0.25 * d2.score
    else:
        raw = 0.0
    return SpatialScore(score=0.0 if raw < SCORE_FLOOR else raw, raw=raw, position=position, first=d1, last=d2)


# --------------------------------------------------------------------------------------------------------------
# Non-spatial: CLIP; complex: 3-in-1

def clip_text(prompt: str, tokens: Sequence[Token], *, complex_prompt: bool) -> str:
    """The text CLIP encodes: the prompt; for complex prompts the prompt without adjectives (upstream joins the
    other tokens with spaces)."""
    if not complex_prompt:
        return prompt
    return " ".join(t.text for t in tokens if t.pos != "ADJ")


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Raw cosine similarity (no 2.5 scaling, no clamp at 0)."""
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


COMPLEX_TYPES = ("spatial", "action", "spatial-action")


def complex_prompt_type(key: str, spatial_keys: set[str], action_keys: set[str]) -> str:
    """Upstream's order: a prompt listed among the spatial ones is "spatial", else among the action ones
    "action", else (the spatial-action ones and anything unlisted) "spatial-action"."""
    if key in spatial_keys:
        return "spatial"
    if key in action_keys:
        return "action"
    return "spatial-action"


def three_in_one(prompt_type: str, attribute: float, spatial: float, action: float) -> float:
    """spatial prompts: (spatial + attribute) / 2; action prompts: (CLIP + attribute) / 2; others: the mean of
    BLIP-VQA (attribute), spatial and CLIP (action)."""
    combine = {
        "spatial": lambda: (spatial + attribute) * 0.5,
        "action": lambda: (action + attribute) * 0.5,
        "spatial-action": lambda: (attribute + spatial + action) / 3,
    }
    if prompt_type not in combine:
        raise ValueError(f"unknown complex prompt type {prompt_type!r}")
    return combine[prompt_type]()


# --------------------------------------------------------------------------------------------------------------
# Numeracy (T2I-CompBench++)

NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8}
SINGULAR_NUMBERS = ("a", "an", "one")
# Upstream maps these to its detector's labels before matching (its "telivision" -> "tv" is misspelt and never
# applies, so television stays television here too).
NUMERACY_ALIASES = {"boy": "person", "girl": "person", "man": "person", "woman": "person", "ship": "boat",
                    "goldfish": "fish", "painting": "picture"}
DUPLICATE_OVERLAP = 0.9


@dataclass(frozen=True)
class CountedObject:
    name: str     # the detector label to count (after NUMERACY_ALIASES)
    count: int    # how many the prompt asks for
    phrase: str   # the object as parsed from the prompt


def numeracy_objects(words: Sequence[str], pairs: Sequence[tuple[str, str]]) -> list[CountedObject]:
    """The (object, count) pairs a numeracy prompt asks for, parsed as upstream does with its object list
    (``new_objects.txt``, (singular, plural) pairs).

    At each number word (a, an, one ... eight): if the next two words form a listed object, that; plural with a
    number other than a/an/one counts the number (as its singular), otherwise 1. Else if the next word is listed:
    singular with a/an/one counts 1, otherwise the number (plural -> singular). Where upstream would crash or
    drop a count (a/an before a plural, or a singular after two...eight), the number word's value is used.
    """
    singular = [s for s, _ in pairs]
    plural = [p for _, p in pairs]

    def to_singular(word: str) -> str:
        return singular[plural.index(word)] if word in plural else word

    found: list[CountedObject] = []
    n = len(words)
    for i, word in enumerate(words):
        if word not in NUMBER_WORDS:
            continue
        two = f"{words[i + 1]} {words[i + 2]}" if i < n - 2 else None
        one = words[i + 1] if i < n - 1 else None
        if two is not None and (two in singular or two in plural):
            if two in plural and word not in SINGULAR_NUMBERS:
                obj, count = to_singular(two), NUMBER_WORDS[word]
            else:
                obj, count = two, 1
        elif one is not None and (one in singular or one in plural):
            if one in singular and word in SINGULAR_NUMBERS:
                obj, count = one, 1
            else:
                obj, count = to_singular(one), NUMBER_WORDS[word]
        else:
            continue
        found.append(CountedObject(name=NUMERACY_ALIASES.get(obj, obj), count=count, phrase=obj))
    return found


def boxes_duplicate(a: Box, b: Box, overlap: float = DUPLICATE_OVERLAP) -> bool:
    """Upstream's duplicate test: IoU > 0.9 or the intersection covers > 0.9 of either box, with its pixel
    convention (widths and heights + 1)."""
    iw = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0) + 1)
    ih = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0) + 1)
    inter = iw * ih
    area_a = (a.x1 - a.x0 + 1) * (a.y1 - a.y0 + 1)
    area_b = (b.x1 - b.x0 + 1) * (b.y1 - b.y0 + 1)
    union = area_a + area_b - inter
    return ((union > 0 and inter / union > overlap) or (area_a > 0 and inter / area_a > overlap)
            or (area_b > 0 and inter / area_b > overlap))


def dedup_detections(detections: Sequence[Detection]) -> list[Detection]:
    """Drop every detection that duplicates (``boxes_duplicate``) an earlier kept one with the same label."""
    kept: list[Detection] = []
    for d in detections:
        if not any(k.label == d.label and boxes_duplicate(d.box, k.box) for k in kept):
            kept.append(d)
    return kept


@dataclass(frozen=True)
class NumeracyScore:
    score: float
    detected: dict[str, int]


def numeracy_score(objects: Sequence[CountedObject], detections: Sequence[Detection]) -> NumeracyScore:
    """Each of the n objects weighs 1/n: +0.5/n when at least one is detected (after de-duplication), another
    +0.5/n when the detected count equals the asked count. A detected label that contains an object's name
    (e.g. "wine glass" for "glass") counts as that object, as upstream. No object parsed: 0 (upstream would
    divide by zero)."""
    labels = [d.label for d in dedup_detections(detections)]
    if not objects:
        return NumeracyScore(0.0, {})
    weight = 1.0 / len(objects)
    score, detected = 0.0, {}
    for obj in objects:
        if obj.name not in labels:
            labels = [obj.name if obj.name in label else label for label in labels]
        detected[obj.name] = labels.count(obj.name)
        if obj.name in labels:
            score += 0.5 * weight
            if labels.count(obj.name) == obj.count:
                score += 0.5 * weight
    return NumeracyScore(score, detected)

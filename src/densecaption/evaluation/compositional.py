"""The shared core of the compositional benchmarks (ARO, SugarCrepe, VL-CheckList, Winoground).

An item is one image (a ``CropKey``: a photo and a box) and its text options; a rule says which option must
win. Scoring encodes every unique crop and text of a run once (``FeatureStore``: photos streamed through a
DataLoader, encoding batched, an optional cache), then scores each item from the features with the model
contract's ``similarity``, so embedding models, the text-only ``lm:`` prior and pairwise scorers all fit.

The pure parts live here too: the tie rules, ARO's caption clean-up (``pre_caption``) and its four word-order
perturbations. See docs/compositional-benchmarks.md for every rule and where it comes from.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from densecaption.data.schema import Box
from densecaption.data.subcrop import CropKey

NOUN_TAGS = ("NN", "NNS", "NNP", "NNPS")
ADJ_TAGS = ("JJ", "JJR", "JJS")
MAX_WORDS = 30
"""ARO's Order sets cut every option to its first 30 words."""


@dataclass(frozen=True)
class Item:
    """One test: an image region and the texts scored against it."""

    crop: CropKey
    options: tuple[str, ...]


# --------------------------------------------------------------------------------------------- rules
def argmax_is(scores: Sequence[float], target: int) -> bool:
    """True when ``target`` is the first highest score: a tie goes to the lowest index (numpy's argmax).
    ARO's VG sets put the true caption at index 1 (a tie is wrong), its Order sets at 0 (a tie is right)."""
    return int(np.argmax(np.asarray(scores))) == target


def strictly_greater(positive: float, negative: float) -> bool:
    """SugarCrepe's and VL-CheckList's rule: the positive text must score strictly higher (a tie is wrong)."""
    return bool(positive > negative)


def winoground_outcome(s: np.ndarray) -> tuple[bool, bool, bool]:
    """(text, image, group) of one Winoground item from ``s[c, i]`` = score of caption c with image i."""
    text = s[0, 0] > s[1, 0] and s[1, 1] > s[0, 1]
    image = s[0, 0] > s[0, 1] and s[1, 1] > s[1, 0]
    return bool(text), bool(image), bool(text and image)


def percent(hits: Iterable[bool]) -> tuple[float, int]:
    """(share of True in %, entries); NaN for no entries."""
    hits = list(hits)
    return (100.0 * sum(hits) / len(hits) if hits else float("nan")), len(hits)


def grouped_accuracy(labels: Sequence[str], hits: Sequence[bool]) -> dict[str, tuple[float, int]]:
    """Accuracy (a fraction) and count per label, labels sorted as ``np.unique`` sorts them."""
    out: dict[str, tuple[float, int]] = {}
    for label in sorted(set(labels)):
        chosen = [h for lab, h in zip(labels, hits) if lab == label]
        out[label] = (sum(chosen) / len(chosen), len(chosen))
    return out


# --------------------------------------------------------------------------------------------- text
_PUNCT = re.compile(r"([.!\"()*#:;~])")
_SPACES = re.compile(r"\s{2,}")


def pre_caption(caption: str, max_words: int = MAX_WORDS) -> str:
    """ARO's (BLIP's) clean-up: lower-case, each of . ! " ( ) * # : ; ~ to a space, runs of whitespace to one
    space, trailing newline and surrounding spaces stripped, at most ``max_words`` space-separated words."""
    caption = _SPACES.sub(" ", _PUNCT.sub(" ", caption.lower())).rstrip("\n").strip(" ")
    words = caption.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else caption


def shuffle_nouns_and_adj(tokens: Sequence[str], tags: Sequence[str], rng: np.random.RandomState) -> str:
    """Perturbation 1: nouns permuted among the noun places, then adjectives among theirs."""
    text = np.array(list(tokens))
    nouns = [i for i, t in enumerate(tags) if t in NOUN_TAGS]
    adjectives = [i for i, t in enumerate(tags) if t in ADJ_TAGS]
    text[nouns] = rng.permutation(text[nouns])
    text[adjectives] = rng.permutation(text[adjectives])
    return " ".join(text)


def shuffle_allbut_nouns_and_adj(tokens: Sequence[str], tags: Sequence[str], rng: np.random.RandomState) -> str:
    """Perturbation 2: every token that is neither noun nor adjective permuted among those places."""
    text = np.array(list(tokens))
    other = np.ones(text.shape[0], dtype=bool)
    other[[i for i, t in enumerate(tags) if t in NOUN_TAGS + ADJ_TAGS]] = False
    text[other] = rng.permutation(text[other])
    return " ".join(text)


def trigrams(tokens: Sequence[str]) -> list[list[str]]:
    """Consecutive groups of three tokens, the last one shorter when the count is not a multiple of 3."""
    return [list(tokens[i:i + 3]) for i in range(0, len(tokens), 3)]


def shuffle_within_trigrams(tokens: Sequence[str], rnd: random.Random) -> str:
    """Perturbation 3: each trigram shuffled in place (Python's ``random.shuffle``)."""
    groups = trigrams(tokens)
    for group in groups:
        rnd.shuffle(group)
    return " ".join(" ".join(g) for g in groups)


def shuffle_trigrams(tokens: Sequence[str], rnd: random.Random) -> str:
    """Perturbation 4: the trigrams' order shuffled."""
    groups = trigrams(tokens)
    rnd.shuffle(groups)
    return " ".join(" ".join(g) for g in groups)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def word_tokenizer() -> tuple[Callable[[str], list[str]], str]:
    """NLTK's ``word_tokenize`` when its punkt sentence model is installed; otherwise the same word tokenizer
    (``NLTKWordTokenizer``, which ``word_tokenize`` runs per sentence) after a regex sentence split at
    ``.``/``!``/``?`` plus whitespace. Both give the same tokens for one-sentence captions. Returns the
    function and its name (recorded in results)."""
    import nltk
    from nltk.tokenize import NLTKWordTokenizer

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return nltk.word_tokenize, "nltk.word_tokenize"
    except LookupError:
        pass
    words = NLTKWordTokenizer()

    def tokenize(text: str) -> list[str]:
        return [w for sentence in _SENTENCE_END.split(text) for w in words.tokenize(sentence)]

    return tokenize, "NLTKWordTokenizer + regex sentence split (punkt not installed)"


class OrderPerturber:
    """ARO's four Order perturbations of raw captions, seeded like ARO's script: one numpy ``RandomState`` and
    one Python ``Random`` from ``seed``, drawn caption after caption in file order."""

    def __init__(self, seed: int, spacy_model: str = "en_core_web_sm"):
        from densecaption.language import load_spacy

        self.nlp, self.spacy_model = load_spacy(spacy_model)
        self.tokenize, self.tokenizer_name = word_tokenizer()
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.rng, self.rnd = np.random.RandomState(seed), random.Random(seed)

    def tag(self, captions: Sequence[str]) -> list[tuple[list[str], list[str]]]:
        """spaCy tokens and fine-grained tags of each caption (the parser and NER are not needed)."""
        disabled = [p for p in ("parser", "ner", "lemmatizer") if p in self.nlp.pipe_names]
        return [([t.text for t in doc], [t.tag_ for t in doc])
                for doc in self.nlp.pipe(captions, disable=disabled, batch_size=256)]

    def options(self, caption: str, tagged: tuple[list[str], list[str]],
                max_words: int = MAX_WORDS) -> tuple[str, ...]:
        """[original, 4 perturbations], each through ``pre_caption``."""
        tokens, tags = tagged
        words = self.tokenize(caption)
        perturbed = (shuffle_nouns_and_adj(tokens, tags, self.rng),
                     shuffle_allbut_nouns_and_adj(tokens, tags, self.rng),
                     shuffle_within_trigrams(words, self.rnd), shuffle_trigrams(words, self.rnd))
        return tuple(pre_caption(t, max_words) for t in (caption, *perturbed))


# --------------------------------------------------------------------------------------------- scoring
def whole_image(photo: Path) -> CropKey:
    """The whole photo as a crop (its size read from the file header only)."""
    from PIL import Image

    with Image.open(photo) as im:
        width, height = im.size
    return CropKey(photo, Box(0, 0, width, height))


def box_crop(photo: Path, x: float, y: float, w: float, h: float) -> CropKey:
    """ARO's crop (x, y, x + w, y + h), rounded as PIL rounds a crop box."""
    return CropKey(photo, Box(round(x), round(y), round(x + w), round(y + h)))


@dataclass
class Scored:
    """Each item's option scores, and how many unique crops and texts the run encoded."""

    scores: list[np.ndarray]
    encoded_images: int
    encoded_texts: int


def score_items(model: Any, items: Sequence[Item], context: Any, stage: str = "encoding") -> Scored:
    """Scores of every item's options: each unique crop and text encoded once (``FeatureStore``), then one
    ``similarity`` call per item on its rows."""
    import torch

    from densecaption.evaluation.features import FeatureStore

    crops = list(dict.fromkeys(it.crop for it in items))
    texts = list(dict.fromkeys(t for it in items for t in it.options))
    crop_index = {c: i for i, c in enumerate(crops)}
    text_index = {t: i for i, t in enumerate(texts)}
    store = FeatureStore(model, num_workers=context.workers, cache_dir=context.cache_dir)
    images, features = store.encode(crops, texts, context.progress(stage, len(crops) + len(texts)))
    scores = []
    with torch.no_grad():
        for it in items:
            row = crop_index[it.crop]
            scores.append(model.similarity(images[row:row + 1], features[[text_index[t] for t in it.options]])[0]
                          .double().numpy())
    return Scored(scores, store.encoded_images, store.encoded_texts)


def files_sha256(paths: Iterable[Path], root: Path) -> str:
    """SHA-256 over annotation files (relative name and bytes, in the order given); photos not included."""
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()

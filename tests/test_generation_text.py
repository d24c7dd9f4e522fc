"""Reply cleaning, the reduce loop, multi-summaries and negatives on hand-made replies (no server, no model)."""

from __future__ import annotations

import threading
from typing import Sequence

import pytest

from densecaption.data.schema import DCIImage
from densecaption.generation.backends import BackendError, TextBackend
from densecaption.generation.jobs import JobContext, JobFailed, RetryPolicy
from densecaption.generation.negatives import (NegativeConfig, NegativeItem, check_negatives, make_negatives,
                                               rule_negatives_for, with_negatives)
from densecaption.generation.replies import normalise, parse_numbered, strip_chatter, strip_preamble
from densecaption.generation.summaries import (SHORTEN_A_LITTLE, SHORTEN_MORE, Chat, SummaryConfig, SummaryItem,
                                               bound_text, check_summaries, reduce_to_fit, summarise, with_summaries)


def words(text: str) -> int:
    """A stand-in token count: one token per word plus start and end tokens."""
    return len(text.split()) + 2


class Scripted(TextBackend):
    """Answers from a list, one per request, and records what it was asked."""

    spec = model = "scripted"

    def __init__(self, replies: Sequence[str | BackendError]):
        self.replies = list(replies)
        self.asked: list[list[dict]] = []

    def generate(self, prompt, *, max_tokens, images=None, seed=None) -> str:
        self.asked.append(list(prompt))
        reply = self.replies.pop(0)
        if isinstance(reply, BackendError):
            raise reply
        return reply


def chat_for(backend: TextBackend, job_id: str = "x") -> Chat:
    return Chat(backend, JobContext(job_id, RetryPolicy(base_delay=0.0), threading.Event(), seed=0))


@pytest.mark.parametrize("reply, expected", [
    ("A dog runs on grass.", "A dog runs on grass."),
    ("Sure, here is the summary:\n\nA dog runs on grass.", "A dog runs on grass."),
    ("Sure! Here it is: \"A dog runs on grass.\"", "A dog runs on grass."),
    ("Certainly. Here's a shorter version:\nA dog runs.\n\nI hope this helps!", "A dog runs."),
    ("Here is the new description: A dog runs.", "A dog runs."),
    ("Summary: **A cat sits on a mat.**", "A cat sits on a mat."),
    ("1. A cat sits on a mat.", "A cat sits on a mat."),
    ("Here are two dogs: one black, one white.", "Here are two dogs: one black, one white."),
    ("   \n  ", ""),
    ("Sure!\nLet me know if you need anything else.", "Sure!"),
])
def test_strip_preamble(reply, expected):
    assert strip_preamble(reply) == expected


def test_strip_chatter_keeps_a_caption_over_several_lines():
    reply = "Sure! Here is a concise description:\nA red bus on a street.\nPeople wait at a stop.\n\nHope this helps!"
    assert strip_chatter(reply) == "A red bus on a street. People wait at a stop."


@pytest.mark.parametrize("reply, expected", [
    ("Here are 5 summaries:\n\n1. A cat\non a mat.\n2. A dog.\n3) A bird.\n\nI hope these help!",
     ["A cat on a mat.", "A dog.", "A bird."]),
    ("1. A cat. 2. A dog with 3 legs. 3. Two birds.", ["A cat.", "A dog with 3 legs.", "Two birds."]),
    ("**1.** \"A cat.\"\n**2.** A dog.\nLet me know if you want more.", ["A cat.", "A dog."]),
    ("1. A cat sits.\n2. A dog\n   barks loudly.\n3.   \n4. Fish.", ["A cat sits.", "A dog barks loudly.", "Fish."]),
    ("No list here at all.", []),
    ("1. Only one item.", ["Only one item."]),
])
def test_parse_numbered(reply, expected):
    assert parse_numbered(reply) == expected


def test_normalise_ignores_case_punctuation_and_spacing():
    assert normalise("A Dog,  runs!") == normalise("a dog runs") == "a dog runs"
    assert normalise("A dog runs") != normalise("A runs dog")


def test_reduce_loop_shortens_until_it_fits_and_is_bounded():
    long_text = " ".join(["word"] * 90)
    backend = Scripted([" ".join(["word"] * 80), " ".join(["word"] * 70)])
    assert words(reduce_to_fit(chat_for(backend), long_text, 77, words, tries=4, max_tokens=50)) <= 77
    prompts = [asked[0]["content"] for asked in backend.asked]
    assert prompts == [SHORTEN_MORE, SHORTEN_A_LITTLE]  # far off: "clearly shorter"; close: "a few words"

    stubborn = Scripted([long_text, "", " ".join(["word"] * 95)])  # never shorter: three wasted tries
    with pytest.raises(JobFailed, match="still 92 CLIP tokens .* after 3 reduce rounds"):
        reduce_to_fit(chat_for(stubborn), long_text, 77, words, tries=3, max_tokens=50)
    assert len(stubborn.asked) == 3 and not stubborn.replies


def test_summaries_first_then_numbered_alternatives_until_n():
    item = SummaryItem("f.json", "base", "A long description.", wanted=4)
    backend = Scripted([
        "Sure, here is the summary:\nA red box on a grey floor.",
        "Here you go:\n1. A red box.\n2. a red box on a grey floor!\n3. " + " ".join(["long"] * 90),
        "1. A red box.\n2. A box on a floor.\n3. A red cube.\n4. More.",
    ])
    out = summarise(item, chat_for(backend), SummaryConfig(per_call=5), words)
    # the repeat of the first (after normalisation), the too-long one and the repeat of "A red box." are dropped
    assert out == ["A red box on a grey floor.", "A red box.", "A box on a floor.", "A red cube."]
    second = backend.asked[2][1]["content"]
    assert "Summaries already written" in second and "- A red box." in second
    assert check_summaries(SummaryConfig(), words)(item, out) is None
    assert check_summaries(SummaryConfig(), words)(item, out[:3]) == "only 3 of 4 summaries"


def test_summaries_fail_with_a_reason_when_calls_run_out():
    item = SummaryItem("f.json", "m-1-sc", "text", wanted=6)
    backend = Scripted(["A box."] + ["1. A box.\n2. A lid."] * 4)
    with pytest.raises(JobFailed, match="only 2 of 6 summaries that fit after 3 multi-summary calls"):
        summarise(item, chat_for(backend), SummaryConfig(per_call=5, extra_calls=2), words)


def test_mask_summary_count_follows_upstream():
    config = SummaryConfig()
    assert config.wanted("base", 500) == 10
    assert config.wanted("m-3-sc", 20) == 5  # 1 + max(4, ceil(ln 20) = 3)
    assert config.wanted("m-3-sc", 400) == 7  # 1 + ceil(ln 400) = 1 + 6
    assert SummaryConfig(n_mask=2).wanted("m-3-sc", 400) == 2


def test_bound_text_drops_trailing_lines():
    text = "head line\n" + "\n".join(f"mask {i}: a thing" for i in range(50))
    bounded = bound_text(text, words, 40)
    assert words(bounded) <= 40 and bounded.startswith("head line\nmask 0") and text.startswith(bounded)


SOURCE = "a red box on a grey floor near the wall"


def test_negatives_window_unchanged_and_repeats_are_turned_down():
    item = NegativeItem("f.json", "base", "basic", SOURCE, n=2)
    backend = Scripted([
        "Sure:\nA red box on a grey floor near the wall!",            # unchanged after normalisation
        "a box",                                                       # too short: outside [len-15, len+50]
        "a blue box on a grey floor near the wall",                    # kept
        "A blue box on a grey floor near the wall.",                   # repeats the first
        "a red box on a green floor near the wall",                    # kept
    ])
    config = NegativeConfig(below=3, above=50)
    out = make_negatives(item, chat_for(backend), config, words)
    assert out == ["a blue box on a grey floor near the wall", "a red box on a green floor near the wall"]
    assert "Already written" in backend.asked[3][1]["content"]
    check = check_negatives(config, words)
    assert check(item, out) is None
    assert check(item, [SOURCE.upper() + ".", out[0]]) == "a negative unchanged from its summary"


def test_negative_fails_with_reasons_after_its_tries():
    item = NegativeItem("f.json", "m-1-sc", "swaps", SOURCE, n=1)
    backend = Scripted([SOURCE, SOURCE + ".", ""])
    with pytest.raises(JobFailed, match=r"swaps negative 1 of 1: no valid one in 3 tries \(unchanged x2, empty x1\)"):
        make_negatives(item, chat_for(backend), NegativeConfig(tries=3), words)


def test_long_negatives_are_reduced_to_the_source_length_plus_slack():
    item = NegativeItem("f.json", "base", "layout", SOURCE, n=1)
    longer = SOURCE.replace("box", "big shiny box with a lid and a handle")
    backend = Scripted([longer, "a big box on a grey floor near the wall"])
    out = make_negatives(item, chat_for(backend), NegativeConfig(slack=2), words)
    assert out == ["a big box on a grey floor near the wall"]
    assert backend.asked[1][0]["content"] in (SHORTEN_MORE, SHORTEN_A_LITTLE)


def test_unknown_negative_kind_is_a_user_error():
    from densecaption.errors import UserError

    with pytest.raises(UserError, match="unknown kind"):
        NegativeConfig(kinds=("basic", "colour"))


def record_with(summaries, negatives=None, clip_scores=None) -> DCIImage:
    return DCIImage(file="r.json", image="r.jpg", short_caption="s", extra_caption="e", height=1, width=1,
                    mask_keys=[], masks={}, summaries=summaries, negatives=negatives, clip_scores=clip_scores)


def test_with_summaries_replaces_and_drops_stale_negatives():
    old = record_with({"base": ["old"]}, {"base": {"basic": ["x"]}}, {"base": {"sum": 1.0}})
    new = with_summaries(old, {"base": ["new", "newer"]})
    assert new.summaries == {"base": ["new", "newer"]} and new.negatives is None and new.clip_scores is None
    assert with_summaries(old, {}).summaries is None


def test_with_negatives_replaces_kinds_and_never_leaves_stale_ones():
    old = record_with({"base": ["a red box"]}, {"base": {"basic": ["old"], "swaps": ["old swap"], "other": ["o"]}},
                      {"base": {"sum": 1.0}})
    new = with_negatives(old, {("base", "basic"): ["new basic"]}, ["basic", "swaps"],
                         {"base": {"rule_swap": ["box red a"]}}, ["base"])
    # swaps failed this run: gone, not stale; a kind not generated stays; rule kinds added; scores dropped
    assert new.negatives == {"base": {"other": ["o"], "basic": ["new basic"], "rule_swap": ["box red a"]}}
    assert new.clip_scores is None
    same = with_negatives(old, {}, [], None, ["base"])
    assert same.negatives == old.negatives and same.clip_scores == old.clip_scores


def test_rule_negatives_are_screened(monkeypatch):
    """``--rules`` against a stub of ``rules.rule_negatives`` (the real one is tested in test_rules.py)."""
    import densecaption.generation.rules as rules

    calls = []

    def stub(texts, *, seed, n):
        calls.append((list(texts), seed))
        return [{"swap": ["floor grey a on box red a"], "replace": ["A red box on a grey floor!"]},
                {"swap": [], "replace": [" ".join(["very"] * 80)]}][:len(texts)]

    monkeypatch.setattr(rules, "rule_negative_lists", stub)
    made, problems = rule_negatives_for([("f", "base", "a red box on a grey floor"), ("f", "m-1-sc", "a lid")],
                                        seed=7, count=words)
    assert calls == [(["a red box on a grey floor", "a lid"], 7)]
    assert made == {("f", "base"): {"rule_swap": ["floor grey a on box red a"]}}
    assert [(p.key, p.kind, p.reason) for p in problems] == [
        ("base", "rule_replace", "unchanged after normalisation"),
        ("m-1-sc", "rule_swap", "none could be made"),
        ("m-1-sc", "rule_replace", "over 77 CLIP tokens")]

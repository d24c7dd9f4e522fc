"""LLM negatives must mean what their kind means: the pure check on hand-made examples (real spaCy), the retry
it leads to, the job runner recording a negative that never passes as failed, and ``--n-base`` for rule kinds."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from benchmarks.fake_server import FakeChatServer, last_user_text
from densecaption.cli import build_app
from densecaption.data.dci import DCIDataset
from densecaption.generation.jobs import JobFailed, read_log
from densecaption.generation.negatives import (PROMPTS, Analyser, NegativeConfig, NegativeItem, check_negatives,
                                               make_negatives, meaning_problem, restates)
from tests.generation_fakes import fake_llm, starts, system_text
from tests.test_generation_text import Scripted, chat_for, words

SOURCE = "A black dog sits on a red mat next to a white cat."
OTHER = "A dark dog rests on a mat beside a pale cat, both indoors."  # another true summary of the photo


@pytest.fixture(scope="module")
def analyse() -> Analyser:
    return Analyser()


def problem(analyse: Analyser, kind: str, negative: str) -> str | None:
    return meaning_problem(kind, analyse(negative), analyse(SOURCE), [SOURCE, OTHER])


@pytest.mark.parametrize("kind, negative, expected", [
    # any kind: never a summary of the entry or a part of one
    ("basic", "a black dog sits on a red mat", "restates a summary"),
    ("layout", "A dark dog rests on a mat beside a pale cat.", "restates a summary"),
    ("swaps", "rests on a mat beside a pale cat", "restates a summary"),
    # swaps: the same content words, in another order, paired otherwise
    ("swaps", "A white dog sits on a black mat next to a red cat.", None),
    ("swaps", "A white cat sits on a red mat next to a black dog.", None),
    ("swaps", "A red dog is sitting on white mats next to the black cat", None),  # inflection and articles free
    ("swaps", "A dog sits on a mat next to a cat.", "not the summary's words"),  # shortened
    ("swaps", "A black dog sits on a red mat next to a white cat and a bird.", "not the summary's words"),
    ("swaps", "Next to a white cat, a black dog sits on a red mat.", "same pairings as the summary"),
    # basic and layout: something the summary does not say
    ("basic", "A brown dog sits on a red mat next to a white cat.", None),
    ("basic", "A black dog sleeps on a red mat next to a white cat.", None),
    ("basic", "A dog sits next to a cat.", "only drops or reorders the summary's words"),
    ("basic", "A white cat sits on a red mat next to a black dog.", "only drops or reorders the summary's words"),
    ("layout", "A black dog sits under a red mat next to a white cat.", None),
    ("layout", "A black dog sits on a red mat behind a white cat.", None),
    ("layout", "On a red mat, a black dog sits next to a white cat.", "only drops or reorders the summary's words"),
])
def test_meaning_of_each_kind(analyse, kind, negative, expected):
    assert problem(analyse, kind, negative) == expected


def test_a_layout_negative_may_move_things_among_the_places_the_summary_names(analyse):
    source = "A flag hangs on the left and a model stands on the right."
    moved = "A flag hangs on the right and a model stands on the left."
    assert meaning_problem("layout", analyse(moved), analyse(source)) is None
    shorter = "A flag hangs on the left, a model on the right."
    assert meaning_problem("layout", analyse(shorter), analyse(source)) == "only drops or reorders the summary's words"


def test_restates_is_whole_words_after_normalising():
    assert restates("Red mat, next to a white CAT", [SOURCE])
    assert restates(SOURCE.upper(), [SOURCE])
    assert not restates("ed mat next to a white cat", [SOURCE])  # not a part of a word
    assert not restates("the red mat next to a white cat", [SOURCE])  # "the red mat" is not in the summary
    assert not restates("", [SOURCE]) and not restates("a dog", [])


def test_a_restatement_is_asked_again_with_why_and_the_retry_is_kept():
    item = NegativeItem("f.json", "base", "basic", SOURCE, n=1, summaries=(SOURCE, OTHER))
    backend = Scripted(["Sure:\nA black dog sits on a red mat.",        # a part of the summary
                        "A dark dog rests on a mat beside a pale cat.",  # another summary of the photo
                        "A dog sits next to a cat.",                     # only drops words
                        "A brown dog sits on a red mat next to a white cat."])
    out = make_negatives(item, chat_for(backend), NegativeConfig(below=50), words)
    assert out == ["A brown dog sits on a red mat next to a white cat."]
    retries = [asked[1]["content"] for asked in backend.asked[1:]]
    assert "repeated or shortened a true description" in retries[0] and "change a detail" in retries[2]


def test_no_valid_negative_fails_with_the_reasons():
    item = NegativeItem("f.json", "base", "swaps", SOURCE, n=1, summaries=(SOURCE,))
    backend = Scripted(["A black dog sits on a red mat.", "A dog sits on a mat next to a cat.",
                        "Next to a white cat, a black dog sits on a red mat."])
    with pytest.raises(JobFailed, match=re.escape("swaps negative 1 of 1: no valid one in 3 tries (restates a "
                                                  "summary x1, not the summary's words x1, same pairings as the "
                                                  "summary x1)")):
        make_negatives(item, chat_for(backend), NegativeConfig(tries=3, below=50), words)


def test_the_meaning_check_can_be_turned_off():
    item = NegativeItem("f.json", "base", "basic", SOURCE, n=1, summaries=(SOURCE,))
    backend = Scripted(["A dog sits next to a cat."])
    out = make_negatives(item, chat_for(backend), NegativeConfig(below=50, meaning=False), words)
    assert out == ["A dog sits next to a cat."]
    assert NegativeConfig().settings()["meaning"] is True  # in the job log's header


def test_the_job_check_turns_down_a_negative_restating_any_summary():
    item = NegativeItem("f.json", "base", "basic", SOURCE, n=2, summaries=(SOURCE, OTHER))
    check = check_negatives(NegativeConfig(), words)
    assert check(item, ["A brown dog.", "a mat beside a pale cat"]) == "a negative restating a summary"
    assert check(item, ["A brown dog.", "A grey cat."]) is None


# --------------------------------------------------------------------------------------------- end to end
def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def negatives_run(tmp_path, respond, *extra):
    with FakeChatServer(respond) as server:
        result = invoke("generate", "negatives", "--data", "sample", "--llm", f"openai:{server.url}#fake", "--out",
                        tmp_path / "neg", "--kinds", "basic", "--n-base", "1", "--no-masks", "--limit", "1",
                        "--concurrency", "1", *extra)
    (record,) = read_log(tmp_path / "neg" / "generate-negatives.jobs.jsonl")
    return result, record, server.requests


def basic_requests(requests):
    return [r for r in requests if starts(system_text(r), PROMPTS["basic"])]


def test_a_restatement_from_the_server_is_retried_and_the_retry_written(tmp_path):
    asked = []

    def respond(body):
        if starts(system_text(body), PROMPTS["basic"]):
            asked.append(body)
            if len(asked) == 1:  # the first reply: the summary without its first words
                source = last_user_text(body).split("\n\n(")[0]
                return "Sure, here it is:\n" + " ".join(source.split()[4:])
        return fake_llm(body)

    result, record, requests = negatives_run(tmp_path, respond)
    assert result.exit_code == 0 and "1 ok, 0 failed" in result.output, result.output
    assert record.ok and record.output[0].startswith("purple black and white photo")  # fake_llm's negative
    assert len(basic_requests(requests)) == 2
    assert "repeated or shortened a true description" in last_user_text(basic_requests(requests)[1])
    written = DCIDataset.open(tmp_path / "neg").read("camera-data.json").negatives["base"]
    assert written["basic"] == record.output


def test_a_negative_that_never_means_its_kind_is_recorded_as_failed(tmp_path):
    def respond(body):  # a part of the summary, then (told so) the summary less three adjectives, and so on
        if starts(system_text(body), PROMPTS["basic"]):
            source = last_user_text(body).split("\n\n(")[0]
            if "shortened" in last_user_text(body):
                return " ".join(w for w in source.split() if w not in ("long", "small", "tall"))
            return " ".join(source.split()[3:])
        return fake_llm(body)

    result, record, requests = negatives_run(tmp_path, respond)
    assert result.exit_code == 0, result.output
    reason = ("basic negative 1 of 1: no valid one in 4 tries (restates a summary x2, only drops or reorders the "
              "summary's words x2)")
    assert not record.ok and record.reason == reason
    assert f"camera-data.json#base#basic: {reason}" in " ".join(result.output.split())
    assert len(basic_requests(requests)) == 4
    written = DCIDataset.open(tmp_path / "neg").read("camera-data.json").negatives["base"]
    assert "basic" not in written  # never written as if it succeeded, nor left stale from the input


# --------------------------------------------------------------------------------------------- --n-base, rules
def test_n_base_and_n_mask_set_how_many_rule_negatives_each_entry_gets(tmp_path):
    result = invoke("generate", "negatives", "--data", "sample", "--rules", "--out", tmp_path / "neg", "--limit", "1",
                    "--n-base", "3", "--n-mask", "2")
    assert result.exit_code == 0, result.output
    record = DCIDataset.open(tmp_path / "neg").read("camera-data.json")
    base = record.negatives["base"]
    assert len(base["rule_swap"]) == 3 and len(base["rule_replace"]) == 3
    assert len({t.lower() for t in base["rule_swap"]}) == 3 and record.summaries["base"][0] not in base["rule_swap"]
    masks = [kinds for key, kinds in record.negatives.items() if key != "base"]
    assert masks and all(1 <= len(kinds.get(k, [])) <= 2 for kinds in masks for k in ("rule_swap", "rule_replace"))
    assert sum(len(kinds["rule_replace"]) for kinds in masks) == 2 * len(masks)
    made = sum(len(texts) for kinds in record.negatives.values() for kind, texts in kinds.items()
               if kind.startswith("rule_"))
    assert f"rule negatives: {made} made for {1 + len(masks)} entries" in result.output

"""``quality recall``: entities, nouns and words per caption with the real spaCy model, counted by hand."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from densecaption.cli import quality
from densecaption.quality.recall import caption_recall, load_nlp, spread, summarise_recall
from densecaption.tokens import ClipTokenCounter

# (caption, entities, nouns, words), worked out by hand: entities are noun chunks not headed by a pronoun
# ("his dog" counts, "it" and "They" do not); nouns are NOUN and PROPN tokens; words exclude punctuation.
CASES = [
    ("A man in a red shirt holds his dog next to it. They are on the grass.",
     ["A man", "a red shirt", "his dog", "the grass"], ["man", "shirt", "dog", "grass"], 17),
    ("Two clocks hang on the wall of Paris station.",
     ["Two clocks", "the wall", "Paris station"], ["clocks", "wall", "Paris", "station"], 9),
    ("It is here.", [], [], 3),
]


@pytest.fixture(scope="module")
def nlp():
    return load_nlp()[0]


def test_counts_on_hand_made_captions(nlp):
    rows = caption_recall(nlp, [c[0] for c in CASES], count_tokens=ClipTokenCounter())
    for (text, entities, nouns, words), row in zip(CASES, rows):
        assert row["entities"] == entities, text
        assert row["nouns"] == nouns, text
        assert (row["n_entities"], row["n_nouns"], row["words"]) == (len(entities), len(nouns), words)
        assert row["clip_tokens"] == ClipTokenCounter()(text)
    summary = summarise_recall(rows)
    assert summary["entities"]["mean"] == pytest.approx(7 / 3)
    assert summary["nouns"]["max"] == 4 and summary["nouns"]["min"] == 0
    assert summary["words"]["median"] == 9


def test_spread_by_hand():
    s = spread([1, 2, 3, 6])
    assert s["mean"] == 3 and s["median"] == 2.5 and s["std"] == pytest.approx((14 / 4) ** 0.5)
    assert spread([])["mean"] is None


def test_cli_reads_caption_output_and_metadata_jsonl(tmp_path):
    (tmp_path / "caps.jsonl").write_text(
        "".join(json.dumps({"file": f"{i}.jpg", "caption": c[0], "model": "capt"}) + "\n"
                for i, c in enumerate(CASES)) + '{"no": "text"}\n')
    result = CliRunner().invoke(quality.app, ["recall", "--captions", str(tmp_path / "caps.jsonl"), "--out",
                                              str(tmp_path / "caps.recall.json")])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "capt" in result.output
    data = json.loads((tmp_path / "caps.recall.json").read_text())
    assert data["summary"]["captions"] == 3 and data["skipped_lines"] == 1
    assert [r["n_entities"] for r in data["per_caption"]] == [4, 3, 0]

    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.jpg", "text": CASES[1][0]}) + "\n")
    result = CliRunner().invoke(quality.app, ["recall", "--captions", str(folder), "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["captioner"] == "set" and data["per_caption"][0]["id"] == "a.jpg"
    assert data["summary"]["entities"]["mean"] == 3

"""sdci-full on constructed records with known long texts: sDCI's entries with their assembled texts,
scores pooled over chunks (worked by hand), token counts and cuts recorded, the summaries' flat SCM equal to
sDCI's All SCM, and a refused run ending in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.data.dci import DCIDataset
from densecaption.data.findings import SkipLog
from densecaption.data.sdci import records_with_sizes
from densecaption.evaluation.benchmarks.sdci_full import SdciFullConfig, TextScorer, by_length, full_entries, \
    scm_hits
from densecaption.evaluation.run import evaluate
from densecaption.models.registry import load_model
from tests.conftest import make_doc, write_dataset

LONG_CAPTION = "A red box. " * 60  # "a red box ." = 4 tokens each: 240 tokens in the extra caption


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    first, second = make_doc(), make_doc(image="other.jpg")
    first["extra_caption"] = LONG_CAPTION.strip()
    second["summaries"] = {"base": ["a grey floor"], "m-1-sc": ["the grey box"]}
    second["mask_data"]["1"]["caption"] = "a grey box"
    return str(write_dataset(tmp_path_factory.mktemp("dci"), {"a-data.json": first, "b-data.json": second}))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("clip")
    made = CliRunner().invoke(build_app(), ["models", "init-random", "ViT-B-32", str(out), "--tiny"])
    assert made.exit_code == 0, made.output
    return f"open_clip:local-dir:{out}"


def test_entries_are_sdcis_with_their_assembled_texts(data):
    dataset = DCIDataset.open(data)
    record, size = next(records_with_sizes(dataset, "test", SkipLog()))
    entries = full_entries(record, size, SdciFullConfig())
    # make_doc: base, then mask 1 (240 x 250 box, summarised); mask 2 is small, mask 3 has no summary
    assert [(e.key, e.summary) for e in entries] == [("base", "a red box on a floor"), ("m-1-sc", "the red box")]
    also = "\nThe following can also be seen in the image:\n"
    assert entries[0].full == f"A red box.\n{LONG_CAPTION.strip()}{also}box: a red box\nlid: the lid\nfloor"
    assert entries[1].full == f"This is an image of box. a red box{also}lid: the lid"


class DotModel:
    """A test double scoring by the plain dot product."""

    def similarity(self, image_features, text_features):
        return image_features @ text_features.T


def test_pooled_scores_by_hand():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    chunks = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    texts = [[0, 1], [2]]  # text 0 has two chunks, text 1 one
    # mean: text 0 = [0.5, 0.5] re-normalised [0.7071, 0.7071]; text 1 = [0.6, 0.8]
    mean = TextScorer(DotModel(), images, chunks, texts, "mean")([0, 1], [0, 1])
    assert mean.flatten().tolist() == pytest.approx([0.707107, 0.6, 0.707107, 0.8], abs=1e-6)
    # max: text 0 = max(1, 0) = 1 for image 0 and max(0, 1) = 1 for image 1; text 1 as its only chunk
    best = TextScorer(DotModel(), images, chunks, texts, "max")([0, 1], [0, 1])
    assert best.flatten().tolist() == pytest.approx([1.0, 0.6, 1.0, 0.8], abs=1e-6)


def test_scm_hits_per_group_by_hand():
    scores = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.0, 0.0, 0.5]])
    # group [0, 1]: entry 0 best is its own text (0.9 > 0.1); entry 1 prefers text 0 (0.8 > 0.2). Group [2]: alone
    hits = scm_hits([[0, 1], [2]], [0, 1, 2], [0, 1, 2], lambda rows, cols: scores[np.ix_(rows, cols)])
    assert hits == [True, False, True]


def test_length_breakdown_by_hand():
    # tokens 50 and 70 (<=77): full right 1 of 2; 100 (78-248): right; 2000 (>1024): wrong
    out = by_length([50, 70, 100, 2000], [True, False, True, False], [True, True, False, False])
    assert out == {"<=77": {"entries": 2, "full_scm": 50.0, "summary_scm": 100.0},
                   "78-248": {"entries": 1, "full_scm": 100.0, "summary_scm": 0.0},
                   ">1024": {"entries": 1, "full_scm": 0.0, "summary_scm": 0.0}}


@pytest.fixture(scope="module")
def runs(data, tiny_clip):
    return {mode: evaluate("sdci-full", f"{tiny_clip}#long={mode}", data, device="cpu")
            for mode in ("truncate", "chunk-mean", "chunk-max", "parts-mean")}


def test_token_counts_and_cuts_are_recorded(runs, data, tiny_clip):
    model = load_model(tiny_clip, device="cpu")
    truncate = runs["truncate"].extra
    long_base = next(k for k in truncate["text_tokens"] if k.startswith("a-data") and k.endswith("/base"))
    assert truncate["text_tokens"][long_base] > 240 + 2 > 77  # the caption alone is 240 tokens
    assert sum(n > 77 for n in truncate["text_tokens"].values()) == 1 == truncate["tokens"]["over_window"]
    assert truncate["entries"] == 4 and truncate["window"] == 77 and truncate["tokens"]["cut"] == 1
    assert truncate["truncated_texts"] == 1  # what the tokenizer itself cut
    assert runs["truncate"].metrics["cut_share"] == 25.0  # 1 of 4 entries cut at 77
    assert model.count_tokens("A red box. " * 60) == 242
    for mode in ("chunk-mean", "chunk-max", "parts-mean"):
        assert runs[mode].metrics["cut_share"] == 0.0 and runs[mode].extra["tokens"]["over_window"] == 1
        assert runs[mode].extra["long_mode"] == mode and runs[mode].extra["truncated_texts"] == 0
        assert runs[mode].mode == mode  # the result's mode is how the model read long texts
    # 8 unique texts (4 full, 4 summaries). The long one: 61 sentences "A red box." of 4 tokens, then the
    # 10-token "The following ..." line and lines of 5, 4 and 1 tokens. A chunk holds 75 tokens besides start and
    # end: 18 sentences (72). Chunks: 18, 18, 18 identical sentences, then 7 sentences + lines (28+10+5+4+1 = 48):
    # 4 chunks, 2 of them unique, each encoded once: 8 - 1 + 2 texts encoded
    assert runs["truncate"].extra["chunks"] == 8 and runs["chunk-mean"].extra["chunks"] == 8 - 1 + 2
    assert runs["chunk-mean"].extra["encoded_texts"] == 9 and runs["chunk-mean"].extra["encoded_images"] == 4
    # parts-mean: the long text's lines: "A red box.", the 240-token extra caption (60 sentences: chunks of 18,
    # 18, 18 and 6, 2 unique), "box: a red box", "lid: the lid", "floor": 6 unique, beside the 7 other texts
    assert runs["parts-mean"].extra["chunks"] == 7 + 6
    record, size = next(records_with_sizes(DCIDataset.open(data), "test", SkipLog()))
    chunks = load_model(f"{tiny_clip}#long=chunk-mean", device="cpu").chunks(
        full_entries(record, size, SdciFullConfig())[0].full)
    assert len(chunks) == 4 and chunks[0] == chunks[1] == chunks[2] == " ".join(["A red box."] * 18)
    assert chunks[3].endswith("The following can also be seen in the image: box: a red box lid: the lid floor")
    by_len = runs["truncate"].extra["by_length"]
    assert {k: v["entries"] for k, v in by_len.items()} == {"<=77": 3, "249-512": 1}
    assert "project's own" in runs["truncate"].extra["design"]


def test_summary_side_is_sdci(runs, data, tiny_clip):
    sdci = evaluate("sdci", tiny_clip, data, device="cpu")
    for run in runs.values():  # the summaries are read whole in every mode: the same numbers as sDCI
        assert run.metrics["summary_scm_b8"] == sdci.metrics["all_scm"]
        assert run.counts["summary_scm_b8"] == sdci.counts["all_scm"]
        assert run.metrics["summary_scm"] == runs["truncate"].metrics["summary_scm"]


def test_native_refuses_long_texts_in_one_line(data, tiny_clip, tmp_path):
    result = CliRunner().invoke(build_app(), ["bench", "sdci-full", "--data", data, "--model",
                                              f"{tiny_clip}#long=native", "--device", "cpu", "--out", str(tmp_path)])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "1 of 8 texts are longer than its 77-token window" in errors[0]


def test_report_puts_sdci_beside_sdci_full(runs, data, tiny_clip, tmp_path):
    from densecaption.evaluation.results import write_result
    from densecaption.reports.long_text import base_spec

    assert base_spec("hf:x#gguf=a#long=chunk-max") == "hf:x#gguf=a"
    sdci = evaluate("sdci", tiny_clip, data, device="cpu")
    for result in [sdci, *runs.values()]:
        write_result(tmp_path, result)
    report = CliRunner().invoke(build_app(), ["report", "long-text", str(tmp_path)])
    assert report.exit_code == 0, report.output
    rows = [line for line in report.output.splitlines() if line.startswith(f"| {tiny_clip}")]
    assert len(rows) == 8  # four runs, each in both tables
    first = [line for line in report.output.splitlines() if f"{tiny_clip}#long=chunk-mean" in line][0].split(" | ")
    # model, data, reads long text, window, tokens, Cut %, sDCI All SCM, then summary / full pairs
    assert first[2:4] == ["chunk-mean", "77"] and first[5] == "0.00"
    assert first[6] == f"{sdci.metrics['all_scm']:.2f}" and first[7].startswith(f"{sdci.metrics['all_scm']:.2f} / ")
    truncate = [line for line in report.output.splitlines() if f"{tiny_clip}#long=truncate" in line][0]
    assert " | 25.00 | " in truncate and "this project's own test" in report.output
    assert "| <=77 | 78-248 | 249-512 | 513-1024 | >1024 |" in report.output

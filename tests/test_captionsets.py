"""Caption sets (compose set|grid): exact and bernoulli precision, submask choice, negatives, tokens, exports."""

from __future__ import annotations

import io
import json
import math
import random
from fractions import Fraction

import pytest
from typer.testing import CliRunner

from densecaption.captionsets.compose import (
    CaptionSetConfig,
    compose_set,
    exact_true_counts,
    join_parts,
    prepare_image,
)
from densecaption.captionsets.export import write_set
from densecaption.captionsets.source import prepare_dataset
from densecaption.captionsets.tokens import TextTokenizer, load_tokenizer, token_report
from densecaption.data.dci import DCIDataset
from densecaption.data.findings import SkipLog
from densecaption.data.schema import BASE_KEY, Box, DCIImage, Entry, Mask, mask_key
from densecaption.errors import UserError

KINDS = ("basic", "layout", "swaps")


# --------------------------------------------------------------------------------------------- builders
def make_record(image_id: str, masks: list[tuple[int, int, list[int], int]]) -> DCIImage:
    """A record with masks (idx, parent, children, area); no pixels (compose never decodes them)."""
    ms = {idx: Mask(idx=idx, parent=parent, requirements=children, outer_mask="", area=area,
                    box=Box(0, 0, 300, 300), label=f"l{idx}", caption="", quality=0)
          for idx, parent, children, area in masks}
    return DCIImage(file=f"{image_id}.json", image=f"{image_id}.jpg", short_caption="", extra_caption="",
                    height=300, width=300, mask_keys=[str(i) for i in ms], masks=ms)


def make_entry(image_id: str, key: str, idx: int | None, scores: dict[str, float] | None = None,
               kinds: tuple[str, ...] = KINDS) -> Entry:
    negatives = {k: [f"{image_id} {key} {k} neg{i}." for i in range(3)] for k in kinds}
    return Entry(image_file=f"{image_id}.json", key=key, mask_idx=idx,
                 summaries=[f"{image_id} {key} true.", f"{image_id} {key} second."], negatives=negatives,
                 clip_scores=scores, crop=Box(0, 0, 300, 300))


def image_with(image_id: str, n_masks: int, config: CaptionSetConfig, areas: list[int] | None = None):
    """An image whose masks 1..n are top-level with the given areas (default: increasing with idx)."""
    areas = areas or [100 * (i + 1) for i in range(n_masks)]
    record = make_record(image_id, [(i + 1, -1, [], a) for i, a in enumerate(areas)])
    entries = [make_entry(image_id, BASE_KEY, None)] + [make_entry(image_id, mask_key(i + 1), i + 1)
                                                       for i in range(n_masks)]
    return prepare_image(record, entries, config)


def images(config: CaptionSetConfig, n: int = 40, seed: int = 1, lo: int = 0, hi: int = 4):
    rng = random.Random(seed)
    return [image_with(f"img{i}", rng.randint(lo, hi), config) for i in range(n)]


# --------------------------------------------------------------------------------------------- exact mode
@pytest.mark.parametrize("short", ["keep", "skip"])
@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("p", [0, 0.25, 0.5, 0.75, 1, 0.3])
def test_exact_precision_is_p_up_to_one_part(p, k, short):
    config = CaptionSetConfig(precision=p, submasks=k, short=short)
    cset = compose_set(images(config, n=37), config)
    sizes = [len(c.parts) for c in cset.captions]
    n_parts = sum(sizes)
    true = sum(sum(c.labels) for c in cset.captions)
    assert true == math.floor(Fraction(str(p)) * n_parts + Fraction(1, 2))
    assert abs(true / n_parts - p) <= 1 / (2 * n_parts) + 1e-12
    assert cset.realised()["precision"]["set"] == true / n_parts
    for c in cset.captions:  # floor or ceil per caption
        assert sum(c.labels) in (math.floor(p * len(c.parts) + 1e-9), math.ceil(p * len(c.parts) - 1e-9))


def test_exact_p025_k0_hands_out_ceilings_by_seed():
    config = CaptionSetConfig(precision=0.25, submasks=0)
    imgs = images(config, n=10)
    a = compose_set(imgs, config)
    assert all(len(c.parts) == 1 for c in a.captions)
    assert sum(sum(c.labels) for c in a.captions) == 3  # round_half_up(2.5)
    b = compose_set(imgs, config)
    other = compose_set(imgs, CaptionSetConfig(precision=0.25, submasks=0, seed=5))
    assert [c.labels for c in a.captions] == [c.labels for c in b.captions]
    assert sum(sum(c.labels) for c in other.captions) == 3


def test_exact_true_counts_helper():
    assert exact_true_counts([4, 4, 4], Fraction(1, 2), 0) == [2, 2, 2]
    counts = exact_true_counts([3, 3, 3, 3], Fraction(1, 2), 0)  # 1.5 each: two ceilings of four
    assert sorted(counts) == [1, 1, 2, 2] and sum(counts) == 6


# --------------------------------------------------------------------------------------------- bernoulli
def test_bernoulli_is_seeded_and_near_p():
    config = CaptionSetConfig(precision=0.5, submasks=3, mode="bernoulli", short="keep")
    imgs = images(config, n=600, lo=3, hi=3)
    a, b = compose_set(imgs, config), compose_set(imgs, config)
    assert [c.labels for c in a.captions] == [c.labels for c in b.captions]
    c2 = compose_set(imgs, CaptionSetConfig(precision=0.5, submasks=3, mode="bernoulli", seed=1))
    assert [c.labels for c in a.captions] != [c.labels for c in c2.captions]
    assert abs(a.realised()["precision"]["set"] - 0.5) < 0.04  # 2400 parts: sd 0.01
    # not exact per caption: some captions have 0 or 4 true parts
    assert {sum(c.labels) for c in a.captions} >= {0, 4}


# --------------------------------------------------------------------------------------------- submasks
def test_short_skip_and_keep():
    cfg_skip = CaptionSetConfig(precision=1, submasks=2, short="skip")
    imgs = [image_with("a", 0, cfg_skip), image_with("b", 1, cfg_skip), image_with("c", 3, cfg_skip)]
    skipped = compose_set(imgs, cfg_skip)
    assert [c.image_id for c in skipped.captions] == ["c"] and skipped.short_skipped == 2
    assert skipped.realised()["recall"]["mean"] == 2
    kept = compose_set(imgs, CaptionSetConfig(precision=1, submasks=2, short="keep"))
    assert [c.subcaptions for c in kept.captions] == [0, 1, 2]
    assert [c.short for c in kept.captions] == [True, True, False] and kept.short_kept == 2
    assert kept.realised()["recall"]["mean"] == 1


def test_area_and_tree_order():
    # tree: 1 -> (2, 3); 4 top-level. Areas: 4 largest, then 3, 1, 2.
    record = make_record("t", [(1, -1, [2, 3], 500), (2, 1, [], 100), (3, 1, [], 800), (4, -1, [], 900)])
    entries = [make_entry("t", BASE_KEY, None)] + [make_entry("t", mask_key(i), i) for i in (1, 2, 3, 4)]
    by_area = prepare_image(record, entries, CaptionSetConfig(precision=1, submasks=3, order="area"))
    by_tree = prepare_image(record, entries, CaptionSetConfig(precision=1, submasks=3, order="tree"))
    assert [c.mask_idx for c in by_area.submasks] == [4, 3, 1, 2]
    assert [c.mask_idx for c in by_tree.submasks] == [1, 2, 3, 4]
    cap = compose_set([by_area], CaptionSetConfig(precision=1, submasks=2, order="area")).captions[0]
    assert [p.key for p in cap.parts] == ["base", "m-4-sc", "m-3-sc"]
    assert cap.text == "t base true. t m-4-sc true. t m-3-sc true."


def test_summary_random_is_seeded():
    cfg = CaptionSetConfig(precision=1, submasks=3, summary="random")
    picks = {(c.key, c.summary_index) for i in range(20) for c in image_with(f"r{i}", 3, cfg).submasks}
    assert {i for _, i in picks} == {0, 1}
    assert image_with("r0", 3, cfg) == image_with("r0", 3, cfg)


# --------------------------------------------------------------------------------------------- negatives
def scored_image(kinds=KINDS):
    scores = {"sum": 30.0}
    for j, k in enumerate(KINDS):
        for i in range(3):
            scores[f"{k}_{i}"] = 10.0 + 3 * j + i  # basic 10-12, layout 13-15, swaps 16-18
    scores["layout_1"] = 5.0  # lowest overall
    scores["basic_2"] = 25.0  # highest overall
    record = make_record("s", [(1, -1, [], 100)])
    entries = [make_entry("s", BASE_KEY, None, scores, kinds), make_entry("s", "m-1-sc", 1, scores, kinds)]
    return record, entries


@pytest.mark.parametrize("kind,pick,expected", [
    ("any", "hardest", ("basic", 2)), ("any", "easiest", ("layout", 1)),
    ("swaps", "hardest", ("swaps", 2)), ("swaps", "easiest", ("swaps", 0)),
    ("layout", "easiest", ("layout", 1)), ("basic", "easiest", ("basic", 0)),
])
def test_negative_kind_and_pick(kind, pick, expected):
    record, entries = scored_image()
    img = prepare_image(record, entries, CaptionSetConfig(precision=0, submasks=1, negative=kind,
                                                          negative_pick=pick))
    assert (img.base.negative_kind, img.base.negative_index) == expected
    cap = compose_set([img], CaptionSetConfig(precision=0, submasks=1, negative=kind, negative_pick=pick)).captions[0]
    assert cap.labels == [0, 0]
    assert cap.parts[0].text == f"s base {expected[0]} neg{expected[1]}."


def test_random_pick_stays_in_kind():
    record, entries = scored_image()
    for seed in range(10):
        img = prepare_image(record, entries, CaptionSetConfig(precision=0, submasks=1, negative="swaps", seed=seed))
        assert img.base.negative_kind == "swaps" and img.submasks[0].negative_kind == "swaps"


def test_preset_captions4t2i_picks_lowest_scored_negative_of_any_kind():
    config = CaptionSetConfig.build(0, 1, preset="captions4t2i")
    assert (config.mode, config.negative, config.negative_pick, config.order, config.short, config.summary) == \
        ("bernoulli", "any", "easiest", "area", "keep", "first")
    record, entries = scored_image()
    img = prepare_image(record, entries, config)
    assert (img.base.negative_kind, img.base.negative_index, img.base.negative_score) == ("layout", 1, 5.0)
    with pytest.raises(UserError, match="--mode bernoulli"):
        CaptionSetConfig.build(0.5, 1, preset="captions4t2i", mode="exact")
    assert CaptionSetConfig.build(0.5, 1, preset="captions4t2i", mode="bernoulli").mode == "bernoulli"


def test_labels_align_with_parts():
    config = CaptionSetConfig(precision=0.5, submasks=3, short="keep")
    for cap in compose_set(images(config, n=30), config).captions:
        assert cap.text == join_parts(p.text for p in cap.parts)
        assert len(cap.labels) == len(cap.parts) == 1 + cap.subcaptions
        for part, label in zip(cap.parts, cap.labels):
            assert part.text.startswith(f"{cap.image_id} {part.key} ")
            assert (part.source == "summary") == bool(label) == part.text.endswith("true.")


def test_bad_options_are_user_errors():
    with pytest.raises(UserError):
        CaptionSetConfig(precision=1.5, submasks=1)
    with pytest.raises(UserError):
        CaptionSetConfig(precision=0.5, submasks=-1)
    with pytest.raises(UserError):
        CaptionSetConfig(precision=0.5, submasks=1, negative="other")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- tokens
WORDS = ["a", "the", "red", "blue", "green", "cat", "dog", "sits", "on", "under", "table", "chair", "near", "large", "small", "photo", "of", "with", "and", "in", "window", "wooden", "floor", "bright", "light"]


@pytest.fixture(scope="module")
def test_t5_tokenizer(tmp_path_factory):
    """A TEST tokenizer: a tiny sentencepiece unigram model trained here, saved as a T5Tokenizer folder."""
    spm = pytest.importorskip("sentencepiece")
    rng = random.Random(0)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) for _ in range(300)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, vocab_size=45,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    folder = tmp_path_factory.mktemp("test-t5-tokenizer")
    (folder / "spiece.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    (folder / "README.md").write_text("Test tokenizer trained by tests/test_captionsets.py; not a real T5.\n")
    return folder, spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))


def test_token_report_against_sentencepiece(test_t5_tokenizer):
    folder, sp = test_t5_tokenizer
    tok = load_tokenizer(f"{folder}:20")
    assert tok.special == 1  # </s>
    rng = random.Random(3)
    config = CaptionSetConfig(precision=1, submasks=3, short="keep")
    caps = []
    for i in range(25):
        img = image_with(f"c{i}", rng.randint(0, 3), config)
        caps.extend(compose_set([img], config).captions)
    # hand-made texts: replace the parts with sentences of known words
    from dataclasses import replace
    caps = [replace(c, parts=tuple(replace(p, text=" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9))))
                                   for p in c.parts)) for c in caps]
    row = token_report(caps, [tok])[0]
    counts, truncated, sub_cut, sub_total, base_cut = [], 0, 0, 0, 0
    for c in caps:
        per_part = [len(sp.encode(p.text)) for p in c.parts]
        total = sum(per_part) + 1
        counts.append(total)
        truncated += total > 20
        running = 0
        for j, n in enumerate(per_part):
            running += n
            cut = running > 20 - 1
            if j == 0:
                base_cut += cut
            else:
                sub_cut += cut
                sub_total += 1
    assert [tok.count(c.text) for c in caps] == counts
    assert row["captions_truncated"] == truncated > 0
    assert row["subcaptions_cut"] == sub_cut > 0
    assert row["subcaptions"] == sub_total and row["base_cut"] == base_cut
    assert row["tokens"]["max"] == max(counts) and row["limit"] == 20


def test_token_report_hand_made_case():
    words = lambda n: " ".join(["w"] * n)
    tok = TextTokenizer(name="words", spec="words:10", limit=10, count=lambda t: len(t.split()) + 2)
    config = CaptionSetConfig(precision=1, submasks=3)
    cap = compose_set([image_with("h", 3, config)], config).captions[0]
    from dataclasses import replace
    cap = replace(cap, parts=tuple(replace(p, text=words(n)) for p, n in zip(cap.parts, (3, 4, 1, 2))))
    row = token_report([cap], [tok])[0]
    # content room 8: base ends at 3, sub1 at 7, sub2 at 8 (kept), sub3 at 10 (cut)
    assert row["tokens"]["max"] == 12 and row["captions_truncated"] == 1
    assert row["subcaptions_cut"] == 1 and row["base_cut"] == 0 and row["subcaptions"] == 3


def test_bad_tokenizer_spec_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="NAME_OR_DIR:LENGTH"):
        load_tokenizer("t5-small")
    with pytest.raises(UserError, match="cannot load"):
        load_tokenizer(f"{tmp_path}:120")


# --------------------------------------------------------------------------------------------- data + exports
def test_sample_hardest_pick_uses_stored_scores():
    dataset = DCIDataset.open("sample")
    config = CaptionSetConfig(precision=0, submasks=3, negative_pick="hardest", short="keep")
    prepared = prepare_dataset(dataset, "test", config, SkipLog(strict=True))
    assert len(prepared.images) == 9
    for img in prepared.images:
        record = dataset.read(img.file)
        for choice in (img.base, *img.submasks):
            scores = record.clip_scores[choice.key]
            best = max(v for k, v in scores.items() if k != "sum")
            assert choice.negative_score == best
            assert record.negatives[choice.key][choice.negative_kind][choice.negative_index].strip() == choice.negative


def test_exports_and_manifest(tmp_path):
    datasets = pytest.importorskip("datasets")
    dataset = DCIDataset.open("sample")
    config = CaptionSetConfig(precision=0.5, submasks=2, short="keep")
    prepared = prepare_dataset(dataset, "test", config, SkipLog(strict=True))
    cset = compose_set(prepared.images, config)
    data = {"path": "sample", "split": "test", "sha256": "x"}
    manifest = write_set(cset, tmp_path / "a", ["folder", "parquet", "jsonl"], data=data, tokens=[])
    write_set(cset, tmp_path / "b", ["folder", "parquet", "jsonl"], data=data, tokens=[])
    a = tmp_path / "a"
    lines = [json.loads(line) for line in (a / "images" / "metadata.jsonl").read_text().splitlines()]
    assert len(lines) == len(cset.captions) == 9
    for line, cap in zip(lines, cset.captions):
        assert set(line) >= {"file_name", "text", "labels", "image_id"}
        assert (a / "images" / line["file_name"]).is_file()
        assert line["text"] == cap.text and line["labels"] == cap.labels and line["image_id"] == cap.image_id
    table = datasets.Dataset.from_parquet(str(a / "captions.parquet"))
    assert table.num_rows == 9 and table[0]["text"] == cset.captions[0].text
    assert table[0]["labels"] == cset.captions[0].labels and (a / table[0]["image"]).is_file()
    rows = [json.loads(line) for line in (a / "captions.jsonl").read_text().splitlines()]
    assert rows[0]["parts"][0]["key"] == "base" and len(rows) == 9
    m = json.loads((a / "manifest.json").read_text())
    assert m == manifest and m["config"]["precision"] == 0.5 and m["config"]["submasks"] == 2
    assert m["data"] == data and m["counts"]["captions"] == 9
    assert m["realised"]["precision"]["set"] == pytest.approx(0.5, abs=1 / (2 * m["counts"]["parts"]))
    for name in ("manifest.json", "captions.jsonl", "images/metadata.jsonl", "captions.parquet"):
        assert (a / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    with pytest.raises(UserError, match="--overwrite"):
        write_set(cset, a, ["jsonl"], data=data)


def _compose_app():
    from densecaption.cli.compose import app

    return app


def test_cli_grid_on_sample(tmp_path):
    out = tmp_path / "grid"
    result = CliRunner().invoke(_compose_app(), ["grid", "--data", "sample", "--out", str(out), "--split", "all",
                                                 "--format", "folder,parquet,jsonl"])
    assert result.exit_code == 0, result.output
    grid = json.loads((out / "manifest.json").read_text())
    assert len(grid["sets"]) == 20 and grid["data"]["split"] == "all" and len(grid["data"]["sha256"]) == 64
    for row in grid["sets"]:
        m = json.loads((out / row["folder"] / "manifest.json").read_text())
        p, k = m["config"]["precision"], m["config"]["submasks"]
        assert row["folder"] == f"p{p:g}_k{k}"
        n = m["realised"]["precision"]["parts"]
        assert abs(m["realised"]["precision"]["set"] - p) <= 1 / (2 * n) + 1e-12
        assert m["realised"]["recall"]["min"] == m["realised"]["recall"]["max"] == k
        assert m["tokens"][0]["spec"] == "clip"
        assert len((out / row["folder"] / "images" / "metadata.jsonl").read_text().splitlines()) == \
            m["counts"]["captions"] > 0


def test_cli_set_with_test_tokenizer_and_errors(tmp_path, test_t5_tokenizer):
    folder, _ = test_t5_tokenizer
    out = tmp_path / "set"
    args = ["set", "--data", "sample", "--precision", "0.25", "--submasks", "1", "--out", str(out), "--split",
            "test", "--format", "jsonl", "--tokenizer", f"{folder}:120", "--preset", "captions4t2i"]
    result = CliRunner().invoke(_compose_app(), args)
    assert result.exit_code == 0, result.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["preset"] == "captions4t2i" and m["config"]["mode"] == "bernoulli"
    assert [t["limit"] for t in m["tokens"]] == [77, 120] and m["files"] == {"jsonl": "captions.jsonl"}
    again = CliRunner().invoke(_compose_app(), args)
    assert again.exit_code == 2 and "--overwrite" in again.output and "Traceback" not in again.output
    bad = CliRunner().invoke(_compose_app(), ["set", "--data", "sample", "--precision", "2", "--submasks", "1",
                                              "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--precision" in bad.output
    bad = CliRunner().invoke(_compose_app(), ["set", "--data", "sample", "--precision", "0.5", "--submasks", "1",
                                              "--out", str(tmp_path / "y"), "--preset", "captions4t2i", "--mode",
                                              "exact"])
    assert bad.exit_code == 2 and "--preset captions4t2i" in bad.output

"""report t2i: scores placed by their recorded caption set, the paper's five-category average, heatmap."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.reports.t2i import AVERAGED, PAPER_TABLE2, collect, colorbar_ticks, heatmap, heatmap_figure, \
    submask_axis, to_csv, to_markdown


def caption_set(precision: float, submasks: int) -> dict:
    return {"kind": "densecaption.caption-set", "config": {"precision": precision, "submasks": submasks},
            "realised": {"precision": {"set": precision, "mean": precision}, "recall": {"mean": submasks}},
            "counts": {"captions": 3}}


def result(category: str, score: float, *, point=None, model="gen", lora=None, weights="random",
           mode=None) -> dict:
    lineage = {"images": "runs/x", "caption_set": caption_set(*point) if point else None}
    return {"task": "t2i-compbench", "model": model, "lora": lora, "weights": weights, "split": category,
            "mode": mode or {"spatial": "spatial-owlv2", "non_spatial": "clip"}.get(category, "blip-vqa"),
            "metrics": {"score": score}, "counts": {"score": 10}, "lineage": lineage}


def grid_results() -> list[dict]:
    out = []
    for p, k in [(0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)]:
        for n, cat in enumerate(AVERAGED):
            out.append(result(cat, 0.1 * (n + 1) + p * 0.5 + k * 0.05, point=(p, k), lora=f"lora-{p}-{k}"))
    return out


def test_average_is_the_plain_mean_of_the_five_categories():
    cells = {c.point: c for c in collect(grid_results())}
    # Categories score 0.1..0.5 plus 0.5 * p + 0.05 * k: the mean is 0.3 + 0.5 p + 0.05 k.
    assert cells[(0.0, 0)].average() == pytest.approx(0.3)
    assert cells[(1.0, 1)].average() == pytest.approx(0.85)
    assert cells[(0.0, 1)].score("spatial") == pytest.approx(0.45)


def test_average_needs_all_five_categories_and_repeats_are_averaged():
    results = [result(c, 0.5, point=(0.5, 2)) for c in AVERAGED[:4]]
    assert collect(results)[0].average() is None
    results += [result("non_spatial", 0.2, point=(0.5, 2)), result("non_spatial", 0.4, point=(0.5, 2))]
    cell = collect(results)[0]
    assert cell.score("non_spatial") == pytest.approx(0.3)
    assert cell.average() == pytest.approx((0.5 * 4 + 0.3) / 5)


def test_each_category_has_its_own_prompts_but_one_category_never_mixes_two_prompt_files():
    from densecaption.errors import UserError

    def on(category, score, sha):
        r = result(category, score, point=(0.5, 2))
        r["lineage"]["prompts"] = {"file": f"{category}_val.txt", "sha256": sha}
        return r
    # five categories, five prompt files: one cell, its average (0.1 + 0.2 + 0.3 + 0.4 + 0.5) / 5 = 0.3
    cells = collect([on(c, 0.1 * (n + 1), f"{n}" * 64) for n, c in enumerate(AVERAGED)])
    assert len(cells) == 1 and cells[0].average() == pytest.approx(0.3)
    with pytest.raises(UserError, match="color scores of one cell .* different prompt files"):
        collect([on("color", 0.1, "a" * 64), on("color", 0.3, "b" * 64)])


def test_runs_without_caption_set_get_their_own_rows():
    results = grid_results() + [result("color", 0.7), result("color", 0.9, lora="elsewhere")]
    cells = collect(results)
    plain = [c for c in cells if c.point is None]
    assert sorted(c.score("color") for c in plain) == [pytest.approx(0.7), pytest.approx(0.9)]
    text = to_markdown(cells)
    assert "base model" in text and "LoRA elsewhere (no caption set)" in text


def test_markdown_grid_and_labels():
    text = to_markdown(collect(grid_results()), paper=True)
    assert "weights: random" in text
    assert "| positive \\ submasks | 0 | 1 |" in text
    assert "| 100% | 0.8000 | 0.8500 |" in text  # average grid row of p = 1
    assert "spatial: spatial-owlv2" in text
    assert "| 100% | 3 | 0.3717 | 0.3892 | 0.4662 | 0.1986 | 0.3100 | 0.3471 |" in text


def test_paper_table_rows_average_to_their_printed_average():
    for values in PAPER_TABLE2.values():
        assert sum(values[:5]) / 5 == pytest.approx(values[5], abs=1.5e-4)


def test_csv_long_form():
    rows = list(csv.DictReader(io.StringIO(to_csv(collect(grid_results())))))
    assert len(rows) == 4 * 6
    avg = [r for r in rows if r["category"] == "average" and r["precision"] == "1.0" and r["submasks"] == "1"]
    assert float(avg[0]["score"]) == pytest.approx(0.85)
    assert avg[0]["weights"] == "random"


def test_heatmap_png(tmp_path):
    path = heatmap(collect(grid_results()), tmp_path / "fig.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_colorbar_ticks_tell_close_scores_apart():
    ticks, decimals = colorbar_ticks([0.31234, 0.31236, 0.31238])
    assert ticks[0] == 0.31234 and ticks[-1] == pytest.approx(0.31238) and len(ticks) == 5
    labels = [f"{t:.{decimals}f}" for t in ticks]
    assert len(set(labels)) == 5 and decimals == 5  # four decimals would print 0.3123 or 0.3124 for all
    ticks, decimals = colorbar_ticks([0.1, 0.9])
    assert ticks == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9]) and decimals == 4
    assert colorbar_ticks([0.5, 0.5]) == ([0.5], 4) and colorbar_ticks([]) == ([], 4)


def test_heatmap_keeps_absent_submask_counts_and_marks_missing_cells():
    import matplotlib.pyplot as plt

    assert submask_axis({0, 3}) == [0, 1, 2, 3] and submask_axis(set()) == []
    results = [r for r in grid_results() if r["lineage"]["caption_set"]["config"]["submasks"] == 0]
    results += [result(c, 0.4, point=(1.0, 2)) for c in AVERAGED]  # K = 1 has no runs at all
    results += [result(c, 0.4, point=(0.0, 2)) for c in AVERAGED[:3]]  # 3 of 5 categories
    fig = heatmap_figure(collect(results))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("no runs") == 2 and texts.count("3/5 categories") == 1
    plt.close(fig)


def test_cli_report_t2i(tmp_path):
    for n, r in enumerate(grid_results()):
        (tmp_path / f"r{n}.json").write_text(json.dumps(r))
    (tmp_path / "other.json").write_text(json.dumps({"task": "sdci", "model": "x"}))
    res = CliRunner().invoke(build_app(), ["report", "t2i", str(tmp_path), "--heatmap", str(tmp_path / "h.png")])
    assert res.exit_code == 0, res.output
    assert "Average of the five categories" in res.output
    assert (tmp_path / "h.png").is_file()
    res = CliRunner().invoke(build_app(), ["report", "t2i", str(tmp_path / "other.json")])
    assert res.exit_code == 2 and "no t2i-compbench result files" in res.output

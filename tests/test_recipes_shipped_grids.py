"""The two grid-shaped shipped recipes end to end at demo scale (tiny random models, the sample): DCI Table 4's
18 fine-tunes with ARO, VL-CheckList and sDCI each, and Captions4T2I Table 2's 20 caption sets -> LoRAs ->
T2I-CompBench. Own file, so that the test workers run it beside the rest of the suite."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from densecaption.cli import build_app


def run(*args: object):
    result = CliRunner().invoke(build_app(), ["run", *map(str, args)])
    assert result.exit_code == 0, result.output[-3000:]
    return result


def test_dci_table3_demo_fills_one_row_per_ablation_and_the_baseline(tmp_path):
    out = tmp_path / "run"
    run("dci-table3", "--scale", "demo", "--out", out)
    adapters = sorted(p.name for p in (out / "train").iterdir() if (p / "best_adapter").is_dir())
    assert len(adapters) == 18 and "pick1-nl0-imggroup" in adapters and "pick5-nl9-rand" in adapters
    table3 = (out / "report" / "table3.txt").read_text()
    measured = [line for line in table3.splitlines() if "(weights: random)" in line]
    assert len(measured) == 19  # the baseline and the 18 adapters, each with its 7 columns filled
    for line in measured:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(re.fullmatch(r"\d+\.\d\d", c) for c in cells[1:8]), line
        assert "(constructed)" in cells[8]  # the mini-sets say what they are
    assert "| sDCI P1 (neg loss) | 76.23 |" in table3
    sdci = (out / "report" / "sdci.txt").read_text()
    assert sum("(weights: random)" in line for line in sdci.splitlines()) == 19
    run_doc = json.loads((out / ".recipe" / "run.json").read_text())
    assert run_doc["scale"] == "demo" and run_doc["vars"]["epochs"] == 1


def test_c4t2i_table2_demo_fills_the_five_by_four_grid(tmp_path):
    out = tmp_path / "run"
    run("c4t2i-table2", "--scale", "demo", "--out", out)
    report = (out / "report" / "table2.txt").read_text()
    grid = report[report.index("### Average of the five categories"):].splitlines()
    rows = [line for line in grid if re.match(r"\| (0|25|50|75|100)% \|", line)][:5]
    assert [r.split("|")[1].strip() for r in rows] == ["0%", "25%", "50%", "75%", "100%"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        assert len(cells) == 4 and all(re.fullmatch(r"\d\.\d{4}", c) for c in cells), row
    assert "weights: random" in report and (out / "report" / "table2-heatmap.png").stat().st_size > 0
    images = {json.loads((out / "sets" / cell / "manifest.json").read_text())["image_set"]["sha256"]
              for cell in (p.name for p in (out / "sets").iterdir() if p.is_dir())}
    assert len(images) == 1  # the same images in every cell

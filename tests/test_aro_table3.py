"""`report table3`: ARO and VL-CheckList results of one model side by side, like DCI's Table 3, with the
published rows under --paper."""

from __future__ import annotations

from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.evaluation.results import EvalResult, write_result


def _result(task: str, metrics: dict[str, float], lora: str | None = None) -> EvalResult:
    return EvalResult(task=task, model="hf:openai/clip-vit-base-patch32", lora=lora, weights="pretrained",
                      data=f"/data/{task}", data_sha256="ab" * 32, split="test", mode="default", config={},
                      metrics=metrics, counts={k: 1 for k in metrics})


def test_side_by_side_with_paper_rows(tmp_path):
    aro = {"vg_relation": 59.981, "vg_attribution": 63.18, "coco_order": 47.9, "flickr30k_order": 60.2}
    vlc = {"object": 81.17, "attribute": 67.67, "relation": 61.95}
    write_result(tmp_path, _result("aro", aro))
    write_result(tmp_path, _result("vlchecklist", vlc))
    write_result(tmp_path, _result("aro", aro | {"vg_relation": 76.0}, lora="/adapters/dci_pick1"))
    out = CliRunner().invoke(build_app(), ["report", "table3", str(tmp_path), "--paper"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert lines[0] == "| model | VG-R | VG-A | COCO | Flickr | Object | Attribute | Relation | data |"
    # The base model: both tasks in one row; 59.981 shown as 59.98.
    assert lines[2].startswith("| hf:openai/clip-vit-base-patch32 | 59.98 | 63.18 | 47.90 | 60.20 | 81.17 | 67.67 "
                               "| 61.95 |")
    # The adapter: its own row, VL-CheckList not run (empty cells).
    assert "+ /adapters/dci_pick1 | 76.00 | 63.18 | 47.90 | 60.20 |  |  |  |" in lines[3]
    # 11 published rows follow; sDCI P1 (neg loss) as in Table 3.
    assert len(lines) == 2 + 2 + 11
    assert "| sDCI P1 (neg loss) | 76.23 | 67.56 | 88.58 | 91.30 | 80.71 | 68.69 | 70.12 |" in out.output
    csv = CliRunner().invoke(build_app(), ["report", "table3", str(tmp_path), "--format", "csv"])
    assert csv.output.splitlines()[0].startswith("model,lora,weights,vg_relation,")


def test_no_results_is_one_error_line(tmp_path):
    out = CliRunner().invoke(build_app(), ["report", "table3", str(tmp_path)])
    assert out.exit_code == 2 and out.output.startswith("error:")

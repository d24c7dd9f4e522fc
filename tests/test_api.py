"""The public Python API: the README's example runs as written, and equals the CLI's result."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import densecaption
from densecaption.cli import build_app

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_import_is_light_and_names_the_api():
    assert set(densecaption.__all__) >= {"load_model", "load_dci", "evaluate", "load_pipeline"}
    with pytest.raises(AttributeError):
        densecaption.no_such_function  # noqa: B018


def test_readme_example_runs_and_matches_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    made = runner.invoke(build_app(), ["models", "init-random", "ViT-B-32", "tiny-clip", "--tiny"])
    assert made.exit_code == 0, made.output
    namespace: dict = {}
    exec(compile(_readme_example(), "README.md", "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr().out.split()
    result = namespace["result"]
    assert printed[:2] == ["random", str(result.counts["all_scm"])] and result.task == "sdci"
    written = json.loads(namespace["path"].read_text())
    assert namespace["path"].name == "sdci_open-clip-local-dir-tiny-clip_test_image-group.json"
    cli = runner.invoke(build_app(), ["bench", "sdci", "--data", "sample", "--model", "open_clip:local-dir:tiny-clip",
                                      "--mode", "image-group", "--device", "cpu", "--out", "cli"])
    assert cli.exit_code == 0, cli.output
    from_cli = json.loads(next(Path("cli").glob("*.json")).read_text())
    assert written["metrics"] == from_cli["metrics"] and written["config"] == from_cli["config"]
    assert written["data_sha256"] == from_cli["data_sha256"] and written["data"] == "sample"


def test_evaluate_refuses_unknown_tasks_and_settings():
    from densecaption.errors import UserError

    with pytest.raises(UserError, match="did you mean 'sdci'"):
        densecaption.evaluate("sdcii", "open_clip:x", "sample")
    with pytest.raises(UserError, match="unknown setting.*batchsize"):
        densecaption.evaluate("sdci", "open_clip:x", "sample", batchsize=4)
    with pytest.raises(UserError, match="--batch-size 0: must be at least 1"):
        densecaption.evaluate("sdci", "open_clip:x", "sample", batch_size=0)

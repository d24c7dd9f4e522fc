"""`densecaption ls`: every plug-in group with its entries, one group's entries as parseable lines, JSON with
their metadata, a did-you-mean error for an unknown group, and no model code loaded to list them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.plugins import plugin_points

GROUPS = plugin_points().names()


def ls(*args: str):
    return CliRunner().invoke(build_app(), ["ls", *args])


@pytest.mark.parametrize("group", GROUPS)
def test_one_group_lists_name_two_spaces_summary(group):
    result = ls(group)
    assert result.exit_code == 0, result.output
    registry = plugin_points().get(group)
    rows = [line.split("  ", 1) for line in result.output.splitlines()]
    assert rows == [[e.name, e.summary] for e in registry.entries()]


def test_every_group_is_listed_with_its_entries():
    result = ls()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    points = plugin_points()
    for group in GROUPS:
        start = lines.index(f"{group}  {points.entry(group).summary}")
        entries = points.get(group).entries()
        assert lines[start + 1:start + 1 + len(entries)] == [f"  {e.name}  {e.summary}" for e in entries]
    groups = [line.split("  ")[0] for line in lines if line and not line.startswith(" ")]
    assert groups == list(points.names())


def test_json_carries_the_metadata():
    result = ls("detectors", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert list(listed) == ["detectors"]
    haar = next(row for row in listed["detectors"] if row["name"] == "opencv-haar")
    assert haar["needs_model"] is False and haar["summary"] and haar["spec"] == "opencv-haar"
    families = json.loads(ls("families", "--json").output)["families"]
    assert [f["name"] for f in families] == ["pixart-alpha", "sd21", "sdxl"]
    assert families[0]["pipeline_class"] == "PixArtAlphaPipeline" and families[0]["max_text_length"] == 120
    everything = json.loads(ls("--json").output)
    assert set(GROUPS) <= set(everything) and everything["models"][0]["name"] == "open_clip"


def test_unknown_group_suggests_the_closest():
    result = ls("famlies")
    assert result.exit_code == 2
    assert "unknown plug-in group 'famlies'; did you mean 'families'?" in result.output
    assert "Traceback" not in result.output


def test_listing_loads_no_model_code():
    script = ("import sys; from typer.testing import CliRunner; from densecaption.cli import build_app\n"
              f"for group in {GROUPS!r}:\n"
              "    assert CliRunner().invoke(build_app(), ['ls', group, '--json']).exit_code == 0, group\n"
              "print(sorted(m for m in ('torch', 'transformers', 'diffusers', 'open_clip', 'cv2', 'spacy') "
              "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"

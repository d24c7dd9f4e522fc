"""``compose grid`` chooses its image set once: every cell holds the same images (recall is not confounded)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def photos(folder: Path) -> list[str]:
    return sorted(json.loads(line)["file_name"] for line in (folder / "images" / "metadata.jsonl").read_text()
                  .splitlines())


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> dict[int, list[str]]:
    """The images `compose set` keeps alone (today's behaviour) at K = 0 and K = 3, on the whole sample."""
    root = tmp_path_factory.mktemp("alone")
    kept = {}
    for k in (0, 3):
        result = invoke("compose", "set", "--data", "sample", "--precision", "1", "--submasks", k,
                        "--out", root / f"k{k}", "--format", "folder", "--split", "all")
        assert result.exit_code == 0, result.output
        kept[k] = photos(root / f"k{k}")
    return kept


def test_every_cell_of_a_skip_grid_lists_the_same_images(tmp_path, alone):
    # usable submasks per sample image: retina 10, grace_hopper 5, camera 4, hubble 4, astronaut, china,
    # coffee, flower 3 each; chelsea, coins, horse, rocket 2 each; clock 1. K = 0 keeps all 13, K = 3 the 8
    # with at least 3, and the 5 others are dropped
    assert (len(alone[0]), len(alone[3])) == (13, 8) and set(alone[3]) < set(alone[0])
    out = tmp_path / "grid"
    result = invoke("compose", "grid", "--data", "sample", "--out", out, "--precisions", "0,1", "--submasks", "0,1,3",
                    "--format", "folder,jsonl", "--split", "all")
    assert result.exit_code == 0, result.output
    grid = json.loads((out / "manifest.json").read_text())
    cells = [row["folder"] for row in grid["sets"]]
    assert len(cells) == 6 and all(photos(out / c) == alone[3] for c in cells)  # the K = 3 images everywhere
    names = "".join(n + "\n" for n in alone[3])
    chosen = grid["image_set"]
    assert chosen["count"] == 8 and chosen["min_submasks"] == 3
    assert chosen["sha256"] == hashlib.sha256(names.encode()).hexdigest()
    assert sorted(d["photo"] for d in chosen["dropped"]) == sorted(set(alone[0]) - set(alone[3]))
    assert all("fewer than max(K) = 3" in d["reason"] for d in chosen["dropped"])
    for c in cells:
        m = json.loads((out / c / "manifest.json").read_text())
        assert m["image_set"]["sha256"] == chosen["sha256"] and len(m["image_set"]["dropped"]) == 5
        assert m["counts"]["short_skipped"] == 0
    # resumed: every set kept, the grid's record rebuilt from their manifests
    again = invoke("compose", "grid", "--data", "sample", "--out", out, "--precisions", "0,1", "--submasks", "0,1,3",
                   "--format", "folder,jsonl", "--split", "all")
    assert again.exit_code == 0 and "kept 6 sets" in again.output
    assert json.loads((out / "manifest.json").read_text())["image_set"] == chosen


def test_keep_grid_holds_every_image_everywhere(tmp_path, alone):
    out = tmp_path / "grid"
    result = invoke("compose", "grid", "--data", "sample", "--out", out, "--precisions", "1", "--submasks", "0,3",
                    "--short", "keep", "--format", "folder", "--split", "all")
    assert result.exit_code == 0, result.output
    grid = json.loads((out / "manifest.json").read_text())
    assert grid["image_set"]["count"] == 13 and grid["image_set"]["dropped"] == []
    assert photos(out / "p1_k0") == photos(out / "p1_k3") == alone[0]

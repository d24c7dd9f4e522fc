"""`data fetch NAME DEST --constructed`: the constructed mini-sets land in each official layout with their
marker, open through the real benchmark code, say "constructed" in results, resume and never leave half a set."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from benchmarks.compositional_minisets import ColourModel
from densecaption.cli import build_app
from densecaption.data import minisets
from densecaption.data.minisets import CONSTRUCTED, MARKER, constructed_label, is_constructed, write_constructed


def run(*args: str):
    return CliRunner().invoke(build_app(), ["data", "fetch", *args])


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Every constructed set, written once through the command."""
    root = tmp_path_factory.mktemp("constructed")
    for name in CONSTRUCTED:
        out = run(name, str(root / name), "--constructed")
        assert out.exit_code == 0, out.output
        assert "wrote: a constructed" in out.output and "next: densecaption" in out.output
    return root


@pytest.mark.parametrize("name", ["aro", "sugarcrepe", "vlchecklist", "winoground"])
def test_compositional_sets_open_through_their_benchmark(sets, name):
    from densecaption.evaluation.run import get_benchmark

    bench = get_benchmark(name)
    opened = bench.open(sets / name, bench.default_split)
    assert len(opened.sha256) == 64
    assert (sets / name / MARKER).read_text().startswith(f"constructed: {name}\n")
    assert is_constructed(sets / name) and constructed_label(str(sets / name)) == f"{sets / name} (constructed)"


def test_winoground_parquet_path_is_seen_as_constructed(sets):
    # bench winoground also takes the parquet itself: the marker two folders up still counts
    assert is_constructed(sets / "winoground" / "data" / "test-00000-of-00001.parquet")


def test_results_on_a_constructed_set_say_so(sets, tmp_path):
    from densecaption.evaluation.run import evaluate

    result = evaluate("sugarcrepe", ColourModel(), str(sets / "sugarcrepe"))
    assert result.data == f"{sets / 'sugarcrepe'} (constructed)"
    # worked out in sugarcrepe_mini's docstring: add_obj 50, replace_obj 50, five tasks 100 -> 600 / 7
    assert result.metrics["mean"] == pytest.approx(600 / 7)
    plain = tmp_path / "plain"
    minisets.sugarcrepe_mini(plain)  # the same files without the marker: the path stays as given
    assert evaluate("sugarcrepe", ColourModel(), str(plain)).data == str(plain)


def test_compbench_prompts_read_as_t2i_generate_and_the_scorers_read_them(sets):
    from densecaption.evaluation.compbench.prompts import (complex_prompt_lists, prompt_file, read_object_list,
                                                           read_prompts)

    folder = sets / "compbench"
    for category in ("color", "shape", "texture", "spatial", "non_spatial", "complex", "numeracy"):
        prompts = read_prompts(prompt_file(folder, category))
        assert len(prompts) == 2 and prompts == list(minisets.COMPBENCH_PROMPTS[category])
    spatial, action = complex_prompt_lists(folder)
    assert spatial == {"the red cup was on the left of the blue plate"}  # upstream's key: text before the "."
    assert action == {"the black cat is sleeping on the green sofa"}
    assert ("cup", "cups") in read_object_list(folder / "new_objects.txt")
    assert is_constructed(prompt_file(folder, "color"))  # what t2i generate records in its manifest


def test_a_second_run_keeps_the_set_and_other_folders_are_refused(sets, tmp_path):
    before = (sets / "aro" / MARKER).stat().st_mtime_ns
    again = run("aro", str(sets / "aro"), "--constructed")
    assert again.exit_code == 0 and "already there" in again.output
    assert (sets / "aro" / MARKER).stat().st_mtime_ns == before
    other = run("aro", str(sets / "sugarcrepe"), "--constructed")  # a folder holding another set
    assert other.exit_code == 2 and "not an empty folder" in other.output
    real = run("aro", str(sets / "aro"), "--mirror", "http://127.0.0.1:9")  # real files never mix in
    assert real.exit_code == 2 and "constructed" in real.output
    assert run("nope", str(tmp_path / "x"), "--constructed").exit_code == 2
    mixed = run("aro", str(tmp_path / "y"), "--constructed", "--photos")
    assert mixed.exit_code == 2 and "do not apply" in mixed.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("winoground", str(empty), "--constructed").exit_code == 0 and is_constructed(empty)


def test_a_failed_build_leaves_nothing_and_stale_temporaries_go(tmp_path, monkeypatch):
    dest = tmp_path / "aro"
    stale = tmp_path / ".aro.constructed.999999999"  # a killed build's folder (no such process)
    stale.mkdir()

    def broken(root):
        minisets.photo(root / "images" / "two.jpg", "red")
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(CONSTRUCTED, "aro", broken)
    with pytest.raises(OSError):
        write_constructed("aro", dest)
    assert not dest.exists() and not stale.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".aro.constructed.{os.getpid()}")]

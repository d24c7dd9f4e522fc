"""The recipe engine (`densecaption run`): substitution, foreach, option rendering and ordering as pure functions
on constructed recipes; every validation error names the file, the step and the key; statuses before and after
runs, after a changed option, a deleted output and a killed step; resume options only on a continuation; the
lock; --only; --json; and a real SIGKILL of the runner process followed by a rerun that equals an uninterrupted
run. The runs use cheap real commands on the bundled sample (data sample, data show, models init-random, and
ls as the report)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.errors import UserError
from densecaption.files import lock_or_fail
from densecaption.recipes.commands import command_tree, render_options
from densecaption.recipes.plan import (RunState, Scope, SubstitutionError, expand, fingerprint, make_plan, order,
                                       parse_sets, step_hash, substitute)
from densecaption.recipes.schema import ResolvedStep, load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tree():
    return command_tree()


def recipe_file(folder: Path, text: str, name: str = "r.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def run_cli(*args: str):
    return CliRunner().invoke(build_app(), ["run", *map(str, args)])


# ------------------------------------------------------------------------------------------ substitution

def scope(**variables) -> Scope:
    return Scope(variables, {"out": "/o", "scale": "demo", "recipe": "r"})


def test_substitution_keeps_types_interpolates_text_and_escapes():
    s = scope(ps=[0, 0.25, 1.0], n=3, m={"a": {"b": "deep"}}, model="${out}/models/${name}", name="tiny")
    assert substitute("${ps}", s) == [0, 0.25, 1.0]  # exactly one reference: the value with its type
    assert substitute("${n}", s) == 3
    assert substitute("p${n}_k${ps.1}", s) == "p3_k0.25"  # text: numbers as text, a list index
    assert substitute("${m.a.b}/x", s) == "deep/x"  # a key of a mapping
    assert substitute("$${n} costs ${n}", s) == "${n} costs 3"  # $${ is a literal ${
    assert substitute("${model}", s) == "/o/models/tiny"  # a variable that refers to others and a built-in
    assert substitute(["${scale}", {"k": "${recipe}"}], s) == ["demo", {"k": "r"}]
    with pytest.raises(SubstitutionError, match=r"unknown variable 'nn'; did you mean 'n'\?"):
        substitute("${nn}", s)
    with pytest.raises(SubstitutionError, match="cannot sit inside text"):
        substitute("x${ps}", s)
    with pytest.raises(SubstitutionError, match="in a circle: a -> b -> a"):
        substitute("${a}", scope(a="${b}", b="${a}"))


def test_parse_sets_reads_yaml_values():
    assert parse_sets(["epochs=2", "ps=[0, 1]", "name=tiny", "flag=true", "lr=1.0e-4"]) == \
        {"epochs": 2, "ps": [0, 1], "name": "tiny", "flag": True, "lr": 1e-4}
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_sets(["epochs"])


# ------------------------------------------------------------------------------------------ expansion

GRID = """
    name: grid
    title: a grid
    vars: {precisions: [0, 0.25, 1.0], data: sample, overwrite: false}
    scales: {demo: {vars: {precisions: [1]}}}
    steps:
      - id: set-p${p}_k${k}
        foreach: {p: "${precisions}", k: [0, 2]}
        run: compose set
        options: {data: "${data}", precision: "${p}", submasks: "${k}", out: "${out}/p${p}_k${k}",
                  tokenizer: [a:10, b:20], overwrite: "${overwrite}", seed: null, negative_pick: hardest}
        inputs: ["${data}"]
        outputs: ["${out}/p${p}_k${k}"]
"""


def test_foreach_is_a_cartesian_product_in_key_order(tmp_path, tree):
    recipe = load_recipe(recipe_file(tmp_path, GRID))
    steps = expand(recipe, "full", {}, tmp_path / "o", root=tree).steps
    # 3 precisions x 2 submask counts, p outermost; 1.0 renders as 1 (as compose grid names its sets)
    assert [s.id for s in steps] == ["set-p0_k0", "set-p0_k2", "set-p0.25_k0", "set-p0.25_k2", "set-p1_k0",
                                     "set-p1_k2"]
    assert [s.id for s in expand(recipe, "demo", {}, tmp_path / "o", root=tree).steps] == ["set-p1_k0", "set-p1_k2"]
    assert [s.id for s in expand(recipe, "demo", {"precisions": [0.5]}, tmp_path / "o", root=tree).steps] == \
        ["set-p0.5_k0", "set-p0.5_k2"]  # --set overrides the scale


def test_options_render_as_the_command_line(tmp_path, tree):
    recipe = load_recipe(recipe_file(tmp_path, GRID))
    step = expand(recipe, "full", {"overwrite": True}, tmp_path / "o", root=tree).steps[2]
    out = str(tmp_path / "o" / "p0.25_k0")
    # negative_pick -> --negative-pick; a list repeats the option; true -> the flag; null left out
    assert step.full_argv() == ("compose", "set", "--data", "sample", "--precision", "0.25", "--submasks", "0",
                                "--out", out, "--tokenizer", "a:10", "--tokenizer", "b:20", "--overwrite",
                                "--negative-pick", "hardest")
    false = expand(recipe, "full", {}, tmp_path / "o", root=tree).steps[0]
    assert "--no-overwrite" in false.argv  # false -> the paired --no- form


def test_false_on_a_flag_without_a_no_form_is_left_out(tree):
    clip_scores = tree.commands["data"].commands["clip-scores"]

    def err(message, key):
        return UserError(f"{key}: {message}")

    assert render_options(clip_scores, {"in-place": False}, err) == []  # --in-place has no --no-in-place
    assert render_options(clip_scores, {"in-place": True, "device": "cpu"}, err) == ["--in-place", "--device", "cpu"]


# ------------------------------------------------------------------------------------------ ordering

def rs(sid: str, inputs=(), outputs=(), after=()) -> ResolvedStep:
    return ResolvedStep(id=sid, words=("data", "stats"), argv=(sid,), inputs=tuple(inputs), outputs=tuple(outputs),
                        after=tuple(after))


def test_order_follows_data_then_file_order():
    steps = (rs("train", inputs=["o/sets/a"], outputs=["o/train"]),  # reads inside grid's output
             rs("report", inputs=["o/train/lora"]),                  # reads inside train's output
             rs("free"),
             rs("grid", inputs=["sample"], outputs=["o/sets"]),
             rs("late", after=["free"]))
    assert [s.id for s in order(steps)] == ["free", "grid", "train", "report", "late"]
    # an input that contains an output also waits for it
    assert [s.id for s in order((rs("all", inputs=["o"]), rs("part", outputs=["o/x"])))] == ["part", "all"]


def test_a_cycle_names_its_steps():
    with pytest.raises(UserError, match="circle: a -> b -> a"):
        order((rs("a", inputs=["o/b"], outputs=["o/a"]), rs("b", inputs=["o/a"], outputs=["o/b"])))


def test_step_hash_chains_through_upstream_hashes():
    up1, up2 = step_hash(("x", "--seed", "0"), {}, {}), step_hash(("x", "--seed", "1"), {}, {})
    assert up1 != up2
    down = ("y", "--data", "o/x")
    assert step_hash(down, {"x": up1}, {}) != step_hash(down, {"x": up2}, {})  # upstream changed: downstream too
    assert step_hash(down, {"x": up1}, {"sample": "files:1:aa"}) != step_hash(down, {"x": up1}, {"sample": "files:1:ab"})
    assert step_hash(down, {"x": up1}, {}) == step_hash(down, {"x": up1}, {})


def test_fingerprint_lists_relative_paths_sizes_and_mtimes(tmp_path):
    folder = tmp_path / "in"
    (folder / "b").mkdir(parents=True)
    (folder / "a.txt").write_text("xy")
    (folder / "b" / "c.txt").write_text("z")
    os.utime(folder / "a.txt", ns=(1, 1000))
    os.utime(folder / "b" / "c.txt", ns=(1, 2000))
    # a folder's own files first, then its subfolders: "a.txt", 2 bytes, 1000 ns; "b/c.txt", 1 byte, 2000 ns
    listing = "a.txt\x002\x001000\nb/c.txt\x001\x002000\n"
    assert fingerprint(str(folder)) == "files:2:" + hashlib.sha256(listing.encode()).hexdigest()[:32]
    (folder / "a.txt").write_text("xyz")  # one byte more, same mtime: another fingerprint
    os.utime(folder / "a.txt", ns=(1, 1000))
    assert fingerprint(str(folder)) != "files:2:" + hashlib.sha256(listing.encode()).hexdigest()[:32]
    assert fingerprint("org/model-id") == "text:org/model-id"  # not a path: the text itself
    assert fingerprint("sample").startswith("files:")  # the bundled sample's files


# ------------------------------------------------------------------------------------------ validation errors

BASE = {"name": "v", "title": "t", "vars": {"n": 1},
        "steps": [{"id": "s", "run": "data sample", "args": ["${out}/d"], "outputs": ["${out}/d"]}]}


def broken(tmp_path, tree, change, *, scale="full", sets=None) -> str:
    doc = json.loads(json.dumps(BASE))
    change(doc)
    with pytest.raises(UserError) as caught:
        expand(parse_recipe(doc, Path("v.yaml")), scale, sets or {}, tmp_path / "o", root=tree)
    return str(caught.value)


def step_of(doc) -> dict:
    return doc["steps"][0]


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.update(stpes=[]), "v.yaml: key 'stpes': unknown key; did you mean 'steps'?"),
    (lambda d: step_of(d).update(output=["x"]), "v.yaml: step 's', key 'output': unknown key; did you mean 'outputs'?"),
    (lambda d: step_of(d).update(args=["${nn}/d"]), "v.yaml: step 's', key 'args': unknown variable 'nn'; did you "
                                                    "mean 'n'?"),
    (lambda d: step_of(d).update(run="data smaple"), "v.yaml: step 's', key 'run': unknown command 'smaple' of "
                                                     "`densecaption data`; did you mean 'sample'?"),
    (lambda d: step_of(d).update(run="dta sample"), "step 's', key 'run': unknown command 'dta' of `densecaption`; "
                                                    "did you mean 'data'?"),
    (lambda d: step_of(d).update(options={"overwirte": True}), "v.yaml: step 's', key 'options.overwirte': not an "
                                                               "option of this command; did you mean 'overwrite'?"),
    (lambda d: step_of(d).update(options={"overwrite": "yes"}), "step 's', key 'options.overwrite': --overwrite is "
                                                                "a flag"),
    (lambda d: step_of(d).update(run="data stats", args=["sample"], options={"split": True}),
     "step 's', key 'options.split': --split takes a value, not true"),
    (lambda d: step_of(d).update(run="data stats", args=["sample"], options={"split": ["a", "b"]}),
     "step 's', key 'options.split': --split takes one value, not a list"),
    (lambda d: step_of(d).update(run="compose set", args=[], options={"data": "sample"}),
     "step 's', key 'options': `densecaption compose set` would refuse it: Missing option '--precision'"),
    (lambda d: step_of(d).update(run="models init-random", args=["ViT-B-32", "${out}/m"],
                                 options={"backend": "open-clip"}),
     "key 'options': `densecaption models init-random` would refuse it: Invalid value for '--backend'"),
    (lambda d: step_of(d).update(outputs=["/elsewhere/d"]), "step 's', key 'outputs[0]': /elsewhere/d is not inside "
                                                            "the run folder"),
    (lambda d: step_of(d).update(outputs=["${out}/.recipe/x"]), "step 's', key 'outputs[0]'"),
    (lambda d: step_of(d).update(id="s-${i}", foreach={"i": [1, 1]}), "step 's-${i}', key 'id': two steps have the "
                                                                      "id 's-1'"),
    (lambda d: step_of(d).update(id="a b"), "step 'a b', key 'id': 'a b' is not a step id"),
    (lambda d: step_of(d).update(scales=["dmeo"]), "step 's', key 'scales': unknown scale 'dmeo'"),
    (lambda d: step_of(d).update(after=["nope"]), "step 's', key 'after': no step matches 'nope'"),
    (lambda d: step_of(d).update(run="run"), "step 's', key 'run': unknown command 'run'"),
    (lambda d: d.update(report=[{"id": "r", "run": "data stats", "outputs": ["x"]}]),
     "v.yaml: report 'r', key 'outputs': unknown key"),
    (lambda d: d.update(scales={"demo": {"vars": {"m": 2}}}), "v.yaml: key 'scales.demo.vars.m': unknown variable "
                                                              "'m'"),
    (lambda d: d["vars"].update(out="x"), "v.yaml: key 'vars.out': 'out' is a built-in"),
])
def test_validation_errors_name_the_step_and_the_key(tmp_path, tree, change, expected):
    assert expected in broken(tmp_path, tree, change)


def test_cycle_after_expansion_and_unknown_set(tmp_path, tree):
    def cycle(d):
        d["steps"] = [{"id": "a", "run": "data sample", "args": ["${out}/a"], "inputs": ["${out}/b"],
                       "outputs": ["${out}/a"]},
                      {"id": "b", "run": "data sample", "args": ["${out}/b"], "inputs": ["${out}/a"],
                       "outputs": ["${out}/b"]}]

    doc = json.loads(json.dumps(BASE))
    cycle(doc)
    with pytest.raises(UserError, match="v.yaml: key 'steps': steps wait on each other in a circle: a -> b -> a"):
        make_plan(parse_recipe(doc, Path("v.yaml")), "full", {}, tmp_path / "o", root=tree)
    assert "--set nn: v has no variable 'nn'; did you mean 'n'?" in broken(tmp_path, tree, lambda d: None,
                                                                        sets={"nn": 2})


def test_yaml_errors_and_shipped_names(tmp_path):
    bad = recipe_file(tmp_path, "name: x\ntitle: [unclosed\n")
    with pytest.raises(UserError, match=r"r.yaml:\d+:\d+: not valid YAML"):
        load_recipe(bad)
    result = run_cli("c4t2i-tabel2")
    assert result.exit_code == 2 and "error: no shipped recipe 'c4t2i-tabel2'" in result.output
    assert "Traceback" not in result.output


def test_validation_imports_no_model_library(tmp_path):
    path = recipe_file(tmp_path, GRID)
    script = ("import sys; from densecaption.recipes.schema import load_recipe; "
              "from densecaption.recipes.plan import make_plan\n"
              f"make_plan(load_recipe({str(path)!r}), 'full', {{}}, {str(tmp_path / 'o')!r})\n"
              "print(sorted(m for m in ('torch', 'transformers', 'diffusers', 'open_clip') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------ runs

RUNS = """
    name: small
    title: data, a drawing of one record, a check
    full: {hardware: any CPU, time: seconds}
    vars: {record: clock, overwrite: false}
    steps:
      - id: draw
        run: data show
        args: ["${out}/data", "${record}"]
        options: {out: "${out}/draw.png"}
        inputs: ["${out}/data"]
        outputs: ["${out}/draw.png"]
      - id: data
        run: data sample
        args: ["${out}/data"]
        options: {overwrite: "${overwrite}"}
        outputs: ["${out}/data"]
        resume: {overwrite: true}
    report:
      - id: check
        run: ls
        args: [families]
"""


def statuses(recipe: Path, out: Path, *extra: str) -> dict[str, str]:
    result = run_cli(recipe, "--out", out, "--dry-run", "--json", *extra)
    assert result.exit_code == 0, result.output
    return {s["id"]: s["status"] for s in json.loads(result.stdout)["steps"]}


def events(out: Path, kind: str) -> list[dict]:
    return [e for e in map(json.loads, (out / ".recipe" / "log.jsonl").read_text().splitlines())
            if e["event"] == kind]


def test_statuses_across_runs_changes_and_deletions(tmp_path):
    recipe, out = recipe_file(tmp_path, RUNS), tmp_path / "run"
    dry = run_cli(recipe, "--out", out, "--dry-run")
    assert dry.exit_code == 0, dry.output
    lines = dry.stdout.splitlines()
    assert lines[2] == "full variant needs: hardware any CPU, time seconds"
    assert [line.split()[:2] for line in lines[4:] if line.startswith(("run ", "report"))] == \
        [["run", "data"], ["run", "draw"], ["report", "check"]]  # ordered by data: draw reads data's output
    assert not out.exists()  # a dry run writes nothing

    first = run_cli(recipe, "--out", out)
    assert first.exit_code == 0, first.output
    assert statuses(recipe, out) == {"data": "done", "draw": "done"}
    report = (out / "report" / "check.txt").read_text()
    assert report.startswith("pixart-alpha  ") and report in first.stdout  # kept and shown
    assert "--overwrite" not in events(out, "step-start")[0]["argv"]  # resume options only on a continuation

    again = run_cli(recipe, "--out", out)  # nothing to do, the report still runs
    assert again.exit_code == 0 and "skipping 2 step(s) already done: data, draw" in again.stderr
    assert len(events(out, "report")) == 2

    # a changed option: the step and what reads it are stale
    assert statuses(recipe, out, "--set", "overwrite=true") == {"data": "stale", "draw": "stale"}
    assert statuses(recipe, out, "--set", "record=horse") == {"data": "done", "draw": "stale"}
    # a deleted output: missing, and rerun
    (out / "draw.png").unlink()
    assert statuses(recipe, out) == {"data": "done", "draw": "missing"}
    assert run_cli(recipe, "--out", out, "--only", "draw").exit_code == 0
    assert (out / "draw.png").is_file() and statuses(recipe, out) == {"data": "done", "draw": "done"}


def test_stale_and_killed_steps(tmp_path, tree):
    recipe, out = recipe_file(tmp_path, RUNS), tmp_path / "run"
    assert run_cli(recipe, "--out", out).exit_code == 0
    stray = out / "data" / "stray.txt"

    # a killed resumable step: its started marker holds the current hash and its outputs are kept; the
    # continuation adds --overwrite (without it `data sample` refuses an existing folder)
    plan = make_plan(load_recipe(recipe), "full", {}, out, root=tree)
    state = RunState(out)
    data = plan.get("data")
    state.stamp_path("data").unlink()
    state.started_path("data").write_text(json.dumps({"hash": data.hash, "started": "earlier"}))
    found = json.loads(run_cli(recipe, "--out", out, "--dry-run", "--json").stdout)["steps"]
    assert [(s["id"], s["status"]) for s in found] == [("data", "resume"), ("draw", "done")]
    assert found[0]["argv"][-1] == "--overwrite" and found[0]["reason"].startswith("started earlier")
    stray.write_text("kept for the continuation")
    assert run_cli(recipe, "--out", out).exit_code == 0
    # appended last, so it wins over the step's own --no-overwrite
    assert events(out, "step-start")[-1]["argv"] == ["data", "sample", str(out / "data"), "--no-overwrite",
                                                     "--overwrite"]
    assert not state.started_path("data").exists() and stray.exists()  # kept, as a continuation should

    # a killed step that cannot resume starts over: outputs deleted
    draw = plan.get("draw")
    state.stamp_path("draw").unlink()
    state.started_path("draw").write_text(json.dumps({"hash": draw.hash, "started": "earlier"}))
    row = json.loads(run_cli(recipe, "--out", out, "--dry-run", "--json").stdout)["steps"][1]
    assert row["status"] == "run" and "cannot resume" in row["reason"]
    assert run_cli(recipe, "--out", out).exit_code == 0

    # stale: outputs deleted before the rerun (the stray file goes; `data sample` would refuse the folder)
    assert stray.exists()
    assert run_cli(recipe, "--out", out, "--set", "overwrite=true").exit_code == 0
    assert not stray.exists() and (out / "data" / "densely_captioned_images").is_dir()


def test_lock_only_failure_and_json(tmp_path):
    recipe, out = recipe_file(tmp_path, RUNS), tmp_path / "run"
    # --only with a dependency not done yet
    refused = run_cli(recipe, "--out", out, "--only", "dr*")
    assert refused.exit_code == 2 and "--only draw: it needs step data, which is not done yet (run:" in refused.output
    wrong = run_cli(recipe, "--out", out, "--only", "dta")
    assert wrong.exit_code == 2 and "did you mean 'data'?" in wrong.output
    # a second runner on the same folder is refused
    out.mkdir()
    lock = lock_or_fail(out, "held by the test")
    try:
        locked = run_cli(recipe, "--out", out)
    finally:
        lock.release()
    assert locked.exit_code == 2 and "another run is writing" in locked.output
    # --json: the final summary parses; the commands' output went to stderr
    done = run_cli(recipe, "--out", out, "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert [(s["id"], s["status"]) for s in summary["steps"]] == [("data", "ran"), ("draw", "ran"), ("check", "report")]
    assert summary["ok"] and summary["reports"] == {"check": str(out / "report" / "check.txt")}
    # a failing step: one error line naming it and its command; what finished stays done
    failed = run_cli(recipe, "--out", out, "--set", "record=nosuch")
    assert failed.exit_code == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and errors[-1].startswith("error: step draw failed (exit code 2: ") and "no record" in errors[-1] \
        and " densecaption data show" in errors[-1]
    assert "Traceback" not in failed.output
    assert statuses(recipe, out, "--set", "record=nosuch") == {"data": "done", "draw": "run"}  # did not finish


def test_a_changed_outside_input_makes_the_step_stale(tmp_path):
    from densecaption.data.sample import write_sample

    data = write_sample(tmp_path / "dci")
    recipe = recipe_file(tmp_path, f"""
        name: outside
        title: reads a folder no step writes
        steps:
          - id: draw
            run: data show
            args: ["{data}", clock]
            options: {{out: "${{out}}/draw.png"}}
            inputs: ["{data}"]
            outputs: ["${{out}}/draw.png"]
    """)
    out = tmp_path / "run"
    assert run_cli(recipe, "--out", out).exit_code == 0
    assert statuses(recipe, out) == {"draw": "done"}
    os.utime(data / "annotations" / "clock-data.json", ns=(1, 10**9))  # touched: another mtime
    row = json.loads(run_cli(recipe, "--out", out, "--dry-run", "--json").stdout)["steps"][0]
    assert row["status"] == "stale" and row["reason"].startswith(f"input {data} changed")


# ------------------------------------------------------------------------------------------ a real kill

KILLED = """
    name: killed
    title: a slow step to kill
    vars: {}
    steps:
      - id: data
        run: data sample
        args: ["${out}/data"]
        outputs: ["${out}/data"]
      - id: model
        run: models init-random
        args: [ViT-B-32, "${out}/model"]
        options: {tiny: true}
        inputs: ["${out}/data"]
        outputs: ["${out}/model"]
"""


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and ".recipe" not in p.parts and p.name != ".lock"}


def test_sigkill_mid_step_then_rerun_equals_an_uninterrupted_run(tmp_path):
    recipe = recipe_file(tmp_path, KILLED)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    marker = killed / ".recipe" / "steps" / "model.started.json"
    proc = subprocess.Popen([sys.executable, "-m", "densecaption", "run", str(recipe), "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    # the model step imports torch and open_clip first, so the kill lands inside the step
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert marker.exists() and not (killed / ".recipe" / "steps" / "model.done.json").exists()
    assert statuses(recipe, killed) == {"data": "done", "model": "run"}  # killed; it cannot resume: starts over

    assert run_cli(recipe, "--out", killed).exit_code == 0
    assert run_cli(recipe, "--out", whole).exit_code == 0
    assert statuses(recipe, killed) == {"data": "done", "model": "done"}
    assert tree_bytes(killed) == tree_bytes(whole) and "model/open_clip_model.safetensors" in tree_bytes(whole)


def test_a_failed_step_is_named_with_its_command_and_the_command_s_own_reason(tmp_path):
    recipe = recipe_file(tmp_path, """\
        name: failing
        title: a step that fails
        steps:
          - id: check
            run: data validate
            args: [/no/such/dci/folder]
        """)
    result = run_cli(recipe, "--out", tmp_path / "run")
    assert result.exit_code == 1
    line = next(x for x in result.output.splitlines() if x.startswith("error: step check failed"))
    assert "exit code 2: /no/such/dci/folder: no such folder" in line
    assert line.endswith("densecaption data validate /no/such/dci/folder")

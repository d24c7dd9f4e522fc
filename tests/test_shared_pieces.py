"""The pieces every stage shares: the JSON-lines log (torn lines), atomic writes, run locks, derived random
generators (pinned: published numbers depend on them), the text normal form, "folder or hub id", and the
job runner's retries through tenacity."""

from __future__ import annotations

import random
import subprocess
import sys
import threading

import pytest

from densecaption.errors import DataError, UserError
from densecaption.files import JsonlLog, atomic_write, atomic_write_text, lock_file, lock_or_fail
from densecaption.generation.backends import BackendError
from densecaption.generation.jobs import Interrupted, JobContext, RetryPolicy, derive_seed
from densecaption.generation.replies import normalise_text
from densecaption.models.weights import MARKER, resolve_source, transformers_source, write_marker
from densecaption.seeding import keyed_rng, rng_for, seed_for


# --------------------------------------------------------------------------------------------- JSON lines
def test_jsonl_log_appends_whole_lines_and_repairs_a_torn_one(tmp_path):
    log = JsonlLog(tmp_path / "sub" / "log.jsonl")
    assert log.repair() == 0 and log.lines() == [] and log.read() == []
    log.append({"a": 1, "text": "café\u2028x"})  # a line separator inside a string is not a line break
    log.append_many([{"a": 2}, {"a": 3}])
    with open(log.path, "ab") as f:
        f.write(b'{"a": 4, "te')  # what a kill in the middle of a write leaves
    assert [r["a"] for r in log.read()] == [1, 2, 3]  # readers skip the torn line
    assert log.read()[0]["text"] == "café\u2028x"
    assert log.repair() == len(b'{"a": 4, "te') and log.path.read_bytes().endswith(b"\n")
    with log:  # one descriptor for many appends
        log.append({"a": 5})
    assert [n for n, _ in log.lines()] == [1, 2, 3, 4]
    assert log.keep(lambda r: r["a"] % 2) == 1 and [r["a"] for r in log.read()] == [1, 3, 5]


def test_jsonl_log_names_a_bad_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n\nnot json\n')
    with pytest.raises(DataError, match=r"log.jsonl:3: not a JSON line"):
        JsonlLog(path).read()


def test_locked_appends_from_several_processes_stay_whole(tmp_path):
    path = tmp_path / "rows.jsonl"
    code = ("import sys; from densecaption.files import JsonlLog\n"
            "log = JsonlLog(sys.argv[1], lock=True)\n"
            "for i in range(50): log.append({'p': sys.argv[2], 'i': i, 'pad': 'x' * 5000})\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(p)]) for p in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    rows = JsonlLog(path).read()
    assert sorted((r["p"], r["i"]) for r in rows) == [(str(p), i) for p in range(3) for i in range(50)]


# --------------------------------------------------------------------------------------------- atomic writes
def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "deep" / "out.txt"
    atomic_write_text(path, "old\n")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "old\n" and sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]
    atomic_write(path, lambda tmp: tmp.write_bytes(b"new"))
    assert path.read_bytes() == b"new"


def test_atomic_write_keeps_an_existing_files_mode_and_gives_new_files_the_umask_default(tmp_path):
    import os

    kept = tmp_path / "kept.json"
    kept.write_text("{}")
    kept.chmod(0o640)
    atomic_write_text(kept, "[]")
    assert kept.read_text() == "[]" and (kept.stat().st_mode & 0o777) == 0o640
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.json", "{}")
    finally:
        os.umask(old)
    assert ((tmp_path / "new.json").stat().st_mode & 0o777) == 0o644


def test_atomic_write_text_is_still_importable_from_its_old_home():
    from densecaption.data.dci import atomic_write_text as old_home

    assert old_home is atomic_write_text


# --------------------------------------------------------------------------------------------- locks
def test_a_held_lock_refuses_another_run_until_released(tmp_path):
    log = tmp_path / "x.jsonl"
    held = lock_or_fail(log, "this job log")
    try:
        assert lock_file(log) == tmp_path / ".x.jsonl.lock"
        with pytest.raises(UserError, match="x.jsonl: another run is writing this job log; wait for it"):
            lock_or_fail(log, "this job log")
        code = ("import sys; from densecaption.files import lock_or_fail\n"
                "try: lock_or_fail(sys.argv[1], 'it')\n"
                "except Exception as e: print(type(e).__name__)\n")
        other = subprocess.run([sys.executable, "-c", code, str(log)], capture_output=True, text=True, timeout=60)
        assert other.stdout.strip() == "UserError"
    finally:
        held.release()
    lock_or_fail(log, "this job log").release()
    assert lock_file(tmp_path) == tmp_path / ".lock"


def test_t2i_generate_refuses_a_run_folder_another_run_holds(tmp_path):
    from densecaption.t2i.generate import GenerateConfig, generate_images

    out = tmp_path / "run"
    out.mkdir()
    held = lock_or_fail(out, "this run folder")
    try:
        with pytest.raises(UserError, match="another run is writing this run folder"):
            generate_images(GenerateConfig(model="unused", out=str(out), prompts=["a cat"], prompts_file="p.txt"))
    finally:
        held.release()


# --------------------------------------------------------------------------------------------- seeding
def test_derived_generators_are_pinned():
    # Values of the derivations as first published: they must never change.
    assert rng_for(0, "swap", "a red car").random() == 0.8244281897613928
    assert rng_for(7, "summary", "img.json", "m-1").randrange(1000) == 17
    assert seed_for(5, "item-3", 1) == derive_seed(5, "item-3", 1) == 1691182133
    assert keyed_rng(42, 3).random() == random.Random("42:3").random() == 0.7311898907074272
    assert keyed_rng("job-1").random() == random.Random("job-1").random()


def test_rule_and_caption_set_generators_are_the_shared_one():
    from densecaption.captionsets import compose
    from densecaption.generation.rules import text_rng

    assert text_rng(3, "a dog", "swap").random() == rng_for(3, "swap", "a dog").random()
    assert compose.rng_for is rng_for


# --------------------------------------------------------------------------------------------- normal form
def test_one_normal_form_for_making_and_checking_negatives():
    from densecaption.generation import negatives, rules

    assert rules.normalise_text is normalise_text and negatives.normalise_text is normalise_text
    assert normalise_text("  A Dog,  runs!\n") == "a dog runs" == normalise_text("a dog_runs")
    assert normalise_text("\u201cA red\u201d car \u2014 90\u00b0\u2026") == "a red car 90"
    assert normalise_text("A café, NAÏVE") == "a café naïve" != normalise_text("a cafe naive")
    assert normalise_text("...") == "" and normalise_text("日本の車") == "日本の車"


# --------------------------------------------------------------------------------------------- folder or hub id
def test_resolve_source_folders_hub_ids_and_errors(tmp_path):
    assert resolve_source(str(tmp_path)).weights == "unknown" and resolve_source(str(tmp_path)).is_local
    write_marker(tmp_path, weights="random")
    local = resolve_source(str(tmp_path))
    assert (local.path_or_id, local.weights, local.folder) == (str(tmp_path.resolve()), "random", tmp_path)
    assert resolve_source("openai/clip-vit-base-patch32") == resolve_source("openai/clip-vit-base-patch32")
    assert resolve_source("gpt2").weights == "pretrained" and not resolve_source("gpt2").is_local
    with pytest.raises(UserError, match=r"^spec 'x': .*densecaption-weights.json is a file, not a folder"):
        resolve_source(str(tmp_path / MARKER), label="spec 'x'")
    with pytest.raises(UserError, match="missing is not a folder"):
        resolve_source(str(tmp_path / "missing"))
    for bad in ("no such model!", "a/b/c/d"):
        with pytest.raises(UserError, match="not (a model folder or a hub id|a folder)"):
            resolve_source(bad)
    with pytest.raises(UserError, match="not a family or an org/name id"):
        resolve_source("gpt2", expected="a family or an org/name id", org_required=True)


def test_transformers_source_checks_the_folder(tmp_path):
    with pytest.raises(UserError, match="has no config.json .*add #gguf=FILE"):
        transformers_source(str(tmp_path), label="m", gguf_ok=True)
    with pytest.raises(UserError, match="no GGUF file 'w.gguf'"):
        transformers_source(str(tmp_path), label="m", gguf="w.gguf")
    (tmp_path / "w.gguf").write_bytes(b"GGUF")
    assert transformers_source(str(tmp_path), label="m", gguf="w.gguf").weights == "pretrained"
    write_marker(tmp_path, weights="random")
    assert transformers_source(str(tmp_path), label="m", gguf="w.gguf").weights == "random"
    (tmp_path / "config.json").write_text("{}")
    assert transformers_source(str(tmp_path), label="m").weights == "random"


# --------------------------------------------------------------------------------------------- retries
def failing(times: int, **error):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= times:
            raise BackendError("HTTP 503: busy", retryable=True, status=503, **error)
        return "done"

    return fn


def test_retries_follow_the_policy_and_keep_the_jitter_stream():
    policy = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.004)
    ctx = JobContext("item-7", policy, threading.Event(), seed=0)
    assert ctx.call(failing(2)) == "done" and ctx.attempts == 3
    with pytest.raises(BackendError, match="^gave up after 3 attempts: HTTP 503: busy$") as info:
        ctx.call(failing(10))
    assert not info.value.retryable and info.value.status == 503 and ctx.attempts == 6
    assert ctx.call(failing(1)) == "done"
    rng = random.Random("item-7")  # as the hand-written loop drew: one draw per retry, none on giving up
    assert ctx.delays == [policy.delay(n, rng) for n in (1, 2, 1, 2, 1)]
    ctx = JobContext("x", RetryPolicy(max_retries=0), threading.Event(), seed=0)
    with pytest.raises(BackendError, match="gave up after 1 attempts"):
        ctx.call(failing(1))
    hinted = JobContext("x", RetryPolicy(base_delay=0.001, max_delay=0.05), threading.Event(), seed=0)
    assert hinted.call(failing(1, retry_after=0.03)) == "done" and hinted.delays == [0.03]


def test_errors_that_retrying_cannot_help_and_stopping():
    ctx = JobContext("x", RetryPolicy(), threading.Event(), seed=0)
    with pytest.raises(BackendError, match="HTTP 400"):
        ctx.call(lambda: (_ for _ in ()).throw(BackendError("HTTP 400: no", retryable=False, status=400)))
    with pytest.raises(ZeroDivisionError):
        ctx.call(lambda: 1 / 0)
    assert ctx.attempts == 2 and ctx.delays == []
    stop = threading.Event()
    waiting = JobContext("x", RetryPolicy(base_delay=30.0, max_delay=30.0), stop, seed=0)
    threading.Timer(0.1, stop.set).start()
    with pytest.raises(Interrupted):
        waiting.call(failing(5))  # stops while waiting 30 s, at once
    with pytest.raises(Interrupted):
        waiting.call(lambda: "never called")
    assert waiting.attempts == 1 and waiting.delays == [30.0]

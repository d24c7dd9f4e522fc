"""The job runner: its log, retries and backoff against a scripted fake server, failures, max_failures, and a
run killed with SIGKILL then resumed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.fake_server import FakeChatServer, FakeReply
from densecaption.errors import UserError
from densecaption.generation.backends import BackendOptions, load_backend
from densecaption.generation.jobs import (Job, JobFailed, JobLog, JobRecord, JobRunner, RetryPolicy, RunnerConfig,
                                          derive_seed, read_log)
from tests.generation_fakes import fake_llm

FAST_RETRY = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)


def runner(tmp_path: Path, *, name: str = "jobs.jsonl", settings: dict | None = None, **config) -> JobRunner:
    config.setdefault("retry", FAST_RETRY)
    return JobRunner(JobLog(tmp_path / name, "test", settings or {"model": "m"}), RunnerConfig(**config))


def ask(backend):
    """A work function: one request with the payload as the prompt."""
    return lambda prompt, ctx: ctx.call(backend.generate, prompt, max_tokens=20, seed=ctx.next_seed())


def openai(server: FakeChatServer, timeout: float = 5.0):
    return load_backend(f"openai:{server.url}#fake-model", BackendOptions(timeout=timeout))


# --------------------------------------------------------------------------------------------- the log
def test_log_lines_resume_and_a_torn_last_line_is_cut(tmp_path):
    jobs = [Job(f"item-{i}", i) for i in range(5)]
    first = runner(tmp_path).run(jobs[:3], lambda n, ctx: f"out {n}")
    assert first.ok == 3 and first.ran == 3
    log = tmp_path / "jobs.jsonl"
    header, *lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert header == {"format": "densecaption-job-log/1", "task": "test", "settings": {"model": "m"}}
    assert {(r["id"], r["status"], r["output"], r["attempts"]) for r in lines} == \
        {("item-0", "ok", "out 0", 0), ("item-1", "ok", "out 1", 0), ("item-2", "ok", "out 2", 0)}
    assert all(r["time"] and "seconds" in r for r in lines)
    with open(log, "ab") as f:  # what a kill in the middle of a write leaves
        f.write(b'{"id": "item-3", "status": "ok", "outp')
    seen = []
    second = runner(tmp_path).run(jobs, lambda n, ctx: seen.append(n) or f"out {n}")
    assert sorted(seen) == [3, 4] and second.skipped == 3 and second.torn_bytes > 0
    assert second.outputs() == {f"item-{i}": f"out {i}" for i in range(5)}
    ids = [r.id for r in read_log(log)]
    assert sorted(ids) == [f"item-{i}" for i in range(5)]  # no duplicates, the torn line gone
    assert log.read_bytes().endswith(b"\n")


def test_a_log_of_other_settings_is_refused_and_restart_starts_over(tmp_path):
    runner(tmp_path).run([Job("a", 1)], lambda n, ctx: "x")
    with pytest.raises(UserError, match="other settings .*model: 'm' in the log, 'other' now"):
        runner(tmp_path, settings={"model": "other"}).run([Job("a", 1)], lambda n, ctx: "y")
    again = JobRunner(JobLog(tmp_path / "jobs.jsonl", "test", {"model": "other"}), RunnerConfig(), restart=True)
    assert again.run([Job("a", 1)], lambda n, ctx: "y").outputs() == {"a": "y"}
    (tmp_path / "junk.jsonl").write_text("hello\n")
    with pytest.raises(UserError, match="not a densecaption job log"):
        runner(tmp_path, name="junk.jsonl").run([Job("a", 1)], lambda n, ctx: "x")


def test_two_runs_cannot_write_one_log_at_once(tmp_path):
    first = JobLog(tmp_path / "jobs.jsonl", "test", {})
    first.open()
    try:
        with pytest.raises(UserError, match="another run is writing this job log"):
            JobLog(tmp_path / "jobs.jsonl", "test", {}).open()
    finally:
        first.close()
    again = JobLog(tmp_path / "jobs.jsonl", "test", {})
    again.open()  # free again once the first is closed
    again.close()


def test_failures_are_recorded_with_reasons_and_retried_only_when_asked(tmp_path):
    def work(n, ctx):
        if n == 1:
            raise JobFailed("still 90 CLIP tokens (limit 77) after 4 reduce rounds")
        if n == 2:
            raise ZeroDivisionError("boom")
        return "" if n == 3 else f"out {n}"

    jobs = [Job(str(i), i) for i in range(5)]
    report = runner(tmp_path).run(jobs, work)
    assert [(r.id, r.reason) for r in report.failures] == [
        ("1", "still 90 CLIP tokens (limit 77) after 4 reduce rounds"), ("2", "ZeroDivisionError: boom"),
        ("3", "empty output")]
    assert report.outputs() == {"0": "out 0", "4": "out 4"}
    assert runner(tmp_path).run(jobs, lambda n, ctx: pytest.fail("nothing should run again")).failures
    fixed = runner(tmp_path, retry_failed=True).run(jobs, lambda n, ctx: f"fixed {n}")
    assert fixed.ran == 3 and not fixed.failures
    assert fixed.outputs() == {"0": "out 0", "1": "fixed 1", "2": "fixed 2", "3": "fixed 3", "4": "out 4"}


def test_max_failures_stops_a_run_going_wrong_and_a_rerun_continues(tmp_path):
    jobs = [Job(f"{i:02d}", i) for i in range(20)]
    stopped = runner(tmp_path, concurrency=1, max_failures=3).run(jobs, lambda n, ctx: "" if n % 2 else "ok")
    assert stopped.stopped and stopped.failed_now == 3
    assert [r.id for r in stopped.failures] == ["01", "03", "05"]
    # stopped at the third failure: nothing new starts, an item already running (at most one) still ends
    assert stopped.ran in (6, 7) and len(stopped.missing) == 20 - stopped.ran
    rest = runner(tmp_path, concurrency=4).run(jobs, lambda n, ctx: "ok")
    assert not rest.stopped and rest.ran == 20 - stopped.ran and rest.ok == 17 and len(rest.failures) == 3
    ids = [r.id for r in read_log(tmp_path / "jobs.jsonl")]
    assert len(ids) == len(set(ids)) == 20


def test_output_does_not_depend_on_concurrency_and_seeds_depend_on_the_item(tmp_path):
    jobs = [Job(f"item-{i}", i) for i in range(30)]

    def work(n, ctx):
        time.sleep(random.random() / 200)
        return [ctx.next_seed(), ctx.next_seed()]

    one = runner(tmp_path, name="one.jsonl", concurrency=1, seed=5).run(jobs, work).outputs()
    many = runner(tmp_path, name="many.jsonl", concurrency=8, seed=5).run(jobs, work).outputs()
    assert one == many
    assert one["item-3"] == [derive_seed(5, "item-3", 1), derive_seed(5, "item-3", 2)]
    assert derive_seed(None, "item-3", 1) is None and derive_seed(6, "item-3", 1) != one["item-3"][0]


def test_backoff_is_exponential_jittered_and_bounded():
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0, jitter=0.25)
    rng = random.Random(0)
    delays = [policy.delay(n, rng) for n in range(1, 7)]
    for n, delay in enumerate(delays, start=1):
        base = min(10.0, 2.0 ** (n - 1))
        assert base <= delay <= min(10.0, base * 1.25)
    assert delays[-1] == 10.0
    assert policy.delay(1, rng, hint=4.0) == 4.0  # a longer Retry-After wins
    assert policy.delay(1, rng, hint=60.0) == 10.0  # ... still capped


# --------------------------------------------------------------------------------------------- fake server
def test_retries_on_429_500_and_timeouts_then_success(tmp_path):
    with FakeChatServer(fake_llm, script=["429", "500", "hang"], hang_seconds=3.0) as server:
        backend = openai(server, timeout=0.3)
        report = runner(tmp_path, concurrency=1).run([Job("a", "hello there")], ask(backend))
        backend.close()
        assert server.statuses[:2] == [429, 500]
    record = report.records["a"]
    assert record.ok and record.attempts == 4 and record.output == fake_llm(server.requests[-1])


def test_junk_empty_and_client_errors_fail_without_retries_and_retries_are_bounded(tmp_path):
    def respond(body):
        text = body["messages"][-1]["content"]
        return {"junk": FakeReply(raw="<html>oops</html>"), "empty": FakeReply(content="   "),
                "bad": FakeReply(status=400, raw='{"error": "bad request"}'),
                "down": FakeReply(status=503, raw="busy")}.get(text, "fine")

    jobs = [Job(t, t) for t in ("junk", "empty", "bad", "down", "ok")]
    with FakeChatServer(respond) as server:
        backend = openai(server)
        report = runner(tmp_path, concurrency=3).run(jobs, ask(backend))
        backend.close()
    reasons = {r.id: (r.reason, r.attempts) for r in report.failures}
    assert reasons["junk"][0].startswith("malformed response") and reasons["junk"][1] == 1
    assert reasons["empty"] == ("empty output", 1)
    assert reasons["bad"][0].startswith("HTTP 400") and reasons["bad"][1] == 1
    assert reasons["down"] == ("gave up after 4 attempts: HTTP 503: busy", 4)
    assert report.outputs() == {"ok": "fine"}


def test_requests_run_concurrently(tmp_path):
    jobs = [Job(str(i), f"request {i}") for i in range(16)]
    with FakeChatServer(fake_llm, latency=0.2) as server:
        backend = openai(server)
        start = time.monotonic()
        report = runner(tmp_path, concurrency=8).run(jobs, ask(backend))
        elapsed = time.monotonic() - start
        backend.close()
    assert report.ok == 16 and elapsed < 16 * 0.2 / 3  # serial would take 3.2 s


def test_images_are_sent_as_base64_data_urls(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "red.png")
    with FakeChatServer(fake_llm) as server:
        backend = openai(server)
        reply = backend.generate("Describe", max_tokens=9, images=[tmp_path / "red.png"], seed=3)
        backend.close()
    body = server.requests[0]
    parts = body["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "Describe"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    assert body["max_tokens"] == 9 and body["temperature"] == 0.0 and body["seed"] == 3 and body["model"] == "fake-model"
    assert "fingerprint" in reply


def test_generate_many_keeps_order_and_returns_errors_in_place():
    from densecaption.generation.backends import BackendError, Request

    def respond(body):
        text = body["messages"][-1]["content"]
        return FakeReply(status=400, raw="no") if text == "bad" else text.upper()

    with FakeChatServer(respond, latency=0.05) as server:
        backend = openai(server)
        results = backend.generate_many([Request(t, max_tokens=5) for t in ("a", "bad", "c", "d")], concurrency=4)
        backend.close()
    assert results[0] == "A" and results[2:] == ["C", "D"]
    assert isinstance(results[1], BackendError) and not results[1].retryable and results[1].status == 400


def test_spec_errors_are_user_errors():
    for spec, message in [("openai:http://x/v1", "name the model"), ("nope:x", "expected openai"),
                          ("openai:localhost:8000#m", "http:// or https://"), ("hf:/no/such/folder", "not a folder")]:
        with pytest.raises(UserError, match=message):
            load_backend(spec)


# --------------------------------------------------------------------------------------------- kill -9
def caption_command(images: Path, url: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "densecaption", "caption", "--images", str(images), "--vlm", f"openai:{url}#fake",
            "--out", str(out), "--concurrency", "2"]


def test_a_killed_caption_run_resumes_without_loss_or_duplication(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(30):
        Image.new("RGB", (16, 16), (i * 8, 255 - i * 8, 100)).save(images / f"img_{i:03d}.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with FakeChatServer(fake_llm, latency=0.1) as server:
        killed_out = tmp_path / "killed.jsonl"
        log = tmp_path / "killed.jobs.jsonl"
        proc = subprocess.Popen(caption_command(images, server.url, killed_out), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and log.read_text().count('"status": "ok"') >= 8:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        done_at_kill = [r.id for r in read_log(log)]
        assert 8 <= len(done_at_kill) < 30 and not killed_out.exists()
        with open(log, "ab") as f:  # a kill mid-write leaves a torn line; make sure there is one
            f.write(b'{"id": "img_029.png", "status": "ok", "output": "A pho')
        before = len(server.requests)
        resumed = subprocess.run(caption_command(images, server.url, killed_out), env=env, capture_output=True,
                                 text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        assert len(server.requests) - before == 30 - len(done_at_kill)  # only what the log lacked was asked
        assert "torn last line" in resumed.stderr
        whole = subprocess.run(caption_command(images, server.url, tmp_path / "whole.jsonl"), env=env,
                               capture_output=True, text=True, timeout=120)
        assert whole.returncode == 0, whole.stderr
    assert killed_out.read_text() == (tmp_path / "whole.jsonl").read_text()
    lines = [json.loads(line) for line in killed_out.read_text().splitlines()]
    assert [line["file"] for line in lines] == [f"img_{i:03d}.png" for i in range(30)]
    assert all(line["caption"].startswith("A photo with the fingerprint") and line["prompt"] ==
               "Describe the image concisely" for line in lines)
    ids = [r.id for r in read_log(log)]
    assert len(ids) == len(set(ids)) == 30
    assert all(isinstance(JobRecord.from_json(json.loads(line)), JobRecord)
               for line in log.read_text().splitlines()[1:])

"""``generate summaries|negatives`` and ``caption`` end to end: against the fake server, a real SmolLM2 GGUF, and a
tiny random vision-language model saved to a temporary folder."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from benchmarks.fake_server import FakeChatServer, FakeReply
from densecaption.cli import build_app
from densecaption.data.dci import DCIDataset
from densecaption.data.sample import sample_root
from densecaption.generation.jobs import read_log
from densecaption.tokens import ClipTokenCounter
from densecaption.generation.summaries import FIRST_IMAGE, FIRST_REGION
from tests.generation_fakes import fake_llm, image_digest, starts, system_text
from tests.test_lm_backend import SMOLLM_GGUF, smollm_folder


def invoke(*args: str):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def count() -> ClipTokenCounter:
    return ClipTokenCounter()


@pytest.fixture
def server():
    with FakeChatServer(fake_llm) as s:
        yield s


def test_summaries_then_negatives_on_the_sample_against_the_fake_server(server, tmp_path, count, monkeypatch):
    sample_before = tree_digest(sample_root())
    llm = f"openai:{server.url}#fake"
    first = invoke("generate", "summaries", "--data", "sample", "--llm", llm, "--out", tmp_path / "sum",
                   "--limit", "2", "--n-base", "6")
    assert first.exit_code == 0, first.output
    assert "wrote 2 records (2 with summaries)" in first.output and "0 failed" in first.output
    data = DCIDataset.open(tmp_path / "sum")
    assert data.files() == ["camera-data.json", "chelsea-data.json"]  # splits.json cut to what was written
    camera = data.read("camera-data.json")
    assert list(camera.summaries) == ["base", "m-1-sc", "m-3-sc", "m-7-sc", "m-8-sc"]  # the masks of >= 224 px
    assert len(camera.summaries["base"]) == 6 and len(camera.summaries["m-7-sc"]) >= 5
    assert all(count(s) <= 77 for texts in camera.summaries.values() for s in texts)
    assert camera.negatives is None and camera.clip_scores is None  # stale: made from the old summaries
    asked = len(server.requests)
    again = invoke("generate", "summaries", "--data", "sample", "--llm", llm, "--out", tmp_path / "sum",
                   "--limit", "2", "--n-base", "6")
    assert again.exit_code == 0 and len(server.requests) == asked and "0 this run, 8 done before" in again.output
    other = invoke("generate", "summaries", "--data", "sample", "--llm", llm, "--out", tmp_path / "sum",
                   "--limit", "2", "--n-base", "7")
    assert other.exit_code == 2 and "other settings" in other.output and "n_base: 6 in the log, 7 now" in other.output

    import densecaption.generation.rules as rules

    monkeypatch.setattr(rules, "rule_negative_lists", lambda texts, *, seed, n: [
        {"swap": [" ".join(reversed(t.split()))], "replace": []} for t in texts])
    neg = invoke("generate", "negatives", "--data", tmp_path / "sum", "--llm", llm, "--out", tmp_path / "neg",
                 "--rules", "--split", "train", "--limit", "1")
    assert neg.exit_code == 0, neg.output
    assert "rule_replace: none could be made (5 entries)" in neg.output
    record = DCIDataset.open(tmp_path / "neg").read("camera-data.json")
    assert record.summaries == camera.summaries
    base, mask = record.negatives["base"], record.negatives["m-3-sc"]
    assert list(base) == ["basic", "layout", "swaps", "rule_swap"]
    assert [len(base[k]) for k in ("basic", "layout", "swaps")] == [3, 3, 3] and len(mask["swaps"]) == 1
    first_summary = camera.summaries["base"][0]
    for texts in base.values():
        assert all(t.lower() != first_summary.lower() and count(t) <= min(count(first_summary) + 5, 77)
                   for t in texts)
    assert len(set(base["basic"])) == 3  # greedy, yet three different ones
    assert tree_digest(sample_root()) == sample_before  # the input is never changed


def test_failures_are_listed_max_failures_stops_and_strict_exits_1(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(6):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(images / f"{i}.png")
    def respond(body):  # about half the images get an empty answer
        return FakeReply(content="") if int(image_digest(body), 16) % 2 else fake_llm(body)

    with FakeChatServer(respond) as server:
        url = f"openai:{server.url}#fake"
        soft = invoke("caption", "--images", images, "--vlm", url, "--out", tmp_path / "c.jsonl")
        failed = [line for line in soft.output.splitlines() if "failed" in line and ": empty output" in line]
        assert soft.exit_code == 0 and failed, soft.output
        lines = (tmp_path / "c.jsonl").read_text().splitlines()
        assert len(lines) + len(failed) == 6  # failures are never written as captions
        strict = invoke("caption", "--images", images, "--vlm", url, "--out", tmp_path / "c.jsonl", "--strict")
        assert strict.exit_code == 1
        stop = invoke("caption", "--images", images, "--vlm", url, "--out", tmp_path / "d.jsonl", "--max-failures",
                      "1", "--concurrency", "1")
        assert stop.exit_code == 1 and "stopped after 1 failures" in stop.output


def test_an_entry_that_fails_is_listed_and_its_record_stays_readable(tmp_path):
    def respond(body):  # the camera photo's whole-image summary always comes back empty
        if starts(system_text(body), FIRST_IMAGE) and "tripod" in body["messages"][-1]["content"]:
            return FakeReply(content="Sure, here it is:\n")
        return fake_llm(body)

    with FakeChatServer(respond) as server:
        llm = f"openai:{server.url}#fake"
        result = invoke("generate", "summaries", "--data", "sample", "--llm", llm, "--out", tmp_path / "sum",
                        "--limit", "2", "--n-base", "3", "--no-masks")
        assert result.exit_code == 0, result.output
        assert "failed camera-data.json#base: empty first summary" in result.output
        assert "wrote 2 records (1 with summaries)" in result.output
        data = DCIDataset.open(tmp_path / "sum")
        assert data.source == "complete" and data.read("camera-data.json").summaries is None
        assert len(data.read("chelsea-data.json").summaries["base"]) == 3
        negatives = invoke("generate", "negatives", "--data", tmp_path / "sum", "--llm", llm, "--out",
                           tmp_path / "neg", "--kinds", "swaps")
        assert negatives.exit_code == 0 and "skipped" not in negatives.output, negatives.output
        assert DCIDataset.open(tmp_path / "neg").read("camera-data.json").negatives is None


def test_user_errors_are_one_line(tmp_path, server):
    llm = f"openai:{server.url}#fake"
    cases = [
        (["generate", "summaries", "--data", "sample", "--llm", llm], "exactly one of --out DIR and --in-place"),
        (["generate", "summaries", "--data", "sample", "--llm", llm, "--in-place"], "read-only"),
        (["generate", "summaries", "--data", "sample", "--llm", "gpt4", "--out", tmp_path], "expected openai"),
        (["generate", "negatives", "--data", "sample", "--out", tmp_path], "--llm SPEC"),
        (["generate", "negatives", "--data", "sample", "--llm", llm, "--kinds", "swaps,nope", "--out", tmp_path],
         "unknown kind"),
        (["caption", "--images", tmp_path / "none", "--vlm", llm, "--out", tmp_path / "x.jsonl"], "no such folder"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_a_killed_summaries_run_resumes_to_the_same_dataset(tmp_path):
    """SIGKILL a `generate summaries` subprocess mid-run, re-run it, compare with an uninterrupted run."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def command(url: str, out: Path) -> list[str]:
        return [sys.executable, "-m", "densecaption", "generate", "summaries", "--data", "sample", "--llm",
                f"openai:{url}#fake", "--out", str(out), "--split", "test", "--limit", "3", "--n-base", "6",
                "--concurrency", "2"]

    with FakeChatServer(fake_llm, latency=0.05) as server:
        out = tmp_path / "killed"
        log = out / "generate-summaries.jobs.jsonl"
        proc = subprocess.Popen(command(server.url, out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and log.read_text().count('"status"') >= 3:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = [r.id for r in read_log(log)]
        assert 3 <= len(done) < 12 and not list((out / "densely_captioned_images" / "complete").iterdir())
        before = len(server.requests)
        resumed = invoke(*command(server.url, out)[3:])  # in this process: one subprocess start is enough
        assert resumed.exit_code == 0, resumed.output
        assert f"{len(done)} done before" in resumed.output
        started = [r for r in server.requests[before:] if starts(system_text(r), FIRST_IMAGE) or
                   starts(system_text(r), FIRST_REGION)]
        assert len(started) == 12 - len(done)  # only the entries the log lacked were run again
        whole = invoke(*command(server.url, tmp_path / "whole")[3:])
        assert whole.exit_code == 0, whole.output
    killed_tree = tree_digest(out / "densely_captioned_images")
    assert killed_tree == tree_digest(tmp_path / "whole" / "densely_captioned_images")
    assert len([k for k in killed_tree if k.startswith("complete/")]) == 3
    ids = [r.id for r in read_log(log)]
    assert len(ids) == len(set(ids)) == 12  # 3 photos: 3 whole images and 9 masks of >= 224 px


# --------------------------------------------------------------------------------------------- local models
def build_tiny_llava(out: Path) -> Path:
    """The tiny random LLaVA of ``models init-random llava --backend hf``, and its language model alone beside
    it (a causal LM that reads no images)."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    result = invoke("models", "init-random", "llava", out, "--backend", "hf", "--seed", "0")
    assert result.exit_code == 0 and f"load it as hf:{out}" in result.output, result.output
    text_only = out.parent / f"{out.name}-text-only"
    LlamaForCausalLM(AutoConfig.from_pretrained(out).text_config).save_pretrained(text_only)
    AutoTokenizer.from_pretrained(out).save_pretrained(text_only)
    return out


def test_caption_with_a_tiny_random_local_vlm(tmp_path):
    model = build_tiny_llava(tmp_path / "tiny-llava")
    images = tmp_path / "images"
    images.mkdir()
    for i, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (40 + 8 * i, 30), colour).save(images / f"{colour}.jpg")
    args = ["caption", "--images", images, "--vlm", f"hf:{model}", "--out", tmp_path / "caps.jsonl",
            "--max-tokens", "8", "--device", "cpu"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "(weights: random)" in result.output
    lines = [json.loads(line) for line in (tmp_path / "caps.jsonl").read_text().splitlines()]
    failed = result.output.count("failed ")
    assert len(lines) + failed == 3 and lines  # gibberish from random weights, but real captions
    for line in lines:
        assert line["model"] == f"hf:{model}" and line["weights"] == "random" and line["caption"].strip()
    again = invoke(*args)  # greedy: a re-run (from the log) and the first agree
    assert again.exit_code == 0 and "done before" in again.output
    text_only = invoke("caption", "--images", images, "--vlm", f"hf:{model}-text-only", "--out",
                       tmp_path / "x.jsonl", "--device", "cpu")
    assert text_only.exit_code == 2 and "text-only model cannot caption" in text_only.output


@pytest.mark.slow
def test_summaries_and_negatives_with_the_real_smollm2_gguf(tmp_path, monkeypatch):
    """The local path for real: SmolLM2-135M-Instruct (GGUF) from PyPI, offline. Quality is not judged."""
    import densecaption.generation.backends as backends

    spec = f"hf:{smollm_folder()}#gguf={SMOLLM_GGUF}"
    loaded = {}
    real_load = backends.load_backend

    def load_once(s, options=backends.BackendOptions()):  # one ~15 s load for both commands
        if s not in loaded:
            loaded[s] = real_load(s, options)
            loaded[s].close = lambda: None
        return loaded[s]

    monkeypatch.setattr(backends, "load_backend", load_once)
    summaries = invoke("generate", "summaries", "--data", "sample", "--llm", spec, "--out", tmp_path / "sum",
                       "--split", "valid", "--no-masks", "--n-base", "2", "--max-tokens", "80",
                       "--multi-max-tokens", "100", "--device", "cpu")
    assert summaries.exit_code == 0, summaries.output
    records = [r for r in read_log(tmp_path / "sum" / "generate-summaries.jobs.jsonl")]
    assert [r.id for r in records] == ["clock-data.json#base"]
    record = DCIDataset.open(tmp_path / "sum").read("clock-data.json")
    if records[0].ok:
        assert record.summaries["base"] == records[0].output and len(records[0].output) == 2
    else:  # a tiny model may not manage; then the reason is recorded and nothing is written as a success
        assert records[0].reason and record.summaries is None
        pytest.skip(f"SmolLM2 could not summarise the sample ({records[0].reason}); the path ran")
    negatives = invoke("generate", "negatives", "--data", tmp_path / "sum", "--llm", spec, "--out",
                       tmp_path / "neg", "--kinds", "swaps", "--n-base", "1", "--tries", "1", "--reduce-tries", "1",
                       "--max-tokens", "60", "--device", "cpu", "--rules")  # and the real rule-based ones
    assert negatives.exit_code == 0, negatives.output
    (neg,) = read_log(tmp_path / "neg" / "generate-negatives.jobs.jsonl")
    base = (DCIDataset.open(tmp_path / "neg").read("clock-data.json").negatives or {}).get("base", {})
    if neg.ok:
        assert base["swaps"] == neg.output and base["swaps"][0] != record.summaries["base"][0]
    else:
        assert neg.reason.startswith("swaps negative 1 of 1") and "swaps" not in base
    for kind in ("rule_swap", "rule_replace"):
        assert (kind in base and base[kind][0] != record.summaries["base"][0]) or f"{kind}: " in negatives.output

"""``generate summaries|negatives --prompts FILE``: a user's own prompt templates, checked, used and recorded."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from benchmarks.fake_server import FakeChatServer
from densecaption.cli import build_app
from densecaption.errors import UserError
from densecaption.generation import negatives, summaries
from densecaption.generation.prompts import (NEGATIVE_PLACEHOLDERS, SUMMARY_PLACEHOLDERS, PromptSet, fill,
                                             load_prompts)
from tests.generation_fakes import fake_llm, system_text

MY_FIRST = "Appendix A style: summarise the description below in {words} words or fewer. {Keep braces}."
MY_MULTI = "Write {n} numbered alternative summaries, each under {words} words."
MY_SWAPS = "Rearrange the words of this caption so that it becomes false."


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def write(path, obj) -> str:
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return str(path)


def load_summary_prompts(path):
    return load_prompts(path, summaries.TEMPLATES, SUMMARY_PLACEHOLDERS, summaries.PROMPT_VERSION)


def test_a_file_sets_some_templates_and_keeps_the_built_in_rest(tmp_path):
    path = write(tmp_path / "p.json", {"first_image": MY_FIRST, "multi": MY_MULTI})
    prompts = load_summary_prompts(path)
    assert prompts["first_image"] == MY_FIRST and prompts["multi"] == MY_MULTI
    assert prompts["first_region"] == summaries.FIRST_REGION and prompts["shorten_more"] == summaries.SHORTEN_MORE
    manifest = prompts.manifest()
    assert manifest == {"file": str((tmp_path / "p.json").resolve()),
                        "sha256": hashlib.sha256((tmp_path / "p.json").read_bytes()).hexdigest(),
                        "given": ["first_image", "multi"], "builtin": "1", "templates": dict(prompts.templates)}
    assert PromptSet(summaries.TEMPLATES, "1").manifest() == "1"  # built-in: the version, as before
    assert fill(MY_FIRST, words=30) == "Appendix A style: summarise the description below in 30 words or fewer. " \
                                       "{Keep braces}."


@pytest.mark.parametrize("content, message", [
    ({"first_summary": "x {words}"}, "key 'first_summary': unknown template name (known here: first_image, "),
    ({"first_image": "Summarise this."}, "key 'first_image': missing placeholder {words}"),
    ({"multi": "Write {n} summaries."}, "key 'multi': missing placeholder {words}"),
    ({"shorten_more": "Shorter, in {words} words."}, "key 'shorten_more': unknown placeholder {words} (allowed: none)"),
    ({"first_image": "{words} {text}"}, "key 'first_image': unknown placeholder {text} (allowed: {words})"),
    ({"first_image": ["a", "list"]}, "key 'first_image': the template should be a non-empty string"),
    ({"first_image": "  "}, "key 'first_image': the template should be a non-empty string"),
    (["first_image"], "expected a JSON object of template name -> text"),
    ("{not json", "not JSON"),
])
def test_bad_files_are_one_line_errors_naming_file_and_key(tmp_path, content, message):
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(UserError) as caught:
        load_summary_prompts(path)
    text = str(caught.value)
    assert text.startswith(f"--prompts {path}") and message in text and "\n" not in text
    with pytest.raises(UserError, match="cannot read it"):
        load_summary_prompts(tmp_path / "missing.json")


def test_negative_names_are_the_kinds_and_the_reduce_loop(tmp_path):
    path = write(tmp_path / "n.json", {"swaps": MY_SWAPS})
    prompts = load_prompts(path, negatives.TEMPLATES, NEGATIVE_PLACEHOLDERS, negatives.PROMPT_VERSION)
    assert prompts["swaps"] == MY_SWAPS and prompts["basic"] == negatives.PROMPTS["basic"]
    with pytest.raises(UserError, match="key 'first_image': unknown template name"):
        load_prompts(write(tmp_path / "m.json", {"first_image": MY_FIRST}), negatives.TEMPLATES,
                     NEGATIVE_PLACEHOLDERS, negatives.PROMPT_VERSION)


def as_builtin(body, builtin: str):
    """``body`` with its (custom) system message put back as the built-in ``builtin``, for ``fake_llm``."""
    messages = [dict(m, content=builtin) if m.get("role") == "system" else m for m in body["messages"]]
    return fake_llm({**body, "messages": messages})


def log_header(path):
    return json.loads(path.read_text().splitlines()[0])


def test_summaries_use_and_record_the_file(tmp_path):
    path = write(tmp_path / "p.json", {"first_image": MY_FIRST, "first_region": MY_FIRST, "multi": MY_MULTI})
    seen = []

    def respond(body):
        system = system_text(body)
        seen.append(system)
        if system.startswith("Appendix A style"):
            return as_builtin(body, summaries.FIRST_IMAGE)
        if system.startswith("Write 5 numbered"):
            return as_builtin(body, summaries.MULTI)
        return fake_llm(body)

    args = ["generate", "summaries", "--data", "sample", "--out", tmp_path / "sum", "--limit", "1", "--no-masks",
            "--n-base", "3", "--words", "30", "--prompts", path]
    with FakeChatServer(respond) as server:
        result = invoke(*args, "--llm", f"openai:{server.url}#fake")
        assert result.exit_code == 0 and "0 failed" in result.output, result.output
        assert f"prompts: first_image, first_region, multi from {(tmp_path / 'p.json').resolve()}" in result.output
        assert fill(MY_FIRST, words=30) in seen and fill(MY_MULTI, n=5, words=30) in seen
        assert summaries.FIRST_IMAGE.format(words=30) not in seen
        header = log_header(tmp_path / "sum" / "generate-summaries.jobs.jsonl")
        recorded = header["settings"]["prompts"]
        assert recorded["file"] == str((tmp_path / "p.json").resolve()) and recorded["templates"]["multi"] == MY_MULTI
        assert recorded["sha256"] == hashlib.sha256((tmp_path / "p.json").read_bytes()).hexdigest()
        write(tmp_path / "p.json", {"first_image": MY_FIRST.replace("fewer", "less"), "multi": MY_MULTI})
        changed = invoke(*args, "--llm", f"openai:{server.url}#fake")
        assert changed.exit_code == 2 and "other settings" in changed.output and "prompts:" in changed.output


def test_negatives_use_and_record_the_file_and_bad_files_stop_early(tmp_path):
    path = write(tmp_path / "n.json", {"swaps": MY_SWAPS})
    seen = []

    def respond(body):
        seen.append(system_text(body))
        if system_text(body) == MY_SWAPS:
            return as_builtin(body, negatives.PROMPTS["swaps"])
        return fake_llm(body)

    with FakeChatServer(respond) as server:
        llm = f"openai:{server.url}#fake"
        result = invoke("generate", "negatives", "--data", "sample", "--llm", llm, "--out", tmp_path / "neg",
                        "--kinds", "swaps", "--limit", "1", "--no-masks", "--n-base", "1", "--prompts", path)
        assert result.exit_code == 0 and "1 ok, 0 failed" in result.output, result.output
        assert MY_SWAPS in seen and negatives.PROMPTS["swaps"] not in seen
        recorded = log_header(tmp_path / "neg" / "generate-negatives.jobs.jsonl")["settings"]["prompts"]
        assert recorded["given"] == ["swaps"] and recorded["templates"]["swaps"] == MY_SWAPS
        assert recorded["templates"]["basic"] == negatives.PROMPTS["basic"]
        bad = write(tmp_path / "bad.json", {"swap": MY_SWAPS})
        refused = invoke("generate", "negatives", "--data", "sample", "--llm", llm, "--out", tmp_path / "other",
                         "--prompts", bad)
        assert refused.exit_code == 2 and f"--prompts {bad}, key 'swap': unknown template name" in refused.output
        assert "Traceback" not in refused.output and not (tmp_path / "other").exists()
    rules_only = invoke("generate", "negatives", "--data", "sample", "--rules", "--out", tmp_path / "r",
                        "--prompts", path)
    assert rules_only.exit_code == 2 and "--prompts is for the LLM kinds" in rules_only.output

"""A deterministic stand-in for a chat LLM, served by ``FakeChatServer`` in the generation tests.

It recognises the product's prompts (by their system message) and answers in the shapes real chat models
use, preamble included, so the whole pipeline (first summary, reduce loop, numbered lists, negatives,
captions) runs against it. Answers depend only on the request, so runs are repeatable.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from benchmarks.fake_server import last_user_text
from densecaption.generation.negatives import PROMPTS
from densecaption.generation.summaries import FIRST_IMAGE, FIRST_REGION, MULTI, SHORTEN_A_LITTLE, SHORTEN_MORE

WORDS = re.compile(r"[A-Za-z]+")


def system_text(body: dict[str, Any]) -> str:
    return next((m["content"] for m in body.get("messages", []) if m.get("role") == "system"), "")


def starts(system: str, prompt: str) -> bool:
    """Whether ``system`` is ``prompt`` (filled in: compared up to its first placeholder)."""
    return system.startswith(prompt.split("{")[0])


def image_digest(body: dict[str, Any]) -> str | None:
    """A short hash of the first image of the request, or None."""
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") == "image_url":
                    return hashlib.sha256(part["image_url"]["url"].encode()).hexdigest()[:8]
    return None


def fake_llm(body: dict[str, Any]) -> str:
    system, user = system_text(body), last_user_text(body)
    words = WORDS.findall(user)
    if starts(system, FIRST_IMAGE) or starts(system, FIRST_REGION):
        return "Sure, here is the summary:\n\n" + " ".join(words[:70])  # too long for 77 tokens: reduced next
    if starts(system, SHORTEN_A_LITTLE) or starts(system, SHORTEN_MORE):
        return " ".join(words[:-12])
    if starts(system, MULTI):
        text = user.split("\n\nSummaries already written")[0]
        pool = WORDS.findall(text)
        done = user.count("\n- ")
        items = [" ".join(pool[3 * (done + i): 3 * (done + i) + 15]) for i in range(5)]
        return "Here are five summaries:\n" + "\n".join(f"{i + 1}. {s}" for i, s in enumerate(items)) + \
            "\n\nI hope these help!"
    for kind, prompt in PROMPTS.items():
        if starts(system, prompt):
            source = user.split("\n\n(")[0]
            earlier = user.count(" | ") + ("(Already written" in user)
            pool = WORDS.findall(source)
            if kind == "swaps":
                rotated = pool[earlier + 1:] + pool[:earlier + 1]
                return " ".join(reversed(rotated))
            swap = {"basic": "purple", "layout": "upside-down"}[kind]
            return " ".join(pool[:earlier] + [swap] + pool[earlier + 1:])
    digest = image_digest(body)
    if digest is not None:
        return f"Sure! Here is a concise description:\nA photo with the fingerprint {digest}."
    return "I do not know this prompt."

"""The local transformers backend batches greedy text requests: prompts padded on the left give the replies
each prompt gets alone."""

from __future__ import annotations

import threading
import time

from typer.testing import CliRunner

from densecaption.cli import build_app
from densecaption.generation.backends import Request, load_backend

PROMPTS = ["Hi.", "Describe the photo of a red bicycle leaning against a brick wall in the rain.",
           "One word.", "List three colours of the sea at dusk, then name a fish that lives near the shore.",
           "Why?", "A caption for a dog."]


def test_batched_greedy_replies_equal_one_at_a_time(tmp_path):
    result = CliRunner().invoke(build_app(), ["models", "init-random", "llama", str(tmp_path / "m"),
                                              "--backend", "lm"])
    assert result.exit_code == 0, result.output
    backend = load_backend(f"hf:{tmp_path / 'm'}")
    assert backend.max_parallel > 1
    alone = [backend.generate(p, max_tokens=12) for p in PROMPTS]
    assert backend.batches == [1] * len(PROMPTS)
    requests = [Request(p, max_tokens=12) for p in PROMPTS]
    replies: list = []
    backend._lock.acquire()  # hold the model until every request is queued: one batch of all six
    runner = threading.Thread(target=lambda: replies.extend(backend.generate_many(requests, concurrency=8)))
    runner.start()
    while len(backend._queue) < len(PROMPTS):
        time.sleep(0.01)
    backend._lock.release()
    runner.join()
    assert backend.batches[len(PROMPTS):] == [len(PROMPTS)]
    assert replies == alone and any(alone)

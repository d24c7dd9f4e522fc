"""A scripted OpenAI-compatible chat server on 127.0.0.1, for tests, benchmarks and demos without a model.

It answers ``POST .../chat/completions`` like vLLM or llama.cpp's server would, with what a ``respond``
function returns for the request, after a fixed ``latency``. A ``script`` of replies is served first, one
per request, to play what real servers do on a bad day: ``"429"`` (rate limited, with Retry-After),
``"500"``/``"503"``, ``"hang"`` (answer only after ``hang_seconds``, past any sane client timeout),
``"junk"`` (a 200 whose body is not JSON) and ``"empty"`` (a 200 with empty content). ``respond`` may also
return a ``FakeReply`` to fail chosen requests. The server is bounded: it stops itself after
``max_seconds``, and stopping releases hung requests at once.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Union


@dataclass(frozen=True)
class FakeReply:
    """One scripted answer: an HTTP status, the message content (or a raw body), extra delay or a hang."""

    status: int = 200
    content: str | None = ""
    raw: str | None = None
    """A body sent as it is instead of a chat completion (junk)."""
    delay: float = 0.0
    hang: bool = False
    headers: dict[str, str] = field(default_factory=dict)


Scripted = Union[str, FakeReply]
NAMED = {
    "429": FakeReply(status=429, raw='{"error": {"message": "rate limited"}}', headers={"Retry-After": "0"}),
    "500": FakeReply(status=500, raw='{"error": {"message": "internal error"}}'),
    "503": FakeReply(status=503, raw="<html>service unavailable</html>"),
    "hang": FakeReply(hang=True),
    "junk": FakeReply(raw="<html>this is not json</html>"),
    "empty": FakeReply(content=""),
}


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message of a request (content parts joined)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def echo_reply(body: dict[str, Any]) -> str:
    """The default answer: the first 20 words of the last user message, reversed (deterministic)."""
    return " ".join(reversed(last_user_text(body).split()[:20])) or "nothing to say"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops bursts of connects (a 1 s SYN retry each)

    def handle_error(self, request, client_address) -> None:
        """A client that went away (killed, timed out) is normal here: no traceback on stderr."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FakeChatServer:
    """The server; use as a context manager (``with FakeChatServer(...) as server: server.url``)."""

    def __init__(self, respond: Callable[[dict[str, Any]], Union[str, FakeReply]] = echo_reply, *,
                 script: Iterable[Scripted] = (), latency: float = 0.0, hang_seconds: float = 10.0,
                 max_seconds: float = 600.0):
        self.respond = respond
        self.latency = latency
        self.hang_seconds = hang_seconds
        self.max_seconds = max_seconds
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self._script = [NAMED[s] if isinstance(s, str) else s for s in script]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """The base URL to give a client (``openai:<url>#MODEL``)."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "FakeChatServer":
        server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server = server
        serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        serve.start()
        timer = threading.Timer(self.max_seconds, self.stop)
        timer.daemon = True
        timer.start()
        self._threads = [serve]
        self._timer = timer
        return self

    def stop(self) -> None:
        self._stop.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()

    def __enter__(self) -> "FakeChatServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _next(self, body: dict[str, Any]) -> FakeReply:
        with self._lock:
            self.requests.append(body)
            scripted = self._script.pop(0) if self._script else None
        if scripted is not None:
            return scripted
        answer = self.respond(body)
        return answer if isinstance(answer, FakeReply) else FakeReply(content=answer)

    def _handler_class(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms Nagle stall

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, '{"error": {"message": "not found"}}', {})
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._send(400, '{"error": {"message": "bad json"}}', {})
                reply = owner._next(body)
                wait = owner.latency + reply.delay + (owner.hang_seconds if reply.hang else 0.0)
                if wait > 0 and owner._stop.wait(wait):
                    return self._send(503, '{"error": {"message": "shutting down"}}', {})
                if reply.raw is not None:
                    text = reply.raw
                else:
                    text = json.dumps({
                        "id": "fake", "object": "chat.completion", "created": int(time.time()),
                        "model": body.get("model", ""),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": reply.content}}]})
                self._send(reply.status, text, reply.headers)

            def _send(self, status: int, text: str, headers: dict[str, str]) -> None:
                data = text.encode("utf-8")
                with owner._lock:
                    owner.statuses.append(status)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timed out) and closed the connection
                    pass

        return Handler

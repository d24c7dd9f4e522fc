"""Text generation behind one contract, chosen by a spec string.

``openai:BASE_URL#MODEL`` talks to any OpenAI-compatible chat server (vLLM, llama.cpp's server, Ollama, a
hosted API); ``hf:ID_OR_DIR[#gguf=FILE]`` runs a local transformers model (``generation.local``). Every
backend answers ``generate(prompt, *, max_tokens, images=None, seed=None) -> str`` and raises
``BackendError`` with ``retryable`` set when trying again may help (rate limits, server errors, timeouts),
so one job runner can retry any backend the same way. Decoding is greedy unless a temperature is set, so
results are repeatable; with sampling, a per-request seed makes them repeatable too.
"""

from __future__ import annotations

import base64
import io
import json
import mimetypes
import os
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from densecaption.errors import UserError
from densecaption.registry import Registry

Message = Mapping[str, Any]
"""One chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""
Prompt = Union[str, Sequence[Message]]
"""A bare string (sent as one user message) or a list of chat messages."""
ImageInput = Union[str, Path, Any]
"""A path to an image file, or a PIL image."""

# prefix -> loader(parsed, *, spec, options) -> TextBackend; a module is imported only when its prefix is used.
# ``spec`` is the form of its spec strings (for help texts and errors).
GENERATORS: Registry = Registry("text generator")
GENERATORS.register("openai", "densecaption.generation.backends:load_openai",
                    summary="any OpenAI-compatible chat server (vLLM, llama.cpp, Ollama, a hosted API) over HTTP",
                    spec="openai:BASE_URL#MODEL")
GENERATORS.register("hf", "densecaption.generation.local:load_local",
                    summary="a local transformers model (text or image-text-to-text), or a GGUF file",
                    spec="hf:ID_OR_DIR[#gguf=FILE]")


def generator_spec_help(sep: str = ", or ") -> str:
    """The spec forms of every generator, for help texts: ``openai:BASE_URL#MODEL, or hf:...``."""
    return sep.join(e.meta["spec"] for e in GENERATORS.entries())


class BackendError(Exception):
    """A request that failed. ``retryable``: a rate limit, a server error or a timeout, worth trying again.

    ``retry_after`` is the server's Retry-After hint in seconds, when it sent one.
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class BackendOptions:
    """How to decode and connect; the same for every backend (each ignores what does not apply)."""

    temperature: float = 0.0
    """0 means greedy decoding (repeatable); above 0, sampling with the per-request seed."""
    top_p: float | None = None
    timeout: float = 120.0
    """Seconds one HTTP request may take (openai only)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (openai only; a local server may need none)."""
    device: str = "auto"
    """Where a local model runs (hf only)."""
    max_connections: int = 64


@dataclass(frozen=True)
class Request:
    """One generation request, for ``TextBackend.generate_many``."""

    prompt: Prompt
    max_tokens: int
    images: tuple[ImageInput, ...] = ()
    seed: int | None = None


class TextBackend(ABC):
    """Generates text from a prompt (and, for vision-language models, images).

    Attributes: ``spec`` (as given), ``model`` (the model's name as recorded in outputs), ``weights``
    (``pretrained``, ``random``, ``unknown`` or ``remote``), ``reads_images`` and ``max_parallel`` (how many
    requests are worth running at once: ``None`` for a server, 1 for a local model that serialises them).
    """

    spec: str
    model: str
    weights: str = "unknown"
    reads_images: bool = False
    max_parallel: int | None = None

    @abstractmethod
    def generate(self, prompt: Prompt, *, max_tokens: int, images: Sequence[ImageInput] | None = None,
                 seed: int | None = None) -> str:
        """The model's reply to ``prompt`` (at most ``max_tokens`` new tokens). Raises ``BackendError``."""

    def generate_many(self, requests: Sequence[Request], *, concurrency: int = 8) -> list[str | BackendError]:
        """Run many requests with up to ``concurrency`` in flight; each result is a reply or its error.

        Results keep the order of ``requests``. No retries here: the job runner (``generation.jobs``) adds
        them, with the job log that makes long runs resumable.
        """
        workers = max(1, min(concurrency, self.max_parallel or concurrency, len(requests) or 1))

        def one(request: Request) -> str | BackendError:
            try:
                return self.generate(request.prompt, max_tokens=request.max_tokens,
                                     images=list(request.images) or None, seed=request.seed)
            except BackendError as e:
                return e

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, requests))

    def close(self) -> None:
        """Release connections or memory; the backend is not used afterwards."""

    def __enter__(self) -> "TextBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def as_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """A prompt as a list of chat messages (a bare string becomes one user message)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


# --------------------------------------------------------------------------------------------- spec strings
@dataclass(frozen=True)
class GeneratorSpec:
    """A parsed generator spec: ``prefix:target[#model][#key=value...]``.

    For ``openai`` the first ``#`` part is the model name (it may hold ``:`` and ``/``, as in Ollama's
    ``llama3.2:3b`` or ``meta-llama/Llama-3.1-8B-Instruct``); the rest are ``key=value`` options.
    """

    prefix: str
    target: str
    model: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> "GeneratorSpec":
        head, _, tail = spec.partition("#")
        prefix, sep, target = head.partition(":")
        if not sep or not target:
            raise UserError(f"model spec {spec!r}: expected {generator_spec_help()}")
        if prefix not in GENERATORS:
            raise UserError(f"model spec {spec!r}: {GENERATORS.unknown_message(prefix)}; expected "
                            f"{generator_spec_help()}")
        parts = [p for p in tail.split("#") if p]
        model = None
        if prefix == "openai":
            if not parts or "=" in parts[0]:
                raise UserError(f"model spec {spec!r}: name the model after '#', e.g. "
                                f"openai:http://localhost:8000/v1#meta-llama/Llama-3.1-8B-Instruct")
            model, parts = parts[0], parts[1:]
        options = {}
        for part in parts:
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise UserError(f"model spec {spec!r}: option {part!r} should be KEY=VALUE")
            options[key] = value
        return cls(prefix, target, model, options)


def load_backend(spec: str, options: BackendOptions = BackendOptions()) -> TextBackend:
    """Build the backend a spec string names (the registry above decides which; nothing loads at import)."""
    parsed = GeneratorSpec.parse(spec)
    return GENERATORS.get(parsed.prefix)(parsed, spec=spec, options=options)


# --------------------------------------------------------------------------------------------- openai
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAIChatBackend(TextBackend):
    """An OpenAI-compatible ``/chat/completions`` endpoint over httpx (one pooled, thread-safe client)."""

    weights = "remote"
    reads_images = True

    def __init__(self, base_url: str, model: str, *, spec: str, options: BackendOptions,
                 api_key: str | None = None, transport=None):
        import httpx

        self.spec = spec
        self.model = model
        self.options = options
        self.url = base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        limits = httpx.Limits(max_connections=options.max_connections,
                              max_keepalive_connections=options.max_connections)
        timeout = httpx.Timeout(options.timeout, connect=min(10.0, options.timeout))
        self._client = httpx.Client(headers=headers, limits=limits, timeout=timeout, transport=transport)

    def body(self, prompt: Prompt, *, max_tokens: int, images: Sequence[ImageInput] | None,
             seed: int | None) -> dict[str, Any]:
        """The JSON request: images join the last user message as base64 data URLs."""
        messages = as_messages(prompt)
        if images:
            users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
            if not users:
                messages.append({"role": "user", "content": ""})
                users = [len(messages) - 1]
            last = messages[users[-1]]
            text = last.get("content") or ""
            parts = [{"type": "text", "text": text}] if isinstance(text, str) else list(text)
            parts += [{"type": "image_url", "image_url": {"url": data_url(image)}} for image in images]
            last["content"] = parts
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                                "temperature": self.options.temperature}
        if self.options.top_p is not None:
            body["top_p"] = self.options.top_p
        if seed is not None:
            body["seed"] = seed
        return body

    def generate(self, prompt: Prompt, *, max_tokens: int, images: Sequence[ImageInput] | None = None,
                 seed: int | None = None) -> str:
        import httpx

        body = self.body(prompt, max_tokens=max_tokens, images=images, seed=seed)
        try:
            response = self._client.post(self.url, json=body)
        except httpx.TimeoutException as e:
            raise BackendError(f"timed out after {self.options.timeout:g} s ({type(e).__name__})",
                               retryable=True) from e
        except httpx.TransportError as e:
            raise BackendError(f"cannot reach {self.url}: {type(e).__name__}: {e}", retryable=True) from e
        if response.status_code != 200:
            raise status_error(response, self.url)
        return reply_text(response.text)

    def close(self) -> None:
        self._client.close()


def status_error(response, url: str) -> BackendError:
    """The error for a non-200 answer; 429, 5xx and the like are retryable, other 4xx are not."""
    status = response.status_code
    snippet = " ".join(response.text.split())[:200]
    hint = ""
    if status in (401, 403):
        hint = " (check the API key: see --api-key-env)"
    elif status == 404:
        hint = f" (is the base URL right? it usually ends in /v1; asked {url})"
    retry_after = None
    try:
        retry_after = float(response.headers.get("retry-after", ""))
    except ValueError:
        pass
    return BackendError(f"HTTP {status}{hint}: {snippet}" if snippet else f"HTTP {status}{hint}",
                        retryable=status in RETRYABLE_STATUS, status=status, retry_after=retry_after)


def reply_text(raw: str) -> str:
    """The text of ``choices[0].message.content``; a body without it is junk (not retried)."""
    try:
        payload = json.loads(raw)
        content = payload["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        snippet = " ".join(raw.split())[:120]
        raise BackendError(f"malformed response (no choices[0].message.content): {snippet!r}",
                           retryable=False) from e
    if isinstance(content, list):  # some servers answer with content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise BackendError(f"malformed response: content is {type(content).__name__}, not text", retryable=False)
    return content


def data_url(image: ImageInput) -> str:
    """An image as a ``data:`` URL: a file's bytes as they are, a PIL image as PNG."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        mime = mimetypes.guess_type(path.name)[0] or "image/jpeg"
        try:
            data = path.read_bytes()
        except OSError as e:
            raise BackendError(f"cannot read image {path}: {e}", retryable=False) from e
    else:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        mime, data = "image/png", buf.getvalue()
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def load_openai(parsed: GeneratorSpec, *, spec: str, options: BackendOptions) -> OpenAIChatBackend:
    unknown = set(parsed.options)
    if unknown:
        raise UserError(f"model spec {spec!r}: unknown option(s) {', '.join(sorted(unknown))}")
    if not parsed.target.startswith(("http://", "https://")):
        raise UserError(f"model spec {spec!r}: the base URL should start with http:// or https://")
    return OpenAIChatBackend(parsed.target, parsed.model or "", spec=spec, options=options,
                             api_key=os.environ.get(options.api_key_env) or None)

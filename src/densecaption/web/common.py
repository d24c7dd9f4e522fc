"""Pieces both apps share: templates, static files, safety rules (headers, body size, paths) and photos."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
MAX_BODY = 512 * 1024
"""Largest request body accepted (bytes): an autosave of a photo with hundreds of masks fits easily."""
MAX_NAME = 255
"""Longest record name accepted in a URL."""
MAX_QUERY = 200
"""Longest search text."""
THUMB_PX = 160
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def templates() -> "Jinja2Templates":
    """Jinja2 templates of the package (autoescaped HTML)."""
    from fastapi.templating import Jinja2Templates

    return Jinja2Templates(directory=str(HERE / "templates"))


def base_app(title: str, allowed_hosts: tuple[str, ...] = ()) -> "FastAPI":
    """A FastAPI app with the package's static files, strict headers, a request body limit, and two guards
    against other web sites: a request whose ``Origin`` is another site is refused (403), and with
    ``allowed_hosts`` so is one whose ``Host`` is not in it (a DNS-rebinding page)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import PlainTextResponse
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = request.headers.get("host", "")
        if allowed_hosts and _host_name(host) not in allowed_hosts:
            return PlainTextResponse(f"host {host!r} is not served here", status_code=403)
        origin = request.headers.get("origin")
        if origin is not None and request.method not in ("GET", "HEAD") and origin.split("://")[-1] != host:
            return PlainTextResponse("requests from other sites are refused", status_code=403)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return PlainTextResponse(f"request body over {MAX_BODY} bytes", status_code=413)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return app


def _host_name(host: str) -> str:
    """``host[:port]`` less its port (``[::1]:8000`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:].split("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def served_hosts(host: str) -> tuple[str, ...]:
    """The ``Host`` names a server bound to ``host`` answers: on a loopback address only this machine's own
    names; elsewhere any (empty), since the machine's public names are not known here."""
    return (*LOOPBACK, host) if is_loopback(host) else ()


def file_under(folder: Path, name: str) -> Path | None:
    """``folder / name`` if that is an existing file inside ``folder`` (after resolving links and ``..``),
    else None: the only way a route turns a name from a record or URL into a path."""
    if not name or len(name) > MAX_NAME or "\x00" in name:
        return None
    base = folder.resolve()
    try:
        path = (base / name).resolve()
    except (OSError, RuntimeError):
        return None
    return path if path.is_relative_to(base) and path != base and path.is_file() else None


def photo_size(path: Path) -> tuple[int, int] | None:
    """(width, height) read from the photo's header, or None when it is not an image."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # PIL raises many types for broken files
        return None


class Thumbnails:
    """Small JPEG previews, made on first request and kept in memory (a few kB each)."""

    def __init__(self, size: int = THUMB_PX, keep: int = 2000):
        self.size, self.keep = size, keep
        self._cache: OrderedDict[Path, bytes | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> bytes | None:
        with self._lock:
            if path in self._cache:
                self._cache.move_to_end(path)
                return self._cache[path]
        data = self._make(path)
        with self._lock:
            self._cache[path] = data
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
        return data

    def _make(self, path: Path) -> bytes | None:
        from PIL import Image

        try:
            with Image.open(path) as im:
                im.draft("RGB", (self.size * 2, self.size * 2))  # JPEG: decode at a reduced scale
                im = im.convert("RGB")
                im.thumbnail((self.size, self.size))
                buf = io.BytesIO()
                im.save(buf, format="JPEG", quality=80)
                return buf.getvalue()
        except Exception:  # a broken photo shows no thumbnail, not an error page
            return None


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


@contextmanager
def serve_in_thread(app: "FastAPI", host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``app`` under uvicorn in a daemon thread on a free port of ``host``; yields the base URL and stops
    the server on exit (for scripts and tests that drive the app with a browser)."""
    import socket
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

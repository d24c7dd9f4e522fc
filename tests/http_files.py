"""A file server on 127.0.0.1 for download tests: serves byte strings by path, honours ``Range: bytes=N-``
(206 with ``Content-Range``), and can drop the connection after a number of body bytes, to play a network
that fails midway, or stall there, so that a test can kill the client mid-download. It records every request's ``Range`` header so tests can check that a resume asked for
the right bytes."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RANGE = re.compile(r"bytes=(\d+)-$")


@dataclass
class FileServer:
    """``files``: URL path -> bytes. ``drop_after``: URL path -> body bytes sent before the connection is cut,
    used once per entry (the next request for that path is served whole)."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)
    stall_after: dict[str, int] = field(default_factory=dict)
    """URL path -> body bytes sent before the server stalls (until ``close``), once: a client to kill midway."""
    ranges: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self
        self._closing = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                data = server.files.get(self.path)
                server.ranges.append(self.headers.get("Range"))
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                match = _RANGE.match(self.headers.get("Range") or "")
                if match:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = memoryview(data)[start:]  # no copy of a large file per request
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                cut = server.drop_after.pop(self.path, None)
                stall = server.stall_after.pop(self.path, None)
                if cut is not None or stall is not None:
                    self.wfile.write(body[:cut if cut is not None else stall])
                    self.wfile.flush()
                    if stall is not None:
                        server._closing.wait(60)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""Shared pieces of the web tests (no tests here): skeletons built from the bundled sample (texts blanked,
as the mask pipeline writes them), and a uvicorn server run in a thread on a free local port."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from densecaption.data.sample import sample_root


def write_skeletons(folder: Path, stems: list[str]) -> Path:
    """``folder/<stem>-mask.json`` for each sample record with its texts blanked, photos in ``folder/photos``."""
    src = sample_root()
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    for stem in stems:
        doc = json.loads((src / "annotations" / f"{stem}-data.json").read_text(encoding="utf-8"))
        doc["short_caption"] = doc["extra_caption"] = ""
        for m in doc["mask_data"].values():
            m["label"], m["caption"], m["mask_quality"] = "", "", 0
        (folder / f"{stem}-mask.json").write_text(json.dumps(doc), encoding="utf-8")
        shutil.copyfile(src / "photos" / doc["image"], folder / "photos" / doc["image"])
    return folder


@contextmanager
def serve(app) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on a free 127.0.0.1 port; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
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
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

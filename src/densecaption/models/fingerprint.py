"""A key for "the same model": its spec, its LoRA and the files behind any local paths they name."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path


def model_fingerprint(spec: str, lora: str | None = None) -> str:
    """SHA-256 of the spec and LoRA strings plus name, size and mtime of each local file they point at."""
    h = hashlib.sha256(f"{spec}\0{lora}".encode())
    for part in re.split(r"[:#=]", spec) + ([lora] if lora else []):
        path = Path(part).expanduser()
        if not part or not path.exists():
            continue
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        for f in files:
            st = f.stat()
            h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def cache_folder(root: Path, spec: str, lora: str | None = None) -> Path:
    return Path(root) / model_fingerprint(spec, lora)[:16]

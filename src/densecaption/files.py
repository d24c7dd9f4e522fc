"""Shared file helpers: atomic writes, append-only JSON-lines logs that survive a kill, and run locks.

Long runs here (generation jobs, image generation, training) are killed and resumed, so their files are
written in the two ways a kill cannot spoil: whole files through a temporary renamed into place
(:func:`atomic_write`), and logs one whole line per ``write`` (:class:`JsonlLog`), where a kill leaves at most
one torn last line, cut by :meth:`JsonlLog.repair` before the next append and skipped by readers. Locks
(``filelock``, so they also work off Linux) keep two runs out of one output.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from densecaption.errors import DataError, UserError

if TYPE_CHECKING:
    from filelock import BaseFileLock


# --------------------------------------------------------------------------------------------- atomic writes
def atomic_write(path: Path | str, write: Callable[[Path], None]) -> None:
    """Write ``path`` by ``write(tmp)`` to a temporary file beside it, then rename it into place, so a killed
    process leaves either the old file or the new one, never half (and two writers never share a temporary).
    A file that exists keeps its permission bits; a new one gets the umask's default."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        try:
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write a UTF-8 text file atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# --------------------------------------------------------------------------------------------- locks
def lock_file(path: Path | str) -> Path:
    """Where the lock of ``path`` lives: ``.lock`` inside a folder, ``.NAME.lock`` beside a file."""
    path = Path(path)
    return path / ".lock" if path.is_dir() else path.with_name(f".{path.name}.lock")


def lock_or_fail(path: Path | str, what: str) -> BaseFileLock:
    """Hold the lock of ``path`` (a run's log or folder) without waiting; a ``UserError`` saying that another
    run is writing ``what`` when another process holds it. The caller calls ``release()`` when done."""
    from filelock import FileLock, Timeout

    lock = FileLock(lock_file(path), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"{path}: another run is writing {what}; wait for it to end, or give another "
                        f"output") from None
    return lock


# --------------------------------------------------------------------------------------------- JSON lines
class JsonlLog:
    """An append-only JSON-lines file whose records survive a kill.

    Each record is one line written with a single ``write`` on an ``O_APPEND`` descriptor (fsynced with
    ``fsync``), so a killed writer loses at most the line it was writing. With ``lock``, each append waits
    for a lock beside the file, so several processes can append to one log. ``open``/``close`` keep one
    descriptor for many appends; without them each append opens the file itself.
    """

    def __init__(self, path: Path | str, *, fsync: bool = False, lock: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self.lock = lock
        self._fd: int | None = None

    def repair(self) -> int:
        """Cut a torn last line (a killed writer's) so the next record starts a line of its own; the bytes
        cut (0 when the file is whole or absent)."""
        if not self.path.is_file():
            return 0
        data = self.path.read_bytes()
        whole = data.rfind(b"\n") + 1
        if whole == len(data):
            return 0
        with self.path.open("r+b") as handle:
            handle.truncate(whole)
        return len(data) - whole

    def lines(self) -> list[tuple[int, bytes]]:
        """(1-based line number, bytes) of each whole, non-blank line; a torn last line is left out."""
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        whole = data[:data.rfind(b"\n") + 1].split(b"\n")
        return [(n, line) for n, line in enumerate(whole, 1) if line.strip()]

    def read(self) -> list[Any]:
        """The records of the whole lines, in order; a ``DataError`` naming the line for one that is not JSON."""
        return [self._parse(n, line) for n, line in self.lines()]

    def _parse(self, n: int, line: bytes) -> Any:
        try:
            return json.loads(line)
        except ValueError as e:
            raise DataError(f"{self.path}:{n}: not a JSON line ({e})") from None

    def keep(self, wanted: Callable[[Any], bool]) -> int:
        """Rewrite the log atomically with only the records ``wanted`` accepts (lines kept as written, a torn
        last line dropped); the number of records dropped."""
        lines = self.lines()
        kept = [line for n, line in lines if wanted(self._parse(n, line))]
        atomic_write(self.path, lambda tmp: tmp.write_bytes(b"".join(line + b"\n" for line in kept)))
        return len(lines) - len(kept)

    def open(self) -> "JsonlLog":
        """Keep one descriptor open for the appends that follow (until ``close``)."""
        if self._fd is None:
            self._fd = self._open_fd()
        return self

    def _open_fd(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "JsonlLog":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, record: Any) -> None:
        """One record as one line."""
        self.append_many([record])

    def append_many(self, records: Iterable[Any]) -> None:
        """Records as lines, written together with one ``write``."""
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        if not data:
            return
        if self.lock:
            from filelock import FileLock

            with FileLock(lock_file(self.path), thread_local=False):
                self._write(data)
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        fd = self._fd if self._fd is not None else self._open_fd()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync:
                os.fsync(fd)
        finally:
            if fd != self._fd:
                os.close(fd)

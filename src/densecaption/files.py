"""Shared file helpers: atomic writes, append-only JSON-lines logs that survive a kill, and run locks.

Long runs here (generation jobs, image generation, training) are killed and resumed, so their files are
written in the two ways a kill cannot spoil: whole files through a temporary renamed into place
(:func:`atomic_write`), and logs one whole line per ``write`` (:class:`JsonlLog`), where a kill leaves at most
one torn last line, cut by :meth:`JsonlLog.repair` before the next append and skipped by readers. Locks
(``filelock``, so they also work off Linux) keep two runs out of one output. Outputs are checked before a
run (:func:`writable_folder`, :func:`writable_file`) and their OS errors become one line naming the path
(:func:`writing`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from densecaption.errors import DataError, UserError, os_error_line

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
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and str(e.filename) in ("None", str(tmp)):
            raise _naming(e, path) from e  # a full disk names the file written, not its temporary
        raise


def _naming(e: OSError, path: Path) -> OSError:
    """``e`` again (same errno, so the same subclass) with ``path`` as its file name."""
    return OSError(e.errno, e.strerror or str(e), str(path))


_TEMP = re.compile(r"\..+\.(\d+)\.[0-9a-f]{8}\.tmp")  # .NAME.<pid>.<8 hex>.tmp, as atomic_write names them


def temp_writer_pid(name: str) -> int | None:
    """The writer's process id in the name of an :func:`atomic_write` temporary, or None for another name."""
    match = _TEMP.fullmatch(name)
    return int(match.group(1)) if match else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_stale_temps(folder: Path | str, *, recursive: bool = True) -> list[Path]:
    """Delete the :func:`atomic_write` temporaries under ``folder`` whose writer is dead (killed mid-write),
    which neither a resume nor an overwrite would otherwise touch; a live writer's are kept. Call it where a
    run starts on an output folder. Returns the paths removed (none when ``folder`` does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for parent, dirs, names in os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]:
        for name in names:
            pid = temp_writer_pid(name)
            if pid is not None and not pid_alive(pid):
                path = Path(parent) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (the data hash results and caches are keyed by)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write a UTF-8 text file atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# --------------------------------------------------------------------------------------------- outputs
def output_error(error: OSError, path: Path | str) -> UserError:
    """An OS error met writing an output, as one line ``<path>: <reason>`` (exit 2)."""
    return UserError(os_error_line(error, path))


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Turn the OS errors of the writes inside into :func:`output_error` naming ``path`` (or the file)."""
    try:
        yield
    except OSError as e:
        raise output_error(e, path) from None


def writable_folder(path: Path | str) -> Path:
    """Create the output folder ``path`` and check that this process can write into it, so a long run fails
    at its start, not its end: a ``UserError`` ``<path>: <reason>`` when a file is in the way, or the folder
    cannot be made or written (read-only file system, no permission)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: not a folder (a file of that name is in the way)")
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=path)
        os.close(fd)
        os.unlink(probe)
    return path


def writable_file(path: Path | str) -> Path:
    """Check an output file's place as :func:`writable_folder` does its folder (made if missing)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder, not a file name")
    writable_folder(path.parent)
    return path


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
        except OSError as e:
            if e.filename is None and e.errno is not None:
                raise _naming(e, self.path) from e  # a full disk: name the log
            raise
        finally:
            if fd != self._fd:
                os.close(fd)

"""Errors that the CLI turns into a short message and an exit code instead of a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user gave (a path, a spec string, an option); exit code 2."""

    exit_code = 2


class DataError(UserError):
    """Data that cannot be used as it is (a bad record met with --strict, an unusable dataset); exit code 1."""

    exit_code = 1


def os_error_line(e: OSError, path: object = None) -> str:
    """``PATH: reason`` of an operating-system error (``PATH -> OTHER`` for a rename; ``path`` stands in when
    the error names no file), the one wording every error line about a file uses."""
    reason = " ".join((e.strerror or str(e) or type(e).__name__).split())
    name = e.filename if e.filename is not None else path
    if name is None:
        return reason
    where = f"{name} -> {e.filename2}" if e.filename2 is not None else str(name)
    return f"{where}: {reason}"

"""Errors that the CLI turns into a short message and an exit code instead of a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user gave (a path, a spec string, an option); exit code 2."""

    exit_code = 2


class DataError(UserError):
    """Data that cannot be used as it is (a bad record met with --strict, an unusable dataset); exit code 1."""

    exit_code = 1

"""The project's own user errors: a bad input or a missing resource, with a message that names the value and
the fix. The command line (`replicate.cli`) prints these as one line; any other exception is a bug or an
unforeseen failure and keeps its traceback.

`UserError` subclasses ValueError so that code (and tests) catching ValueError around a check keep working.
"""

from __future__ import annotations


class UserError(ValueError):
    """A bad input (a value, a file, a directory) or a missing resource, described for the user."""


class DataError(UserError):
    """An input file that cannot be used as it is (damaged, empty, or not the run it claims to belong to)."""


class MissingResource(UserError, RuntimeError):
    """Something this machine lacks (a CUDA device, weights, a package); the message says how to get it."""


class MissingFile(UserError, FileNotFoundError):
    """A file the user must provide is not there."""


class UnwritableDirectory(UserError, OSError):
    """An output directory that cannot be written."""

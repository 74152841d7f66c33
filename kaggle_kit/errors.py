"""The kit's error types: messages that name the file, the row or field, the value and the fix.

`DataError` lives in the embeddable runtime (which imports nothing of the kit above it) and is
re-exported here; the CLI prints any of these without a traceback and exits with status 2.
"""
from __future__ import annotations

from kaggle_kit.runtime.problems import DataError


class KitError(Exception):
    """An expected failure outside the runtime (publishing, wheels, rendering, training setup)."""


EXPECTED_ERRORS = (KitError, DataError)
__all__ = ["KitError", "DataError", "EXPECTED_ERRORS"]

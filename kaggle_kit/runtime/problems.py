"""Problems found in input data, and the error raised when a file cannot be used."""
from __future__ import annotations

from dataclasses import dataclass


class DataError(ValueError):
    """Input that cannot be used. The message names the file, the row or column, the value and the fix."""


@dataclass(frozen=True)
class Problem:
    """Something repaired, skipped or suspicious in one row; reported, never silent."""

    id: str
    source: str
    reason: str

    def to_dict(self) -> dict:
        return {"id": self.id, "source": self.source, "reason": self.reason}

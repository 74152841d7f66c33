"""How configuration problems are reported: the file name, `ConfigError`, nearest-key suggestions."""
from __future__ import annotations

import difflib

CONFIG_FILE = "kit.toml"


class ConfigError(ValueError):
    """One or more problems in a configuration; ``problems`` lists each as a line."""

    def __init__(self, problems: list[str], source: str = CONFIG_FILE):
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


def _nearest(key: str, valid: list[str], prefix: str = "") -> str:
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    dotted = f"{prefix}." if prefix else ""
    return f"; did you mean '{dotted}{near[0]}'?" if near else f"; valid keys: {', '.join(valid)}"

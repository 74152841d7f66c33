"""Writing `kit.toml` (`kit init`): every setting of a config, with its help text as a comment."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from kaggle_kit.config.load import build_config
from kaggle_kit.config.presets import preset_values
from kaggle_kit.config.sections import KitConfig


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


# Settings a task kind never reads: `kit init` leaves them out of its kit.toml (a file that shows
# `metric = "log_loss"` for instruction tuning would claim something that does not happen).
UNUSED_BY_KIND = {
    "sft": {
        "task": {"labels", "metric"},
        "data": {"text_columns", "label_columns", "skip_bad_rows"},
        "prompt": {"truncation", "shares", "head_fraction"},
        "train": {"metric_for_best", "swap_augment"},
        "inference": {"tta", "budget_minutes", "devices"},
    },
}


def _write_table(lines: list[str], header: str, obj: Any, skip: frozenset = frozenset()) -> None:
    lines.append(f"[{header}]")
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        help_text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        if choices:
            help_text += f" One of: {', '.join(choices)}."
        lines.append(f"# {help_text}")
        lines.append(f"{f.name} = {_toml_value(getattr(obj, f.name))}")
    lines.append("")


def render_toml(cfg: KitConfig, preset: str | None = None, notes: tuple = ()) -> str:
    """A commented `kit.toml` holding every setting of ``cfg``; ``notes``: comment lines after the header
    (e.g. the decisions of `kit init --from-competition`, with their evidence)."""
    lines = [
        f"# kit.toml: kaggle-kit project configuration{f' (preset {preset})' if preset else ''}.",
        "# Written by `kit init`. Precedence: defaults < this file < `--set section.key=value` flags.",
        *(f"# {line}" if line else "#" for line in notes),
        "",
    ]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        lines.append(f"# ---- {f.metadata.get('help', '')}")
        if dataclasses.is_dataclass(value):
            _write_table(lines, f.name, value, frozenset(UNUSED_BY_KIND.get(cfg.task.kind, {}).get(f.name, ())))
        else:
            if not value:
                lines.append(f"# [{f.name}.NAME] tables; see `kit init --preset lmsys` for an example.")
                lines.append("")
            for name, sub in value.items():
                _write_table(lines, f"{f.name}.{name}", sub)
    return "\n".join(lines)


def init_config(path: str | os.PathLike, preset: str = "lmsys", force: bool = False, username: str = "") -> Path:
    """Write a commented `kit.toml` for ``preset``; returns the path. Refuses to overwrite unless ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    return write_config(path, (f"preset {preset}", preset_values(preset)), preset=preset, force=force, username=username)


def write_config(path: str | os.PathLike, layer: tuple, preset: str | None = None, notes: tuple = (), force: bool = False,
                 username: str = "") -> Path:
    """Write a commented `kit.toml` from one (source name, values) layer over the defaults; it must load back."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    cfg = build_config(layer)
    if username:
        cfg.kaggle.username = username
    text = render_toml(cfg, preset, notes)
    build_config((str(path), tomllib.loads(text)))  # what we write must load
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


"""Loading: defaults → preset → `kit.toml` → `--set section.key=value` flags, into a `KitConfig`.

Unknown keys are errors that name the key and the nearest valid one, and all problems of a file
are reported at once.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import typing
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from kaggle_kit.config.checks import _cross_checks
from kaggle_kit.config.presets import preset_values
from kaggle_kit.config.problems import CONFIG_FILE, ConfigError, _nearest
from kaggle_kit.config.sections import KitConfig


def _type_ok(value: Any, tp: Any) -> bool:
    if tp in (Any, object):
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is list:
        return isinstance(value, list)
    if tp is dict:
        return isinstance(value, dict)
    return True


def _hint(cls) -> dict:
    return typing.get_type_hints(cls)


def _apply(obj: Any, data: dict, where: str, problems: list[str]) -> None:
    hints = _hint(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            problems.append(f"unknown key '{path}'{_nearest(key, list(fields), where)}")
            continue
        f = fields[key]
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                problems.append(f"'{path}' must be a table [{path}], got {value!r}")
                continue
            _apply(getattr(obj, key), value, path, problems)
            continue
        item = f.metadata.get("item")
        if item is not None:
            if not isinstance(value, dict):
                problems.append(f"'{path}' must be a table of named tables like [{path}.NAME], got {value!r}")
                continue
            target = getattr(obj, key)
            for name, sub in value.items():
                if not isinstance(sub, dict):
                    problems.append(f"'{path}.{name}' must be a table, got {sub!r}")
                    continue
                inst = target.get(name) or item()
                _apply(inst, sub, f"{path}.{name}", problems)
                target[name] = inst
            continue
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if tp is str and f.metadata.get("int_as_str") and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not _type_ok(value, tp):
            problems.append(
                f"'{path}' must be {getattr(tp, '__name__', tp)}, got {value!r} ({type(value).__name__})"
            )
            continue
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            problems.append(f"'{path}' = {value!r} is not one of: {', '.join(map(str, choices))}")
            continue
        setattr(obj, key, value)


def parse_set_flags(flags: typing.Iterable[str]) -> dict:
    """`section.key=value` strings → nested dict. Values are read as TOML, else kept as strings."""
    out: dict = {}
    problems = []
    for flag in flags:
        if "=" not in flag:
            problems.append(f"--set {flag!r}: expected section.key=value, e.g. --set train.max_steps=50")
            continue
        dotted, raw = flag.split("=", 1)
        parts = [p for p in dotted.strip().split(".") if p]
        if len(parts) < 2:
            problems.append(f"--set {flag!r}: the key needs a section, e.g. train.{dotted.strip() or 'max_steps'}")
            continue
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    if problems:
        raise ConfigError(problems, source="--set")
    return out


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def build_config(*layers: tuple[str, dict]) -> KitConfig:
    """Apply (source name, dict) layers in order onto the defaults; report every problem at once."""
    cfg = KitConfig()
    problems: list[str] = []
    sources = []
    for source, data in layers:
        before = len(problems)
        _apply(cfg, data, "", problems)
        if len(problems) > before:
            sources.append(source)
    problems += _cross_checks(cfg)
    if problems:
        raise ConfigError(problems, source=" + ".join(sources) or "config")
    return cfg


def read_toml(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"file not found; create one with `kit init --preset lmsys`"], source=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source=str(path)) from None


def load_config(
    path: str | os.PathLike | None = None,
    overrides: typing.Iterable[str] = (),
    preset: str | None = None,
    required: bool = False,
) -> KitConfig:
    """Defaults → preset → `kit.toml` (if present, or required) → `--set` overrides."""
    layers: list[tuple[str, dict]] = []
    if preset:
        layers.append((f"preset {preset}", preset_values(preset)))
    if path is None and Path(CONFIG_FILE).exists():
        path = CONFIG_FILE
    if path is not None:
        if not Path(path).exists() and not required:
            pass
        else:
            layers.append((str(path), read_toml(path)))
    sets = parse_set_flags(overrides)
    if sets:
        layers.append(("--set", sets))
    cfg = build_config(*layers)
    cfg._source = str(path) if path else None  # type: ignore[attr-defined]
    return cfg

"""Options shared by commands, and the one way commands turn library errors into messages."""
from __future__ import annotations

import functools
import json
import sys

import click


def config_options(fn):
    """--config and --set, for every command that reads kit.toml."""
    fn = click.option(
        "--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
        help="Override a config value (repeatable), e.g. --set train.max_steps=50.",
    )(fn)
    fn = click.option(
        "--config", "config_path", type=click.Path(dir_okay=False), default=None,
        help="Config file (default: ./kit.toml when present).",
    )(fn)
    return fn


def load(config_path, overrides, required=False, preset=None):
    from kaggle_kit.config import load_config

    return load_config(config_path, overrides, preset=preset, required=required)


def friendly_errors(fn):
    """Turn the library's expected errors into a message and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from kaggle_kit.config import ConfigError
        from kaggle_kit.errors import EXPECTED_ERRORS

        try:
            return fn(*args, **kwargs)
        except (*EXPECTED_ERRORS, ConfigError, FileExistsError) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))

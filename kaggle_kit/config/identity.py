"""The Kaggle user name when kit.toml leaves it empty: KAGGLE_USERNAME, else kaggle.json.

A light look-up for `kit init` and `KitConfig.kaggle_username()`; the full credential search (in the
client's exact order, with secrets) is `kaggle_kit.publish.credentials`, which config may not import.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def kaggle_username_from_environment() -> str:
    """KAGGLE_USERNAME, else `username` in kaggle.json in the client's usual folders; '' when none."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    for folder in kaggle_config_dirs():
        cred = folder / "kaggle.json"
        if cred.is_file():
            try:
                return str(json.loads(cred.read_text()).get("username", ""))
            except (OSError, ValueError):
                return ""
    return ""


def kaggle_config_dirs() -> list[Path]:
    """Where the kaggle client looks for credentials, in its order."""
    dirs = []
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        dirs.append(Path(os.environ["KAGGLE_CONFIG_DIR"]))
    home = Path.home()
    dirs += [home / ".kaggle", Path(os.environ.get("XDG_CONFIG_HOME", home / ".config")) / "kaggle"]
    return dirs

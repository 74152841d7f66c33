"""Where the kaggle client finds credentials, and the secrets they hold (for the upload scan).

The same order as the client (kaggle 2.2.4, `kaggle_api_extended.KaggleApi.authenticate`): an
access token (`KAGGLE_API_TOKEN`, `~/.kaggle/access_token`), else `kaggle.json` in
`KAGGLE_CONFIG_DIR` or `~/.kaggle` (`~/.config/kaggle` on Linux when `~/.kaggle` is absent),
overridden by `KAGGLE_USERNAME` / `KAGGLE_KEY`. Standard library only; never imports the client.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kaggle_kit.errors import KitError


@dataclass
class Credentials:
    """Where the kaggle client will find credentials. ``secrets`` is never printed or written."""

    kind: str
    source: str
    username: str = ""
    warnings: list = field(default_factory=list)
    secrets: list = field(default_factory=list, repr=False)

    def describe(self) -> str:
        return f"{self.kind} ({self.source})"


def client_config_dir() -> Path:
    """The folder the kaggle client reads kaggle.json from (same rule as the client)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path(os.path.expanduser("~"))
    legacy = home / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"
    return legacy


def credential_places() -> str:
    return (
        "KAGGLE_API_TOKEN (environment), ~/.kaggle/access_token, KAGGLE_USERNAME + KAGGLE_KEY (environment), "
        f"{client_config_dir() / 'kaggle.json'}"
    )


def find_credentials(required: bool = True) -> Optional[Credentials]:
    """Look where the kaggle client looks, in its order. Raises KitError naming the places when none."""
    found: Optional[Credentials] = None
    secrets: list[str] = []
    warnings: list[str] = []
    token = os.environ.get("KAGGLE_API_TOKEN")
    if token:
        if Path(token).is_file():
            value = Path(token).read_text().strip()
            secrets.append(value)
            found = Credentials("access token", f"file named by KAGGLE_API_TOKEN: {token}")
        else:
            secrets.append(token)
            found = Credentials("access token", "KAGGLE_API_TOKEN")
    if found is None:
        for name in ("access_token", "access_token.txt"):
            path = Path(os.path.expanduser("~/.kaggle")) / name
            if path.is_file() and path.read_text().strip():
                secrets.append(path.read_text().strip())
                found = Credentials("access token", str(path))
                break
    cred_file = client_config_dir() / "kaggle.json"
    file_user = ""
    if cred_file.is_file():
        try:
            data = json.loads(cred_file.read_text())
        except (OSError, ValueError):
            data = {}
            warnings.append(f"{cred_file} is not valid JSON; the kaggle client will ignore it")
        if os.name != "nt" and cred_file.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(f"{cred_file} is readable by other users; run `chmod 600 {cred_file}`")
        if isinstance(data, dict) and data.get("key"):
            secrets.append(str(data["key"]))
            file_user = str(data.get("username", ""))
            if found is None:
                found = Credentials("kaggle.json", str(cred_file), username=file_user)
    if os.environ.get("KAGGLE_KEY"):
        secrets.append(os.environ["KAGGLE_KEY"])
        if found is None and os.environ.get("KAGGLE_USERNAME"):
            found = Credentials("environment", "KAGGLE_USERNAME + KAGGLE_KEY")
    if found is None:
        if required:
            raise KitError(
                "no Kaggle credentials found; the kaggle client looks in: " + credential_places()
                + ". Create a token at https://www.kaggle.com/settings (API section) and put kaggle.json there (chmod 600)"
            )
        return Credentials("none", "", warnings=warnings, secrets=secrets)
    found.username = os.environ.get("KAGGLE_USERNAME") or found.username or file_user
    found.warnings = warnings
    found.secrets = [s for s in secrets if s]
    return found


def configured_secrets() -> list[str]:
    """Every key/token the kaggle client would use here (none found: an empty list)."""
    creds = find_credentials(required=False)
    return list(creds.secrets) if creds else []

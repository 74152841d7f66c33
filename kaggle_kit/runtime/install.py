"""Offline installer: install exactly the wheel set a notebook ships with, never from the network.

`kit build-wheels` writes ``kit-wheels-manifest.json`` beside the wheels it downloads::

    {"generated_by": ..., "target": ..., "python": "3.11", "platforms": [...],
     "wheels": [{"file", "name", "version", "sha256", "size", "reason"}, ...]}

On Kaggle that folder is the wheel dataset mounted under ``/kaggle/input``. `install_wheels` checks
every listed file (present, size, sha256) and then runs
``python -m pip install --no-index --no-deps --find-links <dir> <exact files>`` with the running
interpreter: no index, no dependency resolution, nothing that is not in the manifest. A missing or
empty manifest installs nothing and says so.

Embeddable: standard library only.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

WHEELS_MANIFEST = "kit-wheels-manifest.json"
LOCAL_RUN_ENV = "KIT_LOCAL_RUN"  # set by `kit run-local`: a Python mismatch only warns there


class InstallError(RuntimeError):
    """The wheel set cannot be installed; the message names the file and the fix."""


@dataclass
class InstallResult:
    wheels_dir: str
    manifest: Optional[str]
    installed: List[str] = field(default_factory=list)  # wheel file names handed to pip
    command: List[str] = field(default_factory=list)
    message: str = ""

    @property
    def ran_pip(self) -> bool:
        return bool(self.command)


def read_manifest(wheels_dir) -> Optional[dict]:
    """The parsed manifest of ``wheels_dir``, or None when there is none."""
    path = Path(wheels_dir) / WHEELS_MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InstallError(f"{path}: not valid JSON ({exc}); rebuild the wheel set with `kit build-wheels`") from None
    if not isinstance(data, dict) or not isinstance(data.get("wheels", []), list):
        raise InstallError(f"{path}: expected an object with a 'wheels' list; rebuild the wheel set with `kit build-wheels`")
    return data


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _find(wheels_dir: Path, name: str) -> Optional[Path]:
    direct = wheels_dir / name
    if direct.is_file():
        return direct
    for found in sorted(wheels_dir.rglob(Path(name).name)):  # a dataset mounted one level deeper
        if found.is_file():
            return found
    return None


def _python_matches(wanted: str) -> bool:
    """'3.11', '3.11.13', 'cp311' or '311' against the running interpreter's major.minor."""
    wanted = str(wanted).strip().lower().replace("cp", "")
    if not wanted:
        return True
    if "." not in wanted and len(wanted) >= 2:  # "311" -> "3.11"
        wanted = f"{wanted[0]}.{wanted[1:]}"
    return wanted.split(".")[:2] == [str(sys.version_info.major), str(sys.version_info.minor)]


def check_wheels(wheels_dir, manifest: dict, verify: bool = True, log: Callable[[str], None] = print) -> List[Path]:
    """The manifest's wheel files, checked; raises InstallError listing every problem."""
    wheels_dir = Path(wheels_dir)
    files, problems = [], []
    python = manifest.get("python")
    if python and not _python_matches(str(python)):
        running = f"{sys.version_info.major}.{sys.version_info.minor}"
        if os.environ.get(LOCAL_RUN_ENV):
            log(f"warning: the wheel set was built for Python {python} (target {manifest.get('target', '?')}); "
                f"this local run uses Python {running}: pip decides which wheels fit")
        else:
            problems.append(
                f"the wheel set was built for Python {python} (target {manifest.get('target', '?')}) but this runs Python "
                f"{running}; rebuild it for this image with `kit build-wheels --set wheels.target=...`"
            )
    for i, entry in enumerate(manifest.get("wheels", [])):
        name = entry.get("file") if isinstance(entry, dict) else None
        if not name:
            problems.append(f"wheels[{i}]: no 'file' field")
            continue
        path = _find(wheels_dir, name)
        if path is None:
            problems.append(f"{name}: listed in {WHEELS_MANIFEST} but not in {wheels_dir}; push the whole wheel folder again (`kit push-dataset`)")
            continue
        size = entry.get("size")
        if verify and isinstance(size, int) and path.stat().st_size != size:
            problems.append(f"{name}: {path.stat().st_size} bytes, the manifest says {size}; the upload is incomplete or the file changed")
            continue
        digest = entry.get("sha256")
        if verify and digest and _sha256(path) != digest:
            problems.append(f"{name}: sha256 differs from the manifest; the upload is corrupt or the file changed")
            continue
        files.append(path)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise InstallError(f"{wheels_dir / WHEELS_MANIFEST}: {len(problems)} problem(s):\n{lines}")
    return files


def install_wheels(
    wheels_dir,
    *,
    verify: bool = True,
    dry_run: bool = False,
    python: Optional[str] = None,
    log: Callable[[str], None] = print,
) -> InstallResult:
    """Install exactly the wheels listed in ``<wheels_dir>/kit-wheels-manifest.json``, offline.

    Example (a notebook cell)::

        install_wheels("/kaggle/input/datasets/me/kit-wheels")
    """
    wheels_dir = Path(wheels_dir)
    if not wheels_dir.is_dir():
        raise InstallError(f"wheel folder not found: {wheels_dir}; attach the wheel dataset (kit.toml wheels.dataset_slug) to the notebook")
    manifest = read_manifest(wheels_dir)
    result = InstallResult(wheels_dir=str(wheels_dir), manifest=str(wheels_dir / WHEELS_MANIFEST) if manifest is not None else None)
    if manifest is None:
        result.message = f"no {WHEELS_MANIFEST} in {wheels_dir}: installing nothing (the image's libraries are used as they are)"
        log(result.message)
        return result
    entries = manifest.get("wheels") or []
    if not entries:
        result.message = f"{WHEELS_MANIFEST} lists no wheels (target {manifest.get('target', '?')}): installing nothing"
        log(result.message)
        return result
    files = check_wheels(wheels_dir, manifest, verify=verify, log=log)
    cmd = [python or sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", str(wheels_dir)]
    cmd += [str(f) for f in files]
    result.installed = [f.name for f in files]
    result.command = cmd
    for entry in entries:
        log(f"  {entry.get('name', '?')}=={entry.get('version', '?')}  ({entry.get('reason', '')})")
    if dry_run:
        result.message = f"dry run: would install {len(files)} wheel(s): {' '.join(cmd)}"
        log(result.message)
        return result
    log(">>> " + " ".join(cmd))
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PIP_PROGRESS_BAR="off")
    if env.get("PIP_TARGET"):
        log(f"(installing into {env['PIP_TARGET']}, set by PIP_TARGET)")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout.splitlines():
        log(line)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-20:])
        raise InstallError(f"pip could not install the wheel set from {wheels_dir} (exit {proc.returncode}):\n{tail}")
    result.message = f"installed {len(files)} wheel(s) from {wheels_dir} (target {manifest.get('target', '?')})"
    log(result.message)
    return result

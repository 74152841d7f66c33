"""The notebook's offline installer (kaggle_kit.runtime.install) with real pip, no index, no network."""
from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kaggle_kit.runtime.install import WHEELS_MANIFEST, InstallError, install_wheels


def _wheel(folder: Path, name: str = "kitdemo_pkg", version: str = "0.1") -> Path:
    """A minimal pure-Python wheel (one module) written by hand."""
    files = {
        f"{name}/__init__.py": f"VALUE = {version!r}\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: kit-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    out = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return out


def _manifest(folder: Path, wheels: list, **extra) -> None:
    entries = [
        {"file": w.name, "name": w.name.split("-")[0], "version": w.name.split("-")[1],
         "sha256": hashlib.sha256(w.read_bytes()).hexdigest(), "size": w.stat().st_size, "reason": "test"}
        for w in wheels
    ]
    data = {"generated_by": "test", "target": "test-image", "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "platforms": ["any"], "wheels": entries, **extra}
    (folder / WHEELS_MANIFEST).write_text(json.dumps(data), encoding="utf-8")


def test_missing_or_empty_manifest_installs_nothing(tmp_path):
    lines = []
    result = install_wheels(tmp_path, log=lines.append)
    assert not result.ran_pip and result.installed == [] and "installing nothing" in lines[-1]
    _manifest(tmp_path, [])
    result = install_wheels(tmp_path, log=lines.append)
    assert not result.ran_pip and "lists no wheels" in lines[-1]
    with pytest.raises(InstallError, match="wheels.dataset_slug"):
        install_wheels(tmp_path / "absent")


def test_installs_exactly_the_manifest_offline(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    listed = _wheel(wheels, "kitdemo_pkg", "0.1")
    _wheel(wheels, "kitdemo_other", "0.2")  # in the folder but not in the manifest: not installed
    _manifest(wheels, [listed])
    target = tmp_path / "site"
    monkeypatch.setenv("PIP_TARGET", str(target))  # real pip, into a throwaway folder
    lines = []
    result = install_wheels(wheels, log=lines.append)
    assert result.installed == [listed.name]
    assert result.command[1:5] == ["-m", "pip", "install", "--no-index"] and "--no-deps" in result.command
    assert (target / "kitdemo_pkg" / "__init__.py").read_text() == "VALUE = '0.1'\n"
    assert not (target / "kitdemo_other").exists()
    out = subprocess.run([sys.executable, "-c", "import kitdemo_pkg; print(kitdemo_pkg.VALUE)"],
                         env={"PYTHONPATH": str(target)}, capture_output=True, text=True)
    assert out.stdout.strip() == "0.1"


def test_corrupt_or_missing_wheel_is_refused_before_pip(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    good = _wheel(wheels)
    _manifest(wheels, [good])
    data = json.loads((wheels / WHEELS_MANIFEST).read_text())
    data["wheels"].append({"file": "absent-1.0-py3-none-any.whl", "name": "absent", "version": "1.0"})
    (wheels / WHEELS_MANIFEST).write_text(json.dumps(data))
    with pytest.raises(InstallError, match="absent-1.0-py3-none-any.whl"):
        install_wheels(wheels, dry_run=True)
    data["wheels"].pop()
    data["wheels"][0]["sha256"] = "0" * 64
    (wheels / WHEELS_MANIFEST).write_text(json.dumps(data))
    with pytest.raises(InstallError, match="sha256"):
        install_wheels(wheels, dry_run=True)
    data["wheels"][0]["sha256"] = hashlib.sha256(good.read_bytes()).hexdigest()
    data["python"] = "2.7"
    (wheels / WHEELS_MANIFEST).write_text(json.dumps(data))
    with pytest.raises(InstallError, match="Python 2.7"):
        install_wheels(wheels, dry_run=True)

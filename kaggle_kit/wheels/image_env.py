"""The image environment: where pip runs as if it were on the target image.

pip's `--target` mode ignores installed packages, so it cannot tell what the image already has.
Instead the kit builds a throw-away "image environment": a bare venv (``--without-pip``; pip is
linked in) whose site-packages holds one stub ``<name>-<version>.dist-info`` per package the
target image preinstalls (from the profile). Real pip then runs there (resolve.py) and does exactly
what `pip install` would do on the image. The venv's interpreter is one of the target's Python
version when this machine has one (find_python), so pip evaluates markers for the target.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Optional

from kaggle_kit.wheels.errors import WheelError
from kaggle_kit.wheels.target import Profile, canonical


_PYTHONS: dict = {}


def find_python(version: str) -> Optional[str]:
    """A working interpreter of Python ``version`` (X.Y): this one, `pythonX.Y` on PATH, or a pyenv
    version; None when there is none."""
    if version in _PYTHONS:
        return _PYTHONS[version]
    candidates = []
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":
        candidates.append(sys.executable)
    if shutil.which(f"python{version}"):
        candidates.append(shutil.which(f"python{version}"))
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += [str(p) for p in sorted(pyenv.glob(f"{version}*/bin/python{version}"), reverse=True)]
    found = None
    for exe in candidates:
        try:
            r = subprocess.run([exe, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0 and r.stdout.strip() == version:
            found = exe
            break
    _PYTHONS[version] = found
    return found


# Cross-target resolution (`pip install --dry-run` / `pip download` with --python-version,
# --platform, --abi and no --target) needs pip >= 23.3 (pypa/pip#12215; measured: Python 3.11's
# bundled pip 23.2.1 refuses with "Can not use any platform or abi specific options unless
# installing via '--target'"). pyproject declares `pip>=23.3`; an environment can still hold an
# older one (`python -m venv` + `pip install --no-deps`, a pinned image), so it is checked here.
PIP_MIN = "23.3"


def check_pip(version: str | None = None) -> str:
    """The version of the pip `kit build-wheels` runs (this environment's); WheelError when it is
    older than PIP_MIN, naming the upgrade command for this interpreter."""
    if version is None:
        import pip

        version = pip.__version__
    from packaging.version import InvalidVersion, Version

    try:
        old = Version(version) < Version(PIP_MIN)
    except InvalidVersion:
        old = False
    if old:
        raise WheelError(
            f"kit build-wheels needs pip >= {PIP_MIN} to resolve wheels for the Kaggle image (its --python-version/"
            f"--platform/--abi options; pypa/pip#12215), and this environment has pip {version} ({sys.prefix}). "
            f"Upgrade it: {sys.executable} -m pip install --upgrade 'pip>={PIP_MIN}'"
        )
    return version


class ImageEnv:
    """A bare venv whose site-packages holds stub dist-infos of the image's packages, with pip linked in."""

    def __init__(self, profile: Profile, root: Path):
        self.profile = profile
        self.root = Path(root)
        self.python = None
        self.interpreter = None

    def create(self) -> "ImageEnv":
        import pip

        check_pip(pip.__version__)  # the pip linked in below is this environment's
        exe = self._interpreter()
        venv = self.root / "image-env"
        r = subprocess.run([exe, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True)
        if r.returncode != 0:
            raise WheelError(f"cannot create a venv with {exe}: {r.stderr.strip()[-400:]}")
        py = venv / "bin" / "python"
        purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        site = Path(purelib)
        os.symlink(Path(pip.__file__).parent, site / "pip")
        for name, version in self.profile.preinstalled.items():
            d = site / f"{name.replace('-', '_')}-{version}.dist-info"
            d.mkdir(parents=True, exist_ok=True)
            (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
            (d / "INSTALLER").write_text("kaggle-kit-image-stub\n", encoding="utf-8")
        self.python = str(py)
        self.interpreter = exe
        return self

    def _interpreter(self) -> str:
        """An interpreter of the target's Python version when one is on PATH (so pip evaluates
        python_version markers for the target), else this one."""
        return find_python(self.profile.python) or sys.executable

    def constraints(self, strict: bool = False, exclude: Iterable[str] = ()) -> Path:
        """The image's pins pip may not change: protected packages; with ``strict`` every preinstalled
        package except ``exclude`` (the requirements themselves)."""
        path = self.root / "image-constraints.txt"
        exclude = {canonical(n) for n in exclude}
        lines = [f"{n}=={v}" for n, v in sorted(self.profile.preinstalled.items())
                 if self.profile.is_protected(n) or (strict and n not in exclude)]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    def pip(self, args: list[str], isolated: bool = False, timeout: int = 900) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1", PIP_PROGRESS_BAR="off")
        if isolated:
            env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
            env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        return subprocess.run([self.python, "-m", "pip", *args], capture_output=True, text=True, env=env, timeout=timeout)

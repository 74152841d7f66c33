"""The offline check (`kit build-wheels --check`): proof that a built set installs on the target.

It re-runs the resolution with ``--no-index --find-links <out>`` in the same image environment (no
config files, no PIP_* variables, so no other wheel source can fill a hole), checks that every wheel
is used and that the dependencies of every wheel, with markers evaluated for the TARGET Python, are
met by the set or the image; where the target is this interpreter it also installs the set into a
fresh venv (this environment's packages standing in for the image's) and imports each top-level
module, and where another interpreter of the target's Python is here, it installs and imports with
that one.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kaggle_kit.wheels.dataset import MANIFEST_FILE, file_sha256, read_manifest
from kaggle_kit.wheels.errors import CheckError, WheelError
from kaggle_kit.wheels.image_env import ImageEnv, find_python
from kaggle_kit.wheels.requirements import Want
from kaggle_kit.wheels.resolve import resolve
from kaggle_kit.wheels.target import Profile, canonical, load_profile


@dataclass
class CheckResult:
    """What the offline check proved (it raises CheckError when it fails)."""

    ok: bool
    resolved: list  # names pip resolved offline
    installed: bool = False  # a real install into a fresh venv ran
    imported: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    interpreter: str = ""  # the Python the real install ran with


def check_wheels(out, profile: Profile | str | None = None, real_install: bool | None = None) -> CheckResult:
    """Prove the set in ``out`` installs offline on the target: (1) pip resolves the manifest's pins
    with --no-index --find-links out for the target's Python/platform on the image environment and
    uses every wheel; (2) each wheel's dependencies (markers for the target) are met by the set or
    the image; (3) where the target matches this interpreter, install into a fresh venv and import
    each top-level module. Raises CheckError naming what is missing; returns a CheckResult."""
    out = Path(out)
    data = read_manifest(out)
    if profile is None or isinstance(profile, str):
        profile = load_profile(profile or data["target"])
    _check_files(out, data)
    wants = [Want(canonical(w["name"]), f"{canonical(w['name'])}=={w['version']}", "manifest") for w in data["wheels"]]
    with tempfile.TemporaryDirectory(prefix="kit-wheels-check-") as tmp:
        result = _resolve_offline(out, wants, profile, Path(tmp))
        _check_closure(out, data, profile)
        if real_install is None:
            real_install = profile.matches_local()
        _real_install(result, out, data, profile, Path(tmp), real_install, bool(wants))
    return result


def _check_files(out: Path, data: dict) -> None:
    """Every wheel the manifest lists is in ``out`` with the manifest's sha256."""
    missing = [w["file"] for w in data["wheels"] if not (out / w["file"]).is_file()]
    if missing:
        raise CheckError(f"{out}: wheel(s) listed in {MANIFEST_FILE} are missing: {', '.join(missing)}; rebuild with `kit build-wheels`")
    for w in data["wheels"]:
        digest = file_sha256(out / w["file"])
        if w.get("sha256") and digest != w["sha256"]:
            raise CheckError(f"{out / w['file']}: sha256 {digest} differs from the manifest's {w['sha256']}; rebuild")


def _resolve_offline(out: Path, wants: list, profile: Profile, tmp: Path) -> CheckResult:
    """Check (1): pip resolves the manifest's pins on the image environment from ``out`` alone; wheels
    it does not need (the image already satisfies them) are noted, not failed."""
    notes = []
    env = ImageEnv(profile, tmp).create()
    try:
        items = resolve(profile, wants, tmp, find_links=out.resolve(), env=env) if wants else []
    except CheckError:
        raise
    except WheelError as exc:
        raise CheckError(f"offline check failed for {profile.name} (--no-index --find-links {out}): {exc}") from None
    got = {i.name for i in items}
    unused = [w.name for w in wants if w.name not in got]
    if unused:
        notes.append(f"not needed on the image (already satisfied): {', '.join(unused)}")
    return CheckResult(ok=True, resolved=sorted(got), notes=notes)


def _real_install(result: CheckResult, out: Path, data: dict, profile: Profile, tmp: Path,
                  real_install: bool, any_wants: bool) -> None:
    """Check (3), recorded in ``result``: install and import with this interpreter (``real_install``),
    else with another interpreter of the target's Python when this machine has one, else a note
    saying why the real install was skipped."""
    if real_install and any_wants:
        result.installed, result.imported, _ = _install_and_import(out, data, tmp)
        result.interpreter = sys.executable
    elif not real_install:
        other = _target_interpreter(profile)
        if other and any_wants:
            # No stand-in for the image here: modules that need image packages (torch, numpy, …)
            # are reported, binary wheels still prove they load on the target's Python.
            result.installed, result.imported, deferred = _install_and_import(out, data, tmp, python=other, standin=False)
            result.interpreter = other
            if deferred:
                result.notes.append("not importable without the image's packages (not on this machine): " + "; ".join(deferred))
        else:
            result.notes.append(
                f"real install skipped: target is Python {profile.python} / {profile.platforms[0]}, this interpreter is "
                f"{sys.version_info.major}.{sys.version_info.minor} / {sysconfig.get_platform()} and no Python "
                f"{profile.python} was found"
            )


def _wheel_metadata(path: Path) -> tuple[list, list]:
    """(Requires-Dist lines, top-level modules) of a wheel, read from its dist-info."""
    from email.parser import Parser

    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        dist_info = next((n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info") and n.endswith("/METADATA")), None)
        if dist_info is None:
            raise CheckError(f"{path}: no *.dist-info/METADATA; not a valid wheel")
        meta = Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode("utf-8", "replace"))
        requires = meta.get_all("Requires-Dist") or []
        tops = []
        if f"{dist_info}/top_level.txt" in names:
            tops = [t.strip() for t in zf.read(f"{dist_info}/top_level.txt").decode().splitlines() if t.strip()]
        else:
            for n in names:
                head = n.split("/")[0]
                if head.endswith((".dist-info", ".data")):
                    continue
                if "/" in n and n.endswith("/__init__.py") and n.count("/") == 1:
                    tops.append(head)
                elif "/" not in n and n.endswith(".py"):
                    tops.append(n[:-3])
        tops = sorted({t.replace("/", ".") for t in tops if t and not t.startswith("_") and "." not in t})
    return requires, tops


def _check_closure(out: Path, data: dict, profile: Profile) -> None:
    """Every Requires-Dist of every wheel (markers evaluated for the TARGET) is met by the set or the image."""
    from packaging.requirements import InvalidRequirement, Requirement

    env = profile.marker_environment()
    have = {canonical(w["name"]): w["version"] for w in data["wheels"]}
    problems = []
    for w in data["wheels"]:
        requires, _ = _wheel_metadata(out / w["file"])
        for rd in requires:
            try:
                req = Requirement(rd)
            except InvalidRequirement:
                continue
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            key = canonical(req.name)
            version = have.get(key) or profile.preinstalled.get(key)
            if version is None:
                problems.append(f"{w['name']} {w['version']} needs {rd} (markers for Python {profile.python}): not in the set nor the image")
            elif req.specifier and not req.specifier.contains(version, prereleases=True):
                where = "the set" if key in have else "the image"
                problems.append(f"{w['name']} {w['version']} needs {req.name}{req.specifier}; {where} has {version}")
    if problems:
        raise CheckError(f"offline check failed for {profile.name}:\n  " + "\n  ".join(problems))


def _target_interpreter(profile: Profile) -> Optional[str]:
    """Another interpreter of the target's Python on this machine, when this machine's platform is
    one the target's wheels run on (e.g. a pyenv 3.12 for a cp312 manylinux target on Linux x86_64)."""
    if profile.implementation != "cp" or sys.implementation.name != "cpython":
        return None
    from packaging import tags

    if not {t.platform for t in tags.sys_tags()} & set(profile.platforms):
        return None
    exe = find_python(profile.python)
    return exe if exe and Path(exe).resolve() != Path(sys.executable).resolve() else None


def _install_and_import(out: Path, data: dict, tmp: Path, python: str | None = None,
                        standin: bool = True) -> tuple[bool, list, list]:
    """Install the set with --no-index --no-deps into a fresh venv of ``python`` and import each
    top-level module in it. With ``standin`` the venv also sees this environment's packages
    (standing in for the image's); without, a module that fails only because another module is
    absent (an image package such as torch) is returned in the third list instead of failing.
    Returns (installed, imported modules, deferred notes)."""
    venv, py, env = _install_venv(out, data, tmp, python, standin)
    imported, deferred = _import_each(out, data, venv, py, env, tmp, standin)
    return True, imported, deferred


def _install_venv(out: Path, data: dict, tmp: Path, python: str | None, standin: bool) -> tuple[Path, Path, dict]:
    """A fresh venv of ``python`` (pip linked in; with ``standin``, this environment's site-packages
    on its path) holding the set installed offline; returns (venv, its python, the environment to run
    it with: no PIP_* variables, no config file, no PYTHONPATH)."""
    import pip

    venv = tmp / "install-venv"
    subprocess.run([python or sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    if standin:
        here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        (purelib / "_kit_image_standin.pth").write_text("\n".join(sorted(here)) + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1", HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    os.symlink(Path(pip.__file__).parent, purelib / "pip")  # ahead of the stand-in's own pip
    pins = [f"{w['name']}=={w['version']}" for w in data["wheels"]]
    cmd = [str(py), "-m", "pip", "install", "--no-index", "--find-links", str(out.resolve()), "--no-deps", "--ignore-installed", "--no-compile", "--quiet", *pins]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise CheckError(f"offline install into a fresh venv ({python or sys.executable}) failed:\n{(proc.stderr or proc.stdout)[-1500:]}")
    return venv, py, env


def _import_each(out: Path, data: dict, venv: Path, py: Path, env: dict, tmp: Path, standin: bool) -> tuple[list, list]:
    """Import every top-level module of every wheel in the venv, each in its own process, and check it
    loaded from the venv; returns (imported, deferred) or raises CheckError listing the failures."""
    imported, failures, deferred = [], [], []
    shipped = set()
    for w in data["wheels"]:
        shipped.update(_wheel_metadata(out / w["file"])[1])
    for w in data["wheels"]:
        _, tops = _wheel_metadata(out / w["file"])
        for mod in tops:
            r = subprocess.run([str(py), "-c", f"import {mod}; print({mod}.__file__)"], capture_output=True, text=True,
                               env=env, cwd=tmp, timeout=300)
            last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"
            missing = re.search(r"ModuleNotFoundError: No module named '([^'.]+)", last)
            if r.returncode != 0 and not standin and missing and missing.group(1) not in shipped:
                deferred.append(f"{mod} needs {missing.group(1)}")
            elif r.returncode != 0:
                failures.append(f"import {mod} ({w['file']}): {last}")
            elif str(venv) not in r.stdout:
                failures.append(f"import {mod} ({w['file']}) did not load the shipped wheel but {r.stdout.strip()}")
            else:
                imported.append(mod)
    if failures:
        raise CheckError("offline install check failed:\n  " + "\n  ".join(failures))
    return imported, deferred

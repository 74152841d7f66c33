"""The target image as a Profile: the Python, ABI and platform tags a wheel set is built for, and what
the image preinstalls (shipped JSON files in ``profiles/``, a profile JSON, or a `pip freeze` text)."""
from __future__ import annotations

import fnmatch
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import unquote, urlparse

from kaggle_kit.templating import read_json
from kaggle_kit.wheels.errors import WheelError

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_PROFILE = "kaggle-gpu-2026"
# Never shipped: the image provides them (torch is gigabytes; numpy's ABI is shared by the image).
DEFAULT_PROTECTED = (
    "torch", "torchvision", "torchaudio", "torchcodec", "torchao", "triton", "numpy",
    "jax", "jaxlib", "tensorflow", "nvidia-*", "cuda-*",
)


def canonical(name: str) -> str:
    """PEP 503 normalized name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def manylinux_platforms(glibc: str = "2.35", arch: str = "x86_64") -> list[str]:
    """Every manylinux tag a glibc ``glibc`` system runs, newest first (pip does not expand
    ``manylinux_2_X`` tags itself), plus the legacy aliases."""
    major, minor = (int(x) for x in glibc.split(".")[:2])
    if major != 2:
        raise WheelError(f"glibc {glibc!r}: expected 2.N, e.g. 2.35 (Ubuntu 22.04)")
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, 4, -1)]
    if minor >= 17:
        tags.append(f"manylinux2014_{arch}")
    if minor >= 12:
        tags.append(f"manylinux2010_{arch}")
    tags.append(f"manylinux1_{arch}")
    return tags


@dataclass
class Profile:
    """A target runtime: Python, implementation, ABI, platform tags and what it preinstalls."""

    name: str
    python: str  # "3.12"
    implementation: str = "cp"
    abi: str = ""  # default cp + python without dot
    platforms: list = field(default_factory=lambda: manylinux_platforms())
    preinstalled: dict = field(default_factory=dict)  # canonical name -> version
    protected: list = field(default_factory=lambda: list(DEFAULT_PROTECTED))
    python_full: str = ""
    description: str = ""
    source: list = field(default_factory=list)
    unversioned: dict = field(default_factory=dict)  # installed, version unknown (treated as absent)
    estimated: list = field(default_factory=list)  # names whose version is an estimate
    path: Optional[str] = None

    def __post_init__(self):
        if not re.fullmatch(r"\d+\.\d+", str(self.python)):
            raise WheelError(f"profile {self.name!r}: python {self.python!r} must look like 3.12")
        if not self.abi:
            self.abi = f"{self.implementation}{self.python.replace('.', '')}"
        if not self.python_full:
            self.python_full = f"{self.python}.0"
        self.preinstalled = {canonical(k): str(v) for k, v in self.preinstalled.items()}
        if not self.platforms:
            raise WheelError(f"profile {self.name!r}: no platform tags")

    @property
    def python_tag(self) -> str:
        return f"{self.implementation}{self.python.replace('.', '')}"

    def is_protected(self, name: str) -> bool:
        name = canonical(name)
        return any(fnmatch.fnmatch(name, canonical(p) if "*" not in p else p.lower()) for p in self.protected)

    def marker_environment(self) -> dict:
        """PEP 508 marker values of the target (Linux x86_64 CPython unless the tags say otherwise)."""
        arch = "aarch64" if any("aarch64" in p for p in self.platforms) else "x86_64"
        impl = {"cp": ("cpython", "CPython"), "pp": ("pypy", "PyPy")}.get(self.implementation, ("cpython", "CPython"))
        return {
            "python_version": self.python,
            "python_full_version": self.python_full,
            "implementation_name": impl[0],
            "platform_python_implementation": impl[1],
            "implementation_version": self.python_full,
            "os_name": "posix",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": arch,
            "platform_release": "",
            "platform_version": "",
            "extra": "",
        }

    def target_options(self) -> list[str]:
        """pip options that select wheels for this target."""
        opts = ["--only-binary=:all:", "--python-version", self.python, "--implementation", self.implementation, "--abi", self.abi]
        for p in self.platforms:
            opts += ["--platform", p]
        return opts

    def tags_text(self) -> str:
        plats = self.platforms
        shown = ", ".join(plats[:3]) + (f", … {plats[-1]} ({len(plats)} platform tags)" if len(plats) > 3 else "")
        return f"python {self.python} ({self.python_tag}), abi {self.abi} or abi3/none, platforms {shown} or any"

    def matches_local(self) -> bool:
        """True when this interpreter could run the target's wheels (same Python and a shared platform tag)."""
        if self.python != f"{sys.version_info.major}.{sys.version_info.minor}":
            return False
        if self.implementation != "cp" or sys.implementation.name != "cpython":
            return False
        from packaging import tags

        local = {t.platform for t in tags.sys_tags()}
        return bool(local & set(self.platforms))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("path", None)
        return d


def list_profiles() -> list[str]:
    """Names of the shipped profiles (the JSON files in ``profiles/``)."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.json"))


def load_profile(target: str | os.PathLike | None = None, python: str | None = None,
                 platforms: Iterable[str] | None = None, name: str | None = None) -> Profile:
    """A profile by name (shipped in kaggle_kit/wheels/profiles/), a profile JSON file, or a `pip freeze`
    text taken in a Kaggle notebook (``python`` / ``platforms`` then default to the default profile's).
    ``python``/``platforms`` given with a named profile override its values."""
    target = str(target or DEFAULT_PROFILE)
    path = Path(target)
    if target in list_profiles() and not path.exists():
        path = PROFILES_DIR / f"{target}.json"
    if not path.exists():
        known = ", ".join(list_profiles())
        raise WheelError(
            f"--target {target!r}: no such profile or file. Known profiles: {known}; or pass a "
            f"`pip freeze > freeze.txt` taken in a Kaggle notebook"
        )
    if path.suffix == ".json":
        prof = _profile_from_json(path, python, platforms)
    else:
        base = load_profile(DEFAULT_PROFILE)
        prof = profile_from_freeze(
            path, name=name or path.stem, python=python or base.python,
            platforms=list(platforms) if platforms else base.platforms,
        )
    prof.path = str(path)
    return prof


def _profile_from_json(path: Path, python: str | None, platforms: Iterable[str] | None) -> Profile:
    """A profile JSON file (shipped or the user's), its keys checked; ``python``/``platforms`` override it."""
    data = read_json(path, WheelError)
    data.pop("generated_by", None)
    known_keys = set(Profile.__dataclass_fields__)
    unknown = sorted(set(data) - known_keys)
    if unknown:
        raise WheelError(f"{path}: unknown profile key(s) {unknown}; valid keys: {sorted(known_keys - {'path'})}")
    if "name" not in data or "python" not in data:
        raise WheelError(f"{path}: a profile needs at least 'name' and 'python'")
    if python:
        data["python"] = python
        data["abi"] = ""
        data["python_full"] = ""
    if platforms:
        data["platforms"] = list(platforms)
    return Profile(**data)


_FREEZE_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*)\s*===?\s*([^\s;#]+)")
_AT_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*)\s*(?:\[[^\]]*\])?\s*@\s*(\S+)")


def parse_freeze(text: str, source: str = "freeze") -> tuple[dict, dict]:
    """`pip freeze` text -> ({canonical name: version}, {name: note} for lines without a version).
    ``name @ https://…/x-1.0-….whl`` takes its version from the wheel file name."""
    versions: dict = {}
    unversioned: dict = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _FREEZE_LINE.match(line)
        if m:
            versions[canonical(m.group(1))] = m.group(2)
            continue
        m = _AT_LINE.match(line)
        if m:
            name, url = canonical(m.group(1)), m.group(2).split("#")[0]
            fname = unquote(urlparse(url).path.rsplit("/", 1)[-1])
            if fname.endswith(".whl") and fname.count("-") >= 4:
                versions[name] = fname.split("-")[1]
            else:
                unversioned[name] = f"installed from {url}"
            continue
        if line.startswith(("-e ", "--")):
            continue
        raise WheelError(
            f"{source}:{lineno}: cannot read {raw!r}; expected `name==version` lines as written by "
            f"`pip freeze` (run `!pip freeze > /kaggle/working/freeze.txt` in a Kaggle notebook)"
        )
    return versions, unversioned


def profile_from_freeze(path, name: str, python: str, platforms: list, implementation: str = "cp",
                        protected: Iterable[str] = DEFAULT_PROTECTED) -> Profile:
    """A profile from a `pip freeze` text (python version and platform tags given, since a freeze omits them)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WheelError(f"{path}: cannot read ({exc})") from None
    versions, unversioned = parse_freeze(text, str(path))
    if not versions:
        raise WheelError(f"{path}: no `name==version` lines; is this a `pip freeze` output?")
    return Profile(
        name=name, python=python, implementation=implementation, platforms=list(platforms),
        preinstalled=versions, unversioned=unversioned, protected=list(protected),
        description=f"custom profile from {path.name}", source=[str(path)],
    )

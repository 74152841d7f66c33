"""Offline wheel sets for a target Kaggle image: profiles, resolution, download, offline check.

How it resolves FOR THE TARGET (not for this interpreter)
--------------------------------------------------------
pip's `--target` mode ignores installed packages, so it cannot tell what the image already has.
Instead the kit builds a throw-away "image environment": a bare venv (``--without-pip``; pip is
linked in) whose site-packages holds one stub ``<name>-<version>.dist-info`` per package the
target image preinstalls (from the profile). Real pip then runs there as

    pip install --dry-run --report report.json --only-binary=:all:
        --python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_35_x86_64 …
        -c protected.txt  <requirements>

and does exactly what `pip install` would do on the image: an installed version that satisfies a
requirement is kept ("Requirement already satisfied"), anything missing or too old is resolved
against the index for the target's tags. The report lists precisely the wheels the image lacks;
only those are downloaded (`pip download --no-deps` with the same target options, into a cache).
``protected.txt`` pins the packages that must never be replaced (torch and its CUDA stack, numpy,
…): a requirement that needs another version of one of them is a conflict naming both sides.

`--check` re-runs the resolution with ``--no-index --find-links <out>`` in the same image
environment (no config files, no PIP_* variables, so no other wheel source can fill a hole), checks
that every wheel is used and that the dependencies of every wheel, with markers evaluated for the
TARGET Python, are met by the set or the image; where the target is this interpreter it also
installs the set into a fresh venv and imports each top-level module.

Library functions return values (:class:`BuildResult`, :class:`CheckResult`); the CLI prints.
Nothing here imports torch.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import unquote, urlparse

from kaggle_kit import __version__
from kaggle_kit.errors import KitError
from kaggle_kit.templating import read_json, write_json

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_PROFILE = "kaggle-gpu-2026"
MANIFEST_FILE = "kit-wheels-manifest.json"
LOCK_FILE = "requirements.lock"
METADATA_FILE = "dataset-metadata.json"
GENERATED_BY = f"kit build-wheels (kaggle-kit {__version__})"
# Never shipped: the image provides them (torch is gigabytes; numpy's ABI is shared by the image).
DEFAULT_PROTECTED = (
    "torch", "torchvision", "torchaudio", "torchcodec", "torchao", "triton", "numpy",
    "jax", "jaxlib", "tensorflow", "nvidia-*", "cuda-*",
)
# What the runtime pins to the training environment (when they differ from the image's).
PINNED_TO_TRAINING = ("transformers", "peft", "accelerate")


class WheelError(KitError):
    """A wheel set cannot be built or does not install offline."""


class MissingWheelError(WheelError):
    """No wheel of a requirement exists for the target's Python / platform."""


class ImageConflictError(WheelError):
    """A requirement needs a version of a package the image pins (protected)."""


class CheckError(WheelError):
    """The offline check failed."""


def canonical(name: str) -> str:
    """PEP 503 normalized name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def cache_dir() -> Path:
    """Download cache: $KIT_CACHE/wheels (default ~/.cache/kaggle-kit/wheels)."""
    root = Path(os.environ.get("KIT_CACHE", Path.home() / ".cache" / "kaggle-kit"))
    return root / "wheels"


# --------------------------------------------------------------------------- profiles


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
    return sorted(p.stem for p in PROFILES_DIR.glob("*.json"))


def load_profile(target: str | os.PathLike | None = None, python: str | None = None,
                 platforms: Iterable[str] | None = None, name: str | None = None) -> Profile:
    """A profile by name (shipped in kaggle_kit/profiles/), a profile JSON file, or a `pip freeze`
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
        prof = Profile(**data)
    else:
        base = load_profile(DEFAULT_PROFILE)
        prof = profile_from_freeze(
            path, name=name or path.stem, python=python or base.python,
            platforms=list(platforms) if platforms else base.platforms,
        )
    prof.path = str(path)
    return prof


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


def image_profile_from_lists(name: str, freeze_path, python_full: str, glibc: str,
                             kaggle_requirements=None, post_pins: dict | None = None,
                             description: str = "", source: Iterable[str] = ()) -> Profile:
    """Build an image profile from a base image's `pip freeze` plus Kaggle's requirements file, the
    way Kaggle's Dockerfile does: `uv pip install -r requirements.txt` keeps an installed version
    that satisfies a line; an exact pin sets the version; anything else gets a version we cannot
    know (recorded in ``unversioned`` and treated as absent, so the kit ships it when needed)."""
    from packaging.requirements import InvalidRequirement, Requirement

    versions, unversioned = parse_freeze(Path(freeze_path).read_text(encoding="utf-8"), str(freeze_path))
    if kaggle_requirements:
        for raw in Path(kaggle_requirements).read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith(("git+", "http", "-")):
                continue
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            key = canonical(req.name)
            pins = [s.version for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
            have = versions.get(key)
            if have is not None and (not req.specifier or req.specifier.contains(have, prereleases=True)):
                continue
            if pins:
                versions[key] = pins[0]
            else:
                versions.pop(key, None)
                unversioned[key] = f"kaggle_requirements.txt: {line}"
    for key, ver in (post_pins or {}).items():
        unversioned.pop(canonical(key), None)
        if ver:
            versions[canonical(key)] = ver
        else:
            versions.pop(canonical(key), None)
            unversioned[canonical(key)] = "reinstalled by Kaggle's Dockerfile; version unknown"
    python = ".".join(python_full.split(".")[:2])
    return Profile(
        name=name, python=python, python_full=python_full, platforms=manylinux_platforms(glibc),
        preinstalled=dict(sorted(versions.items())), unversioned=dict(sorted(unversioned.items())),
        description=description, source=list(source),
    )


# How kaggle-gpu-2026.json was made from the reference lists (see image_profile_from_reference).
KAGGLE_GPU_2026 = dict(
    name="kaggle-gpu-2026",
    freeze="colab-base-20260514/pip-freeze.gpu.txt",
    kaggle_requirements="kaggle_requirements.txt",
    python_full="3.12.13",  # colab-base-20260514/os-info-gpu.txt
    glibc="2.35",  # Ubuntu 22.04.5 LTS
    # Kaggle's Dockerfile.tmpl reinstalls these after the requirements (None = version not fixed there)
    post_pins={"protobuf": "5.29.5", "setuptools": None, "grpcio-tools": None, "pycuda": None},
    description=("Kaggle's GPU notebook image (2026): the Colab GPU base image of 2026-05-14 "
                 "(Ubuntu 22.04, glibc 2.35, Python 3.12.13, torch 2.10.0+cu128, transformers 5.0.0, peft 0.19.1, "
                 "accelerate 1.13.0; no bitsandbytes) plus Kaggle's kaggle_requirements.txt as its Dockerfile installs it. "
                 "'unversioned' packages are installed by Kaggle at a version the lists do not fix; the kit treats them as absent."),
    source=[
        "github.com/googlecolab/backend-info@0f0755b80800f62863b81348b000c97417f87bbd pip-freeze.gpu.txt + os-info-gpu.txt (2026-05-14)",
        "github.com/Kaggle/docker-python@78aaa43f8cc8e6b01bbaa5a56c39b4a2f61a8277 kaggle_requirements.txt + Dockerfile.tmpl (protobuf==5.29.5 reinstall)",
    ],
)


def image_profile_from_reference(reference_dir, recipe: dict = KAGGLE_GPU_2026) -> Profile:
    """Rebuild a shipped image profile from the reference lists in ``reference_dir``
    (../shared/reference/kaggle-image/): ``save_profile(image_profile_from_reference(d), path)``."""
    ref = Path(reference_dir)
    return image_profile_from_lists(
        recipe["name"], ref / recipe["freeze"], python_full=recipe["python_full"], glibc=recipe["glibc"],
        kaggle_requirements=ref / recipe["kaggle_requirements"], post_pins=recipe["post_pins"],
        description=recipe["description"], source=recipe["source"],
    )


def save_profile(profile: Profile, path) -> Path:
    data = {"generated_by": GENERATED_BY.replace("build-wheels", "profile generator"), **profile.to_dict()}
    Path(path).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return Path(path)


# --------------------------------------------------------------------------- requirement set


@dataclass
class Want:
    """One requirement of the set: a PEP 508 string and why it is wanted."""

    name: str
    requirement: str
    reason: str


@dataclass
class Skip:
    name: str
    reason: str


def local_versions() -> dict:
    """Versions of the pinned libraries in this environment (the training environment)."""
    from importlib import metadata

    out = {}
    for name in (*PINNED_TO_TRAINING, "bitsandbytes"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def requirement_set(profile: Profile, cfg=None, adapter=None, extras: Iterable[str] = (),
                    versions: dict | None = None, runtime: bool = True) -> tuple[list[Want], list[Skip]]:
    """What the notebook's runtime needs on ``profile``'s image, and what the image already covers.

    * bitsandbytes: wanted, unless an adapter is given whose manifest says the model is not
      quantized and kit.toml sets no inference-time quantization (inference.quantization).
    * transformers / peft / accelerate (and bitsandbytes' version): pinned to the training
      environment (the adapter's kit_manifest.json `versions`, else this environment) wherever that
      differs from the image's version.
    * extras: kit.toml [wheels] extra, then ``extras``.
    """
    wants: list[Want] = []
    skips: list[Skip] = []
    if not runtime:
        return _add_extras(profile, cfg, extras, wants), [Skip("runtime", "runtime libraries left out (extras only)")]
    origin = "this environment"
    quant = None
    if adapter is not None:
        from kaggle_kit.runtime.manifest import Manifest

        try:
            manifest = Manifest.load(adapter)
        except (FileNotFoundError, ValueError) as exc:
            raise WheelError(str(exc)) from None
        origin = f"adapter manifest {Path(adapter).name}/kit_manifest.json"
        versions = {**(versions or {}), **{k: v for k, v in (manifest.versions or {}).items() if k != "python"}}
        quant = (manifest.quantization or {}).get("mode", "none")
        trained_py = (manifest.versions or {}).get("python")
        if trained_py and ".".join(str(trained_py).split(".")[:2]) != profile.python:
            skips.append(Skip("python", f"trained on Python {trained_py}; the target runs {profile.python} (wheels are for the target)"))
    if versions is None:
        versions = local_versions()
    elif adapter is None:
        origin = "given versions"
    override = getattr(getattr(cfg, "inference", None), "quantization", "") if cfg is not None else ""
    configured = getattr(getattr(cfg, "quantization", None), "mode", None) if cfg is not None else None

    # Without an adapter the notebook may load any model quantized: ship bitsandbytes.
    needs_bnb = quant is None or quant in ("4bit", "8bit") or override in ("4bit", "8bit")
    if needs_bnb:
        if quant in ("4bit", "8bit"):
            why = f"quantized model ({quant}, adapter manifest)"
        elif override in ("4bit", "8bit"):
            why = f"inference.quantization = {override}"
        elif configured in ("4bit", "8bit"):
            why = f"quantized model (quantization.mode = {configured})"
        else:
            why = "4-bit/8-bit loading in the runtime (no adapter given)"
        _want_pinned("bitsandbytes", versions.get("bitsandbytes"), profile, why, origin, wants, skips)
    else:
        skips.append(Skip("bitsandbytes", f"not quantized ({origin}: quantization {quant!r})"))
    for name in PINNED_TO_TRAINING:
        _want_pinned(name, versions.get(name), profile, "runtime library", origin, wants, skips, only_if_versioned=True)

    wants = _add_extras(profile, cfg, extras, wants)
    named = {w.name for w in wants}
    return wants, [s for s in skips if s.name not in named]


def _add_extras(profile, cfg, extras, wants):
    from packaging.requirements import InvalidRequirement, Requirement

    extra_list = [(e, "extra from kit.toml [wheels] extra") for e in (getattr(getattr(cfg, "wheels", None), "extra", []) or [])]
    extra_list += [(e, "--extra") for e in extras]
    for spec, why in extra_list:
        try:
            req = Requirement(spec)
        except InvalidRequirement as exc:
            raise WheelError(f"{why} {spec!r} is not a valid requirement ({exc}); write e.g. 'sentencepiece==0.2.0'") from None
        key = canonical(req.name)
        if profile.is_protected(key):
            have = profile.preinstalled.get(key, "?")
            raise ImageConflictError(
                f"{why} {spec!r}: {key} is provided by the image ({profile.name}: {key}=={have}) and never "
                f"shipped; drop it, or make a custom profile (--target freeze.txt) if your image differs"
            )
        wants = [w for w in wants if w.name != key]
        wants.append(Want(key, spec, why))
    return wants


def _want_pinned(name, version, profile, why, origin, wants, skips, only_if_versioned=False):
    have = profile.preinstalled.get(name)
    if version:
        version = str(version)
        if have is not None and _same_version(have, version):
            skips.append(Skip(name, f"image has {name} {have} = training env ({origin})"))
            return
        image = f"image has {have}" if have else "not in the image"
        wants.append(Want(name, f"{name}=={version}", f"{why}; training env {version} ({origin}); {image}"))
    elif only_if_versioned:
        skips.append(Skip(name, f"not installed in the training env ({origin}); the image's {have or 'none'} is used"))
    elif have is not None:
        skips.append(Skip(name, f"image has {name} {have}"))
    else:
        wants.append(Want(name, name, f"{why}; not in the image"))


def _same_version(a: str, b: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(a) == Version(b) or Version(a).public == Version(b).public
    except InvalidVersion:
        return a == b


# --------------------------------------------------------------------------- the image environment


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


# --------------------------------------------------------------------------- resolution


@dataclass
class Resolved:
    name: str
    version: str
    url: str
    sha256: str
    requested: bool
    requires: list  # Requires-Dist strings
    file: str = ""

    def __post_init__(self):
        if not self.file:
            self.file = unquote(urlparse(self.url).path.rsplit("/", 1)[-1])


def resolve(profile: Profile, wants: list[Want], workdir: Path, find_links: Path | None = None,
            env: ImageEnv | None = None, strict: bool = False) -> list[Resolved]:
    """Resolve ``wants`` on the target image; returns what pip would install there (the image's
    satisfying packages are left out). ``find_links`` = offline resolution against that folder."""
    if not wants:
        return []
    env = env or ImageEnv(profile, workdir).create()
    report = Path(workdir) / ("report-offline.json" if find_links else "report.json")
    args = ["install", "--dry-run", "--report", str(report), *profile.target_options(),
            "-c", str(env.constraints(strict, exclude=[w.name for w in wants]))]
    if find_links is not None:
        args += ["--no-index", "--find-links", str(find_links)]
    args += [w.requirement for w in wants]
    proc = env.pip(args, isolated=find_links is not None)
    if proc.returncode != 0:
        raise _resolution_error(proc, profile, wants, env, offline=find_links)
    data = json.loads(report.read_text(encoding="utf-8"))
    out = []
    for item in data.get("install", []):
        meta = item["metadata"]
        info = item.get("download_info", {})
        hashes = info.get("archive_info", {}).get("hashes", {})
        sha = hashes.get("sha256", "")
        if not sha and info.get("archive_info", {}).get("hash", "").startswith("sha256="):
            sha = info["archive_info"]["hash"].split("=", 1)[1]
        out.append(Resolved(canonical(meta["name"]), meta["version"], info.get("url", ""), sha,
                            bool(item.get("requested")), list(meta.get("requires_dist", []) or [])))
    shipped_protected = [r for r in out if profile.is_protected(r.name)]
    if shipped_protected:
        r = shipped_protected[0]
        who = _who_requires(r.name, out, profile) or "the requirements"
        raise ImageConflictError(
            f"{who} would pull {r.name} {r.version}, but {r.name} is provided by the image and never shipped "
            f"(profile {profile.name}: {r.name} {profile.preinstalled.get(r.name, 'version unknown')}). "
            f"Pin an older release of the package that needs it, or use a profile that records {r.name}'s version"
        )
    return out


_NOT_FOUND = re.compile(r"Could not find a version that satisfies the requirement (\S+)(?: \(from versions: ([^)]*)\))?")
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")


def _resolution_error(proc, profile: Profile, wants, env: ImageEnv, offline=None) -> WheelError:
    from packaging.requirements import InvalidRequirement, Requirement

    text = (proc.stderr or "") + "\n" + (proc.stdout or "")
    tail = "\n".join(line for line in text.strip().splitlines()[-25:] if "is ignored: it is neither" not in line)
    if "conflict is caused by" in text or "ResolutionImpossible" in text:
        lines = [line.strip() for line in text.splitlines()]
        start = next((i for i, line in enumerate(lines) if "conflict is caused by" in line), None)
        cause = []
        if start is not None:
            for line in lines[start + 1:]:
                if not line:
                    break
                cause.append(line)
        image_side = [c for c in cause if "(constraint)" in c and not any(
            re.search(rf"\(constraint\)\s+{re.escape(w.name)}\b", canonical(c)) for w in wants)]
        other = [c for c in cause if "(constraint)" not in c]
        if image_side:
            pins = "; ".join(c.replace("The user requested (constraint)", "the image pins") for c in image_side)
            return ImageConflictError(
                f"conflict with a package the image pins ({profile.name}): {pins} — but {'; '.join(other) or 'a requirement needs another version'}. "
                f"The image's version is not replaced (protected: {', '.join(profile.protected)}; with --strict-image: "
                f"every preinstalled package). Fix: pin an older "
                f"release of the package that needs it (--extra 'name<version'), or train with versions the image supports"
            )
        return WheelError("requirements conflict for target " f"{profile.name}:\n  " + "\n  ".join(cause or [tail]))
    m = _NOT_FOUND.search(text) or _NO_MATCH.search(text)
    if m:
        spec = m.group(1)
        try:
            name = canonical(Requirement(spec).name)
        except InvalidRequirement:
            name = canonical(re.split(r"[<>=!~\[ ;]", spec)[0])
        with_wheels = m.group(2) if m.re is _NOT_FOUND and m.group(2) is not None else None
        if offline is not None:
            return CheckError(
                f"offline check failed: no wheel for {spec} in {offline} (tags tried: {profile.tags_text()}); "
                f"wheels there: {', '.join(sorted(p.name for p in Path(offline).glob('*.whl'))) or 'none'}. "
                f"Rebuild the set with `kit build-wheels` (a wheel is missing or was deleted)"
            )
        all_versions = _index_versions(name, env)
        tagged = _index_versions(name, env, profile.target_options())
        shown = _tail_list(with_wheels) if with_wheels and with_wheels != "none" else "none"
        why = ""
        try:
            pinned = [s.version for s in Requirement(spec).specifier if s.operator == "=="]
        except InvalidRequirement:
            pinned = []
        listed = [v.strip() for v in (with_wheels or "").split(",")]
        if pinned and pinned[0] in [v.strip() for v in tagged.split(",")] and pinned[0] not in listed:
            why = (f" {name} {pinned[0]} HAS a wheel for these tags but its Requires-Python excludes "
                   f"Python {profile.python}.")
        elif pinned and all_versions and pinned[0] not in [v.strip() for v in all_versions.split(",")]:
            why = f" {name} {pinned[0]} is not on the index at all."
        elif pinned and all_versions:
            why = f" {name} {pinned[0]} is on the index, but only as a source distribution or for other platforms."
        return MissingWheelError(
            f"no wheel of {spec} for target {profile.name}: tags tried: {profile.tags_text()}.{why} "
            f"Versions of {name} WITH a wheel for this target: {shown}. "
            f"Versions on the index (any Python, any file): {_tail_list(all_versions) if all_versions else 'unknown'}. "
            f"Fix: pin a version that has a wheel (e.g. --extra '{name}=={_last(with_wheels) or 'VERSION'}'), "
            f"or choose a profile/Python that the package ships wheels for"
        )
    return WheelError(f"pip could not resolve the wheel set for {profile.name} (exit {proc.returncode}):\n{tail}")


def _tail_list(text: str, n: int = 12) -> str:
    items = [v.strip() for v in str(text).split(",") if v.strip()]
    if len(items) > n:
        return f"… {', '.join(items[-n:])} ({len(items)} in all)"
    return ", ".join(items)


def _last(text) -> str:
    if not text or text == "none":
        return ""
    return [v.strip() for v in text.split(",") if v.strip()][-1]


def _index_versions(name: str, env: ImageEnv, options: Iterable[str] = ()) -> str:
    """Versions the index has of ``name`` (any Python; with ``options``: only files for those tags),
    oldest first, from `pip index versions --ignore-requires-python`."""
    try:
        proc = env.pip(["index", "versions", name, "--ignore-requires-python", *options], timeout=120)
    except subprocess.TimeoutExpired:
        return ""
    m = re.search(r"Available versions:\s*(.*)", proc.stdout or "")
    if not m:
        return ""
    return ", ".join(reversed([v.strip() for v in m.group(1).split(",") if v.strip()]))


def _who_requires(name: str, items: list[Resolved], profile: Profile) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    env = profile.marker_environment()
    who = []
    for it in items:
        for rd in it.requires:
            try:
                req = Requirement(rd)
            except InvalidRequirement:
                continue
            if canonical(req.name) != name:
                continue
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            who.append(f"{it.name} {it.version} ({req.name}{req.specifier or ''})")
    return ", ".join(who)


# --------------------------------------------------------------------------- build


@dataclass
class Wheel:
    file: str
    name: str
    version: str
    sha256: str
    size: int
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CheckResult:
    ok: bool
    resolved: list  # names pip resolved offline
    installed: bool = False  # a real install into a fresh venv ran
    imported: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    interpreter: str = ""  # the Python the real install ran with


@dataclass
class BuildResult:
    profile: Profile
    out: Path
    wheels: list  # [Wheel]
    skipped: list  # [Skip]
    wants: list  # [Want]
    dry_run: bool = False
    lock: Optional[Path] = None
    manifest: Optional[Path] = None
    metadata: Optional[Path] = None
    metadata_error: str = ""
    removed: list = field(default_factory=list)
    check: Optional[CheckResult] = None

    @property
    def upgrades(self) -> list:
        """(name, image version, shipped version) for wheels that replace a preinstalled package."""
        pre = self.profile.preinstalled
        return [(w.name, pre[w.name], w.version) for w in self.wheels if w.name in pre]

    @property
    def total_size(self) -> int:
        return sum(w.size or 0 for w in self.wheels)

    def to_dict(self) -> dict:
        return {
            "target": self.profile.name, "python": self.profile.python, "out": str(self.out),
            "dry_run": self.dry_run, "total_size": self.total_size,
            "wheels": [w.to_dict() for w in self.wheels],
            "skipped": [asdict(s) for s in self.skipped],
            "lock": str(self.lock) if self.lock else None, "manifest": str(self.manifest) if self.manifest else None,
            "metadata": str(self.metadata) if self.metadata else None, "metadata_error": self.metadata_error,
            "removed": self.removed, "upgrades": [list(u) for u in self.upgrades], "check": asdict(self.check) if self.check else None,
        }


def _reasons(items: list[Resolved], wants: list[Want], profile: Profile) -> dict:
    from packaging.requirements import InvalidRequirement, Requirement

    by_name = {w.name: w.reason for w in wants}
    reasons = {}
    env = profile.marker_environment()
    for it in items:
        if it.name in by_name:
            reasons[it.name] = by_name[it.name]
            continue
        parents = []
        for other in items:
            for rd in other.requires:
                try:
                    req = Requirement(rd)
                except InvalidRequirement:
                    continue
                if canonical(req.name) == it.name and (req.marker is None or req.marker.evaluate(env)):
                    parents.append(f"{other.name} ({req.specifier or 'any'})")
        have = profile.preinstalled.get(it.name)
        image = f"image has {have}" if have else "not in the image"
        reasons[it.name] = f"needed by {', '.join(parents) or 'the resolution'}; {image}"
    return reasons


def build_wheels(cfg=None, target=None, out=None, adapter=None, extras: Iterable[str] = (), check: bool = False,
                 dry_run: bool = False, python: str | None = None, platforms: Iterable[str] | None = None,
                 progress: bool = True, versions: dict | None = None, runtime: bool = True,
                 strict: bool = False) -> BuildResult:
    """Resolve, download and describe the wheel set for a target image; optionally ``check`` it.

    ``cfg``: a KitConfig (or None for defaults); ``target``: profile name/JSON/freeze path (default
    cfg.wheels.target); ``out``: folder (default cfg.wheels.out); ``adapter``: a run folder whose
    kit_manifest.json gives the training versions; ``versions``: override the training versions
    (tests). With ``dry_run`` nothing is downloaded or written. ``runtime=False``: only the extras.
    ``strict``: never replace a preinstalled package (a requirement that needs another version of
    one is a conflict naming both sides); by default only protected packages (torch, …) are fixed.
    """
    if cfg is None:
        from kaggle_kit.config import KitConfig

        cfg = KitConfig()
    if isinstance(target, Profile):
        profile = target
    else:
        profile = load_profile(target or cfg.wheels.target, python=python, platforms=platforms)
    out = Path(out or cfg.wheels.out)
    wants, skips = requirement_set(profile, cfg, adapter=adapter, extras=extras, versions=versions, runtime=runtime)
    with tempfile.TemporaryDirectory(prefix="kit-wheels-") as tmp:
        env = ImageEnv(profile, Path(tmp)).create()
        items = resolve(profile, wants, Path(tmp), env=env, strict=strict)
        for w in wants:
            if w.name not in {i.name for i in items}:
                have = profile.preinstalled.get(w.name)
                skips.append(Skip(w.name, f"image already satisfies {w.requirement}" + (f" ({have})" if have else "")))
        reasons = _reasons(items, wants, profile)
        if dry_run:
            wheels = [Wheel(i.file, i.name, i.version, i.sha256, _cached_size(i), reasons[i.name]) for i in items]
            return BuildResult(profile, out, wheels, skips, wants, dry_run=True)
        files = download(items, profile, env, progress=progress)
        out.mkdir(parents=True, exist_ok=True)
        wheels = []
        for it in items:
            src = files[it.name]
            dst = out / src.name
            if not dst.exists() or _sha256(dst) != it.sha256:
                _place(src, dst)
            wheels.append(Wheel(dst.name, it.name, it.version, it.sha256, dst.stat().st_size, reasons[it.name]))
        keep = {w.file for w in wheels}
        removed = []
        for stale in sorted(out.glob("*.whl")):
            if stale.name not in keep:
                stale.unlink()
                removed.append(stale.name)
    result = BuildResult(profile, out, sorted(wheels, key=lambda w: w.name), skips, wants, removed=removed)
    result.lock = write_lock(result)
    result.manifest = write_manifest(result)
    try:
        from kaggle_kit.publish.metadata import dataset_metadata

        desc = (f"Offline wheels for a kaggle-kit inference notebook: {len(wheels)} wheels for {profile.name} "
                f"(Python {profile.python}). Generated by `kit build-wheels`; install with "
                f"pip install --no-index --find-links <this folder> -r requirements.lock")
        result.metadata = write_json(out / METADATA_FILE, dataset_metadata(cfg, description=desc))
    except KitError as exc:
        stale = out / METADATA_FILE
        result.metadata_error = f"{METADATA_FILE} not written: {exc}" + (
            f" (the older {stale} is left as it was)" if stale.exists() else "")
    if check:
        result.check = check_wheels(out, profile)
    return result


def _cached_size(item: Resolved) -> int:
    path = cache_dir() / item.file
    return path.stat().st_size if path.exists() else 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _place(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.part")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def download(items: list[Resolved], profile: Profile, env: ImageEnv, progress: bool = True) -> dict:
    """Download each resolved wheel (pip download --no-deps, target options) into the cache;
    reuse cached files whose sha256 matches. Returns {name: path}."""
    from kaggle_kit.runtime.progress import Progress

    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    files = {}
    todo = []
    for it in items:
        path = cache / it.file
        if path.exists() and (not it.sha256 or _sha256(path) == it.sha256):
            files[it.name] = path
        else:
            todo.append(it)
    if not todo:
        return files
    # a bar on a terminal, a line every few seconds in CI and notebooks (runtime/progress.py)
    bar = Progress(len(todo), "downloading wheels", "wheel", enabled=progress, interval=5.0)
    with tempfile.TemporaryDirectory(prefix="dl-", dir=cache) as tmp:
        # One pip process for all wheels (no deps: the set is already resolved); the bar moves as
        # pip starts on each package.
        args = [env.python, "-m", "pip", "download", "--no-deps", "--progress-bar", "off", *profile.target_options(),
                "-d", tmp, *[f"{it.name}=={it.version}" for it in todo]]
        penv = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=penv)
        log = []
        started = 0
        for line in proc.stdout:
            log.append(line)
            if line.startswith(("Collecting ", "Processing ", "File was already downloaded")) and started < len(todo):
                if started:
                    bar.update(1)
                started += 1
                bar.set_postfix_str(line.split()[1] if line.startswith(("Collecting", "Processing")) else "")
        rc = proc.wait()
        bar.update(len(todo) - bar.done)
        bar.close()
        if rc != 0:
            raise WheelError(f"pip download failed (exit {rc}):\n{''.join(log)[-2000:]}")
        got = {p.name: p for p in Path(tmp).glob("*.whl")}
        for it in todo:
            wheel = got.get(it.file) or next((p for n, p in got.items()
                                              if canonical(n.split("-")[0]) == it.name and n.split("-")[1] == it.version), None)
            if wheel is None:
                raise WheelError(f"pip download did not produce {it.file}:\n{''.join(log)[-2000:]}")
            digest = _sha256(wheel)
            if it.sha256 and digest != it.sha256:
                raise WheelError(
                    f"{wheel.name}: sha256 {digest} does not match the resolved {it.sha256}; the index served "
                    f"another file than it resolved. Clear {cache} and retry"
                )
            it.sha256 = it.sha256 or digest
            it.file = wheel.name
            dest = cache / wheel.name
            os.replace(wheel, dest)
            files[it.name] = dest
    return files


def write_lock(result: BuildResult) -> Path:
    p = result.profile
    lines = [
        f"# {LOCK_FILE}: GENERATED by {GENERATED_BY} for target {p.name} "
        f"(Python {p.python}, {p.python_tag}/{p.abi}, {p.platforms[0]}…). Do not edit; re-run `kit build-wheels`.",
        "# The image provides everything else (never torch). Install offline with:",
        f"#   pip install --no-index --find-links <this folder> --require-hashes -r {LOCK_FILE}",
    ]
    for w in result.wheels:
        lines.append(f"{w.name}=={w.version} --hash=sha256:{w.sha256}")
    path = result.out / LOCK_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def manifest_dict(result: BuildResult) -> dict:
    return {
        "generated_by": GENERATED_BY,
        "target": result.profile.name,
        "python": result.profile.python,
        "platforms": list(result.profile.platforms),
        "wheels": [w.to_dict() for w in result.wheels],
    }


def write_manifest(result: BuildResult) -> Path:
    path = result.out / MANIFEST_FILE
    write_json(path, manifest_dict(result))
    return path


def read_manifest(out) -> dict:
    path = Path(out) / MANIFEST_FILE
    if not path.exists():
        raise CheckError(f"{path}: no wheel manifest; build the set first with `kit build-wheels --out {out}`")
    data = read_json(path, CheckError, "rebuild with `kit build-wheels`")
    for key in ("target", "python", "platforms", "wheels"):
        if key not in data:
            raise CheckError(f"{path}: missing key {key!r}; rebuild with `kit build-wheels`")
    return data


# --------------------------------------------------------------------------- check


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
    notes = []
    missing = [w["file"] for w in data["wheels"] if not (out / w["file"]).is_file()]
    if missing:
        raise CheckError(f"{out}: wheel(s) listed in {MANIFEST_FILE} are missing: {', '.join(missing)}; rebuild with `kit build-wheels`")
    for w in data["wheels"]:
        digest = _sha256(out / w["file"])
        if w.get("sha256") and digest != w["sha256"]:
            raise CheckError(f"{out / w['file']}: sha256 {digest} differs from the manifest's {w['sha256']}; rebuild")
    wants = [Want(canonical(w["name"]), f"{canonical(w['name'])}=={w['version']}", "manifest") for w in data["wheels"]]
    with tempfile.TemporaryDirectory(prefix="kit-wheels-check-") as tmp:
        env = ImageEnv(profile, Path(tmp)).create()
        try:
            items = resolve(profile, wants, Path(tmp), find_links=out.resolve(), env=env) if wants else []
        except CheckError:
            raise
        except WheelError as exc:
            raise CheckError(f"offline check failed for {profile.name} (--no-index --find-links {out}): {exc}") from None
        got = {i.name for i in items}
        unused = [w.name for w in wants if w.name not in got]
        if unused:
            notes.append(f"not needed on the image (already satisfied): {', '.join(unused)}")
        _check_closure(out, data, profile)
        result = CheckResult(ok=True, resolved=sorted(got), notes=notes)
        if real_install is None:
            real_install = profile.matches_local()
        if real_install and wants:
            result.installed, result.imported, _ = _install_and_import(out, data, Path(tmp))
            result.interpreter = sys.executable
        elif not real_install:
            other = _target_interpreter(profile)
            if other and wants:
                # No stand-in for the image here: modules that need image packages (torch, numpy, …)
                # are reported, binary wheels still prove they load on the target's Python.
                result.installed, result.imported, deferred = _install_and_import(out, data, Path(tmp), python=other, standin=False)
                result.interpreter = other
                if deferred:
                    result.notes.append("not importable without the image's packages (not on this machine): " + "; ".join(deferred))
            else:
                result.notes.append(
                    f"real install skipped: target is Python {profile.python} / {profile.platforms[0]}, this interpreter is "
                    f"{sys.version_info.major}.{sys.version_info.minor} / {sysconfig.get_platform()} and no Python "
                    f"{profile.python} was found"
                )
    return result


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
    return True, imported, deferred


def format_size(n: int) -> str:
    if not n:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"

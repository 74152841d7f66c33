"""Regenerating a shipped image profile from reference lists: a base image's `pip freeze` plus
Kaggle's requirements file, applied the way Kaggle's Dockerfile applies them (a maintainer's tool;
`kit build-wheels` only reads the JSON it writes)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from kaggle_kit.wheels.dataset import GENERATED_BY
from kaggle_kit.wheels.target import Profile, canonical, manylinux_platforms, parse_freeze


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
    """Write ``profile`` as a profile JSON (what ``profiles/`` ships), marked as generated."""
    data = {"generated_by": GENERATED_BY.replace("build-wheels", "profile generator"), **profile.to_dict()}
    Path(path).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return Path(path)

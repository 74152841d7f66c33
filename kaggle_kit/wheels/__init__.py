"""Offline wheel sets for a target Kaggle image: profiles, resolution, download, offline check.

The kit resolves FOR THE TARGET (not for this interpreter): real pip runs in a throw-away "image
environment" that holds stubs of the packages the target image preinstalls, with the target's
Python / ABI / platform options, so it ships exactly the wheels the image lacks (never torch).

    errors.py        WheelError and its kinds (missing wheel, conflict with the image, failed check)
    target.py        the target as a Profile: Python, ABI, platform tags, what it preinstalls
                     (read from profiles/*.json, a profile JSON or a pip freeze)
    reference.py     regenerating a shipped profile from the reference lists of the image
    requirements.py  what the notebook's runtime needs on the target, and what the image covers
    image_env.py     the image environment pip runs in; the target's interpreter; the pip version check
    resolve.py       `pip install --dry-run --report` for the target; failures that name the fix
    download.py      the download cache ($KIT_CACHE/wheels)
    dataset.py       the set's folder as files: requirements.lock, kit-wheels-manifest.json, hashes
    check.py         the offline check (`--check`): --no-index resolution, dependency closure, real install
    build.py         `kit build-wheels`: the steps above in order, into a BuildResult

Library functions return values (:class:`~kaggle_kit.wheels.build.BuildResult`,
:class:`~kaggle_kit.wheels.check.CheckResult`); the CLI prints. Nothing here imports torch.
"""
from kaggle_kit.wheels.build import build_wheels
from kaggle_kit.wheels.target import list_profiles, load_profile

__all__ = ["build_wheels", "list_profiles", "load_profile"]

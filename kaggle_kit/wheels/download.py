"""The download cache: each resolved wheel fetched once for the target (`pip download --no-deps` with
the target's options), checked against the sha256 the resolution reported, kept in
$KIT_CACHE/wheels for the next build."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from kaggle_kit.wheels.dataset import file_sha256
from kaggle_kit.wheels.errors import WheelError
from kaggle_kit.wheels.image_env import ImageEnv
from kaggle_kit.wheels.resolve import Resolved
from kaggle_kit.wheels.target import Profile, canonical


def cache_dir() -> Path:
    """Download cache: $KIT_CACHE/wheels (default ~/.cache/kaggle-kit/wheels)."""
    root = Path(os.environ.get("KIT_CACHE", Path.home() / ".cache" / "kaggle-kit"))
    return root / "wheels"


def cached_size(item: Resolved) -> int:
    """Size of ``item``'s wheel in the cache; 0 when it is not downloaded yet."""
    path = cache_dir() / item.file
    return path.stat().st_size if path.exists() else 0


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
        if path.exists() and (not it.sha256 or file_sha256(path) == it.sha256):
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
            digest = file_sha256(wheel)
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

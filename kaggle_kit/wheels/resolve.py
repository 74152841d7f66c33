"""Resolution FOR THE TARGET (not for this interpreter): what pip would install on the image.

Real pip runs in the image environment (image_env.py) as

    pip install --dry-run --report report.json --only-binary=:all:
        --python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_35_x86_64 …
        -c protected.txt  <requirements>

and does exactly what `pip install` would do on the image: an installed version that satisfies a
requirement is kept ("Requirement already satisfied"), anything missing or too old is resolved
against the index for the target's tags. The report lists precisely the wheels the image lacks.
``protected.txt`` pins the packages that must never be replaced (torch and its CUDA stack, numpy,
…): a requirement that needs another version of one of them is a conflict naming both sides.
A failed resolution becomes an error that says which side to change.
"""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlparse

from kaggle_kit.wheels.errors import CheckError, ImageConflictError, MissingWheelError, WheelError
from kaggle_kit.wheels.image_env import ImageEnv
from kaggle_kit.wheels.requirements import Want
from kaggle_kit.wheels.target import Profile, canonical


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
    """The error for a failed `pip install --dry-run`: a conflict (with a pin of the image, or among
    the requirements), a requirement without a wheel for the target, or else pip's own last lines."""
    text = (proc.stderr or "") + "\n" + (proc.stdout or "")
    tail = "\n".join(line for line in text.strip().splitlines()[-25:] if "is ignored: it is neither" not in line)
    if "conflict is caused by" in text or "ResolutionImpossible" in text:
        return _conflict_error(text, tail, profile, wants)
    m = _NOT_FOUND.search(text) or _NO_MATCH.search(text)
    if m:
        return _no_wheel_error(m, profile, env, offline)
    return WheelError(f"pip could not resolve the wheel set for {profile.name} (exit {proc.returncode}):\n{tail}")


def _conflict_error(text: str, tail: str, profile: Profile, wants) -> WheelError:
    """pip's "conflict is caused by" lines: an ImageConflictError naming both sides when one side is
    a pin of the image (a constraint that is not one of the requirements), else a plain conflict."""
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


def _no_wheel_error(m: re.Match, profile: Profile, env: ImageEnv, offline=None) -> WheelError:
    """No wheel of a requirement: offline, a CheckError naming the hole in the folder; online, a
    MissingWheelError saying why (Requires-Python, not on the index, sdist only) and which versions
    DO have a wheel for the target (asked of the index with `pip index versions`)."""
    from packaging.requirements import InvalidRequirement, Requirement

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


def reasons(items: list[Resolved], wants: list[Want], profile: Profile) -> dict:
    """{name: why it is shipped} for each resolved wheel: the requirement's reason, or which resolved
    packages need it (markers for the target) and what the image has of it."""
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

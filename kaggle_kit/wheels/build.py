"""`kit build-wheels`: resolve the runtime's requirement set for a target image, download what the
image lacks, and lay out the wheel dataset folder (wheels, requirements.lock,
kit-wheels-manifest.json, dataset-metadata.json); optionally check it offline."""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from kaggle_kit.errors import KitError
from kaggle_kit.templating import write_json
from kaggle_kit.wheels.check import CheckResult, check_wheels
from kaggle_kit.wheels.dataset import METADATA_FILE, Wheel, file_sha256, place, write_lock, write_manifest
from kaggle_kit.wheels.download import cached_size, download
from kaggle_kit.wheels.image_env import ImageEnv
from kaggle_kit.wheels.requirements import Skip, Want, requirement_set
from kaggle_kit.wheels.resolve import Resolved, reasons, resolve
from kaggle_kit.wheels.target import Profile, load_profile


@dataclass
class BuildResult:
    """What `kit build-wheels` resolved, shipped, left out and wrote (the CLI prints it)."""

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
        skips += _satisfied_by_image(wants, items, profile)
        why = reasons(items, wants, profile)
        if dry_run:
            wheels = [Wheel(i.file, i.name, i.version, i.sha256, cached_size(i), why[i.name]) for i in items]
            return BuildResult(profile, out, wheels, skips, wants, dry_run=True)
        wheels, removed = _fill_folder(items, why, profile, env, out, progress)
    result = BuildResult(profile, out, sorted(wheels, key=lambda w: w.name), skips, wants, removed=removed)
    result.lock = write_lock(result)
    result.manifest = write_manifest(result)
    result.metadata, result.metadata_error = _write_dataset_metadata(cfg, profile, out, len(wheels))
    if check:
        result.check = check_wheels(out, profile)
    return result


def _satisfied_by_image(wants: list[Want], items: list[Resolved], profile: Profile) -> list[Skip]:
    """The requirements pip did not resolve: the image already satisfies them."""
    skips = []
    for w in wants:
        if w.name not in {i.name for i in items}:
            have = profile.preinstalled.get(w.name)
            skips.append(Skip(w.name, f"image already satisfies {w.requirement}" + (f" ({have})" if have else "")))
    return skips


def _fill_folder(items: list[Resolved], why: dict, profile: Profile, env: ImageEnv, out: Path,
                 progress: bool) -> tuple[list, list]:
    """Download the resolved wheels (cached), place them in ``out`` and delete the wheels of an older
    set there; returns ([Wheel], names of the removed files)."""
    files = download(items, profile, env, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    wheels = []
    for it in items:
        src = files[it.name]
        dst = out / src.name
        if not dst.exists() or file_sha256(dst) != it.sha256:
            place(src, dst)
        wheels.append(Wheel(dst.name, it.name, it.version, it.sha256, dst.stat().st_size, why[it.name]))
    keep = {w.file for w in wheels}
    removed = []
    for stale in sorted(out.glob("*.whl")):
        if stale.name not in keep:
            stale.unlink()
            removed.append(stale.name)
    return wheels, removed


def _write_dataset_metadata(cfg, profile: Profile, out: Path, count: int) -> tuple[Optional[Path], str]:
    """dataset-metadata.json from kit.toml; (None, why) when it cannot be written (no Kaggle user
    name, …): the wheel set is still usable, and an older file is left as it was."""
    try:
        from kaggle_kit.publish.metadata import dataset_metadata

        desc = (f"Offline wheels for a kaggle-kit inference notebook: {count} wheels for {profile.name} "
                f"(Python {profile.python}). Generated by `kit build-wheels`; install with "
                f"pip install --no-index --find-links <this folder> -r requirements.lock")
        return write_json(out / METADATA_FILE, dataset_metadata(cfg, description=desc)), ""
    except KitError as exc:
        stale = out / METADATA_FILE
        return None, f"{METADATA_FILE} not written: {exc}" + (
            f" (the older {stale} is left as it was)" if stale.exists() else "")

"""What the notebook's runtime needs on the target image: the requirement set (bitsandbytes;
transformers / peft / accelerate pinned to the training environment; extras) and what the image
already covers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from kaggle_kit.wheels.errors import ImageConflictError, WheelError
from kaggle_kit.wheels.target import Profile, canonical

# What the runtime pins to the training environment (when they differ from the image's).
PINNED_TO_TRAINING = ("transformers", "peft", "accelerate")


@dataclass
class Want:
    """One requirement of the set: a PEP 508 string and why it is wanted."""

    name: str
    requirement: str
    reason: str


@dataclass
class Skip:
    """A library left out of the set, and why (the image has it, not quantized, …)."""

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

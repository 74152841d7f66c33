"""Checks of Kaggle metadata and upload folders, run before any network call.

Covers the kaggle client's own local checks (kaggle 2.2.4, `kaggle_api_extended.py`: language and
kernel type, title lengths, 5-part model sources with an integer version, one licence, slug
syntax, booleans) and stricter ones it lacks: slug syntax everywhere, id == slug of the title,
frameworks from Kaggle's enum, licence names Kaggle knows, internet off for competition kernels,
an accelerator when a GPU is asked for, and local sources that exist.

Every function returns a list of problems (strings naming the file/field, the value and the fix);
nothing raises, so that `kit validate` can show all of them at once.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
from pathlib import Path
from typing import Iterable, Optional

from kaggle_kit import metadata as md
from kaggle_kit.errors import KitError

# --------------------------------------------------------------------------- credentials

CREDENTIAL_NAMES = (
    "kaggle.json", "access_token", "access_token.txt", ".env", ".env.*", "*.env", ".netrc", "_netrc",
    ".git-credentials", "credentials", "credentials.json", "id_rsa", "id_rsa.*", "id_dsa", "id_dsa.*",
    "id_ecdsa", "id_ecdsa.*", "id_ed25519", "id_ed25519.*", "*.pem", "*.key", "*.p12", "*.pfx", ".pypirc",
    "token", "hf_token", ".huggingface_token",
)
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_TOKEN_PATTERNS = (
    re.compile(rb"\bhf_[A-Za-z0-9]{30,}\b"),  # Hugging Face access token
    re.compile(rb"\bKGAT_[A-Za-z0-9]{16,}\b"),  # Kaggle access token
)


def is_credential_name(name: str) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatch(low, pat) for pat in CREDENTIAL_NAMES)


def credential_reason(path: Path, secrets: Iterable[str] = ()) -> Optional[str]:
    """Why ``path`` looks like a credential (its name or its content), or None."""
    if is_credential_name(path.name):
        return f"its name ({path.name}) is that of a credential file"
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(min(size, 4 << 20))
    except OSError:
        return None
    if _PRIVATE_KEY.search(head):
        return "it holds a private key"
    for pat in _TOKEN_PATTERNS:
        if pat.search(head):
            return "it holds an access token"
    if path.suffix == ".json" and size < 4096:
        try:
            data = json.loads(head)
            if isinstance(data, dict) and {"username", "key"} <= set(data):
                return "it looks like kaggle.json (username + key)"
        except ValueError:
            pass
    for secret in secrets:
        if secret and len(secret) >= 8 and secret.encode() in head:
            return "it contains your Kaggle API key"
    return None


def check_upload_folder(folder: Path, secrets: Iterable[str] = (), where: str = "") -> list[str]:
    """Credential-looking files and symlinks leaving ``folder`` (walks sub-folders; no symlink follow)."""
    folder = Path(folder)
    where = where or str(folder)
    problems = []
    if not folder.is_dir():
        return [f"{where}: folder not found"]
    root = folder.resolve()
    secrets = list(secrets)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in list(dirnames) + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(folder)
            if path.is_symlink():
                target = path.resolve()
                if not (target == root or root in target.parents):
                    problems.append(f"{where}/{rel}: a symlink leaving the folder (-> {target}); copy the file in or remove the link")
                    continue
            if name in dirnames or path.is_dir():
                continue
            reason = credential_reason(path, secrets)
            if reason:
                problems.append(f"{where}/{rel}: refused, {reason}; move it out of the folder (credentials are never uploaded)")
    return problems


# --------------------------------------------------------------------------- fields


def _slug(value, field: str, where: str, pattern=md.SLUG_RE, what="slug") -> list[str]:
    if not isinstance(value, str) or not pattern.match(value):
        rule = "lowercase letters, digits and single hyphens" + (", or underscores" if pattern is md.OWNER_RE else "")
        fix = md.slugify(str(value)) if isinstance(value, str) else ""
        hint = f" (e.g. {fix!r})" if fix and fix != value else ""
        return [f"{where}: {field} = {value!r} is not a valid {what}: use {rule}, not starting or ending with one{hint}"]
    return []


def _bool(meta: dict, key: str, where: str) -> list[str]:
    if key in meta and not isinstance(meta[key], bool):
        return [f"{where}: {key} = {meta[key]!r} must be a JSON boolean (true/false), not {type(meta[key]).__name__}"]
    return []


def check_model_source(src, where: str) -> list[str]:
    """``owner/model/framework/instance/VERSION`` with an integer version and a framework Kaggle knows."""
    parts = str(src).split("/")
    if not isinstance(src, str) or len(parts) != 5 or not all(parts):
        return [f"{where}: model source {src!r} must have 5 parts owner/model-slug/framework/instance-slug/VERSION, e.g. 'me/gemma2-adapter/transformers/peft-lora-classifier/1'"]
    who, model, fw, inst, version = parts
    problems = _slug(who, "owner", where, md.OWNER_RE, "owner") + _slug(model, "model slug", where)
    problems += _slug(inst, "instance slug", where, md.INSTANCE_SLUG_RE, "instance slug")
    if not md.canonical_framework(fw):
        problems.append(f"{where}: model source {src!r}: framework {fw!r} is not one Kaggle knows ({', '.join(md.FRAMEWORKS)}); a PEFT adapter is 'transformers'")
    if not version.isdigit() or int(version) < 1:
        problems.append(f"{where}: model source {src!r}: version {version!r} must be an integer >= 1 (Kaggle has no 'latest' here)")
    return problems


def check_kernel_metadata(meta: dict, where: str = "kernel-metadata.json", folder: Optional[Path] = None) -> list[str]:
    p: list[str] = []
    ref = meta.get("id")
    title = meta.get("title")
    if not ref and not meta.get("id_no"):
        p.append(f"{where}: id is missing; set it to 'owner/kernel-slug'")
    elif ref:
        parts = str(ref).split("/")
        if len(parts) != 2:
            p.append(f"{where}: id = {ref!r} must be 'owner/kernel-slug' (no version)")
        else:
            p += _slug(parts[0], "id owner", where, md.OWNER_RE, "owner")
            p += _slug(parts[1], "id slug", where)
            if len(parts[1]) < 5:
                p.append(f"{where}: id slug {parts[1]!r} must be at least 5 characters")
            if isinstance(title, str) and title and md.slugify(title) != parts[1]:
                p.append(f"{where}: title {title!r} gives the slug {md.slugify(title)!r}, not the id's {parts[1]!r}; make the title slugify to the id (or leave kernels.<name>.title empty)")
    if not isinstance(title, str) or len(title) < 5:
        p.append(f"{where}: title = {title!r} must be a string of at least 5 characters")
    code = meta.get("code_file")
    if not code:
        p.append(f"{where}: code_file is missing; name the notebook, e.g. 'inference.ipynb'")
    elif folder is not None and not (Path(folder) / code).is_file():
        p.append(f"{where}: code_file {code!r} not found in {folder}; run `kit render`")
    if meta.get("language") not in ("python", "r", "rmarkdown"):
        p.append(f"{where}: language = {meta.get('language')!r} must be one of python, r, rmarkdown")
    if meta.get("kernel_type") not in ("script", "notebook"):
        p.append(f"{where}: kernel_type = {meta.get('kernel_type')!r} must be 'script' or 'notebook'")
    for key in ("is_private", "enable_gpu", "enable_tpu", "enable_internet"):
        p += _bool(meta, key, where)
    if meta.get("competition_sources") and meta.get("enable_internet", True) is not False:
        p.append(f"{where}: enable_internet = {meta.get('enable_internet', '(unset: the client sends true)')!r} but the kernel uses competition "
                 f"{meta['competition_sources']}: competition submissions must run with internet off; set enable_internet false")
    shape = meta.get("machine_shape")
    if meta.get("enable_gpu") is True and not shape:
        p.append(f"{where}: enable_gpu is true but machine_shape (the accelerator) is not set; set kernels.<name>.accelerator, e.g. 'NvidiaTeslaT4'")
    if shape and shape not in md.ACCELERATORS and not md.ACCELERATOR_RE.match(str(shape)):
        p.append(f"{where}: machine_shape = {shape!r} is not a Kaggle accelerator name (e.g. {', '.join(md.ACCELERATORS[:4])})")
    if shape and str(shape).startswith("Nvidia") and meta.get("enable_gpu") is False:
        p.append(f"{where}: machine_shape = {shape!r} is a GPU but enable_gpu is false; set enable_gpu true or clear the accelerator")
    for key in ("dataset_sources", "kernel_sources", "competition_sources", "model_sources"):
        if key in meta and not isinstance(meta[key], list):
            p.append(f"{where}: {key} must be a list, got {meta[key]!r}")
    for src in meta.get("dataset_sources") or []:
        parts = str(src).split("/")
        if len(parts) not in (2, 3) or not all(parts):
            p.append(f"{where}: dataset source {src!r} must be 'owner/dataset-slug'")
        else:
            p += _slug(parts[0], f"dataset source {src!r} owner", where, md.OWNER_RE, "owner")
            p += _slug(parts[1], f"dataset source {src!r} slug", where)
    for src in meta.get("kernel_sources") or []:
        parts = str(src).split("/")
        if len(parts) not in (2, 3) or not all(parts) or len(parts[1]) < 5:
            p.append(f"{where}: kernel source {src!r} must be 'owner/kernel-slug' (slug at least 5 characters)")
    for src in meta.get("competition_sources") or []:
        p += _slug(src, "competition source", where)
    for src in meta.get("model_sources") or []:
        p += check_model_source(src, where)
    return p


def check_dataset_metadata(meta: dict, where: str = "dataset-metadata.json") -> list[str]:
    p: list[str] = []
    ref, title = meta.get("id"), meta.get("title")
    parts = str(ref or "").split("/")
    if len(parts) != 2 or not all(parts):
        p.append(f"{where}: id = {ref!r} must be 'owner/dataset-slug'")
    else:
        p += _slug(parts[0], "id owner", where, md.OWNER_RE, "owner") + _slug(parts[1], "id slug", where)
        if not 6 <= len(parts[1]) <= 50:
            p.append(f"{where}: id slug {parts[1]!r} must be 6-50 characters (it has {len(parts[1])})")
        if isinstance(title, str) and md.slugify(title) != parts[1]:
            p.append(f"{where}: title {title!r} gives the slug {md.slugify(title)!r}, not the id's {parts[1]!r}; make them match (wheels.dataset_title / dataset_slug)")
    if not isinstance(title, str) or not 6 <= len(title) <= 50:
        p.append(f"{where}: title = {title!r} must be 6-50 characters")
    lic = meta.get("licenses")
    if not isinstance(lic, list) or len(lic) != 1 or not isinstance(lic[0], dict):
        p.append(f"{where}: licenses = {lic!r} must hold exactly one entry like [{{\"name\": \"CC0-1.0\"}}]")
    elif md.dataset_license_name(lic[0].get("name", "")) != lic[0].get("name"):
        near = md.dataset_license_name(lic[0].get("name", ""))
        hint = f"write it {near!r}" if near else f"use one of {', '.join(md.DATASET_LICENSES)}"
        p.append(f"{where}: licence {lic[0].get('name')!r} is not a dataset licence name Kaggle knows; {hint}")
    p += _bool(meta, "isPrivate", where)
    sub = meta.get("subtitle")
    if sub and not 20 <= len(sub) <= 80:
        p.append(f"{where}: subtitle must be 20-80 characters (it has {len(sub)})")
    return p


def check_model_metadata(meta: dict, where: str = "model-metadata.json") -> list[str]:
    p = _slug(meta.get("ownerSlug"), "ownerSlug", where, md.OWNER_RE, "owner")
    p += _slug(meta.get("slug"), "slug", where)
    if not meta.get("title"):
        p.append(f"{where}: title is empty; set instances.<name>.model_title (or model_slug)")
    if not isinstance(meta.get("isPrivate"), bool):
        p.append(f"{where}: isPrivate = {meta.get('isPrivate')!r} must be a JSON boolean")
    if not isinstance(meta.get("description", ""), str) or "description" not in meta:
        p.append(f"{where}: description (the model card, markdown) is required")
    return p


def check_instance_metadata(meta: dict, where: str = "model-instance-metadata.json") -> list[str]:
    p = _slug(meta.get("ownerSlug"), "ownerSlug", where, md.OWNER_RE, "owner")
    p += _slug(meta.get("modelSlug"), "modelSlug", where)
    p += _slug(meta.get("instanceSlug"), "instanceSlug", where, md.INSTANCE_SLUG_RE, "instance slug")
    fw = meta.get("framework")
    if not md.canonical_framework(str(fw)):
        extra = " (a PEFT adapter is uploaded as 'transformers'; Kaggle has no 'peft' framework)" if str(fw).lower() == "peft" else ""
        p.append(f"{where}: framework = {fw!r} is not one Kaggle accepts{extra}; use one of {', '.join(md.FRAMEWORKS)}")
    lic = meta.get("licenseName")
    if md.model_license_name(str(lic)) != lic:
        near = md.model_license_name(str(lic))
        hint = f"write it {near!r}" if near else f"use one of: {'; '.join(md.MODEL_LICENSES)}"
        p.append(f"{where}: licenseName = {lic!r} is not a model licence name Kaggle knows; {hint}")
    if not isinstance(meta.get("fineTunable", False), bool):
        p.append(f"{where}: fineTunable = {meta.get('fineTunable')!r} must be a JSON boolean")
    if not isinstance(meta.get("trainingData", []), list):
        p.append(f"{where}: trainingData must be a list")
    return p


CHECKS = {
    "kernel-metadata.json": check_kernel_metadata,
    "dataset-metadata.json": check_dataset_metadata,
    "model-metadata.json": check_model_metadata,
    "model-instance-metadata.json": check_instance_metadata,
}


def check_metadata_file(path: Path) -> list[str]:
    """Check one metadata JSON file by its name."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{path}: file not found"]
    except ValueError as exc:
        return [f"{path}: not valid JSON ({exc})"]
    if not isinstance(meta, dict):
        return [f"{path}: must hold a JSON object"]
    check = CHECKS.get(path.name)
    if check is None:
        return [f"{path}: unknown metadata file name (expected one of {', '.join(CHECKS)})"]
    if check is check_kernel_metadata:
        return check(meta, str(path), path.parent)
    return check(meta, str(path))


def check_folder(folder: Path) -> list[str]:
    """Every metadata file in ``folder`` plus the credential/symlink scan."""
    folder = Path(folder)
    found = [folder / n for n in CHECKS if (folder / n).is_file()]
    if not found:
        return [f"{folder}: no Kaggle metadata file ({', '.join(CHECKS)})"]
    problems = []
    for f in found:
        problems += check_metadata_file(f)
    return problems + check_upload_folder(folder)


# --------------------------------------------------------------------------- the project


def _collect(problems: list[str], fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except KitError as exc:
        problems.append(str(exc))
        return None


def validate_project(cfg, root: str | os.PathLike = ".") -> list[str]:
    """Every publishing problem of a project at once: metadata of the wheel dataset, each model
    instance and each kernel built from kit.toml, the local folders they publish, and the
    rendered kernels/<name>/ folders when present."""
    from kaggle_kit.templating import NOTEBOOK_SOURCES

    root = Path(root)
    p: list[str] = []
    who = _collect(p, md.owner, cfg)
    if who is None:  # listed above; check the rest with a stand-in owner, so every other problem shows too
        import copy

        cfg = copy.deepcopy(cfg)
        cfg.kaggle.username = who = "your-kaggle-username"
    p += _slug(who, "Kaggle user name", "kit.toml kaggle.username", md.OWNER_RE, "owner")
    if cfg.kaggle.competition:
        p += _slug(cfg.kaggle.competition, "kaggle.competition", "kit.toml")

    # wheel dataset
    meta = _collect(p, md.dataset_metadata, cfg)
    if meta is not None:
        p += check_dataset_metadata(meta, "wheel dataset (kit.toml [wheels])")
    wheels = Path(cfg.wheels.out)
    wheels = wheels if wheels.is_absolute() else root / wheels
    if cfg.kernels and (not wheels.is_dir() or not any(wheels.iterdir())):
        p.append(f"wheels.out: {wheels} is missing or empty, and kernels mount it as {who}/{cfg.wheels.dataset_slug}; run `kit build-wheels`")

    # model instances
    for name, inst in cfg.instances.items():
        where = f"kit.toml [instances.{name}]"
        meta = _collect(p, md.model_metadata, cfg, name)
        if meta is not None:
            p += check_model_metadata(meta, f"{where} model")
        meta = _collect(p, md.instance_metadata, cfg, name)
        if meta is not None:
            p += check_instance_metadata(meta, where)
        if inst.kind == "adapter" and md.canonical_framework(inst.framework) not in (None, "transformers"):
            p.append(f"{where}: framework = {inst.framework!r}: a PEFT adapter is published as 'transformers'")
        src = _collect(p, md.instance_source, cfg, name, root)
        if src is not None:
            if not src.is_dir():
                how = "run `kit train`" if inst.kind == "adapter" else "run `kit fetch-base`"
                p.append(f"{where}: the folder to publish, {src}, does not exist; {how} or set instances.{name}.source")
            else:
                need = ("adapter_config.json",) if inst.kind == "adapter" else ("config.json",)
                for n in need:
                    if not (src / n).is_file():
                        p.append(f"{where}: {src} has no {n}; is it the {'run folder of kit train' if inst.kind == 'adapter' else 'base model snapshot'}?")
                p += check_upload_folder(src, where=str(src))

    # kernels
    for name, kernel in cfg.kernels.items():
        where = f"kit.toml [kernels.{name}]"
        template = kernel.template
        if not ((root / "notebooks_src" / f"{template}.py").is_file() or (NOTEBOOK_SOURCES / f"{template}.py").is_file()):
            p.append(f"{where}: template = {template!r}: notebooks_src/{template}.py not found")
        placeholder = lambda *a: 1  # 'latest' is resolved at push time; check the rest of the form here
        meta = _collect(p, md.kernel_metadata, cfg, name, f"{name}.ipynb", resolve=placeholder)
        if meta is not None:
            p += check_kernel_metadata(meta, where)
        rendered = root / "kernels" / name / "kernel-metadata.json"
        if rendered.is_file():
            p += check_metadata_file(rendered)
    # de-duplicate, keep order
    seen, out = set(), []
    for item in p:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out

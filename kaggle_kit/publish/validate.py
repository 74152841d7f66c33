"""Checks of Kaggle metadata and upload folders, run before any network call.

As lenient as the kaggle client (kaggle 2.2.4, `kaggle/api/kaggle_api_extended.py`) and as strict
as Kaggle's server: what the client accepts is accepted (string booleans, with a warning to write
real ones); what the client or the server refuses, or what the server silently changes (an unknown
`machine_shape`, a source that names another dataset), is a problem. The rules and where each comes
from are noted beside them here and in `kaggle_kit.publish.kernel_checks` (kernel fields and the notebook),
`kaggle_kit.publish.uploads` (the one upload/credential rule) and `kaggle_kit.publish.model_card` (adapter folders).

Every function returns (or appends to) lists of problems and warnings (strings naming the
file/field, the value and the fix); nothing raises, so `kit validate` shows all of them at once.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from kaggle_kit.publish import handles as hd
from kaggle_kit.publish import kernel_checks as kc
from kaggle_kit.publish import metadata as md
from kaggle_kit.publish import model_card as mc
from kaggle_kit.publish import uploads as up
from kaggle_kit.errors import KitError

_slug = hd.slug_problems

# The placeholders `kaggle kernels init`, `datasets init`, `models init` and `models instances init`
# write; the client refuses them ("Default ... detected, please change values before uploading").
_PLACEHOLDER = re.compile(r"INSERT_[A-Z_]+_HERE")


@dataclass
class Report:
    """Problems (the upload would fail or misrun: exit 1) and warnings (it works; write it better)."""

    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"problems": list(self.problems), "warnings": list(self.warnings)}


def _placeholders(meta: dict, where: str) -> list[str]:
    return [f"{where}: {k} = {v!r} is the placeholder `kaggle ... init` writes; the client refuses it: fill it in"
            for k, v in meta.items() if isinstance(v, str) and _PLACEHOLDER.search(v)]


# --------------------------------------------------------------------------- fields


def check_model_source(src, where: str) -> list[str]:
    """``owner/model/framework/instance/VERSION`` with an integer version (the client's
    `validate_model_instance_version_string`) and a framework of kagglesdk's `ModelFramework`."""
    return hd.check_model_instance(src, where, versioned=True, named=f"model source {src!r}")[1]


def _kernel_id(meta: dict, where: str) -> list[str]:
    """``id`` = ``owner/slug`` (no version: `kernels_push`), or ``id_no``; title slugifies to the id."""
    ref, title = meta.get("id"), meta.get("title")
    if not ref and not meta.get("id_no"):
        return [f"{where}: id is missing; set it to 'owner/kernel-slug' (the client: \"ID or slug must be specified\")"]
    if not ref:
        return []
    handle, p = hd.check_kernel(ref, where, versioned=False, named=f"id = {ref!r}", parts_named="id")
    if handle and isinstance(title, str) and title and md.slugify(title) != handle.slug:
        p.append(f"{where}: title {title!r} gives the slug {md.slugify(title)!r}, not the id's {handle.slug!r}; make the title slugify to the id (or leave kernels.<name>.title empty)")
    return p


def check_kernel_metadata(meta: dict, where: str = "kernel-metadata.json", folder: Optional[Path] = None,
                          warnings: Optional[list] = None, extra_shapes: Iterable[str] = ()) -> list[str]:
    """Problems of a kernel-metadata.json (``folder``: where code_file lives, to check the notebook);
    warnings go to ``warnings`` when a list is given."""
    warnings = [] if warnings is None else warnings
    p = _placeholders(meta, where) + _kernel_id(meta, where)
    p += hd.kernel_title_problems(meta.get("title"), where)
    if meta.get("language") not in kc.SCRIPT_SUFFIXES:  # client: valid_push_language_types
        p.append(f"{where}: language = {meta.get('language')!r} must be one of python, r, rmarkdown")
    if meta.get("kernel_type") not in ("script", "notebook"):  # client: valid_push_kernel_types
        p.append(f"{where}: kernel_type = {meta.get('kernel_type')!r} must be 'script' or 'notebook'")
    kc.check_code_file(meta, folder, where, p, warnings)
    flags = {key: kc.read_bool(meta, key, where, p, warnings) for key in kc.BOOL_DEFAULTS}
    if meta.get("competition_sources") and flags["enable_internet"] is True:
        shown = "unset, and the kaggle client then sends true" if "enable_internet" not in meta else repr(meta["enable_internet"])
        p.append(f"{where}: enable_internet is {shown}, but the kernel uses competition {meta['competition_sources']}: "
                 "competition submissions must run with internet off; set enable_internet false")
    kc.check_machine_shape(meta, flags["enable_gpu"], flags["enable_tpu"], where, p, warnings, extra_shapes)
    p += kc.check_sources(meta, where)
    return p


def check_dataset_metadata(meta: dict, where: str = "dataset-metadata.json", warnings: Optional[list] = None) -> list[str]:
    """The client's `dataset_create_new` checks (slug and title 6-50 characters, exactly one
    licence, subtitle 20-80) plus slug syntax, id = slug of the title and Kaggle's licence names."""
    p: list[str] = _placeholders(meta, where)
    ref, title = meta.get("id"), meta.get("title")
    handle, id_problems = hd.check_dataset(ref, where, versioned=False, named=f"id = {ref!r}", parts_named="id")
    p += id_problems
    if handle:
        slug = handle.slug
        if not 6 <= len(slug) <= 50:  # the client's `dataset_create_new`
            p.append(f"{where}: id slug {slug!r} must be 6-50 characters (it has {len(slug)})")
        if isinstance(title, str) and md.slugify(title) != slug:
            p.append(f"{where}: title {title!r} gives the slug {md.slugify(title)!r}, not the id's {slug!r}; make them match (wheels.dataset_title / dataset_slug)")
    if not isinstance(title, str) or not 6 <= len(title) <= 50:
        p.append(f"{where}: title = {title!r} must be 6-50 characters")
    lic = meta.get("licenses")
    if not isinstance(lic, list) or len(lic) != 1 or not isinstance(lic[0], dict):
        p.append(f"{where}: licenses = {lic!r} must hold exactly one entry like [{{\"name\": \"CC0-1.0\"}}]")
    elif md.dataset_license_name(lic[0].get("name", "")) != lic[0].get("name"):
        near = md.dataset_license_name(lic[0].get("name", ""))
        hint = f"write it {near!r}" if near else f"use one of {', '.join(md.DATASET_LICENSES)}"
        p.append(f"{where}: licence {lic[0].get('name')!r} is not a dataset licence name Kaggle knows; {hint}")
    if "isPrivate" in meta and not isinstance(meta["isPrivate"], bool):
        p.append(f"{where}: isPrivate = {meta['isPrivate']!r} must be a JSON boolean (true/false), not {type(meta['isPrivate']).__name__}")
    sub = meta.get("subtitle")
    if sub and not 20 <= len(sub) <= 80:
        p.append(f"{where}: subtitle must be 20-80 characters (it has {len(sub)})")
    if "keywords" in meta and not isinstance(meta["keywords"], list):
        p.append(f"{where}: keywords must be a list of strings")
    return p


def check_model_metadata(meta: dict, where: str = "model-metadata.json", warnings: Optional[list] = None) -> list[str]:
    """The client's `model_create_new` checks: slug syntax, isPrivate a real boolean, description
    required, publishTime YYYY-MM-DD."""
    p = _placeholders(meta, where)
    p += _slug(meta.get("ownerSlug"), "ownerSlug", where, md.OWNER_RE, "owner")
    p += _slug(meta.get("slug"), "slug", where)
    if not meta.get("title"):
        p.append(f"{where}: title is empty; set instances.<name>.model_title (or model_slug)")
    if not isinstance(meta.get("isPrivate"), bool):
        p.append(f"{where}: isPrivate = {meta.get('isPrivate')!r} must be a JSON boolean (the client: \"model.isPrivate must be a boolean\")")
    if not isinstance(meta.get("description", ""), str) or "description" not in meta:
        p.append(f"{where}: description (the model card, markdown) is required")
    pt = meta.get("publishTime")
    if pt and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(pt)):
        p.append(f"{where}: publishTime = {pt!r} must be a date YYYY-MM-DD")
    return p


def check_instance_metadata(meta: dict, where: str = "model-instance-metadata.json", warnings: Optional[list] = None) -> list[str]:
    """The client's `model_instance_create` checks: slugs, a framework of kagglesdk's
    `ModelFramework`, a licence, fineTunable a real boolean, trainingData a list."""
    p = _placeholders(meta, where)
    p += _slug(meta.get("ownerSlug"), "ownerSlug", where, md.OWNER_RE, "owner")
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


def check_metadata_file(path: Path, warnings: Optional[list] = None, extra_shapes: Iterable[str] = ()) -> list[str]:
    """Check one metadata JSON file by its name."""
    from kaggle_kit.templating import read_json

    path = Path(path)
    if not path.is_file():
        return [f"{path}: file not found"]
    try:
        meta = read_json(path)
    except KitError as exc:
        return [str(exc)]
    if not isinstance(meta, dict):
        return [f"{path}: must hold a JSON object"]
    check = CHECKS.get(path.name)
    if check is None:
        return [f"{path}: unknown metadata file name (expected one of {', '.join(CHECKS)})"]
    if check is check_kernel_metadata:
        return check(meta, str(path), path.parent, warnings=warnings, extra_shapes=extra_shapes)
    return check(meta, str(path), warnings=warnings)


def check_folder(folder: Path, secrets: Optional[Iterable[str]] = None, warnings: Optional[list] = None,
                 extra_shapes: Iterable[str] = ()) -> list[str]:
    """Every metadata file in ``folder`` plus the upload rule over what a push of it would send
    (a kernel folder sends only its code file). ``secrets``: None = the configured Kaggle keys."""
    from kaggle_kit.publish.credentials import configured_secrets

    folder = Path(folder)
    found = [folder / n for n in CHECKS if (folder / n).is_file()]
    if not found:
        return [f"{folder}: no Kaggle metadata file ({', '.join(CHECKS)})"]
    secrets = configured_secrets() if secrets is None else list(secrets)
    problems = []
    for f in found:
        problems += check_metadata_file(f, warnings, extra_shapes)
    kernel = folder / "kernel-metadata.json"
    if kernel.is_file():
        code = _code_file(kernel)
        return problems + (up.check_files([folder / code], secrets) if code and (folder / code).is_file() else [])
    return problems + up.check_upload(folder, (), secrets)[1]


def _code_file(meta_path: Path) -> str:
    from kaggle_kit.templating import read_json

    try:
        meta = read_json(meta_path)
    except KitError:
        return ""
    return str(meta.get("code_file") or "") if isinstance(meta, dict) else ""


# --------------------------------------------------------------------------- the project


def _collect(problems: list[str], fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except KitError as exc:
        problems.append(str(exc))
        return None


def instance_folder_problems(cfg, name: str, src: Path, where: str, secrets, warnings: list) -> list[str]:
    """The folder an instance publishes: it exists, holds what the notebook needs (adapter:
    adapter_config.json, weights, kit_manifest.json; base: config.json), names the base kit.toml
    names, and passes the upload rule (what push-model would send)."""
    inst = md.instance_config(cfg, name)
    if not src.is_dir():
        how = "run `kit train`" if inst.kind == "adapter" else "run `kit fetch-base`"
        return [f"{where}: the folder to publish, {src}, does not exist; {how} or set instances.{name}.source"]
    if inst.kind == "adapter":
        p = mc.adapter_folder_problems(src, where)
        manifest, _ = mc.read_manifest(src)
        if manifest:
            mismatch = mc.base_mismatch(cfg.model.name, manifest, where)
            if mismatch:
                warnings.append(mismatch)
    else:
        p = [] if (src / "config.json").is_file() else [f"{where}: {src} has no config.json; is it the base model snapshot?"]
    return p + up.check_upload(src, up.instance_exclude(inst.kind, src), secrets)[1]


def dataset_problems(cfg, root: Path, secrets, folder=None, required: bool = True) -> list[str]:
    """What `kit push-dataset [FOLDER]` would send (default: the wheel set): the folder holds files
    (``required``; a kernel mounts the wheel set), the dataset-metadata.json the push sends
    (`metadata.dataset_upload_metadata`) and the upload rule over the files."""
    p: list[str] = []
    src = md.dataset_folder(cfg, folder, root)
    wheel_set = md.is_wheel_set(cfg, src, root)
    empty = not src.is_dir() or not any(src.iterdir())
    if empty and required:
        if wheel_set:
            mounted = f", and kernels mount it as {hd.DatasetHandle(md.owner(cfg), cfg.wheels.dataset_slug)}" if cfg.kernels else ""
            p.append(f"wheels.out: {src} is missing or empty{mounted}; run `kit build-wheels`")
        else:
            p.append(f"dataset folder {src} is missing or empty; check the path")
    if src.is_dir() or wheel_set:  # the wheel set's metadata comes from kit.toml even before it is built
        meta = _collect(p, md.dataset_upload_metadata, cfg, folder, root)
        if meta is not None:
            p += check_dataset_metadata(meta, "wheel dataset (kit.toml [wheels])" if wheel_set else str(src / "dataset-metadata.json"))
    if not empty:
        p += up.check_upload(src, ("dataset-metadata.json",), secrets)[1]
    return p


def instance_problems(cfg, name: str, root: Path, secrets, warnings: list) -> list[str]:
    """What `kit push-model --instance NAME` would send: model and instance metadata, the framework,
    and the folder (`instance_folder_problems`)."""
    p: list[str] = []
    where = f"kit.toml [instances.{name}]"
    inst = _collect(p, md.instance_config, cfg, name)
    if inst is None:
        return p
    src = _collect(p, md.instance_source, cfg, name, root)
    manifest = mc.read_manifest(src)[0] if src is not None and inst.kind == "adapter" else None
    meta = _collect(p, md.model_metadata, cfg, name, root, manifest)
    if meta is not None:
        p += check_model_metadata(meta, f"{where} model")
    meta = _collect(p, md.instance_metadata, cfg, name, manifest)
    if meta is not None:
        p += check_instance_metadata(meta, where)
    if inst.kind == "adapter" and md.canonical_framework(inst.framework) not in (None, "transformers"):
        p.append(f"{where}: framework = {inst.framework!r}: a PEFT adapter is published as 'transformers'")
    if src is not None:
        p += instance_folder_problems(cfg, name, src, where, secrets, warnings)
    return p


def kernel_problems(cfg, name: str, root: Path, secrets, warnings: list, accelerator: Optional[str] = None,
                    rendered: bool = True) -> list[str]:
    """Kernel ``name`` as kit.toml builds it: slug and title (`metadata.kernel_names`; a shortened
    default is a warning), the template, the metadata ('latest' versions stand in as 1); with
    ``rendered``, the kernels/<name>/ folder as it is on disk (a push renders it first)."""
    from kaggle_kit.templating import NOTEBOOK_SOURCES

    p: list[str] = []
    where = f"kit.toml [kernels.{name}]"
    kernel = _collect(p, md.kernel_config, cfg, name)
    if kernel is None:
        return p
    names = md.kernel_names(cfg, name)
    warnings += names.notes
    p += names.problems
    template = kernel.template
    if not ((root / "notebooks_src" / f"{template}.py").is_file() or (NOTEBOOK_SOURCES / f"{template}.py").is_file()):
        p.append(f"{where}: template = {template!r}: notebooks_src/{template}.py not found")
    p += kc.kernel_model_problems(cfg, name, root)  # every model its notebook loads is a source under /kaggle/input
    extra = cfg.kaggle.extra_machine_shapes
    if not names.problems:  # else kernel_metadata refuses with the same messages
        placeholder = lambda *a: 1  # 'latest' is resolved at push time; check the rest of the form here
        meta = _collect(p, md.kernel_metadata, cfg, name, f"{name}.ipynb", resolve=placeholder, accelerator=accelerator)
        if meta is not None:
            p += check_kernel_metadata(meta, where, warnings=warnings, extra_shapes=extra)
    folder = root / "kernels" / name
    if rendered and (folder / "kernel-metadata.json").is_file():
        p += check_folder(folder, secrets, warnings, extra)
    return p


def _same_slugs(cfg) -> list[str]:
    """Two kernels of kit.toml with one slug would push over each other."""
    by_slug: dict = {}
    for name in cfg.kernels:
        by_slug.setdefault(md.kernel_names(cfg, name).slug, []).append(name)
    return [f"kit.toml: kernels {', '.join(names)} all have the slug {slug!r} and would push over each other; "
            f"set kernels.{names[-1]}.slug (and .title) to another" for slug, names in by_slug.items() if len(names) > 1]


def _owner_problems(cfg, kernel: bool) -> list[str]:
    p = _slug(md.owner(cfg), "Kaggle user name", "kit.toml kaggle.username", md.OWNER_RE, "owner")
    if kernel and cfg.kaggle.competition:
        p += _slug(cfg.kaggle.competition, "kaggle.competition", "kit.toml")
    return p


def push_report(cfg, kind: str, name: Optional[str] = None, root: str | os.PathLike = ".", folder=None,
                accelerator: Optional[str] = None, secrets: Optional[Iterable[str]] = None) -> Report:
    """The checks of `kit validate` for one push, before any network call: ``kind`` 'dataset' (FOLDER
    ``folder``, default the wheel set), 'model' (instance ``name``) or 'kernel' (kernel ``name``, and
    the wheel set and instances it mounts; its folder is checked again once rendered). Every push and
    its --dry-run refuse on these problems, so a dry run that passes is one the push does not refuse
    locally."""
    from kaggle_kit.publish.credentials import configured_secrets

    root, report = Path(root), Report()
    p, warnings = report.problems, report.warnings
    secrets = configured_secrets() if secrets is None else list(secrets)
    if _collect(p, md.owner, cfg) is None:
        return report
    p += _owner_problems(cfg, kernel=kind == "kernel")
    if kind == "dataset":
        p += dataset_problems(cfg, root, secrets, folder)
    elif kind == "model":
        p += instance_problems(cfg, name, root, secrets, warnings)
    elif kind == "kernel":
        p += kernel_problems(cfg, name, root, secrets, warnings, accelerator, rendered=False)
        p += dataset_problems(cfg, root, secrets)
        kernel = cfg.kernels.get(name)
        for inst in (kernel.instances if kernel else ()):
            p += instance_problems(cfg, inst, root, secrets, warnings)
    else:
        raise ValueError(f"push_report: kind {kind!r} is not dataset, model or kernel")
    report.problems, report.warnings = _unique(p), _unique(warnings)
    return report


def validate_report(cfg, root: str | os.PathLike = ".", folders: Iterable[str | os.PathLike] = ()) -> Report:
    """Every publishing problem and warning of a project at once: the wheel dataset, each model
    instance and each kernel built from kit.toml (each as `push_report` checks it for its push), the
    folders they publish (the one upload rule, with the configured Kaggle key), the rendered
    kernels/<name>/ folders, and extra ``folders``."""
    from kaggle_kit.publish.credentials import configured_secrets

    root = Path(root)
    report = Report()
    p, warnings = report.problems, report.warnings
    secrets = configured_secrets()
    if _collect(p, md.owner, cfg) is None:  # listed above; check the rest with a stand-in owner, so every other problem shows too
        import copy

        cfg = copy.deepcopy(cfg)
        cfg.kaggle.username = "your-kaggle-username"
    p += _owner_problems(cfg, kernel=True)
    p += dataset_problems(cfg, root, secrets, required=bool(cfg.kernels))
    for name in cfg.instances:
        p += instance_problems(cfg, name, root, secrets, warnings)
    for name in cfg.kernels:
        p += kernel_problems(cfg, name, root, secrets, warnings)
    p += _same_slugs(cfg)
    for folder in folders:
        p += check_folder(Path(folder), secrets, warnings, cfg.kaggle.extra_machine_shapes)
    report.problems, report.warnings = _unique(p), _unique(warnings)
    return report


def _unique(items: list) -> list:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def validate_project(cfg, root: str | os.PathLike = ".") -> list[str]:
    """The problems of `validate_report` (warnings left out)."""
    return validate_report(cfg, root).problems

"""Kaggle metadata built from `kit.toml`: kernel, dataset, model and model-instance JSON.

Each builder fills the matching `metadata_templates/*.json.j2` (values through the `json`
filter, so booleans stay booleans) and returns the parsed dict. The checks of these dicts live
in `kaggle_kit.publish.validate` (which imports this module, not the other way round). Kernel slugs
and titles keep to Kaggle's 5-50 characters: see `kernel_names`.

Model sources in kernels use Kaggle's 5-part handle
``owner/model-slug/framework/instance-slug/VERSION`` with an integer VERSION. When an instance
asks for ``version = "latest"``, a *resolver* turns it into a number:

- ``resolve=None``: a clear KitError (pin the version in kit.toml, or resolve with credentials);
- ``resolve=published_resolver(root)``: the versions `kit push-model` recorded in
  ``.kit/published.json`` (offline; what `kit render` can use);
- ``resolve=kaggle_kit.publish.push.kaggle_resolver(api)``: asks Kaggle (what `kit push-kernel` uses).

A resolver is any callable ``(owner, model_slug, framework, instance_slug) -> int``.
Handles are built as the typed values of `kaggle_kit.publish.handles` (whose slug and framework
rules are re-exported here) and written with ``str()``; nothing here joins or splits them by hand.
This module imports only the standard library and the kit's light modules (no torch, no kaggle).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from kaggle_kit.config import KitConfig
from kaggle_kit.errors import KitError
from kaggle_kit.publish import handles as hd
from kaggle_kit.publish.handles import (  # noqa: F401  (the slug and framework rules, re-exported: md.SLUG_RE etc.)
    FRAMEWORKS,
    INSTANCE_SLUG_RE,
    OWNER_RE,
    SLUG_RE,
    DatasetHandle,
    KernelHandle,
    ModelInstanceHandle,
    canonical_framework,
    parse_model_instance_handle,
    slugify,
)
from kaggle_kit.templating import read_json, render_metadata

Resolver = Callable[[str, str, str, str], int]

PUBLISHED_FILE = Path(".kit") / "published.json"

# Dataset licences Kaggle accepts (Kaggle/kaggle-api docs/datasets_metadata.md).
DATASET_LICENSES = (
    "CC0-1.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "GPL-2.0", "ODbL-1.0", "DbCL-1.0",
    "copyright-authors", "other", "unknown", "CC-BY-4.0", "CC-BY-NC-4.0", "PDDL", "CC-BY-3.0",
    "CC-BY-3.0-IGO", "US-Government-Works", "CC-BY-NC-SA-3.0-IGO", "CDLA-Permissive-1.0",
    "CDLA-Sharing-1.0", "CC-BY-ND-4.0", "CC-BY-NC-ND-4.0", "ODC-BY-1.0", "LGPL-3.0", "AGPL-3.0",
    "FDL-1.3", "EU-ODP-Legal-Notice", "apache-2.0", "GPL-3.0",
)

# Model-instance licences (Kaggle/kaggle-api docs/models_metadata.md), plus "other", which
# seed 001 used successfully for its instances.
MODEL_LICENSES = (
    "Apache 2.0", "Attribution 3.0 IGO (CC BY 3.0 IGO)", "Attribution 3.0 Unported (CC BY 3.0)",
    "Attribution 4.0 International (CC BY 4.0)", "Attribution-NoDerivatives 4.0 International (CC BY-ND 4.0)",
    "Attribution-NonCommercial 4.0 International (CC BY-NC 4.0)",
    "Attribution-NonCommercial-NoDerivatives 4.0 International (CC BY-NC-ND 4.0)",
    "Attribution-NonCommercial-ShareAlike 3.0 IGO (CC BY-NC-SA 3.0 IGO)", "BSD-3-Clause", "CC BY-NC-SA 4.0",
    "CC BY-SA 3.0", "CC BY-SA 4.0", "CC0: Public Domain",
    "Community Data License Agreement - Permissive - Version 1.0",
    "Community Data License Agreement - Sharing - Version 1.0", "GNU Affero General Public License 3.0",
    "GNU Free Documentation License 1.3", "GNU Lesser General Public License 3.0", "GPL 2", "MIT",
    "ODC Attribution License (ODC-By)", "ODC Public Domain Dedication and Licence (PDDL)", "GPL 3", "other",
)
# Short names accepted in kit.toml -> Kaggle's model licence name.
MODEL_LICENSE_ALIASES = {
    "apache-2.0": "Apache 2.0", "apache2": "Apache 2.0", "mit": "MIT", "bsd-3-clause": "BSD-3-Clause",
    "cc0-1.0": "CC0: Public Domain", "cc-by-4.0": "Attribution 4.0 International (CC BY 4.0)",
    "cc-by-3.0": "Attribution 3.0 Unported (CC BY 3.0)", "cc-by-nc-4.0": "Attribution-NonCommercial 4.0 International (CC BY-NC 4.0)",
    "cc-by-nd-4.0": "Attribution-NoDerivatives 4.0 International (CC BY-ND 4.0)",
    "cc-by-nc-nd-4.0": "Attribution-NonCommercial-NoDerivatives 4.0 International (CC BY-NC-ND 4.0)",
    "cc-by-sa-4.0": "CC BY-SA 4.0", "cc-by-sa-3.0": "CC BY-SA 3.0", "cc-by-nc-sa-4.0": "CC BY-NC-SA 4.0",
    "gpl-2.0": "GPL 2", "gpl-3.0": "GPL 3", "lgpl-3.0": "GNU Lesser General Public License 3.0",
    "agpl-3.0": "GNU Affero General Public License 3.0", "fdl-1.3": "GNU Free Documentation License 1.3",
    "pddl": "ODC Public Domain Dedication and Licence (PDDL)", "odc-by-1.0": "ODC Attribution License (ODC-By)",
    # Gemma weights are under the Gemma Terms of Use, which is not in Kaggle's API list: publish
    # them as "other" and name the terms in the instance overview (instance_metadata does).
    "gemma": "other",
}
GEMMA_TERMS = "https://ai.google.dev/gemma/terms"

# Accelerators (kernel-metadata.json `machine_shape`, `kaggle kernels push --accelerator`). The
# client sends the value as it is ("The allowed names are in an enum that is not currently included
# in kagglesdk", kaggle 2.2.4 `kernels_push`), and Kaggle's server runs a name it does not offer on
# another machine instead of refusing it, so the kit checks the name against Kaggle's own lists:
# - Kaggle/kaggle-cli docs/kernels.md (Feb 2026) lists NvidiaTeslaP100, NvidiaTeslaT4,
#   NvidiaTeslaT4Highmem, NvidiaTeslaA100, NvidiaL4, NvidiaL4X1, NvidiaH100, NvidiaRtxPro6000,
#   TpuV38, Tpu1VmV38, TpuV5E8, TpuV6E8: "some are only available to participants of specific
#   competitions, and some only to Kaggle admins";
# - Kaggle/kaggle-cli PR #1198 (2026-09-17, closing issue #1196): the editor's "GPU T4 x2" (the
#   default GPU; a single T4 is no longer offered) is `NvidiaTeslaT4`, "TPU v5e-8" is `TpuV5E8`;
#   `NvidiaTeslaT4Highmem` is an internal admin-only pool and was removed from the user docs;
# - Kaggle/kaggle-cli `kernels_push` warns that retired shapes are swapped by the server
#   (tests/unit/test_kernels_push_retired_accelerator.py): NvidiaTeslaP100 -> NvidiaTeslaT4,
#   TpuV38 / Tpu1VmV38 -> TpuV5E8, TpuV232 / TpuV2256 -> CPU.
# A shape Kaggle adds later: list it in kit.toml `kaggle.extra_machine_shapes` (the explicit override).
MACHINE_SHAPES = {"NvidiaTeslaT4": "GPU T4 x2", "TpuV5E8": "TPU v5e-8"}  # what every user can pick
# Documented, but only for some competitions (or admins): pushed elsewhere, Kaggle runs the default.
RESTRICTED_SHAPES = {
    "NvidiaTeslaA100": "A100", "NvidiaL4": "L4", "NvidiaL4X1": "L4 x1", "NvidiaH100": "H100",
    "NvidiaRtxPro6000": "RTX Pro 6000", "TpuV6E8": "TPU v6e-8",
}
# Not for users: name -> what to write instead.
UNAVAILABLE_SHAPES = {
    "NvidiaTeslaT4Highmem": ("an internal admin-only pool (kaggle-cli PR #1198)", "NvidiaTeslaT4"),
    "NvidiaTeslaP100": ("retired; Kaggle runs NvidiaTeslaT4 instead", "NvidiaTeslaT4"),
    "TpuV38": ("retired; Kaggle runs TpuV5E8 instead", "TpuV5E8"),
    "Tpu1VmV38": ("retired; Kaggle runs TpuV5E8 instead", "TpuV5E8"),
    "TpuV232": ("retired; Kaggle runs it on the CPU", ""),
    "TpuV2256": ("retired; Kaggle runs it on the CPU", ""),
}
GPU_SHAPE_PREFIX = "Nvidia"
TPU_SHAPE_PREFIX = "Tpu"


# --------------------------------------------------------------------------- names


def owner(cfg: KitConfig) -> str:
    name = cfg.kaggle_username()
    if not name:
        raise KitError(
            "no Kaggle user name: set kaggle.username in kit.toml, or KAGGLE_USERNAME, "
            "or put kaggle.json in ~/.kaggle (see https://www.kaggle.com/settings -> API)"
        )
    return name


def model_license_name(name: str) -> Optional[str]:
    """Kaggle's model licence name for ``name`` (exact name or a short alias), or None."""
    for lic in MODEL_LICENSES:
        if lic.lower() == str(name).lower():
            return lic
    return MODEL_LICENSE_ALIASES.get(str(name).lower())


def dataset_license_name(name: str) -> Optional[str]:
    for lic in DATASET_LICENSES:
        if lic.lower() == str(name).lower():
            return lic
    return None


# --------------------------------------------------------------------------- datasets


def dataset_metadata(cfg: KitConfig, description: str = "") -> dict:
    """dataset-metadata.json of the wheel dataset ([wheels] dataset_slug/title/license)."""
    return render_metadata(
        "dataset-metadata.json",
        dict(
            id=str(DatasetHandle(owner(cfg), cfg.wheels.dataset_slug)),
            title=cfg.wheels.dataset_title,
            license=dataset_license_name(cfg.wheels.license) or cfg.wheels.license,
            is_private=True,
            description=description or "Offline wheels for a kaggle-kit inference notebook (generated by `kit build-wheels`).",
        ),
    )


def dataset_folder(cfg: KitConfig, folder: Optional[str] = None, root: str | Path = ".") -> Path:
    """The folder `kit push-dataset [FOLDER]` uploads: FOLDER, else the wheel set (wheels.out), under ``root``."""
    src = Path(folder or cfg.wheels.out).expanduser()
    return src if src.is_absolute() else Path(root) / src


def is_wheel_set(cfg: KitConfig, src: Path, root: str | Path = ".") -> bool:
    return Path(src).resolve() == dataset_folder(cfg, None, root).resolve()


def dataset_upload_metadata(cfg: KitConfig, folder: Optional[str] = None, root: str | Path = ".") -> dict:
    """The dataset-metadata.json `kit push-dataset [FOLDER]` sends. The wheel set: its own file (which
    `kit build-wheels` writes) with id, title, licence and privacy from kit.toml, and kit.toml's
    description when it has none. Another folder: its own file, as it is (KitError when absent)."""
    src = dataset_folder(cfg, folder, root)
    meta_file = src / "dataset-metadata.json"
    meta = {}
    if meta_file.is_file():
        meta = read_json(meta_file)
        if not isinstance(meta, dict):
            raise KitError(f"{meta_file} must hold a JSON object (id, title, licenses)")
    if is_wheel_set(cfg, src, root):
        built = dataset_metadata(cfg)
        meta = {**meta, **{k: built[k] for k in ("id", "title", "licenses", "isPrivate")}}
        meta.setdefault("description", built["description"])
    elif not meta:
        raise KitError(f"{src} has no dataset-metadata.json; write one (id, title, licenses) or push the wheel set (`kit push-dataset`)")
    return meta


# --------------------------------------------------------------------------- kernels


def _named(tables: dict, name: str, what: str, section: str):
    """``tables[name]`` from a [section.NAME] group of kit.toml, or an error listing the known names."""
    if name not in tables:
        known = ", ".join(sorted(tables)) or "none"
        raise KitError(f"no {what} named {name!r} in kit.toml (known: {known}); add {'an' if section[0] in 'aeiou' else 'a'} [{section}.{name}] table")
    return tables[name]


def kernel_config(cfg: KitConfig, name: str):
    return _named(cfg.kernels, name, "kernel", "kernels")


@dataclass(frozen=True)
class KernelNames:
    """A kernel's slug and title, the notes on how they were chosen, and the problems that refuse them."""

    slug: str
    title: str
    notes: list
    problems: list


def kernel_names(cfg: KitConfig, name: str) -> KernelNames:
    """Slug and title of kernel ``name``, within Kaggle's rules (5-50 characters each; see
    `kaggle_kit.publish.handles`). The default slug, ``<competition>-<name>`` (``kit-<name>`` without a
    competition), is shortened deterministically when it is longer (`handles.fit_slug`; a note says
    so); a slug or title set in kit.toml is never changed: outside the limits it is a problem naming
    the setting. The title defaults to the slug, so that Kaggle's slug of the title is the id's."""
    kernel = kernel_config(cfg, name)
    notes: list[str] = []
    problems: list[str] = []
    if kernel.slug:
        slug = kernel.slug
        if len(slug) > hd.KERNEL_SLUG_MAX:
            problems.append(f"kernels.{name}.slug = {slug!r} has {len(slug)} characters; Kaggle's server refuses longer "
                            f"kernel slugs than {hd.KERNEL_SLUG_MAX}: set kernels.{name}.slug to at most {hd.KERNEL_SLUG_MAX} "
                            "characters, or leave it empty for a default that fits")
    else:
        prefix = cfg.kaggle.competition or "kit"
        full, slug = f"{prefix}-{name}", hd.fit_slug(prefix, name)
        if len(full) > hd.KERNEL_SLUG_MAX:
            notes.append(f"kernels.{name}: the default slug {full!r} has {len(full)} characters, over Kaggle's "
                         f"{hd.KERNEL_SLUG_MAX}; using {slug!r}" + ("" if kernel.title else " (and as the title)")
                         + f"; set kernels.{name}.slug and kernels.{name}.title to choose another")
    if kernel.title:
        title = kernel.title
        problems += hd.kernel_title_problems(title, field=f"kernels.{name}.title",
                                             fix=f"change kernels.{name}.title (or leave it empty: the title is then the slug)")
    else:
        title = slug
    return KernelNames(slug, title, notes, problems)


def _checked_names(cfg: KitConfig, name: str) -> KernelNames:
    names = kernel_names(cfg, name)
    if names.problems:
        raise KitError("\n".join(names.problems))
    return names


def kernel_slug(cfg: KitConfig, name: str) -> str:
    """The kernel's slug (see `kernel_names`); a KitError when kit.toml sets one Kaggle refuses."""
    return _checked_names(cfg, name).slug


def kernel_title(cfg: KitConfig, name: str) -> str:
    """The kernel's title; empty in kit.toml = the slug (so that slugify(title) == slug)."""
    return _checked_names(cfg, name).title


def kernel_ref(cfg: KitConfig, name: str) -> KernelHandle:
    """The kernel's ``owner/slug`` (its ``id``)."""
    return KernelHandle(owner(cfg), kernel_slug(cfg, name))


def kernel_metadata(
    cfg: KitConfig,
    name: str,
    code_file: str,
    resolve: Optional[Resolver] = None,
    accelerator: Optional[str] = None,
) -> dict:
    """kernel-metadata.json for kernel ``name`` (see the module doc for ``resolve``).

    Sources: the wheel dataset ``owner/<wheels.dataset_slug>`` first, then the kernel's extra
    dataset sources; the competition; one 5-part model source per instance the kernel mounts,
    then its extra model sources. Private, internet off and the accelerator come from kit.toml.
    """
    kernel = kernel_config(cfg, name)
    names = _checked_names(cfg, name)
    who = owner(cfg)
    datasets = [str(DatasetHandle(who, cfg.wheels.dataset_slug))]
    for src in kernel.dataset_sources:
        if src not in datasets:
            datasets.append(src)
    return render_metadata(
        "kernel-metadata.json",
        dict(
            id=str(KernelHandle(who, names.slug)),
            title=names.title,
            code_file=code_file,
            is_private=kernel.is_private,
            enable_gpu=kernel.enable_gpu,
            enable_internet=kernel.enable_internet,
            machine_shape=accelerator or kernel.accelerator,
            dataset_sources=datasets,
            competition_sources=[cfg.kaggle.competition] if cfg.kaggle.competition else [],
            model_sources=model_sources(cfg, name, resolve),
        ),
    )


def model_sources(cfg: KitConfig, name: str, resolve: Optional[Resolver] = None) -> list[str]:
    """The kernel's model sources, each ``owner/model/framework/instance/VERSION`` (integer VERSION)."""
    kernel = kernel_config(cfg, name)
    out = []
    for inst_name in kernel.instances:
        handle = instance_handle(cfg, inst_name)
        out.append(str(handle.with_version(_instance_version(cfg, name, inst_name, handle, resolve))))
    for src in kernel.model_sources:
        try:  # the framework in Kaggle's spelling; a malformed source stays as written for `kit validate` to name
            src = str(parse_model_instance_handle(str(src), versioned=True, strict=False))
        except KitError:
            src = str(src)
        if src not in out:
            out.append(src)
    return out


def _instance_version(cfg: KitConfig, name: str, inst_name: str, handle: ModelInstanceHandle,
                      resolve: Optional[Resolver]) -> int:
    """The version of instance ``inst_name`` that kernel ``name`` mounts: kit.toml's number, or 'latest' resolved."""
    version = str(instance_config(cfg, inst_name).version)
    if version.isdigit():
        if int(version) < 1:
            raise KitError(f"instances.{inst_name}.version = {version!r}: Kaggle numbers versions from 1; "
                           f"set instances.{inst_name}.version to 1 or more, or 'latest'")
        return int(version)
    if resolve is None:
        raise KitError(
            f"kernels.{name}: instance {inst_name!r} asks for version 'latest', which needs a number: "
            f"pin it in kit.toml (instances.{inst_name}.version = 1), push it first with "
            f"`kit push-model --instance {inst_name}` (the pushed version is recorded), or run "
            f"`kit push-kernel {name}` with Kaggle credentials, which asks Kaggle for the latest version"
        )
    number = resolve(handle.owner, handle.model, handle.framework, handle.instance)
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise KitError(f"kernels.{name}: the latest version of {handle} resolved to {number!r}, not a positive integer")
    return number


def published_resolver(root: str | Path = ".") -> Resolver:
    """A resolver reading the versions `kit push-model` recorded in ``<root>/.kit/published.json``."""
    record = read_published(root)

    def resolve(who: str, model_slug: str, framework: str, slug: str) -> int:
        handle = str(ModelInstanceHandle(who, model_slug, framework, slug))
        if handle not in record:
            raise KitError(
                f"{handle}: no pushed version recorded in {Path(root) / PUBLISHED_FILE}; push it with "
                f"`kit push-model --instance ...`, or pin the version in kit.toml"
            )
        return int(record[handle]["version"])

    return resolve


def read_published(root: str | Path = ".") -> dict:
    path = Path(root) / PUBLISHED_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}


def record_published(root: str | Path, handle: ModelInstanceHandle | str, version: int, **extra) -> Path:
    """Record ``version`` as the pushed version of instance ``handle`` (unversioned ``owner/model/framework/instance``)."""
    path = Path(root) / PUBLISHED_FILE
    data = read_published(root)
    data[str(handle)] = {"version": int(version), **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- models


def instance_config(cfg: KitConfig, name: str):
    return _named(cfg.instances, name, "model instance", "instances")


def instance_slug(cfg: KitConfig, name: str) -> str:
    return instance_config(cfg, name).slug or name


def instance_framework(cfg: KitConfig, name: str) -> str:
    fw = instance_config(cfg, name).framework
    return canonical_framework(fw) or fw


def instance_handle(cfg: KitConfig, name: str) -> ModelInstanceHandle:
    """``owner/model-slug/framework/instance-slug`` (no version) of instance ``name`` of kit.toml."""
    inst = instance_config(cfg, name)
    return ModelInstanceHandle(owner(cfg), inst.model_slug, instance_framework(cfg, name), instance_slug(cfg, name))


def instance_source(cfg: KitConfig, name: str, root: str | Path = ".") -> Path:
    """The folder an instance publishes: `source`, else train.output (adapter) / model.path (base)."""
    inst = instance_config(cfg, name)
    src = inst.source or (cfg.train.output if inst.kind == "adapter" else cfg.model.path)
    if not src:
        field = "model.path" if inst.kind == "base" else "train.output"
        then = " (then `kit fetch-base` downloads the base there)" if inst.kind == "base" else ""
        raise KitError(f"instances.{name}: no folder to publish; set {field}{then} or instances.{name}.source in kit.toml")
    path = Path(src).expanduser()
    return path if path.is_absolute() else Path(root) / path


def model_metadata(cfg: KitConfig, instance_name: str, root: str | Path = ".", manifest: Optional[dict] = None) -> dict:
    """model-metadata.json of the model the instance belongs to. For an adapter, the description
    (Kaggle's model card) is written from its kit_manifest.json (``manifest``, else read from the
    instance's folder under ``root``; see `kaggle_kit.publish.model_card`)."""
    from kaggle_kit.publish import model_card
    inst = instance_config(cfg, instance_name)
    title = inst.model_title or inst.model_slug
    if inst.kind == "adapter" and manifest is None:
        try:
            manifest, _ = model_card.read_manifest(instance_source(cfg, instance_name, root))
        except KitError:
            manifest = None
    if inst.kind == "adapter" and manifest:
        description = model_card.adapter_card(title, manifest)
    else:
        what = "fine-tuned adapter" if inst.kind == "adapter" else "base model"
        description = (
            f"# Model Summary\n\n{title}: a {what} published with kaggle-kit "
            f"(base: `{cfg.model.name}`).\n\n# Model Characteristics\n\nTask: {cfg.task.kind}, metric: {cfg.task.metric}.\n"
        )
    return render_metadata(
        "model-metadata.json",
        dict(
            owner=owner(cfg),
            title=title,
            slug=inst.model_slug,
            subtitle="",
            is_private=inst.is_private,
            description=description,
        ),
    )


def instance_metadata(cfg: KitConfig, instance_name: str, manifest: Optional[dict] = None) -> dict:
    """model-instance-metadata.json (framework in Kaggle's spelling, licence in Kaggle's name). An
    adapter's base and method come from its kit_manifest.json (``manifest``) when given."""
    inst = instance_config(cfg, instance_name)
    if inst.kind == "adapter":
        base = str((manifest or {}).get("base_model", {}).get("name") or cfg.model.name)
        method = str((manifest or {}).get("peft", {}).get("method") or cfg.peft.method)
        overview = (
            f"PEFT adapter ({method}) with its classification head for `{base}`; "
            "kit_manifest.json inside records the prompt format, labels and quantization."
        )
        usage = (
            "# Model Usage\n\nAttach this instance and the base model to a notebook; load the base with "
            "`transformers`, then `peft.PeftModel.from_pretrained(base, \"${PATH}\")`.\n"
        )
    else:
        overview = f"Snapshot of `{cfg.model.name}` (safetensors, config, tokenizer) for offline Kaggle notebooks."
        usage = "# Model Usage\n\n`AutoModelForSequenceClassification.from_pretrained(\"${PATH}\")`\n"
    if str(inst.license).lower() == "gemma":
        overview += f" Licence: Gemma Terms of Use ({GEMMA_TERMS})."
    return render_metadata(
        "model-instance-metadata.json",
        dict(
            owner=owner(cfg),
            model_slug=inst.model_slug,
            instance_slug=instance_slug(cfg, instance_name),
            framework=instance_framework(cfg, instance_name),
            overview=overview,
            usage=usage,
            license=model_license_name(inst.license) or inst.license,
            fine_tunable=False,
        ),
    )

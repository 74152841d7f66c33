"""Checks of a kernel's metadata fields and its notebook file, as strict as Kaggle's server and as
lenient as its client (kaggle 2.2.4, `kaggle/api/kaggle_api_extended.py`).

- Booleans: the client's `get_bool` reads JSON booleans and the strings "true"/"false" in any
  case (Kaggle's own docs example, docs/kernels_metadata.md, writes `"is_private": "false"`); any
  other value raises "Invalid boolean value". Strings are accepted here with a warning; anything
  else is a problem. Defaults when absent are the client's: is_private true, enable_gpu false,
  enable_tpu false, enable_internet **true** (`kernels_push`; the docs say false).
- Sources: `validate_dataset_string` / `validate_kernel_string` allow a third path part (a
  version) but never check that it is a number; the server wants an integer there. Pages on
  kaggle.com put a page type before the owner (`/datasets/owner/slug`, `/code/owner/slug`,
  `/c/slug`, `/competitions/slug`, `/models/...`), and such prefixes turn up in kernel-metadata.json
  (`kaggle kernels pull -m` writes what the server returns; copies from the address bar): a
  prefix is named and the fix is "drop the prefix".
- machine_shape: Kaggle's documented names (`metadata.MACHINE_SHAPES` and the lists beside it,
  with their sources) plus kit.toml `kaggle.extra_machine_shapes`.
- The notebook: `kernels_push` sends the code file's JSON as it is; a notebook without
  `metadata.kernelspec` is accepted and then dies on Kaggle ("No kernel name found in notebook").
  So it must be valid nbformat 4, name a kernel, and speak the metadata's language.

- Models: every model a kernel's notebook loads is one of its sources under /kaggle/input
  (`kernel_model_problems`, run by `kit render`, `kit validate` and every push).

Each function appends problems (the push would fail or misrun) and warnings (it works, but write
it differently) to the lists it is given, or returns them; nothing raises.
"""
from __future__ import annotations

import copy
import json
import re
import warnings as pywarnings
from pathlib import Path
from typing import Iterable, Optional

from kaggle_kit.publish import handles as hd
from kaggle_kit.publish import metadata as md

# The client's defaults for absent keys (kaggle 2.2.4 `kernels_push`).
BOOL_DEFAULTS = {"is_private": True, "enable_gpu": False, "enable_tpu": False, "enable_internet": True}

# Page types of kaggle.com addresses, per source list (lower case).
PAGE_PREFIXES = {
    "dataset_sources": ("datasets", "dataset", "d"),
    "kernel_sources": ("code", "kernels", "kernel", "notebooks", "notebook"),
    "competition_sources": ("c", "competitions", "competition"),
    "model_sources": ("models", "model", "m"),
}
_URL = re.compile(r"^https?://(www\.)?kaggle\.com/", re.I)

# code_file extensions by kernel type and language (kaggle 2.2.4 `kernels_pull` writes these).
SCRIPT_SUFFIXES = {"python": (".py",), "r": (".r",), "rmarkdown": (".rmd",)}
NOTEBOOK_LANGUAGES = {"python": "python", "r": "r", "rmarkdown": "r"}  # the client pushes rmarkdown notebooks as r


def read_bool(meta: dict, key: str, where: str, problems: list, warnings: list) -> Optional[bool]:
    """The value the client would send for ``key`` (None when it would refuse the value)."""
    if key not in meta:
        return BOOL_DEFAULTS.get(key)
    value = meta[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        flag = value.lower() == "true"
        warnings.append(f"{where}: {key} = {value!r} is a string; the kaggle client reads it as {str(flag).lower()}, "
                        f"but write the JSON boolean {str(flag).lower()} (without quotes)")
        return flag
    problems.append(f"{where}: {key} = {value!r} is not a boolean; the kaggle client refuses it (\"Invalid boolean value\"): "
                    "write true or false")
    return None


def _without_prefix(src: str, kind: str) -> tuple[str, Optional[str]]:
    """``(source without a kaggle.com address or page-type prefix, the prefix found or None)``."""
    text = src.strip()
    url = _URL.match(text)
    if url:
        text = text[url.end():]
    head, slash, rest = text.strip("/").partition("/")  # a page type, then the handle
    if slash and head.lower() in PAGE_PREFIXES[kind]:
        return rest, (url.group(0) if url else "") + head + "/"
    if url:
        return text.strip("/"), url.group(0)
    return src, None


# Kaggle's slug syntax (the client's `_validate_slug_syntax`), kept under its old name.
md_slug = hd.slug_problems


def check_sources(meta: dict, where: str, model_source_check=None) -> list[str]:
    """Every source list: a list of strings, no page-type prefix, the handle's shape and Kaggle's rules
    (`kaggle_kit.publish.handles`; dataset and kernel sources may pin a version, model sources must)."""
    p: list[str] = []
    for key, kind in (("dataset_sources", "dataset"), ("kernel_sources", "kernel"),
                      ("competition_sources", "competition"), ("model_sources", "model")):
        values = meta.get(key)
        if values is None:
            continue
        if not isinstance(values, list):
            p.append(f"{where}: {key} must be a list of strings, got {values!r}")
            continue
        for src in values:
            if not isinstance(src, str) or not src:
                p.append(f"{where}: {key}: {src!r} is not a source name")
                continue
            bare, prefix = _without_prefix(src, key)
            if prefix:
                p.append(f"{where}: {key}: {src!r} starts with the page-type prefix {prefix!r} (as kaggle.com addresses "
                         f"and `kaggle kernels pull -m` write it), which Kaggle would read as part of the name; "
                         f"drop the prefix: {bare!r}")
                continue
            if kind == "dataset":
                p += hd.check_dataset(src, where, named=f"dataset source {src!r}")[1]
            elif kind == "kernel":
                p += hd.check_kernel(src, where, named=f"kernel source {src!r}")[1]
            elif kind == "competition":
                p += hd.check_competition(src, where, named="competition source")[1]
            elif model_source_check is not None:
                p += model_source_check(src, where)
            else:
                p += hd.check_model_instance(src, where, versioned=True, named=f"model source {src!r}")[1]
    return p


def check_machine_shape(meta: dict, gpu: Optional[bool], tpu: Optional[bool], where: str, problems: list,
                        warnings: list, extra: Iterable[str] = ()) -> None:
    """``machine_shape`` against Kaggle's lists (sources in `kaggle_kit.publish.metadata`)."""
    shape = meta.get("machine_shape")
    extra = tuple(extra)
    if shape in (None, ""):
        if gpu:
            problems.append(f"{where}: enable_gpu is true but machine_shape (the accelerator) is not set; Kaggle then "
                            "picks one for you: set it, e.g. 'NvidiaTeslaT4' (GPU T4 x2) via kernels.<name>.accelerator")
        return
    if not isinstance(shape, str):
        problems.append(f"{where}: machine_shape = {shape!r} must be a string such as 'NvidiaTeslaT4'")
        return
    known = ", ".join(f"{k} ({v})" for k, v in md.MACHINE_SHAPES.items())
    if shape in md.MACHINE_SHAPES or shape in extra:
        pass
    elif shape in md.RESTRICTED_SHAPES:
        warnings.append(f"{where}: machine_shape = {shape!r} ({md.RESTRICTED_SHAPES[shape]}) is offered only in some "
                        f"competitions (or to Kaggle admins); elsewhere Kaggle runs the kernel on another machine. "
                        f"Every user can pick: {known}")
    elif shape in md.UNAVAILABLE_SHAPES:
        why, instead = md.UNAVAILABLE_SHAPES[shape]
        fix = f"write {instead!r}" if instead else "clear machine_shape and set enable_gpu/enable_tpu false"
        problems.append(f"{where}: machine_shape = {shape!r} is {why}; {fix}")
    else:
        near = [k for k in list(md.MACHINE_SHAPES) + list(md.RESTRICTED_SHAPES) if k.lower() == shape.strip().lower()]
        hint = f"write it {near[0]!r}" if near else f"use one of {known}"
        problems.append(f"{where}: machine_shape = {shape!r} is not an accelerator Kaggle offers (Kaggle accepts unknown "
                        f"names and runs the kernel on another machine); {hint}, or, if Kaggle added this name after "
                        f"this kit's list, add it to kit.toml kaggle.extra_machine_shapes")
        return
    name = shape
    if name.startswith(md.GPU_SHAPE_PREFIX) and gpu is False:
        problems.append(f"{where}: machine_shape = {shape!r} is a GPU but enable_gpu is false; set enable_gpu true or clear the accelerator")
    if name.startswith(md.TPU_SHAPE_PREFIX) and (tpu is False or gpu):
        warnings.append(f"{where}: machine_shape = {shape!r} is a TPU but enable_tpu = {tpu} and enable_gpu = {gpu}; "
                        "set enable_tpu true and enable_gpu false so the flags say what runs")


def check_code_file(meta: dict, folder: Optional[Path], where: str, problems: list, warnings: list) -> None:
    """``code_file`` exists, has the kernel type's extension, and (notebooks) is a notebook Kaggle can start."""
    code = meta.get("code_file")
    if not code or not isinstance(code, str):
        problems.append(f"{where}: code_file is missing; name the notebook, e.g. 'inference.ipynb' (kaggle client: "
                        "\"A source file must be specified in the metadata\")")
        return
    language, ktype = meta.get("language"), meta.get("kernel_type")
    suffix = Path(code).suffix.lower()
    if ktype == "notebook" and suffix != ".ipynb":
        problems.append(f"{where}: kernel_type is 'notebook' but code_file {code!r} is not a .ipynb file; "
                        "set kernel_type 'script' or point code_file at the notebook")
    elif ktype == "script" and language in SCRIPT_SUFFIXES and suffix not in SCRIPT_SUFFIXES[language]:
        problems.append(f"{where}: kernel_type 'script' in {language} needs a {SCRIPT_SUFFIXES[language][0]} code_file, "
                        f"not {code!r}")
    if folder is None:
        return
    path = Path(folder) / code
    if not path.is_file():
        problems.append(f"{where}: code_file {code!r} not found in {folder}; run `kit render`")
        return
    if ktype == "notebook" and suffix == ".ipynb":
        problems += notebook_problems(path, language)


def notebook_problems(path: Path, language: Optional[str]) -> list[str]:
    """A notebook Kaggle can start: nbformat 4 that validates, ``metadata.kernelspec`` with a
    name, and a kernel language that matches the metadata's ``language``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [f"{path}: not a readable JSON notebook ({exc}); re-render it with `kit render`"]
    import nbformat

    p: list[str] = []
    try:
        nb = nbformat.from_dict(copy.deepcopy(data))
        if nb.get("nbformat") != 4:
            p.append(f"{path}: nbformat {nb.get('nbformat')!r}; Kaggle runs nbformat 4 notebooks: convert it "
                     "(`jupyter nbconvert --to notebook`) or re-render with `kit render`")
        else:
            with pywarnings.catch_warnings():  # missing cell ids (nbformat 4.5) are filled in, as Jupyter does
                pywarnings.simplefilter("ignore")
                nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        p.append(f"{path}: not a valid nbformat 4 notebook ({first}); re-render it with `kit render`")
    meta = data.get("metadata") if isinstance(data, dict) else None
    spec = meta.get("kernelspec") if isinstance(meta, dict) else None
    want = NOTEBOOK_LANGUAGES.get(language or "", language)
    example = {"python": '{"name": "python3", "display_name": "Python 3", "language": "python"}',
               "r": '{"name": "ir", "display_name": "R", "language": "R"}'}.get(want or "", "")
    if not isinstance(spec, dict) or not spec.get("name"):
        p.append(f"{path}: metadata.kernelspec {'has no name' if isinstance(spec, dict) else 'is missing'}; Kaggle cannot "
                 f"start it (\"No kernel name found in notebook\"): add \"kernelspec\": {example or '{...}'} to the "
                 "notebook's metadata (`kit render` writes it)")
        return p
    info = meta.get("language_info") if isinstance(meta.get("language_info"), dict) else {}
    spoken = str(spec.get("language") or info.get("name") or "").lower()
    if want and spoken and spoken != want:
        p.append(f"{path}: the notebook's kernel speaks {spoken!r} (kernelspec {spec.get('name')!r}) but "
                 f"kernel-metadata.json says language {language!r}; make them agree")
    return p


# --------------------------------------------------------------------------- the models a notebook loads

# A kernel's notebook loads its base from the instance with kind = "base" it mounts (the `base` input of
# `kaggle_kit.notebooks.render`); without one it would fall back to the folder the adapter's kit_manifest.json
# records, or (train template) to model.path / a hub id: paths of this machine, absent on Kaggle, where the
# notebook stops only after the push and the wait for a GPU. Named bases ('tiny', 'smollm2', 'minilm') are
# built from code and installed packages, so a train kernel needs no base instance for them.
KAGGLE_INPUT = "/kaggle/input"


def kernel_model_problems(cfg, name: str, root=".") -> list[str]:
    """Problems of kernel ``name`` whose notebook would load a model from outside /kaggle/input: no base
    instance where it needs one (an adapter that is not a merged model, a train kernel on model.path or a
    hub id), or (run and base folders at hand) an adapter whose manifest accepts none of the mounted bases.
    Each names the kernel, what is missing and the kit.toml fix; an unknown kernel or instance is left to
    the metadata checks. Used by `kit render`, `kit validate` and every push."""
    kernel = cfg.kernels.get(name)
    if kernel is None:
        return []
    where = f"kit.toml [kernels.{name}]"
    listed = [i for i in kernel.instances if i in cfg.instances]
    bases = [i for i in listed if cfg.instances[i].kind == "base"]
    folders = {i: _local_folder(cfg, i, root) for i in listed}
    adapters = [i for i in listed if cfg.instances[i].kind == "adapter" and not _is_merged(folders[i])]
    manifests = {a: _manifest(folders[a]) for a in adapters}
    if bases:
        return [p for a in adapters for p in _base_mismatch(name, a, manifests[a], bases, folders)]
    loads = _base_it_would_load(cfg, kernel, adapters, manifests)
    if not loads:
        return []
    extra = (f" (kernels.{name}.model_sources {list(kernel.model_sources)} are mounted, but the notebook takes its "
             f"base only from an instance with kind = \"base\")" if kernel.model_sources else "")
    return [f"{where} (template {kernel.template!r}) mounts no base model: its notebook would load {loads}, which is "
            f"not under {KAGGLE_INPUT} on Kaggle (there it stops with \"the base model folder ... is not here\", after "
            f"the push and the wait for a GPU); a notebook loads models only from its sources{extra}. Fix kit.toml: "
            f"{_base_fix(cfg, name, kernel)}"]


def _local_folder(cfg, inst: str, root) -> Optional[Path]:
    """The folder instance ``inst`` publishes, when it is on this machine (else None: nothing to compare)."""
    from kaggle_kit.errors import KitError

    try:
        folder = md.instance_source(cfg, inst, root)
    except KitError:
        return None
    return folder if folder.is_dir() else None


def _is_merged(folder: Optional[Path]) -> bool:
    """A `kit merge` folder (full weights + kit_manifest.json, no adapter_config.json): the whole model, no base."""
    return (folder is not None and (folder / "config.json").is_file() and (folder / "kit_manifest.json").is_file()
            and not (folder / "adapter_config.json").is_file())


def _manifest(folder: Optional[Path]):
    from kaggle_kit.runtime.manifest import Manifest

    if folder is None or not (folder / "kit_manifest.json").is_file():
        return None
    try:
        return Manifest.load(folder)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _base_it_would_load(cfg, kernel, adapters: list, manifests: dict) -> str:
    """What the notebook of a kernel without a base instance would load its base from ('' when nothing)."""
    from kaggle_kit.models.named import NAMED_MODELS

    if adapters:
        recorded = []
        for a in adapters:
            bm = manifests[a].base_model if manifests[a] is not None else {"name": cfg.model.name}
            at = f" at {bm['path']}" if bm.get("path") else ""
            recorded.append(f"the base of adapter instance {a!r} ({bm.get('name') or '?'}{at})")
        return ", ".join(recorded) + " from the folder recorded in the adapter's kit_manifest.json"
    if kernel.template in ("train", "train-predict") and cfg.model.path:
        return f"the base to train from model.path = {cfg.model.path!r}"
    if kernel.template in ("train", "train-predict") and cfg.model.name not in NAMED_MODELS:
        return f"the base to train from the hub id model.name = {cfg.model.name!r}"
    return ""


def _base_fix(cfg, name: str, kernel) -> str:
    """The kit.toml change that mounts a base: list a base instance kit.toml already has, else add one."""
    known = [i for i, inst in cfg.instances.items() if inst.kind == "base"]
    if known:
        listed = json.dumps([known[0]] + list(kernel.instances))
        return f"list the base instance [instances.{known[0]}] (kind = \"base\") first: kernels.{name}.instances = {listed}"
    slug = hd.slugify((cfg.model.name or "base").rsplit("/", 1)[-1]) + "-base"
    listed = json.dumps([slug] + list(kernel.instances))
    return (f"add an [instances.{slug}] table with model_slug = \"{slug}\", kind = \"base\" and the licence of its weights, "
            f"list it first: kernels.{name}.instances = {listed}, then publish it (`kit fetch-base --instance {slug}`, "
            f"`kit push-model --instance {slug}`)")


def _base_mismatch(name: str, adapter: str, manifest, bases: list, folders: dict) -> list[str]:
    """A problem when ``adapter``'s manifest accepts none of the mounted bases (their folders at hand)."""
    from kaggle_kit.runtime.manifest import CompatibilityError, check_compatible

    if manifest is None:
        return []
    why = []
    for b in bases:
        if folders[b] is None or not (folders[b] / "config.json").is_file():
            return []  # not at hand: the notebook's own check runs before any weights load
        try:
            check_compatible(manifest, folders[b], None)
            return []
        except CompatibilityError as exc:
            why.append(f"{b}: {exc}")
    bm = manifest.base_model or {}
    return [f"kit.toml [kernels.{name}]: adapter instance {adapter!r} was trained on {bm.get('name') or bm.get('path') or '?'}, "
            f"but none of the base instances the kernel mounts is that base ({'; '.join(why)}); the notebook would stop "
            f"before predicting. Fix kit.toml: mount that base's instance (an [instances.NAME] table with kind = \"base\" "
            f"whose source is the base's folder) in kernels.{name}.instances"]

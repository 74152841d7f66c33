"""Where things are on a Kaggle notebook machine, and the generated notebook's start-up checks.

Kaggle mounts a notebook's inputs read-only under ``/kaggle/input`` and keeps what is written to
``/kaggle/working`` as the notebook's output; ``/kaggle/temp`` is scratch space. Two mount layouts
are in use, and every input is looked up in both (the current one first):

- competition data: ``input/competitions/<slug>``, formerly ``input/<slug>``;
- datasets: ``input/datasets/<owner>/<slug>``, formerly ``input/<slug>``;
- model instances: ``input/models/<owner>/<model>/<framework>/<instance>/<version>``, formerly
  ``input/<model>/<framework>/<instance>/<version>`` (framework in lower case).

One environment variable, ``KIT_KAGGLE_ROOT``, replaces ``/kaggle`` for local runs
(`kit run-local` sets it to a temporary folder laid out like Kaggle's).

Embeddable: standard library only (the version check imports the sibling manifest module).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, List, Sequence

ROOT_ENV = "KIT_KAGGLE_ROOT"
KAGGLE_ROOT = "/kaggle"


class InputMissing(FileNotFoundError):
    """An input the notebook needs is not mounted; the message names the Kaggle path and the kit.toml key."""


def kaggle_root() -> Path:
    """``/kaggle``, or ``$KIT_KAGGLE_ROOT`` for local runs."""
    return Path(os.environ.get(ROOT_ENV) or KAGGLE_ROOT)


def kaggle_path(rel: str) -> str:
    """How ``rel`` (relative to the root) is spelled on Kaggle, for messages."""
    return f"{KAGGLE_ROOT}/{rel.strip('/')}"


def local(rel: str) -> Path:
    """``rel`` under the active root."""
    return kaggle_root() / rel.strip("/")


def require_input(role: str, candidates: Sequence[str], key: str, file: str = "", file_key: str = "") -> Path:
    """The first of ``candidates`` (paths relative to the root) that is mounted, else InputMissing.

    With ``file``, returns that file inside the folder; a missing file names ``file_key``.
    """
    for rel in candidates:
        folder = local(rel)
        if folder.is_dir():
            if not file:
                return folder
            path = folder / file
            if not path.exists():
                have = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
                raise InputMissing(
                    f"{role}: {kaggle_path(rel)}/{file} not found (the folder holds: {have}). "
                    f"The file name comes from {file_key or key} in kit.toml; fix it there and run `kit render` again."
                )
            return path
    expected = " or ".join(kaggle_path(r) for r in candidates)
    where = "" if str(kaggle_root()) == KAGGLE_ROOT else f" (here {ROOT_ENV}={kaggle_root()})"
    raise InputMissing(
        f"{role}: input folder not found: expected {expected}{where}. It is set by {key} in kit.toml: "
        f"attach that source to the notebook (kernel-metadata.json, written by `kit render`), "
        f"or for `kit run-local` pass --inputs {role}=DIR."
    )


def running_embedded() -> bool:
    """True when this runtime runs from the copy a notebook embeds under the Kaggle root
    (``/kaggle/temp/kit-runtime``; under ``$KIT_KAGGLE_ROOT`` in `kit run-local`): inside a notebook."""
    try:
        return runtime_dir().resolve() in Path(__file__).resolve().parents
    except OSError:
        return False


def kaggle_spelling(path) -> str:
    """``path`` as Kaggle spells it (``/kaggle/...``) when it lies under the active root, else as given."""
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(kaggle_root()))
    except ValueError:
        return str(path)
    return kaggle_path(rel.as_posix())


def base_not_mounted(adapter, base_model: dict) -> str:
    """Why a notebook cannot load ``adapter``'s base: it mounts none, and the manifest's folder is the trainer's."""
    recorded = base_model.get("path") or "(none recorded)"
    return (
        f"{kaggle_spelling(adapter)}: this notebook mounts no base model for the adapter, and a notebook loads models "
        f"only from its inputs under {KAGGLE_ROOT}/input: the base folder in the adapter's kit_manifest.json "
        f"({recorded}, base {base_model.get('name') or '?'}) is a folder of the machine that trained it. Mount the "
        f"base's model instance: in kit.toml add an [instances.NAME] table with kind = \"base\" to "
        f"kernels.<kernel>.instances, publish it (`kit fetch-base`, `kit push-model --instance NAME`) and run "
        f"`kit render` again."
    )


def recorded_base(base_model: dict, adapter) -> str:
    """The base folder recorded in an adapter's manifest (``base_model.path``, '' when none), for runs outside
    a notebook (`kit predict`). Inside a notebook a path of the training machine is never used, on Kaggle or
    in `kit run-local` alike: InputMissing with :func:`base_not_mounted`'s message."""
    if running_embedded():
        raise InputMissing(base_not_mounted(adapter, base_model or {}))
    return (base_model or {}).get("path") or ""


def working(name: str = "") -> Path:
    """A path in ``/kaggle/working`` (the notebook's output), creating the folder."""
    folder = local("working")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name if name else folder


def runtime_dir() -> Path:
    """Where the notebook writes the embedded runtime (scratch space, not the notebook's output)."""
    return local("temp") / "kit-runtime"


def activate(folder: str, log: Callable[[str], None] = print) -> dict:
    """Check that the runtime is imported from the embedded copy in ``folder``; make it importable
    by worker processes; keep the Hugging Face hub offline. Returns what it found."""
    root = Path(folder).resolve()
    origin = Path(__file__).resolve()
    if root not in origin.parents:
        raise ImportError(
            f"the kaggle-kit runtime was imported from {origin.parent}, not from the embedded copy in {root}; "
            "restart the kernel and run the notebook from the top"
        )
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(root) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(root)] + paths)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    modules = sorted(p.stem for p in (root / "kaggle_kit" / "runtime").glob("*.py") if p.stem != "__init__")
    package = sys.modules.get((__package__ or "").rpartition(".")[0])
    info = {
        "kit_version": getattr(package, "__version__", "?"),
        "runtime_dir": str(root),
        "modules": modules,
        "python": sys.version.split()[0],
        "kaggle_root": str(kaggle_root()),
    }
    log(f"kaggle-kit {info['kit_version']} runtime from {root}: {', '.join(modules)} (Python {info['python']})")
    return info


def check_library_versions(adapter_dir, log: Callable[[str], None] = print, strict: bool = True, manifest=None) -> List[str]:
    """Compare the installed libraries with those the adapter was trained with (its kit_manifest.json).

    ``manifest``: that file already read (the notebook reads it once and hands it to the prediction
    too); else it is read from ``adapter_dir``. Prints each warning; raises RuntimeError listing the
    errors (when ``strict``). Returns the warnings.
    """
    from .manifest import Manifest, check_versions

    manifest = Manifest.load(adapter_dir) if manifest is None else manifest
    warnings, errors = check_versions(manifest)
    for w in warnings:
        log(f"warning: {w}")
    if errors:
        lines = "\n".join(f"  - {e}" for e in errors)
        message = (
            f"installed libraries do not match the adapter's {adapter_dir}/kit_manifest.json:\n{lines}\n"
            "Build the wheel set for this image (`kit build-wheels`), push it (`kit push-dataset`) and attach it, "
            "or retrain with the image's versions."
        )
        if strict:
            raise RuntimeError(message)
        log(f"warning: {message}")
    if not warnings and not errors:
        log("library versions match the adapter's manifest")
    return list(warnings) + ([] if strict else list(errors))

"""`kit_manifest.json`: the adapter folder explains itself.

`kit train` writes it beside `adapter_config.json`; prediction, the notebooks, the wheel builder and
the publishers read it and never restate what it holds: the task and label map, the prompt format
and truncation, max length, the base model (id, local path, a hash of its config), quantization,
PEFT settings, library versions at training time and the final metrics.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from .basecheck import architecture_keys, compare_architecture

MANIFEST_NAME = "kit_manifest.json"
MANIFEST_VERSION = 1
TRACKED_LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "tokenizers")


@dataclass
class Manifest:
    task: dict  # kind, labels (list, output order), metric, format
    prompt: dict  # PromptSpec.to_dict()
    base_model: dict  # name, path, config_sha256, architecture, model_type, architecture_keys
    quantization: dict  # mode, quant_type, double_quant, compute_dtype (as training used it; never 'auto')
    peft: dict  # method, r, alpha, dropout, bias, targets, freeze_layers
    # split, schedule, precision; numerics: device, compute_capability, precision, base_dtype, compute_dtype,
    # each with a '*_by' of 'rule' (the device's precision, runtime/precision.py) or 'user' (kit.toml)
    training: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    generation: dict = field(default_factory=dict)  # sft: template, max_new_tokens, stop_strings, sampling
    kit_version: str = ""
    manifest_version: int = MANIFEST_VERSION
    created: str = ""

    # ---------------------------------------------------------------- derived
    @property
    def labels(self) -> list:
        return list(self.task.get("labels", []))

    @property
    def id2label(self) -> dict:
        return {i: n for i, n in enumerate(self.labels)}

    @property
    def label2id(self) -> dict:
        return {n: i for i, n in enumerate(self.labels)}

    @property
    def kind(self) -> str:
        return self.task.get("kind", "pairwise")

    # ---------------------------------------------------------------- io
    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, folder) -> Path:
        """Write atomically (temporary file + rename) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MANIFEST_NAME
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2, sort_keys=True, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, folder) -> "Manifest":
        folder = Path(folder)
        path = folder / MANIFEST_NAME if folder.is_dir() or not str(folder).endswith(".json") else folder
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no {MANIFEST_NAME}. Point at a run folder written by `kit train` "
                f"(it holds adapter_config.json and {MANIFEST_NAME})."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc}); re-run `kit train` or restore the file") from None
        missing = [k for k in ("task", "prompt", "base_model", "quantization", "peft") if k not in data]
        if missing:
            raise ValueError(f"{path}: missing field(s) {missing}; this folder was not written by `kit train`")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def library_versions() -> dict:
    """Versions of Python and the tracked libraries in this environment (None when absent)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def config_sha256(model_dir) -> Optional[str]:
    """sha256 of a model folder's config.json (identifies the base without hashing weights)."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


# --------------------------------------------------------------------------- compatibility checks

class CompatibilityError(ValueError):
    """The adapter does not fit the base, the labels or the library versions at hand."""


def _recorded_architecture(bm: dict) -> Optional[dict]:
    """The architecture keys recorded at training (``base_model.architecture_keys``), else those of the
    recorded base folder's config.json when it is here (manifests of older kits), else None."""
    if isinstance(bm.get("architecture_keys"), dict) and bm["architecture_keys"]:
        return dict(bm["architecture_keys"])
    recorded = Path(bm["path"]) if bm.get("path") else None
    if recorded is not None and (recorded / "config.json").is_file():
        try:
            return architecture_keys(json.loads((recorded / "config.json").read_text(encoding="utf-8")))
        except ValueError:
            return None
    return None


def _major_minor(version) -> Optional[tuple]:
    import re

    if not version:
        return None
    m = re.match(r"(\d+)\.(\d+)", str(version))
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_versions(manifest: "Manifest", current: Optional[dict] = None) -> tuple:
    """(warnings, errors) comparing the library versions recorded at training with ``current``.

    Any difference is a warning naming both versions. Errors where loading is known to break:
    a peft older (major.minor) than the one that saved the adapter (newer adapter_config fields are
    rejected), and a different transformers major version (4 ↔ 5 renamed model classes, config
    fields and tokenizer backends).
    """
    current = library_versions() if current is None else current
    trained = manifest.versions or {}
    warnings, errors = [], []
    for name in sorted(set(trained) | set(current)):
        was, now = trained.get(name), current.get(name)
        if was is None or now is None or str(was) == str(now):
            continue
        warnings.append(f"{name}: the adapter was trained with {name} {was}, this environment has {name} {now}")
    peft_was, peft_now = _major_minor(trained.get("peft")), _major_minor(current.get("peft"))
    if peft_was and peft_now and peft_now < peft_was:
        errors.append(
            f"peft {current.get('peft')} is older than peft {trained.get('peft')} that saved the adapter; "
            f"adapter_config.json may hold fields it rejects. Install peft>={peft_was[0]}.{peft_was[1]} "
            f"(add it to the wheel set for Kaggle)"
        )
    tf_was, tf_now = _major_minor(trained.get("transformers")), _major_minor(current.get("transformers"))
    if tf_was and tf_now and tf_was[0] != tf_now[0]:
        errors.append(
            f"transformers {current.get('transformers')} has another major version than transformers "
            f"{trained.get('transformers')} used at training ({tf_was[0]}.x vs {tf_now[0]}.x changes model classes "
            f"and config fields); install transformers=={trained.get('transformers')}"
        )
    return warnings, errors


def check_compatible(manifest: "Manifest", base_path=None, labels: Optional[list] = None) -> list:
    """Raise CompatibilityError (a ValueError) when the adapter does not fit ``base_path`` or ``labels``; return notes otherwise.

    Reads only config.json files, so it runs before any weights load. The base matches when its
    config.json hashes to the recorded sha256; otherwise its architecture keys (model type, sizes,
    layers, heads, KV heads, vocab, position limit; recorded in the manifest at training) must
    equal the recorded ones: then it proceeds with a note (a copy saved by another transformers
    release, as Kaggle mounts it), else it refuses naming each differing key and both values.
    """
    notes: list = []
    bm = manifest.base_model or {}
    if labels:
        want = manifest.labels
        if want and list(labels) != list(want):
            raise CompatibilityError(
                f"the adapter was trained for labels {want} but the data has labels {list(labels)}; "
                f"use an adapter trained on this task (or pass data in the format it was trained on: "
                f"{manifest.task.get('format', '?')})"
            )
    if base_path is None:
        return notes
    base_path = Path(base_path)
    cfg_path = base_path / "config.json"
    if not cfg_path.is_file():
        raise CompatibilityError(f"{base_path}: no config.json; pass the folder of the base model the adapter was trained on ({bm.get('name') or bm.get('path')})")
    sha = config_sha256(base_path)
    if bm.get("config_sha256") and sha == bm.get("config_sha256"):
        return notes
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CompatibilityError(f"{cfg_path}: not valid JSON ({exc})") from None
    want_type = bm.get("model_type")
    if want_type and cfg.get("model_type") != want_type:
        raise CompatibilityError(
            f"{cfg_path}: a {cfg.get('model_type')!r} model but the adapter was trained on a {want_type!r} base "
            f"({bm.get('name') or bm.get('path')}); pass --base with the folder of that base"
        )
    recorded = _recorded_architecture(bm)
    if recorded is None:
        if bm.get("config_sha256"):
            raise CompatibilityError(
                f"{cfg_path} (sha256 {sha[:12]}…) is not the config.json the adapter was trained on "
                f"(sha256 {str(bm.get('config_sha256'))[:12]}…, base {bm.get('name') or bm.get('path')}), and "
                f"kit_manifest.json records no architecture keys to compare (an older kit wrote it); pass --base with "
                f"the training base's own folder, or retrain with this kit"
            )
        return notes
    given = architecture_keys(cfg)
    diff = compare_architecture(recorded, given)
    if diff:
        shown = "; ".join(f"{k}: trained {a!r}, given {b!r}" for k, (a, b) in diff.items())
        raise CompatibilityError(
            f"{cfg_path} describes another network than the adapter was trained on "
            f"({bm.get('name') or bm.get('path')}): {shown}; pass --base with the base named in kit_manifest.json"
        )
    if bm.get("config_sha256"):
        notes.append(f"note: {cfg_path} differs from the training base's config.json (sha256 {sha[:12]}… vs "
                     f"{str(bm.get('config_sha256'))[:12]}…) but its architecture keys match "
                     f"({', '.join(k for k in recorded if recorded.get(k) is not None)}); proceeding")
    return notes

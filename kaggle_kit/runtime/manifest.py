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

MANIFEST_NAME = "kit_manifest.json"
MANIFEST_VERSION = 1
TRACKED_LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "tokenizers")


@dataclass
class Manifest:
    task: dict  # kind, labels (list, output order), metric, format
    prompt: dict  # PromptSpec.to_dict()
    base_model: dict  # name, path, config_sha256, architecture, model_type
    quantization: dict  # mode, quant_type, double_quant, compute_dtype
    peft: dict  # method, r, alpha, dropout, bias, targets, freeze_layers
    training: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
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

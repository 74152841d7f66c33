"""The model card of a published adapter, written from its `kit_manifest.json`.

PEFT's `save_pretrained` leaves a boilerplate README.md in the run folder ("[More Information
Needed]" in every section); `kit push-model` leaves it out and publishes this card instead, as the
model's description (Kaggle's model card, model-metadata.json `description`) and as README.md in
the instance files. Everything in it comes from the manifest (the run folder explains itself):
the base model, the task and its labels, prompt format, quantization, adapter settings, final
metrics and library versions. Standard library only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

MANIFEST_NAME = "kit_manifest.json"  # = kaggle_kit.runtime.manifest.MANIFEST_NAME (not imported: no runtime import here)
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def read_manifest(folder: Path) -> tuple[Optional[dict], Optional[str]]:
    """``(manifest dict, None)`` or ``(None, why it cannot be used)``."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None, f"{folder} has no {MANIFEST_NAME}: the notebook reads the task, labels, prompt format and base from it"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{path} is not valid JSON ({exc})"
    missing = [k for k in ("task", "prompt", "base_model", "quantization", "peft") if not isinstance(data, dict) or k not in data]
    if missing:
        return None, f"{path} lacks {', '.join(missing)}: it was not written by `kit train`"
    return data, None


def adapter_folder_problems(folder: Path, where: str) -> list[str]:
    """What an adapter instance folder needs for the notebook to run on Kaggle."""
    folder = Path(folder)
    p = []
    if not (folder / "adapter_config.json").is_file():
        p.append(f"{where}: {folder} has no adapter_config.json; point instances.<name>.source (or train.output) at the run folder of `kit train`")
    if not any((folder / w).is_file() for w in ADAPTER_WEIGHTS):
        p.append(f"{where}: {folder} has no adapter weights ({' or '.join(ADAPTER_WEIGHTS)}); the run did not finish or the "
                 "folder is not a `kit train` run folder: re-run `kit train` (or `kit train --resume`)")
    _, why = read_manifest(folder)
    if why:
        p.append(f"{where}: {why}; publish the run folder `kit train` wrote (it writes {MANIFEST_NAME} at the end)")
    return p


def base_name(manifest: dict) -> str:
    base = manifest.get("base_model") or {}
    return str(base.get("name") or base.get("path") or "")


def base_mismatch(config_base: str, manifest: dict, where: str) -> Optional[str]:
    """A warning when kit.toml's model.name is not the base the adapter was trained on."""
    trained = base_name(manifest)
    if trained and config_base and config_base != trained:
        return (f"{where}: kit.toml model.name is {config_base!r} but the adapter's {MANIFEST_NAME} says it was trained "
                f"on {trained!r}; the card and the notebook use {trained!r}: set model.name = {trained!r} (or publish "
                "the adapter trained on your base)")
    return None


def _table(rows) -> str:
    return "| | |\n| --- | --- |\n" + "".join(f"| {k} | {v} |\n" for k, v in rows if v not in (None, "", [], {}))


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def adapter_card(title: str, manifest: dict) -> str:
    """Markdown model card of an adapter (Kaggle's model-card headings)."""
    task, base = manifest.get("task") or {}, manifest.get("base_model") or {}
    peft, quant, prompt = manifest.get("peft") or {}, manifest.get("quantization") or {}, manifest.get("prompt") or {}
    labels = task.get("labels") or []
    metrics = {k: v for k, v in (manifest.get("metrics") or {}).items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    versions = {k: v for k, v in (manifest.get("versions") or {}).items() if v}
    lines = [
        "# Model Summary", "",
        f"{title}: a {peft.get('method', 'PEFT').upper()} adapter with its classification head for the base model "
        f"`{base_name(manifest)}`, trained with kaggle-kit {manifest.get('kit_version', '')}. "
        f"This card is generated from the adapter's {MANIFEST_NAME}.", "",
        "# Model Characteristics", "",
        _table([("base model", f"`{base_name(manifest)}`"), ("architecture", base.get("architecture")),
                ("task", task.get("kind")), ("labels (output order)", ", ".join(f"`{x}`" for x in labels)),
                ("metric", task.get("metric")), ("data format", task.get("format")),
                ("prompt", f"max_length {prompt.get('max_length')}, truncation {prompt.get('truncation')}" if prompt else ""),
                ("quantization", quant.get("mode")),
                ("adapter", ", ".join(f"{k} {v}" for k, v in peft.items() if k in ("method", "r", "alpha", "targets")))]),
    ]
    if metrics:
        lines += ["# Evaluation Results", "", _table(sorted((k, _number(v)) for k, v in metrics.items()))]
    if versions:
        lines += ["# Library Versions", "", "At training time:", "", _table(sorted(versions.items()))]
    lines += ["# Usage", "",
              "Attach this instance and the base model to a notebook; `kit render` writes one that loads both offline "
              f"and reads {MANIFEST_NAME} for the labels and the prompt format.", ""]
    return "\n".join(lines)

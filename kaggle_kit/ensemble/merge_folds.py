"""`kit merge --average-folds`: one adapter whose weights are the mean of the fold adapters' weights.

Every tensor of ``adapter_model.safetensors`` — the LoRA A and B matrices (or IA3 vectors) and the trained
classification head — is averaged element-wise over the folds of an `kit train --all-folds` parent
(LMSYS 1st place averaged its fold LoRAs this way). The folds must be compatible: same base (config
sha256 / name), same PEFT method, rank, alpha and target modules, the same labels and prompt settings,
and the same tensor names and shapes; otherwise the error names the fold and the difference.

Element-wise averaging of A and B is not the average of the folds' B·A updates; it works because every
fold starts from the same seeded initialisation (``train.seed``) and moves little from it. The result is
one adapter, predicted at the cost of one model; its OOF score (each fold's validation rows predicted by
the averaged adapter) is optimistic — the average has seen k-1 of every row's training folds — and is
reported beside the fold ensemble's honest OOF score (each row predicted by the fold that held it out).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from kaggle_kit.errors import KitError

WEIGHTS = "adapter_model.safetensors"
# manifest fields that must agree between folds (the others, e.g. training.fold and metrics, differ by design)
MUST_AGREE = (("task", "labels"), ("task", "kind"), ("prompt", None), ("quantization", "mode"),
              ("base_model", "config_sha256"), ("base_model", "name"), ("peft", "method"), ("peft", "r"),
              ("peft", "alpha"), ("peft", "target_modules"), ("peft", "freeze_layers"))
CONFIG_AGREE = ("peft_type", "r", "lora_alpha", "target_modules", "modules_to_save", "task_type", "use_dora", "use_rslora")


@dataclass
class AverageResult:
    out_dir: Path
    folds: list
    tensors: int
    metric: str = ""
    averaged_oof: Optional[float] = None
    fold_ensemble_oof: Optional[float] = None
    rows: int = 0

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "folds": [str(f) for f in self.folds], "tensors": self.tensors, "metric": self.metric,
                "averaged_oof": self.averaged_oof, "fold_ensemble_oof": self.fold_ensemble_oof, "rows": self.rows}


def fold_folders(parent) -> list:
    parent = Path(parent)
    folds = sorted(f for f in parent.glob("fold-*") if (f / "kit_manifest.json").is_file())
    if len(folds) < 2:
        raise KitError(f"{parent}: {len(folds)} fold run folder(s) (fold-*/kit_manifest.json); --average-folds needs the parent "
                       f"of `kit train --all-folds` with at least two folds")
    return folds


def _get(d: dict, a: str, b: Optional[str]):
    v = d.get(a, {})
    return v if b is None else (v or {}).get(b)


def check_folds(folds: list) -> None:
    """Raise KitError naming the fold and the field where a fold differs from the first one."""
    from safetensors import safe_open

    ref = folds[0]
    ref_m = json.loads((ref / "kit_manifest.json").read_text(encoding="utf-8"))
    ref_c = json.loads((ref / "adapter_config.json").read_text(encoding="utf-8"))
    with safe_open(str(ref / WEIGHTS), "np") as fh:
        ref_shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    for f in folds[1:]:
        m = json.loads((f / "kit_manifest.json").read_text(encoding="utf-8"))
        for a, b in MUST_AGREE:
            if _get(m, a, b) != _get(ref_m, a, b):
                raise KitError(f"{f}: {a}{'.' + b if b else ''} = {_get(m, a, b)!r} differs from {ref.name}'s {_get(ref_m, a, b)!r}; "
                               f"only folds of one configuration (same base, targets, rank) can be averaged")
        c = json.loads((f / "adapter_config.json").read_text(encoding="utf-8"))
        for k in CONFIG_AGREE:
            x, y = c.get(k), ref_c.get(k)
            if isinstance(x, list) and isinstance(y, list):
                x, y = sorted(x), sorted(y)
            if x != y:
                raise KitError(f"{f}/adapter_config.json: {k} = {c.get(k)!r} differs from {ref.name}'s {ref_c.get(k)!r}")
        with safe_open(str(f / WEIGHTS), "np") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
        if set(shapes) != set(ref_shapes):
            diff = sorted(set(shapes) ^ set(ref_shapes))[:3]
            raise KitError(f"{f}/{WEIGHTS}: tensor names differ from {ref.name}'s (e.g. {diff}); the folds were trained differently")
        bad = [k for k in shapes if shapes[k] != ref_shapes[k]]
        if bad:
            raise KitError(f"{f}/{WEIGHTS}: {bad[0]} has shape {shapes[bad[0]]}, {ref.name} {ref_shapes[bad[0]]}")


def average_tensors(files: list) -> dict:
    """name -> the element-wise mean (computed in float64, saved in each tensor's own dtype)."""
    import torch
    from safetensors.torch import load_file

    total, dtypes = {}, {}
    for path in files:
        for k, t in load_file(str(path)).items():
            dtypes[k] = t.dtype
            total[k] = total[k] + t.double() if k in total else t.double()
    return {k: (v / len(files)).to(dtypes[k]).contiguous() for k, v in total.items()}


def average_folds(parent, out_dir, *, score: bool = True, log: Callable = print, base_path=None) -> AverageResult:
    """Write ``out_dir``: the averaged adapter, fold-0's adapter_config.json and tokenizer, and a manifest that
    records the folds; with ``score``, the averaged adapter's OOF score beside the fold ensemble's."""
    from safetensors.torch import save_file

    from kaggle_kit.runtime.manifest import Manifest

    folds = fold_folders(parent)
    check_folds(folds)
    out_dir = Path(out_dir)
    if out_dir.resolve() in [f.resolve() for f in folds] or out_dir.resolve() == Path(parent).resolve():
        raise KitError(f"--out {out_dir} would overwrite the folds; pick a new folder, e.g. {Path(parent)}-avg")
    tensors = average_tensors([f / WEIGHTS for f in folds])
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / WEIGHTS), metadata={"format": "pt"})
    for f in folds[0].iterdir():  # adapter_config.json and the tokenizer files
        if f.is_file() and (f.name == "adapter_config.json" or f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "added_tokens", "spiece"))):
            shutil.copy2(f, out_dir / f.name)
    manifest = Manifest.load(folds[0])
    data = manifest.to_dict()
    data["training"] = dict(data.get("training") or {}, fold=None, averaged_folds=[str(f) for f in folds], average="element-wise mean of every adapter tensor")
    data["metrics"] = {}
    log(f"averaged {len(tensors)} tensors over {len(folds)} folds ({', '.join(f.name for f in folds)}) into {out_dir}")
    result = AverageResult(out_dir, folds, len(tensors))
    Manifest(**data).save(out_dir)  # a loadable run folder from here on
    if score:
        _score(result, folds, manifest, base_path, log)
        data["metrics"] = {"averaged_oof": result.averaged_oof, "fold_ensemble_oof": result.fold_ensemble_oof, "metric": result.metric, "rows": result.rows}
        Manifest(**data).save(out_dir)
    return result


def _score(result: AverageResult, folds: list, manifest, base_path, log: Callable) -> None:
    """OOF scores: the fold ensemble's (the folds' oof.csv) and the averaged adapter's on the same rows."""
    from kaggle_kit.ensemble.blend import read_oof, score
    from kaggle_kit.runtime.infer import parse_devices, predict_rows
    from kaggle_kit.runtime.testfile import load_replicas, read_test_data

    oof = read_oof(folds[0].parent)
    metric = manifest.task.get("metric") or "log_loss"
    data_path = (manifest.training or {}).get("data")
    if not data_path or not Path(data_path).is_file():
        log(f"no OOF score for the averaged adapter: the training data {data_path!r} recorded in the manifest is not here")
        return
    by_id = {r.id: r for r in read_test_data(manifest, data_path, lambda m: None, require_ids=False).rows}
    missing = [i for i in oof.ids if i not in by_id]
    if missing:
        raise KitError(f"{data_path}: {len(missing)} OOF id(s) not in the training data (e.g. {missing[:3]}); the data changed since training")
    replicas, tok = load_replicas(result.out_dir, parse_devices(None)[:1], base_path=base_path)
    probs = predict_rows(replicas[0][0], tok, manifest, [by_id[i] for i in oof.ids], replicas=replicas)
    labels = np.asarray(oof.labels)
    result.metric, result.rows = metric, len(oof.ids)
    result.fold_ensemble_oof = score(metric, oof.probs, labels, oof.multilabel)
    result.averaged_oof = score(metric, probs, labels, oof.multilabel)
    log(f"OOF {metric} on {len(oof.ids)} rows: fold ensemble {result.fold_ensemble_oof:.5f} (each row by the fold that held it out) | "
        f"averaged adapter {result.averaged_oof:.5f} (optimistic: the average saw k-1 of each row's training folds)")

"""`kit merge --average-folds`: one adapter whose weights are the mean of the fold adapters' weights.

Every tensor of ``adapter_model.safetensors`` — the LoRA A and B matrices (or IA3 vectors) and the trained
classification head — is averaged element-wise over the folds of an `kit train --all-folds` parent
(LMSYS 1st place averaged its fold LoRAs this way). The folds must be compatible: same base (config
sha256 / name), same PEFT method, rank, alpha and target modules, the same labels and prompt settings,
and the same tensor names and shapes; otherwise the error names the fold and the difference.

Element-wise averaging of A and B is not the average of the folds' updates: mean(B)·mean(A) differs from
mean(BᵢAᵢ) by the cross terms BᵢAⱼ. It is close only when every fold starts from the same seeded draw of A
(and of the head) and moves little from it. Measured on the tiny model: one seed, median relative error 0.1–3%
per module; seeds 42 and 7, ~70%, and the averaged adapter's OOF MAP@3 fell to 0.934 against 0.990 for the fold
ensemble. So two checks, before anything is written:

- the shared start, from each fold's records: the same ``training.seed`` (kit_manifest.json; a fold that records
  none is refused too, nothing can be checked) besides the base, method, targets, rank and alpha checked with
  the rest of the configuration. Folds of different seeds are refused naming each fold's seed, with the way to
  keep them: an ensemble (`kit predict` with every fold, or ``[ensemble] members``), which needs no shared start;
- the approximation itself, measured on the weights (:func:`approximation_error`: the relative Frobenius error
  of mean(B)·mean(A) against mean(BᵢAᵢ) per LoRA module, computed from r×r Gram matrices, never the dense d×d
  update), reported (median, max, worst module) in the result, its ``--json`` and the averaged manifest, and a
  warning when it is large (median over :data:`WARN_MEDIAN` or max over :data:`WARN_MAX`): records can be wrong,
  weights cannot. Refusing is kept for the seeds, a fact; the error is a measure, so it warns.

The result is one adapter, predicted at the cost of one model; its OOF score (each fold's validation rows predicted
by the averaged adapter) is optimistic — the average has seen k-1 of every row's training folds — and is reported
beside the fold ensemble's honest OOF score (each row predicted by the fold that held it out). Both use the folds'
``task.metric`` through :func:`kaggle_kit.ensemble.blend.score` (any metric `kit train` accepts, map@K included),
checked — and the fold ensemble scored — before the averaged adapter is written.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
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
# the approximation warns above these relative errors (measured: one seed 0.1-3% median, seeds 42 and 7 ~70%)
WARN_MEDIAN, WARN_MAX = 0.2, 0.5


@dataclass
class AverageResult:
    out_dir: Path
    folds: list
    tensors: int
    metric: str = ""
    averaged_oof: Optional[float] = None
    fold_ensemble_oof: Optional[float] = None
    rows: int = 0
    seed: Optional[int] = None  # the folds' shared training.seed
    approximation: dict = field(default_factory=dict)  # approximation_error()

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "folds": [str(f) for f in self.folds], "tensors": self.tensors, "metric": self.metric,
                "averaged_oof": self.averaged_oof, "fold_ensemble_oof": self.fold_ensemble_oof, "rows": self.rows,
                "seed": self.seed, "approximation": self.approximation}


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


def check_folds(folds: list) -> list:
    """Each fold's kit_manifest.json (as dicts); KitError naming the fold and the field where a fold differs from the first one."""
    from safetensors import safe_open

    ref = folds[0]
    ref_m = json.loads((ref / "kit_manifest.json").read_text(encoding="utf-8"))
    ref_c = json.loads((ref / "adapter_config.json").read_text(encoding="utf-8"))
    with safe_open(str(ref / WEIGHTS), "np") as fh:
        ref_shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    manifests = [ref_m]
    for f in folds[1:]:
        m = json.loads((f / "kit_manifest.json").read_text(encoding="utf-8"))
        manifests.append(m)
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
    return manifests


def _keep_as_ensemble(folds: list) -> str:
    parent = folds[0].parent
    return (f"keep them as an ensemble instead (no shared start needed): `kit predict {' '.join(f'--adapter {f}' for f in folds)} "
            f"--data TEST`, or members = [\"{parent}\"] in kit.toml's [ensemble] (`kit blend --oof {parent} …` fits weights)")


def check_shared_start(folds: list, manifests: list, approximation: dict) -> int:
    """The folds' one ``training.seed``; KitError when a fold records none or the seeds differ (naming each)."""
    seeds = [(m.get("training") or {}).get("seed") for m in manifests]
    missing = [f for f, s in zip(folds, seeds) if s is None]
    if missing:
        raise KitError(f"{missing[0]}/kit_manifest.json records no training.seed, so whether the folds start from one LoRA "
                       f"initialisation cannot be checked; retrain them with `kit train --all-folds` (one train.seed), or "
                       + _keep_as_ensemble(folds))
    if len(set(seeds)) > 1:
        measured = approximation_line(approximation)
        raise KitError(f"{folds[0].parent}: the folds were trained from different seeds ("
                       + ", ".join(f"{f.name}: {s}" for f, s in zip(folds, seeds)) + "); averaging LoRA A and B separately "
                       f"approximates the mean of the folds' B·A updates only from one seeded start (train.seed draws A and "
                       f"the head); measured here: {measured}. Retrain every fold with one train.seed, or "
                       + _keep_as_ensemble(folds))
    return seeds[0]


def _lora_pairs(names) -> list:
    """(A name, B name) of every LoRA module (linear, conv and embedding layers)."""
    pairs = []
    for a in sorted(names):
        for tag_a, tag_b in ((".lora_A.", ".lora_B."), ("lora_embedding_A", "lora_embedding_B")):
            if tag_a in a and a.replace(tag_a, tag_b) in names:
                pairs.append((a, a.replace(tag_a, tag_b)))
    return pairs


def _sq_norm(terms: list) -> float:
    """||Σ c·B·A||²_F of low-rank terms (c, B, A), from r×r Gram matrices: Σ c c' <BᵀB', A Aᵀ'>."""
    return sum(c1 * c2 * float(np.sum((b1.T @ b2) * (a1 @ a2.T))) for c1, b1, a1 in terms for c2, b2, a2 in terms)


def module_error(a_list: list, b_list: list) -> float:
    """Relative Frobenius error ||mean(B)·mean(A) - mean(BᵢAᵢ)|| / ||mean(BᵢAᵢ)|| of one module (0 when every update is 0)."""
    a_list = [a.reshape(a.shape[0], -1) for a in a_list]
    b_list = [b.reshape(b.shape[0], -1) for b in b_list]
    k = len(a_list)
    folds = [(1.0 / k, b, a) for a, b in zip(a_list, b_list)]
    exact = _sq_norm(folds)
    diff = _sq_norm([(1.0, sum(b_list) / k, sum(a_list) / k)] + [(-c, b, a) for c, b, a in folds])
    if exact <= 0:
        return 0.0 if diff <= 0 else float("inf")
    return float(np.sqrt(max(diff, 0.0) / exact))


def approximation_error(files: list) -> dict:
    """How far averaging A and B separately is from averaging the updates: per LoRA module the relative
    Frobenius error of mean(B)·mean(A) against mean(BᵢAᵢ) (the scaling alpha/r is shared, so it cancels);
    ``{"modules", "median", "max", "worst", "warning"}`` (median/max None without LoRA modules, e.g. IA3,
    whose vectors average exactly)."""
    from safetensors.torch import load_file

    tensors = [load_file(str(f)) for f in files]
    errors = {a: module_error([t[a].double().numpy() for t in tensors], [t[b].double().numpy() for t in tensors])
              for a, b in _lora_pairs(set(tensors[0]))}
    if not errors:
        return {"modules": 0, "median": None, "max": None, "worst": "", "warning": ""}
    worst = max(errors, key=errors.get)
    out = {"modules": len(errors), "median": float(np.median(list(errors.values()))), "max": errors[worst],
           "worst": worst.replace(".lora_A.weight", "").replace(".lora_A", ""), "warning": ""}
    if out["median"] > WARN_MEDIAN or out["max"] > WARN_MAX:
        out["warning"] = (f"the averaged adapter is far from the mean of the folds' updates (median {out['median']:.1%} > "
                          f"{WARN_MEDIAN:.0%} or max {out['max']:.1%} > {WARN_MAX:.0%}), as when folds start from different "
                          f"initialisations whatever their records say, or move far from a shared one; " + _keep_as_ensemble([Path(f).parent for f in files]))
    return out


def approximation_line(approx: dict) -> str:
    """One line for the log and the CLI."""
    if not approx.get("modules"):
        return "no LoRA A/B modules (IA3 or head only): each averaged tensor is the exact mean, no B·A approximation"
    return (f"LoRA averaging error over {approx['modules']} modules (mean(B)·mean(A) against mean(BᵢAᵢ), relative Frobenius): "
            f"median {approx['median']:.2%}, max {approx['max']:.2%} ({approx['worst']})")


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
    records the folds, their seed and the measured approximation; with ``score``, the averaged adapter's OOF
    score beside the fold ensemble's. Everything that can refuse (configuration, seeds, metric) runs first."""
    from safetensors.torch import save_file

    from kaggle_kit.runtime.manifest import Manifest

    folds = fold_folders(parent)
    manifests = check_folds(folds)
    out_dir = Path(out_dir)
    if out_dir.resolve() in [f.resolve() for f in folds] or out_dir.resolve() == Path(parent).resolve():
        raise KitError(f"--out {out_dir} would overwrite the folds; pick a new folder, e.g. {Path(parent)}-avg")
    approx = approximation_error([f / WEIGHTS for f in folds])
    result = AverageResult(out_dir, folds, 0, seed=check_shared_start(folds, manifests, approx), approximation=approx)
    log(f"folds share train.seed {result.seed}; " + approximation_line(approx))
    if approx["warning"]:
        log("warning: " + approx["warning"])
    manifest = Manifest.load(folds[0])
    oof, rows = _score_folds(result, folds, manifest, log) if score else (None, None)  # refusals before anything is written
    tensors = average_tensors([f / WEIGHTS for f in folds])
    result.tensors = len(tensors)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / WEIGHTS), metadata={"format": "pt"})
    for f in folds[0].iterdir():  # adapter_config.json and the tokenizer files
        if f.is_file() and (f.name == "adapter_config.json" or f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "added_tokens", "spiece"))):
            shutil.copy2(f, out_dir / f.name)
    data = manifest.to_dict()
    data["training"] = dict(data.get("training") or {}, fold=None, averaged_folds=[str(f) for f in folds],
                            average="element-wise mean of every adapter tensor", approximation_error=approx)
    data["metrics"] = {}
    log(f"averaged {len(tensors)} tensors over {len(folds)} folds ({', '.join(f.name for f in folds)}) into {out_dir}")
    Manifest(**data).save(out_dir)  # a loadable run folder from here on
    if rows is not None:
        _score_averaged(result, oof, rows, manifest, base_path, log)
    if oof is not None:
        data["metrics"] = {"averaged_oof": result.averaged_oof, "fold_ensemble_oof": result.fold_ensemble_oof, "metric": result.metric, "rows": result.rows}
        Manifest(**data).save(out_dir)
    return result


def _score_folds(result: AverageResult, folds: list, manifest, log: Callable) -> tuple:
    """(OOF predictions, their training rows or None): the fold ensemble's OOF score (the folds' oof.csv, no
    model) in the folds' task.metric, and the rows the averaged adapter will predict. A metric `kit train` does
    not accept or that does not fit the task, or OOF ids missing from the data, are refused here, before
    anything is written."""
    from kaggle_kit.ensemble.blend import check_metric, read_oof, score
    from kaggle_kit.runtime.testfile import read_test_data

    metric = manifest.task.get("metric")
    if metric:
        check_metric(metric, f"{folds[0]}/kit_manifest.json task.metric")
    else:
        metric = "log_loss"
        log(f"{folds[0]}/kit_manifest.json records no task.metric: scoring the OOF predictions by log_loss")
    oof = read_oof(folds[0].parent)
    result.metric, result.rows = metric, len(oof.ids)
    result.fold_ensemble_oof = score(metric, oof.probs, np.asarray(oof.labels), oof.multilabel)
    data_path = (manifest.training or {}).get("data")
    if not data_path or not Path(data_path).is_file():
        log(f"no OOF score for the averaged adapter: the training data {data_path!r} recorded in the manifest is not here "
            f"(fold ensemble {metric} {result.fold_ensemble_oof:.5f})")
        return oof, None
    by_id = {r.id: r for r in read_test_data(manifest, data_path, lambda m: None, require_ids=False).rows}
    missing = [i for i in oof.ids if i not in by_id]
    if missing:
        raise KitError(f"{data_path}: {len(missing)} OOF id(s) not in the training data (e.g. {missing[:3]}); the data changed since training")
    return oof, [by_id[i] for i in oof.ids]


def _score_averaged(result: AverageResult, oof, rows: list, manifest, base_path, log: Callable) -> None:
    """The averaged adapter's OOF score: the same rows, predicted again by the averaged adapter."""
    from kaggle_kit.ensemble.blend import score
    from kaggle_kit.runtime.infer import parse_devices, predict_rows
    from kaggle_kit.runtime.testfile import load_replicas

    replicas, tok = load_replicas(result.out_dir, parse_devices(None)[:1], base_path=base_path)
    probs = predict_rows(replicas[0][0], tok, manifest, rows, replicas=replicas)
    result.averaged_oof = score(result.metric, probs, np.asarray(oof.labels), oof.multilabel)
    log(f"OOF {result.metric} on {len(oof.ids)} rows: fold ensemble {result.fold_ensemble_oof:.5f} (each row by the fold that held it out) | "
        f"averaged adapter {result.averaged_oof:.5f} (optimistic: the average saw k-1 of each row's training folds)")

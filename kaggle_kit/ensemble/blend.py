"""`kit blend`: fit ensemble weights on out-of-fold predictions.

Each member is an ``oof.csv`` written by `kit train` (id, fold, label, one probability column per label,
predicted), a run folder holding one, or an `--all-folds` parent whose ``fold-*/oof.csv`` files together
cover the training rows. The weights — non-negative, summing to 1 — optimise the task metric of the
combined predictions (:func:`kaggle_kit.runtime.ensemble.combine`, the same code `kit predict` combines
with) on the rows every member covers:

- log loss (smooth): ``scipy.optimize.minimize`` with SLSQP on the simplex, from equal weights;
- accuracy / F1 (piecewise constant, no useful gradient): ``scipy.optimize.differential_evolution``
  (seeded) over [0, 1]^k, normalised.

The equal weights and each member alone are candidates too, so the blend never scores worse on these
rows than the best single member. Scores are in-sample for the weights: with few rows, prefer equal weights.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from kaggle_kit.errors import KitError

OOF_NAME = "oof.csv"


@dataclass
class OOF:
    """One member's out-of-fold predictions (rows in file order)."""

    name: str
    source: str  # what the user passed
    member: str  # what [ensemble] members should hold for prediction (run folder or --all-folds parent)
    ids: list
    labels: list  # class index per row (single-label) or 0/1 lists (multi-label)
    probs: np.ndarray
    label_names: list
    multilabel: bool
    metric: str = ""
    files: list = field(default_factory=list)


def _manifest_task(folder: Path) -> dict:
    path = folder / "kit_manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("task", {}) if path.is_file() else {}
    except ValueError:
        return {}


def read_oof_csv(path, multilabel: Optional[bool] = None) -> tuple:
    """(ids, labels, probs, label_names, multilabel) of one oof.csv; errors name the file, line and value."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or header[:3] != ["id", "fold", "label"] or header[-1] != "predicted" or len(header) < 5:
            raise KitError(f"{path}: header {header} is not an oof.csv of `kit train` (id, fold, label, <one column per label>, predicted)")
        names = header[3:-1]
        rows = [r for r in reader if r]
    multilabel = bool(multilabel) if multilabel is not None else any(";" in r[2] for r in rows)
    ids, labels, probs = [], [], np.zeros((len(rows), len(names)))
    index = {n: i for i, n in enumerate(names)}
    for n, r in enumerate(rows):
        line = n + 2
        if len(r) != len(header):
            raise KitError(f"{path}: line {line} has {len(r)} cells, the header {len(header)}")
        try:
            probs[n] = [float(x) for x in r[3:-1]]
        except ValueError:
            raise KitError(f"{path}: line {line} (id {r[0]}): a probability is not a number: {r[3:-1]}") from None
        given = [x for x in r[2].split(";") if x] if multilabel else [r[2]]
        bad = [x for x in given if x not in index]
        if bad or (not multilabel and len(given) != 1):
            raise KitError(f"{path}: line {line} (id {r[0]}): label {r[2]!r} is not one of {names}")
        ids.append(r[0])
        labels.append([1 if nm in given else 0 for nm in names] if multilabel else index[given[0]])
    if not np.isfinite(probs).all():
        raise KitError(f"{path}: non-finite probabilities; retrain or drop this member")
    return ids, labels, probs, names, multilabel


def read_oof(source) -> OOF:
    """An OOF member from an oof.csv, a run folder, or an --all-folds parent (its folds must not share ids)."""
    p = Path(source)
    if p.is_file():
        files, member = [p], (p.parent if (p.parent / "kit_manifest.json").is_file() else p)
    elif (p / OOF_NAME).is_file():
        files, member = [p / OOF_NAME], p
    elif p.is_dir() and sorted(p.glob(f"fold-*/{OOF_NAME}")):
        files, member = sorted(p.glob(f"fold-*/{OOF_NAME}")), p
    else:
        raise KitError(f"{source}: no {OOF_NAME} (nor fold-*/{OOF_NAME}); pass an oof.csv, a run folder from `kit train`, "
                       f"or the parent folder of `kit train --all-folds`")
    task = _manifest_task(files[0].parent)
    ml = task.get("kind") == "multilabel" if task else None
    ids, labels, parts, names, multilabel, seen = [], [], [], None, False, {}
    for f in files:
        i, lab, pr, nm, multilabel = read_oof_csv(f, ml)
        if names is not None and nm != names:
            raise KitError(f"{f}: labels {nm} differ from {files[0]}'s {names}; the folds of one member must share the label order")
        names = nm
        for x in i:
            if x in seen:
                raise KitError(f"{source}: id {x} appears in both {seen[x]} and {f}; folds of one member must not overlap")
            seen[x] = f
        ids += i
        labels += lab
        parts.append(pr)
    name = p.parent.name if p.is_file() and p.name == OOF_NAME else (p.stem if p.is_file() else p.name)
    return OOF(name, str(source), str(member), ids, labels, np.concatenate(parts), names, multilabel,
               task.get("metric", ""), [str(f) for f in files])


def check_metric(metric: str, where: str = "metric") -> str:
    """``metric`` when `kit train` accepts the name (runtime.metrics.is_metric: every map@K too), else a KitError
    naming ``where`` it came from. Whether it fits the task's shape is :func:`score`'s check."""
    from kaggle_kit.runtime import metrics as M

    if not M.is_metric(metric):
        raise KitError(f"{where} = {metric!r} is not a metric `kit train` accepts; use one of "
                       f"{', '.join(sorted(M.GREATER_IS_BETTER))} or map@K (K ≥ 1, e.g. map@3)")
    return metric


def score(metric: str, probs, labels, multilabel: bool) -> float:
    """The task metric of ``probs``: runtime.metrics, the numbers `kit train` reports (map@K for any K and
    class count, as training asks for it). A metric the task's shape does not report (auc of a 3-class
    task, map@K of a multi-label one) is a KitError listing the ones it does."""
    from kaggle_kit.runtime import metrics as M

    check_metric(metric)
    if metric == "log_loss":
        return M.binary_log_loss(probs, labels) if multilabel else M.log_loss(probs, labels)
    extra = (metric,) if M.map_k(metric) else ()
    out = (M.multi_label_metrics if multilabel else M.single_label_metrics)(probs, labels, extra=extra)
    undefined = out.get("undefined") or {}
    if metric in undefined:
        raise KitError(f"metric {metric!r} cannot be computed on these {len(labels)} rows: {undefined[metric]}")
    if metric not in out:
        fits = [k for k, v in out.items() if isinstance(v, float) and not M.map_k(k)] + ([] if multilabel else ["map@K"])
        raise KitError(f"metric {metric!r} does not fit this {np.shape(probs)[1]}-class {'multi' if multilabel else 'single'}-label "
                       f"task; use one of {', '.join(fits)}")
    return float(out[metric])


def greater_is_better(metric: str) -> bool:
    from kaggle_kit.runtime.metrics import greater_is_better as direction

    return direction(check_metric(metric))


def align(members: Sequence[OOF]) -> tuple:
    """(ids, labels, [probs per member]) on the rows every member covers, in the first member's order.

    Refuses members whose label order differs, that share no rows, or that disagree on a row's label.
    """
    first = members[0]
    for m in members[1:]:
        if m.label_names != first.label_names:
            raise KitError(f"member {m.source}: labels {m.label_names} differ from {first.source}'s {first.label_names}; "
                           f"blend only members trained on the same label order")
        if m.multilabel != first.multilabel:
            raise KitError(f"member {m.source} is {'multi' if m.multilabel else 'single'}-label unlike {first.source}")
    common = set(first.ids)
    for m in members[1:]:
        common &= set(m.ids)
    if not common:
        raise KitError("the members share no rows: " + ", ".join(f"{m.source} ({len(m.ids)} rows)" for m in members)
                       + "; blend OOF predictions of the same training data")
    ids = [i for i in first.ids if i in common]
    probs, labels = [], None
    for m in members:
        pos = {x: k for k, x in enumerate(m.ids)}
        order = [pos[i] for i in ids]
        lab = [m.labels[k] for k in order]
        if labels is None:
            labels = lab
        elif lab != labels:
            k = next(n for n, (a, b) in enumerate(zip(lab, labels)) if a != b)
            raise KitError(f"member {m.source}: row {ids[k]} has label {lab[k]} but {first.source} says {labels[k]}; "
                           f"the members were trained on different labels")
        probs.append(m.probs[order])
    return ids, np.asarray(labels), probs


def fit_weights(probs: Sequence[np.ndarray], labels, metric: str, combine_method: str = "mean", multilabel: bool = False) -> tuple:
    """(weights summing to 1, score) optimising ``metric`` of the combined ``probs`` (see the module doc)."""
    from scipy.optimize import differential_evolution, minimize

    from kaggle_kit.runtime.ensemble import combine

    k, sign = len(probs), (-1.0 if greater_is_better(metric) else 1.0)

    def objective(w):
        w = np.clip(np.asarray(w, dtype=np.float64), 0.0, None)
        if w.sum() <= 0:
            return np.inf
        return sign * score(metric, combine(probs, w / w.sum(), combine_method, multilabel), labels, multilabel)

    candidates = [np.full(k, 1.0 / k)] + [np.eye(k)[i] for i in range(k)]
    if k > 1:
        if metric == "log_loss":
            res = minimize(objective, candidates[0], method="SLSQP", bounds=[(0.0, 1.0)] * k,
                           constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0}], options={"ftol": 1e-10, "maxiter": 200})
        else:
            res = differential_evolution(objective, [(0.0, 1.0)] * k, seed=0, tol=1e-7, maxiter=100, polish=False)
        x = np.clip(res.x, 0.0, None)
        if x.sum() > 0:
            candidates.append(x / x.sum())
    best = min(candidates, key=objective)
    return [float(v) for v in best], sign * float(objective(best))


@dataclass
class BlendResult:
    metric: str
    combine: str
    rows: int
    members: list  # {name, source, member, rows, score, weight}
    weights: list
    score: float
    equal_score: float
    greater_is_better: bool

    def to_dict(self) -> dict:
        return {"metric": self.metric, "combine": self.combine, "rows": self.rows, "members": self.members, "weights": self.weights,
                "score": self.score, "equal_weights_score": self.equal_score, "greater_is_better": self.greater_is_better,
                "ensemble": {"members": [m["member"] for m in self.members], "weights": self.weights, "combine": self.combine}}


def blend(sources: Sequence, metric: Optional[str] = None, combine_method: str = "mean") -> BlendResult:
    """Fit weights for the members ``sources`` (oof.csv files, run folders or --all-folds parents)."""
    from kaggle_kit.runtime.ensemble import combine

    if len(sources) < 2:
        raise KitError("blend needs at least two members (--oof A --oof B)")
    if metric:
        check_metric(metric, "--metric")
    members = [read_oof(s) for s in sources]
    if not metric:
        metric = check_metric(members[0].metric, f"task.metric of {members[0].source}") if members[0].metric else "log_loss"
    ids, labels, probs = align(members)
    ml = members[0].multilabel
    equal = score(metric, combine(probs, [1.0 / len(probs)] * len(probs), combine_method, ml), labels, ml)  # fits the task?
    weights, best = fit_weights(probs, labels, metric, combine_method, ml)
    rows = [{"name": m.name, "source": m.source, "member": m.member, "rows": len(m.ids), "files": len(m.files),
             "score": score(metric, p, labels, ml), "weight": w} for m, p, w in zip(members, probs, weights)]
    return BlendResult(metric, combine_method, len(ids), rows, weights, best, equal, greater_is_better(metric))


def ensemble_table(result: BlendResult) -> str:
    """The [ensemble] table for kit.toml."""
    from kaggle_kit.config import _toml_value

    return (f"[ensemble]\n# fitted by `kit blend` on {result.rows} out-of-fold rows: {result.metric} {result.score:.5f}\n"
            f"members = {_toml_value([m['member'] for m in result.members])}\n"
            f"weights = [{', '.join(f'{w:.6f}' for w in result.weights)}]\ncombine = {_toml_value(result.combine)}\n")


def write_ensemble_table(config_path, result: BlendResult) -> Path:
    """Replace (or append) the [ensemble] table of ``config_path``; the other tables stay as they are."""
    from kaggle_kit.config import load_config

    path = Path(config_path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if re.match(r"^\s*\[ensemble\]\s*(#.*)?$", l)), None)
    block = ensemble_table(result)
    if start is None:
        new = text + ("" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")) + block
    else:
        end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\s*\[", lines[i])), len(lines))
        while end < len(lines) and end - 1 > start and lines[end - 1].lstrip().startswith("#"):
            end -= 1  # comments just above the next table belong to it
        new = "".join(lines[:start]) + block + ("\n" if end < len(lines) else "") + "".join(lines[end:])
    tmp = path.with_name(f".{path.name}.blend")
    tmp.write_text(new, encoding="utf-8")
    load_config(tmp, required=True)  # what we write must load
    tmp.replace(path)
    return path

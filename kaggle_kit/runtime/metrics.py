"""Competition metrics: what `kit train` reports and picks checkpoints by, and what `kit predict`
prints when its file has labels. scikit-learn computes every metric it has (it is in Kaggle's
image); MAP@k, which it lacks in Kaggle's form, is written out here.

Single-label: ``log_loss`` (natural log; probabilities clipped to [1e-15, 1 - 1e-15] and each row
renormalised, as Kaggle's scorer does, then ``sklearn.metrics.log_loss``), ``accuracy``,
``macro_f1`` / ``micro_f1`` (``sklearn.metrics.f1_score`` over the classes seen or predicted),
``map@K`` (see :func:`map_at_k`), and for binary tasks ``auc`` (``roc_auc_score`` of the positive
class, the last label) and ``average_precision``; per-class counts.
Multi-label: log loss = mean binary cross-entropy over all cells, subset accuracy, micro/macro F1,
``auc`` / ``average_precision`` averaged over the label columns that hold both classes
(Jigsaw's "column-averaged ROC AUC").

Metric names (``task.metric``): log_loss, accuracy, macro_f1, micro_f1, subset_accuracy, auc,
average_precision, map@K (K ≥ 1, e.g. map@3). :func:`greater_is_better` gives the direction.

A metric the rows cannot define (ROC AUC or average precision when the rows hold one class; every
metric on no rows; a multi-label column with one class is left out of the column average) is not
given a value: the metric set lists it under ``undefined`` with the reason (``{"auc": "the 12 rows
hold one class only (neg)"}``), and multi-label sets name the columns left out under
``column_average``. A NaN then only ever means non-finite model outputs (``nonfinite_rows``).
:func:`undefined_reason` asks this before training.
"""
from __future__ import annotations

import re

import numpy as np

EPS = 1e-15
# metric name -> True when larger is better (map@K: see greater_is_better)
GREATER_IS_BETTER = {"log_loss": False, "accuracy": True, "macro_f1": True, "micro_f1": True, "subset_accuracy": True,
                     "auc": True, "average_precision": True}
_MAP = re.compile(r"^map@([1-9][0-9]*)$")


def map_k(name: str):
    """K of a ``map@K`` metric name, else None."""
    m = _MAP.match(str(name))
    return int(m.group(1)) if m else None


def is_metric(name: str) -> bool:
    return name in GREATER_IS_BETTER or map_k(name) is not None


def greater_is_better(name: str) -> bool:
    """Direction of a metric for best-checkpoint selection; ValueError for unknown names."""
    if map_k(name) is not None:
        return True
    if name not in GREATER_IS_BETTER:
        raise ValueError(f"unknown metric {name!r}; use one of {sorted(GREATER_IS_BETTER)} or map@K (e.g. map@3)")
    return GREATER_IS_BETTER[name]


def softmax(logits) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- MAP@k


def top_k(probs, k: int) -> np.ndarray:
    """Indices of the ``k`` most probable classes per row, best first. Ties keep class order
    (a stable sort of -p), so equal probabilities never reorder between runs."""
    p = np.asarray(probs, dtype=np.float64)
    return np.argsort(-p, axis=1, kind="stable")[:, :k]


def average_precision_at_k(actual, predicted, k: int) -> float:
    """One row's AP@k for a single true label, as Kaggle scores MAP@k in "MAP - Charting Student
    Math Misunderstandings" (https://www.kaggle.com/competitions/map-charting-student-math-misunderstandings,
    Evaluation: MAP@3 = 1/U Σ_u Σ_{k≤min(n,3)} P(k)·rel(k); once the correct label has been scored
    for an observation it is no longer relevant, so repeats of it are skipped).

    With one true label this is 1/rank of its first appearance among the first ``k`` predictions,
    0 when absent; fewer than ``k`` predictions are allowed (an empty list scores 0).
    """
    for rank, label in enumerate(list(predicted)[:k], 1):
        if label == actual:
            return 1.0 / rank
    return 0.0


def map_at_k(actual, predicted, k: int = 3) -> float:
    """Mean of :func:`average_precision_at_k` over rows. ``actual``: one label per row;
    ``predicted``: one ordered list (or space-separated string) of labels per row."""
    actual = list(actual)
    if len(actual) != len(predicted):
        raise ValueError(f"{len(actual)} true labels but {len(predicted)} prediction lists")
    if not actual:
        return 0.0
    rows = [p.split() if isinstance(p, str) else list(p) for p in predicted]
    return float(np.mean([average_precision_at_k(a, p, k) for a, p in zip(actual, rows)]))


# --------------------------------------------------------------------------- single metrics


def log_loss(probs, labels) -> float:
    """Multi-class log loss: rows of ``probs`` clipped and renormalised (as Kaggle scores), then scikit-learn's."""
    from sklearn.metrics import log_loss as sk_log_loss

    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    p = p / p.sum(axis=1, keepdims=True)
    return float(sk_log_loss(np.asarray(labels, dtype=np.int64), p, labels=list(range(p.shape[1]))))


def binary_log_loss(probs, targets) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    t = np.asarray(targets, dtype=np.float64)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


def roc_auc(scores, targets) -> float:
    """ROC AUC of one column (scikit-learn); NaN when ``targets`` hold only one class."""
    from sklearn.metrics import roc_auc_score

    t = np.asarray(targets).astype(np.int64)
    if len(np.unique(t)) < 2:
        return float("nan")
    return float(roc_auc_score(t, np.asarray(scores, dtype=np.float64)))


def column_averaged(fn, scores, targets) -> float:
    """Mean of ``fn(scores[:, j], targets[:, j])`` over columns with both classes (NaN when none)."""
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(targets).astype(np.int64)
    vals = [fn(s[:, j], t[:, j]) for j in range(s.shape[1]) if len(np.unique(t[:, j])) == 2]
    return float(np.mean(vals)) if vals else float("nan")


def one_class_columns(targets, names) -> dict:
    """Label column name -> why it cannot be ranked ('only 0 in the 12 rows'), for columns with one class."""
    t = np.asarray(targets).astype(np.int64)
    out = {}
    for j, name in enumerate(names):
        values = np.unique(t[:, j]) if len(t) else np.asarray([], dtype=np.int64)
        if len(values) < 2:
            out[name] = f"only {int(values[0])} in the {len(t)} rows" if len(values) else "no rows"
    return out


def average_precision(scores, targets) -> float:
    from sklearn.metrics import average_precision_score

    t = np.asarray(targets).astype(np.int64)
    if len(np.unique(t)) < 2:
        return float("nan")
    return float(average_precision_score(t, np.asarray(scores, dtype=np.float64)))


def confusion_matrix(labels, preds, num_labels: int) -> np.ndarray:
    """Rows = true class, columns = predicted class (scikit-learn's, every class listed)."""
    from sklearn.metrics import confusion_matrix as sk_cm

    return sk_cm(np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64), labels=list(range(num_labels)))


# --------------------------------------------------------------------------- metric sets


def single_label_metrics(probs, labels, label_names=None, extra=()) -> dict:
    """Every single-label metric; ``extra`` names more to compute (e.g. ``("map@5",)``). ``map@3``
    is always computed when there are more than 3 classes. Metrics the rows cannot define are listed
    under ``undefined`` with the reason instead of a value (see the module docstring)."""
    from sklearn.metrics import accuracy_score, f1_score

    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    k = probs.shape[1]
    names = list(label_names) if label_names else [str(i) for i in range(k)]
    preds = probs.argmax(axis=1) if len(labels) else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(labels, preds, k) if len(labels) else np.zeros((k, k), dtype=np.int64)
    tp = np.diag(cm)
    wanted = sorted({m for m in extra if map_k(m)} | ({"map@3"} if k > 3 else set()))
    ranked = ["auc", "average_precision"] if k == 2 else []
    out: dict = {}
    undefined: dict = {}
    if not len(labels):
        undefined = {name: "no rows to score" for name in ["log_loss", "accuracy", "macro_f1", "micro_f1", *wanted, *ranked]}
        per_f1 = np.zeros(k)
    else:
        per_f1 = f1_score(labels, preds, labels=list(range(k)), average=None, zero_division=0)
        out = {
            "log_loss": log_loss(probs, labels),
            "accuracy": float(accuracy_score(labels, preds)),
            "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(labels, preds, average="micro", zero_division=0)),
        }
        for name in wanted:
            kk = map_k(name)
            out[name] = map_at_k(labels.tolist(), top_k(probs, kk).tolist(), kk)
        present = sorted(set(labels.tolist()))
        if ranked and len(present) < 2:
            why = f"the {len(labels)} rows hold one class only ({names[present[0]]}); ranking metrics need both"
            undefined.update({name: why for name in ranked})
        elif ranked:
            out["auc"] = roc_auc(probs[:, 1], labels == 1)
            out["average_precision"] = average_precision(probs[:, 1], labels == 1)
    out["undefined"] = undefined
    out["per_class"] = {
        names[i]: {"support": int(cm[i].sum()), "predicted": int(cm[:, i].sum()), "correct": int(tp[i]), "f1": float(per_f1[i])}
        for i in range(k)
    }
    out["n"] = int(len(labels))
    return out


def multi_label_metrics(probs, targets, label_names=None, threshold: float = 0.5, extra=()) -> dict:
    """Multi-label metrics; ``auc`` / ``average_precision`` average the columns that hold both classes
    (the others are named under ``column_average``), undefined when no column does."""
    from sklearn.metrics import f1_score

    probs = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64).reshape(len(probs), probs.shape[1])
    k = probs.shape[1]
    names = list(label_names) if label_names else [str(i) for i in range(k)]
    pred = (probs >= threshold).astype(np.int64)
    tp = ((pred == 1) & (t == 1)).sum(axis=0)
    per_f1 = f1_score(t, pred, average=None, zero_division=0) if len(t) else np.zeros(k)
    left_out = one_class_columns(t, names)
    out: dict = {}
    undefined: dict = {}
    if not len(t):
        undefined = {name: "no rows to score" for name in ("log_loss", "subset_accuracy", "accuracy", "micro_f1", "macro_f1",
                                                            "auc", "average_precision")}
    else:
        subset = float((pred == t).all(axis=1).mean())
        out = {"log_loss": binary_log_loss(probs, t), "subset_accuracy": subset, "accuracy": subset,
               "micro_f1": float(f1_score(t, pred, average="micro", zero_division=0)),
               "macro_f1": float(np.mean(per_f1)) if k else 0.0}
        if len(left_out) == k:
            why = f"every label column holds one class only in these {len(t)} rows; ranking metrics need both"
            undefined.update({"auc": why, "average_precision": why})
        else:
            out["auc"] = column_averaged(roc_auc, probs, t)
            out["average_precision"] = column_averaged(average_precision, probs, t)
    out["undefined"] = undefined
    out["column_average"] = {"columns": k - len(left_out), "left_out": left_out}
    out["per_class"] = {
        names[i]: {"support": int(t[:, i].sum()), "predicted": int(pred[:, i].sum()), "correct": int(tp[i]), "f1": float(per_f1[i])}
        for i in range(k)
    }
    out["n"] = int(len(t))
    return out


def metrics_from_probs(probs, labels, multilabel: bool = False, label_names=None, extra=()) -> dict:
    """The task's metrics of ``probs`` (rows × classes) against ``labels``. When any probability is not
    finite (a NaN/inf model output), every scalar metric is NaN and ``nonfinite_rows`` counts the rows:
    the caller (the training guard, the prediction report) decides, instead of scikit-learn raising on
    the NaN or the bad rows being scored as if fine."""
    arr = np.asarray(probs, dtype=np.float64)
    bad = ~np.isfinite(arr).all(axis=1) if arr.ndim == 2 else np.zeros(0, dtype=bool)
    if bad.any():
        shaped = _metrics(np.where(np.isfinite(arr), arr, 1.0 / max(1, arr.shape[1])), labels, multilabel, label_names, extra)
        out = {k: (float("nan") if isinstance(v, (int, float)) and k != "n" else v) for k, v in shaped.items()}
        out["nonfinite_rows"] = int(bad.sum())
        return out
    return _metrics(arr, labels, multilabel, label_names, extra)


def _metrics(probs, labels, multilabel, label_names, extra) -> dict:
    if multilabel:
        return multi_label_metrics(probs, labels, label_names, extra=extra)
    return single_label_metrics(probs, labels, label_names, extra=extra)


def compute_metrics(logits, labels, multilabel: bool = False, label_names=None, extra=()) -> dict:
    """Metrics from raw logits (softmax for single-label, sigmoid for multi-label)."""
    probs = sigmoid(logits) if multilabel else softmax(logits)
    return metrics_from_probs(probs, labels, multilabel, label_names, extra)


def scalar_metrics(metrics: dict) -> dict:
    """The flat numeric part (what the Trainer logs and compares); undefined metrics have no value here."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"}


def undefined_reason(name: str, labels, label_names, multilabel: bool = False):
    """Why metric ``name`` is undefined on rows with these true ``labels`` (class indices, or 0/1 rows
    for multi-label) of classes ``label_names``, or None when it is defined. Asked before training,
    with the same code that scores."""
    k, n = len(label_names), len(labels)
    targets = np.asarray(labels, dtype=np.int64).reshape((n, k) if multilabel else (n,))
    return _metrics(np.full((n, k), 1.0 / k), targets, multilabel, label_names, (name,))["undefined"].get(name)

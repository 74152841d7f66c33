"""Classification metrics in numpy only (no scikit-learn): what `kit train` reports and picks checkpoints by.

Single-label: log loss (natural log, probabilities clipped like Kaggle's scorer), accuracy, macro-F1,
micro-F1 (equal to accuracy for single-label), and per-class counts (support, predicted, correct).
Multi-label: log loss = mean binary cross-entropy over all label cells, subset accuracy (every label of
a row right), micro-F1 over all cells, macro-F1 over labels, per-label counts.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-15
# metric name -> True when larger is better
GREATER_IS_BETTER = {"log_loss": False, "accuracy": True, "macro_f1": True, "micro_f1": True, "subset_accuracy": True}


def softmax(logits) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-x))


def log_loss(probs, labels) -> float:
    """Multi-class log loss: rows of ``probs`` are renormalised after clipping (as Kaggle scores)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    p = p / p.sum(axis=1, keepdims=True)
    y = np.asarray(labels, dtype=np.int64)
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def binary_log_loss(probs, targets) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    t = np.asarray(targets, dtype=np.float64)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


def _f1(tp, fp, fn) -> np.ndarray:
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
    return f1


def confusion_matrix(labels, preds, num_labels: int) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    cm = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1)
    return cm


def single_label_metrics(probs, labels, label_names=None) -> dict:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    k = probs.shape[1]
    names = list(label_names) if label_names else [str(i) for i in range(k)]
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(labels, preds, k)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    f1 = _f1(tp, fp, fn)
    present = cm.sum(axis=1) + cm.sum(axis=0) > 0  # classes never seen nor predicted don't count
    return {
        "log_loss": log_loss(probs, labels),
        "accuracy": float((preds == labels).mean()) if len(labels) else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())),
        "per_class": {
            names[i]: {"support": int(cm[i].sum()), "predicted": int(cm[:, i].sum()), "correct": int(tp[i]), "f1": float(f1[i])}
            for i in range(k)
        },
        "n": int(len(labels)),
    }


def multi_label_metrics(probs, targets, label_names=None, threshold: float = 0.5) -> dict:
    probs = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64)
    k = probs.shape[1]
    names = list(label_names) if label_names else [str(i) for i in range(k)]
    pred = (probs >= threshold).astype(np.int64)
    tp = ((pred == 1) & (t == 1)).sum(axis=0)
    fp = ((pred == 1) & (t == 0)).sum(axis=0)
    fn = ((pred == 0) & (t == 1)).sum(axis=0)
    f1 = _f1(tp, fp, fn)
    return {
        "log_loss": binary_log_loss(probs, t),
        "subset_accuracy": float((pred == t).all(axis=1).mean()) if len(t) else 0.0,
        "accuracy": float((pred == t).all(axis=1).mean()) if len(t) else 0.0,
        "micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())),
        "macro_f1": float(f1.mean()) if k else 0.0,
        "per_class": {
            names[i]: {"support": int(t[:, i].sum()), "predicted": int(pred[:, i].sum()), "correct": int(tp[i]), "f1": float(f1[i])}
            for i in range(k)
        },
        "n": int(len(t)),
    }


def compute_metrics(logits, labels, multilabel: bool = False, label_names=None) -> dict:
    """Metrics from raw logits (softmax for single-label, sigmoid for multi-label)."""
    if multilabel:
        return multi_label_metrics(sigmoid(logits), labels, label_names)
    return single_label_metrics(softmax(logits), labels, label_names)


def scalar_metrics(metrics: dict) -> dict:
    """The flat numeric part (what the Trainer logs and compares)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "n"}

"""Cheap baselines every classifier run fits on its own training rows and scores on its own validation rows.

- ``prior``: the training rows' class frequencies (Laplace-smoothed), the same for every row; for top-k
  metrics (map@K) that is "always the K most frequent labels". Multi-label: each column's frequency.
- ``tfidf_lr``: TF-IDF over the model's own input tokens — the token ids the encoder produced, after
  truncation, as 1- and 2-grams (at most :data:`MAX_FEATURES`), sublinear tf — and a logistic regression
  (scikit-learn, C = 1). Pairwise rows: the features are TF-IDF(response A) − TF-IDF(response B) beside
  TF-IDF(prompt), so the model is told which side a token is on. Multi-label: one regression per column
  (a column with one value in the training rows gets its prior). At most :data:`MAX_TRAIN_ROWS` training
  rows (a fixed sample) keep it to seconds.

Both are scored with the run's own metric code (`runtime.metrics.metrics_from_probs`), so a line such as
``accuracy 0.612 — TF-IDF+LR 0.725, prior 0.500`` compares like with like. A run whose model does not beat
them says so in plain words (:func:`warning`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

MAX_FEATURES = 20_000
MAX_TRAIN_ROWS = 20_000
NAMES = {"tfidf_lr": "TF-IDF+LR", "prior": "prior"}


@dataclass
class Baselines:
    """Each baseline's validation probabilities and metrics (rows in the order given)."""

    probs: dict = field(default_factory=dict)  # name -> rows x classes
    metrics: dict = field(default_factory=dict)  # name -> runtime.metrics dict
    skipped: dict = field(default_factory=dict)  # name -> why it was not fitted
    seconds: float = 0.0
    n_train: int = 0
    n_val: int = 0

    def value(self, name: str, metric: str) -> Optional[float]:
        v = self.metrics.get(name, {}).get(metric)
        return float(v) if isinstance(v, (int, float)) and np.isfinite(v) else None

    def record(self, metric: str, model_value: Optional[float]) -> dict:
        """What metrics.json keeps: ``{"metric", "model", "prior", "tfidf_lr", "n_train", "n_val", ...}``."""
        out = {"metric": metric, "model": model_value}
        for name in NAMES:
            out[name] = self.value(name, metric)
        out.update({"n_train": self.n_train, "n_val": self.n_val, "seconds": round(self.seconds, 2),
                    "tfidf": {"features": "model input token 1-2-grams", "max_features": MAX_FEATURES}})
        if self.skipped:
            out["skipped"] = dict(self.skipped)
        return out


def _token_docs(encoder, rows: list, kind: str) -> list:
    """Per row, per component, the kept token ids as one space-separated string (the TF-IDF documents)."""
    return [[" ".join(map(str, piece)) for piece in encoder.pieces(e)] for e in encoder.encode(rows)]


def _targets(rows: list, k: int, multilabel: bool) -> np.ndarray:
    from .data import label_target

    return np.asarray([label_target(r.label, k, multilabel) for r in rows], dtype=np.float64 if multilabel else np.int64)


def prior_probs(y_train: np.ndarray, k: int, n_val: int, multilabel: bool) -> np.ndarray:
    """Laplace-smoothed class (or column) frequencies of the training rows, tiled over ``n_val`` rows."""
    if multilabel:
        p = (y_train.sum(axis=0) + 1.0) / (len(y_train) + 2.0)
    else:
        p = (np.bincount(y_train, minlength=k) + 1.0) / (len(y_train) + k)
    return np.tile(p, (n_val, 1))


def _features(train_docs: list, val_docs: list, kind: str):
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(token_pattern=r"\S+", ngram_range=(1, 2), max_features=MAX_FEATURES, sublinear_tf=True,
                          lowercase=False, dtype=np.float32)
    if kind != "pairwise":
        vec.fit([" ".join(d) for d in train_docs])
        return vec.transform([" ".join(d) for d in train_docs]), vec.transform([" ".join(d) for d in val_docs])
    vec.fit([part for d in train_docs for part in d])

    def pair(docs):
        p, a, b = (vec.transform([d[i] for d in docs]) for i in range(3))
        return hstack([a - b, p]).tocsr()

    return pair(train_docs), pair(val_docs)


def tfidf_lr_probs(x_train, y_train: np.ndarray, x_val, k: int, multilabel: bool, prior: np.ndarray, seed: int) -> np.ndarray:
    """Logistic-regression probabilities for the validation rows (classes missing from training: their prior)."""
    from sklearn.linear_model import LogisticRegression

    out = np.array(prior, dtype=np.float64)
    columns = range(k) if multilabel else [None]
    for j in columns:
        y = y_train[:, j] if multilabel else y_train
        seen = np.unique(y)
        if len(seen) < 2:
            continue  # one value in the training rows: the prior stands
        clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(x_train, y)
        p = clf.predict_proba(x_val)
        if multilabel:
            out[:, j] = p[:, list(clf.classes_).index(1.0)]
        else:
            out[:, clf.classes_.astype(int)] = p * (1.0 - out[:, [c for c in range(k) if c not in set(seen)]].sum(axis=1, keepdims=True))
    return out


def fit_baselines(train_rows: list, val_rows: list, encoder, kind: str, label_names: list, multilabel: bool,
                  metrics: tuple = (), seed: int = 0) -> Baselines:
    """Fit both baselines on ``train_rows`` and score them on ``val_rows`` (the run's metric code; ``metrics``
    names extra metrics to compute, e.g. the task's map@K)."""
    from kaggle_kit.runtime.metrics import metrics_from_probs

    t0 = time.perf_counter()
    k = len(label_names)
    if len(train_rows) > MAX_TRAIN_ROWS:
        pick = np.random.default_rng(seed).choice(len(train_rows), MAX_TRAIN_ROWS, replace=False)
        train_rows = [train_rows[i] for i in sorted(pick)]
    y_train, y_val = _targets(train_rows, k, multilabel), _targets(val_rows, k, multilabel)
    out = Baselines(n_train=len(train_rows), n_val=len(val_rows))
    out.probs["prior"] = prior_probs(y_train, k, len(val_rows), multilabel)
    x_train, x_val = _features(_token_docs(encoder, train_rows, kind), _token_docs(encoder, val_rows, kind), kind)
    if x_train.shape[1] == 0:
        out.skipped["tfidf_lr"] = "the training rows hold no tokens"
    else:
        out.probs["tfidf_lr"] = tfidf_lr_probs(x_train, y_train, x_val, k, multilabel, out.probs["prior"], seed)
    labels = y_val.tolist()
    for name, probs in out.probs.items():
        out.metrics[name] = metrics_from_probs(probs, labels, multilabel, label_names, extra=tuple(metrics))
    out.seconds = time.perf_counter() - t0
    return out


def comparison(metric: str, model_value: Optional[float], baselines: Baselines) -> str:
    """``accuracy 0.612 — TF-IDF+LR 0.725, prior 0.500`` (the model first when given)."""
    parts = [f"{NAMES[n]} {_num(baselines.value(n, metric))}" for n in NAMES if n in baselines.metrics]
    head = f"{metric} {_num(model_value)} — " if model_value is not None else f"{metric}: "
    return head + ", ".join(parts)


def warning(metric: str, model_value: Optional[float], baselines: Baselines) -> Optional[str]:
    """A plain sentence when the model does not beat a baseline on the same validation rows, else None."""
    from kaggle_kit.runtime.metrics import greater_is_better

    if model_value is None:
        return None
    better = greater_is_better(metric)
    perfect = 1.0 if better else 0.0  # a tie at the best possible value cannot be beaten

    def loses(b: Optional[float]) -> bool:
        return b is not None and not (model_value > b if better else model_value < b) and not (model_value == b == perfect)

    lost = [n for n in NAMES if loses(baselines.value(n, metric))]
    if not lost:
        return None
    names = " and ".join(f"{NAMES[n]} ({_num(baselines.value(n, metric))})" for n in lost)
    return (f"warning: the model's {metric} {_num(model_value)} does not beat {names} on the same {baselines.n_val:,} "
            f"validation rows (it has not learned more than they do: train longer, or check the learning rates and max_length)")


def _num(v: Optional[float]) -> str:
    return "undefined" if v is None else f"{v:.4f}"


# --------------------------------------------------------------------------- in a training run


def metric_of(cfg, plan) -> str:
    """The metric the baselines are compared on: the task's metric (``task.metric``) when the run computes it,
    else the metric that picks the best checkpoint."""
    return cfg.task.metric or plan.metric


def for_run(cfg, plan, data, say) -> Optional[Baselines]:
    """Fit and score the baselines of a classifier run (rank 0, before weights load); logs the result or why not."""
    if not data.train_rows or not data.val_rows or data.encoder is None:
        say("baselines: skipped (no training or validation rows to fit and score them on)")
        return None
    b = fit_baselines(data.train_rows, data.val_rows, data.encoder, plan.kind, list(plan.labels), plan.multilabel,
                      metrics=tuple(dict.fromkeys([plan.metric, cfg.task.metric])), seed=cfg.train.seed)
    metric = metric_of(cfg, plan)
    skipped = "".join(f"; {NAMES[n]} skipped: {why}" for n, why in b.skipped.items())
    say(f"baselines on the {b.n_val:,} validation rows ({b.n_train:,} training rows, {b.seconds:.1f} s): "
        f"{comparison(metric, None, b)}{skipped}")
    return b


def compare(cfg, plan, final: dict, baselines: Baselines, say) -> tuple:
    """(metrics.json's ``baselines`` record, the final line's `` | vs …`` text); warns when the model loses."""
    metric = metric_of(cfg, plan)
    if not isinstance(final.get(metric), (int, float)):
        metric = plan.metric
    value = final.get(metric)
    value = float(value) if isinstance(value, (int, float)) else None
    note = warning(metric, value, baselines)
    if note:
        say(note)
    record = baselines.record(metric, value)
    record["beaten"] = None if value is None else note is None
    parts = ", ".join(f"{NAMES[n]} {_num(baselines.value(n, metric))}" for n in NAMES if n in baselines.metrics)
    return record, f" | baselines ({metric}): {parts}"

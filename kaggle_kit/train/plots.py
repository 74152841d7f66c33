"""Run-folder plots: confusion matrix, loss / metric curves, calibration (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(cm, label_names, path, title: str = "Confusion matrix (validation)") -> Path:
    """Counts with row-normalised shading; rows = true class, columns = predicted."""
    plt = _plt()
    cm = np.asarray(cm)
    k = len(label_names)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * k, 1.2 + 1.0 * k))
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize=8)
    ax.set_xticks(range(k), label_names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(k), label_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# metrics scored on probabilities (log loss rewards calibration): the run folder gets calibration.png
PROBABILITY_METRICS = ("log_loss", "brier", "roc_auc", "auc")
MARKERS_UP_TO = 30  # draw a marker on each point when a series has at most this many


def _series(log_history: list, key: str) -> list:
    return [(h["step"], float(h[key])) for h in log_history if key in h and "step" in h and h[key] is not None]


def _plot(ax, points: list, **kw):
    if not points:
        return
    if len(points) <= MARKERS_UP_TO:
        kw.setdefault("marker", "o")
        kw.setdefault("markersize", 4)
    ax.plot(*zip(*points), **kw)


def plain_axis(ax, values: list, min_span: float) -> None:
    """No offset notation (``1e-5+1.0948``) and at least ``min_span`` of y range: a flat curve stays flat."""
    from matplotlib.ticker import ScalarFormatter

    fmt = ScalarFormatter(useOffset=False)
    fmt.set_scientific(False)
    ax.yaxis.set_major_formatter(fmt)
    if values:
        lo, hi = min(values), max(values)
        if hi - lo < min_span:
            mid = (hi + lo) / 2
            ax.set_ylim(mid - min_span / 2, mid + min_span / 2)


BASELINE_STYLES = {"tfidf_lr": ("TF-IDF+LR", "tab:gray", "--"), "prior": ("class prior", "tab:gray", ":")}


def baseline_title(baselines: Optional[dict]) -> str:
    """``accuracy 0.612 — TF-IDF+LR 0.725, prior 0.500`` from metrics.json's ``baselines`` record ('' without one)."""
    if not baselines or not baselines.get("metric"):
        return ""
    num = lambda v: "undefined" if v is None else f"{v:.3f}"  # noqa: E731
    parts = [f"{label} {num(baselines.get(name))}" for name, (label, _, _) in BASELINE_STYLES.items() if name in baselines]
    return f"{baselines['metric']} {num(baselines.get('model'))} — " + ", ".join(parts)


def _baseline_lines(ax, baselines: Optional[dict], values: list) -> None:
    """Horizontal lines at each baseline's level of the task metric (validation rows)."""
    for name, (label, color, style) in BASELINE_STYLES.items():
        v = (baselines or {}).get(name)
        if isinstance(v, (int, float)):
            ax.axhline(v, color=color, linestyle=style, linewidth=1.2, label=f"{label} {v:.3f}")
            values.append(float(v))


def curves_png(log_history: list, path, metric: str = "log_loss", baselines: Optional[dict] = None) -> Path:
    """Loss (training and validation) and the task metric against the optimizer step.

    Left: training loss (every logging step) and validation loss (every evaluation). Right: the
    task metric on the validation rows (with accuracy / macro-F1 beside it when the task metric is
    the loss itself, which the left panel already shows). ``metric`` '' or 'loss' (SFT): left only.
    ``baselines`` (metrics.json's record): the prior's and TF-IDF+LR's level of ``baselines['metric']`` as
    horizontal lines in the panel showing that metric, and the comparison as the figure's title.
    """
    plt = _plt()
    train = _series(log_history, "loss")
    val = _series(log_history, "eval_loss")
    if metric in ("", None, "loss"):
        panels = []
    elif metric == "log_loss":
        panels = [k for k in ("accuracy", "macro_f1") if _series(log_history, f"eval_{k}")]
    else:
        # one companion on the same 0..1 scale (the loss panel already holds the validation loss)
        panels = [metric] + [k for k in ("accuracy", "macro_f1") if k != metric and _series(log_history, f"eval_{k}")][:1]
    fig, axes = plt.subplots(1, 2 if panels else 1, figsize=(11 if panels else 6.5, 3.8), squeeze=False)
    ax = axes[0][0]
    _plot(ax, train, label="training loss", color="tab:blue")
    _plot(ax, val, label="validation log loss" if metric == "log_loss" else "validation loss", color="tab:orange", linewidth=2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss" + (" (response tokens)" if metric in ("", None, "loss") else ""))
    ax.set_title("Loss" + (" (validation = the task metric, log loss)" if metric == "log_loss" else ""), fontsize=10)
    left = [v for _, v in train + val]
    on = (baselines or {}).get("metric")
    if on == "log_loss" and metric == "log_loss":
        _baseline_lines(ax, baselines, left)
    plain_axis(ax, left, 0.02)
    if train or val:
        ax.legend(fontsize=8)
    if panels:
        ax2 = axes[0][1]
        values = []
        for k, color in zip(panels, ("tab:green", "tab:purple", "tab:red")):
            pts = _series(log_history, f"eval_{k}")
            values += [v for _, v in pts]
            _plot(ax2, pts, label=f"{k}{' (task metric)' if k == metric else ''}", color=color, linewidth=2 if k == metric else 1.2)
        if on in panels:
            _baseline_lines(ax2, baselines, values)
        ax2.set_xlabel("optimizer step")
        ax2.set_ylabel(metric if metric != "log_loss" else "validation metric")
        ax2.set_title(f"Validation {metric}" if metric != "log_loss" else "Other validation metrics", fontsize=10)
        plain_axis(ax2, values, 0.02)
        ax2.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    steps = [x for x, _ in train + val] + [x for k in panels for x, _ in _series(log_history, f"eval_{k}")]
    for a in axes[0]:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # optimizer steps are whole numbers
        if steps:
            a.set_xlim(0, max(steps) * 1.03 + 0.5)  # the same step range in every panel
    title = baseline_title(baselines)
    if title:
        fig.suptitle(f"validation {title}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def reliability(probs, targets, bins: int = 10) -> dict:
    """One-vs-rest calibration table over every (row, class) cell.

    ``probs``: rows x classes; ``targets``: the same shape, 0/1 (one-hot for single-label). Returns
    per-bin mean predicted probability, observed frequency and count (uniform bins of width
    1/``bins``), and the expected calibration error (count-weighted |observed - predicted|).
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    t = np.asarray(targets, dtype=np.float64).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        if m.any():
            rows.append((float(p[m].mean()), float(t[m].mean()), int(m.sum())))
    ece = sum(abs(o - q) * c for q, o, c in rows) / max(len(p), 1)
    return {"bins": rows, "ece": float(ece), "cells": int(len(p))}


def calibration_png(probs, targets, label_names, path, title: str = "Calibration (validation, out-of-fold)") -> Path:
    """Reliability diagram: predicted probability vs observed frequency, and how often each is predicted.

    ``targets``: rows x classes 0/1. Lines: all classes pooled (one-vs-rest), plus each class when
    there are at most 6. Points sit at the bin's mean predicted probability; their size shows the count.
    """
    plt = _plt()
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    fig, (ax, axh) = plt.subplots(1, 2, figsize=(10.5, 4.2), gridspec_kw={"width_ratios": [1.25, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    pooled = reliability(probs, targets)
    q, o, c = zip(*pooled["bins"]) if pooled["bins"] else ((), (), ())
    ax.plot(q, o, color="black", linewidth=2, label=f"all classes (ECE {pooled['ece']:.3f})")
    if c:  # dot area ~ cells in the bin: a bin of three rows should not look like a verdict
        ax.scatter(q, o, s=[15 + 185 * n / max(c) for n in c], color="black", zorder=3)
    if probs.shape[1] <= 6:
        for k, name in enumerate(label_names):
            r = reliability(probs[:, k], targets[:, k])
            if r["bins"]:
                qq, oo, cc = zip(*r["bins"])
                ax.plot(qq, oo, marker=".", linewidth=1, alpha=0.8, label=f"{name} (ECE {r['ece']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability (mean of a 0.1-wide bin; dot area = cells)")
    ax.set_ylabel("observed frequency")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    axh.hist(probs.ravel(), bins=np.linspace(0, 1, 21), color="tab:blue", alpha=0.8)
    axh.set_xlim(0, 1)
    axh.set_xlabel("predicted probability")
    axh.set_ylabel("cells (rows x classes)")
    axh.set_title(f"How often each probability is predicted ({probs.shape[0]:,} rows)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

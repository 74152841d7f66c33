"""Run-folder plots: a confusion matrix and the loss / metric curves (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

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


def curves_png(log_history: list, path, metric: str = "log_loss") -> Path:
    """Training loss and evaluation loss/metric against the optimizer step."""
    plt = _plt()
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evl = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    met = [(h["step"], h[f"eval_{metric}"]) for h in log_history if f"eval_{metric}" in h]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if train:
        axes[0].plot(*zip(*train), label="train loss")
    if evl:
        axes[0].plot(*zip(*evl), marker="o", label="validation loss")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=8)
    axes[0].set_title("Loss", fontsize=10)
    if met:
        axes[1].plot(*zip(*met), marker="o", color="tab:green")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel(metric)
    axes[1].set_title(f"Validation {metric}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

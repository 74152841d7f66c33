"""Combining ensemble members: their weights, and the weighted combination of their probabilities.

- ``mean``: the weighted mean of probabilities;
- ``logit_mean``: the weighted mean of log probabilities, renormalised by softmax (single-label); of
  logits, then sigmoid (multi-label).

:class:`EnsembleError` is the error of every ensemble step: members that cannot be combined (task,
labels, weights), named in the message.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .manifest import CompatibilityError

COMBINE_METHODS = ("mean", "logit_mean")


class EnsembleError(CompatibilityError):
    """Members that cannot be combined (task, labels, weights), named in the message."""


def parse_weights(weights, n: int, names: Sequence[str] = ()) -> list:
    """Weights for ``n`` members from '0.6,0.4', a list, or None (equal); normalised to sum to 1.

    Raises EnsembleError when the count differs from the members', a weight is negative or not a
    number, or all are zero.
    """
    if weights in (None, "", []):
        return [1.0 / n] * n if n else []
    if isinstance(weights, str):
        weights = [w for w in weights.replace(" ", "").split(",") if w]
    try:
        w = [float(x) for x in weights]
    except (TypeError, ValueError):
        raise EnsembleError(f"weights {weights!r} are not numbers; give one per member, e.g. --weights 0.6,0.4") from None
    shown = ", ".join(names) if names else f"{n} member(s)"
    if len(w) != n:
        raise EnsembleError(f"{len(w)} weight(s) {w} for {n} member(s) ({shown}); give exactly one weight per member, in the same order")
    if any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise EnsembleError(f"weights {w} must be non-negative numbers with a positive sum (they are normalised to sum to 1)")
    s = sum(w)
    return [x / s for x in w]


def combine(probs: Sequence[np.ndarray], weights: Sequence[float], method: str = "mean", multilabel: bool = False) -> np.ndarray:
    """Weighted combination of members' probabilities (each rows × labels) → float64 rows × labels.

    ``mean``: Σ wᵢ pᵢ. ``logit_mean``: softmax(Σ wᵢ log pᵢ) (single-label), sigmoid(Σ wᵢ logit pᵢ) (multi-label).
    Weights are renormalised to sum to 1. Probabilities are clipped to [1e-7, 1 - 1e-7] before logs.
    """
    if method not in COMBINE_METHODS:
        raise EnsembleError(f"combine {method!r} is not one of {', '.join(COMBINE_METHODS)}")
    if not probs:
        raise EnsembleError("no member predictions to combine")
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in probs])  # members × rows × labels
    if method == "mean":
        return np.tensordot(w, stack, axes=1)
    p = np.clip(stack, 1e-7, 1 - 1e-7)
    if multilabel:
        z = np.tensordot(w, np.log(p) - np.log1p(-p), axes=1)
        return 1.0 / (1.0 + np.exp(-z))
    z = np.tensordot(w, np.log(p), axes=1)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)

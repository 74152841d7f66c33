"""Finiteness checks of predictions: which rows came out non-finite, a float32 re-run, honest fills.

A half-precision forward pass that overflows (float16 tops out at 65,504; Gemma-2 activations pass
that on long inputs) or a poisoned weight gives ``inf`` / ``NaN`` logits. Softmax then turns a row
into NaN or into exact 0.0 / 1.0 probabilities — a wrong prediction that still "validates". The
engine (:mod:`runtime.infer`) therefore:

1. marks every row whose logits are not all finite (:func:`forward_probs` returns NaN for them);
2. re-runs those rows once with the model in float32 (:class:`fp32_mode`, in place on the same
   device, restored afterwards; skipped when the model already computes in float32);
3. fills rows still without a finite prediction with :func:`fill_value` — the mean of the rows that
   were really predicted (uniform only when there are none, and said so);
4. counts and lists each step by id; a caller fails the run when more than
   ``max_unpredicted_share`` of the rows could not be predicted (:func:`unpredicted_verdict`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

DEFAULT_MAX_UNPREDICTED_SHARE = 0.01


def finite_rows(probs: np.ndarray) -> np.ndarray:
    """Boolean mask (rows,): True where every value of the row is finite."""
    return np.isfinite(np.asarray(probs)).all(axis=1)


def fill_value(probs: np.ndarray, predicted: np.ndarray, multilabel: bool = False) -> tuple:
    """(fill row, how it was made): the mean of ``probs[predicted]`` (rows really predicted, finite),
    renormalised for single-label tasks; uniform (0.5 each for multi-label) only when none exist."""
    probs = np.asarray(probs, dtype=np.float64)
    ok = np.asarray(predicted, dtype=bool) & finite_rows(probs)
    k = probs.shape[1]
    if ok.any():
        fill = probs[ok].mean(axis=0)
        if not multilabel:
            fill = fill / fill.sum()
        return fill.astype(np.float32), f"the mean prediction of the {int(ok.sum())} rows that were predicted"
    fill = np.full(k, 0.5 if multilabel else 1.0 / k, dtype=np.float32)
    return fill, "a uniform prediction (no row was predicted, so there is no mean to use)"


def unpredicted_verdict(unpredicted: int, rows: int, max_share: Optional[float]) -> tuple:
    """(too_many, share): whether ``unpredicted`` of ``rows`` exceeds ``max_share`` (None → the default 1%)."""
    share = unpredicted / rows if rows else 0.0
    limit = DEFAULT_MAX_UNPREDICTED_SHARE if max_share is None else float(max_share)
    return share > limit, share


class UnpredictedShare:
    """Mixin for a prediction result with ``rows``, ``unpredicted_rows`` and ``max_unpredicted_share``:
    the share of rows that got the fill instead of a prediction, and whether it is too many."""

    @property
    def unpredicted_share(self) -> float:
        return unpredicted_verdict(self.unpredicted_rows, self.rows, self.max_unpredicted_share)[1]

    @property
    def too_many_unpredicted(self) -> bool:
        return unpredicted_verdict(self.unpredicted_rows, self.rows, self.max_unpredicted_share)[0]


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or "out of memory" in str(exc).lower()


def _half(dtype) -> bool:
    import torch

    return dtype in (torch.float16, torch.bfloat16)


def computes_in_half(model) -> bool:
    """True when any floating parameter/buffer is 16-bit or a 4-bit layer computes in 16 bits."""
    for p in model.parameters():
        if p.is_floating_point() and _half(p.dtype):
            return True
    for b in model.buffers():
        if b is not None and b.is_floating_point() and _half(b.dtype):
            return True
    return any(_half(getattr(m, "compute_dtype", None)) for m in model.modules())


class fp32_mode:
    """Context: ``model`` computes in float32 inside it (16-bit parameters and buffers upcast in place,
    4-bit layers' ``compute_dtype`` set to float32); everything is cast back on exit. Upcasting
    fp16/bf16 to fp32 and back is exact, so the model leaves unchanged. Needs memory for a float32
    copy of the non-quantized weights on their device."""

    def __init__(self, model):
        self.model, self.params, self.buffers, self.compute = model, [], [], []

    def __enter__(self):
        import torch

        seen = set()
        for mod in self.model.modules():
            for p in mod.parameters(recurse=False):
                if id(p) not in seen and p.is_floating_point() and _half(p.dtype):
                    seen.add(id(p))
                    self.params.append((p, p.dtype))
                    p.data = p.data.float()
            for name, b in list(mod._buffers.items()):
                if b is not None and b.is_floating_point() and _half(b.dtype):
                    self.buffers.append((mod, name, b.dtype))
                    mod._buffers[name] = b.float()
            if _half(getattr(mod, "compute_dtype", None)):
                self.compute.append((mod, mod.compute_dtype))
                mod.compute_dtype = torch.float32
        return self

    def __exit__(self, *exc):
        for p, dtype in self.params:
            p.data = p.data.to(dtype)
        for mod, name, dtype in self.buffers:
            mod._buffers[name] = mod._buffers[name].to(dtype)
        for mod, dtype in self.compute:
            mod.compute_dtype = dtype
        return False

"""The two baselines `kit bench infer` and `kit bench gpu` run beside the engine, on the same model and rows.

- :func:`seeds_loop` — 2024's beginner loop (seed 001's ``predict_df``): rows in dataset order,
  batches of 8, tokenized per batch, each batch padded to its own longest row, ``model(**batch)``.
- :func:`public_loop` — the 2025 public practice: every row tokenized once up front, rows sorted by
  length (longest first, so an out-of-memory error shows at once), fixed batches of 8, each padded
  to its own longest row (``tokenizer.pad(padding="longest")``), ``model(**batch)``, results put back
  in the file's order. This is the loop of the widely forked LMSYS "Gemma-2 9b 4-bit QLoRA"
  inference notebooks of 2024-25 (``data.sort_values("length", ascending=False)``, then
  ``pad_without_fast_tokenizer_warning(..., padding="longest")`` per ``iloc[i:i + batch_size]``;
  summarised e.g. in github.com/yukimaru77/kaggle_jp), with the batch size of 8 the issue names.

Both use the caller's :class:`~kaggle_kit.runtime.prompting.Encoder`, so their token ids are the
engine's. Each returns a :class:`LoopRun`: probabilities in the rows' order, and the shape of every
batch it ran, from which its padding share is computed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BASELINE_BATCH = 8


@dataclass
class LoopRun:
    """What one baseline pass did: ``probs`` (rows × labels, the rows' order), the real tokens it
    fed, and ``shapes``: (rows, width) of every batch it ran, in the order it ran them."""

    probs: np.ndarray
    real: int = 0
    shapes: list = field(default_factory=list)

    @property
    def padded(self) -> int:
        """Positions the model processed: the sum of rows × width over the batches that ran."""
        return int(sum(r * w for r, w in self.shapes))

    @property
    def padding_share(self) -> float:
        return 0.0 if self.padded == 0 else 1.0 - self.real / self.padded

    @property
    def nonfinite_rows(self) -> int:
        return int((~np.isfinite(self.probs).all(axis=1)).sum()) if len(self.probs) else 0


def _forward(model, tokenizer, ids: list, device) -> tuple:
    """(probabilities as float32 numpy, (rows, width)) of one batch padded to its longest row."""
    b = tokenizer.pad({"input_ids": ids}, padding="longest", return_tensors="pt")
    if device is not None:
        b = {k: v.to(device) for k, v in b.items()}
    logits = model(**b).logits.float()
    return logits.softmax(-1).cpu().numpy(), tuple(int(x) for x in b["input_ids"].shape)


def seeds_loop(model, tokenizer, encoder, rows, batch: int = BASELINE_BATCH, bar=None, device=None) -> LoopRun:
    """The seeds' loop: dataset order, batches of ``batch`` tokenized one batch at a time.
    ``bar``: a Progress (rows); ``device``: where the batches go (default: stay on the CPU)."""
    import torch

    out, run = [], LoopRun(probs=np.zeros((0, 0), dtype=np.float32))
    with torch.inference_mode():
        for i in range(0, len(rows), batch):
            ids = [e.input_ids for e in encoder.encode(rows[i:i + batch])]
            probs, shape = _forward(model, tokenizer, ids, device)
            run.real += sum(len(x) for x in ids)
            run.shapes.append(shape)
            out.append(probs)
            if bar is not None:
                bar.update(len(ids))
    run.probs = np.concatenate(out) if out else run.probs
    return run


def public_loop(model, tokenizer, encoder, rows, batch: int = BASELINE_BATCH, bar=None, device=None) -> LoopRun:
    """The 2025 public practice: tokenize all rows once, sort longest first, fixed batches of ``batch``
    each padded to its own longest row; probabilities go back to the rows' order."""
    import torch

    ids = [e.input_ids for e in encoder.encode(rows)]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    run, probs = LoopRun(probs=np.zeros((0, 0), dtype=np.float32)), None
    with torch.inference_mode():
        for i in range(0, len(ids), batch):
            idx = order[i:i + batch]
            p, shape = _forward(model, tokenizer, [ids[j] for j in idx], device)
            if probs is None:
                probs = np.full((len(ids), p.shape[1]), np.nan, dtype=np.float32)
            probs[idx] = p
            run.real += int(lengths[idx].sum())
            run.shapes.append(shape)
            if bar is not None:
                bar.update(len(idx))
    run.probs = probs if probs is not None else run.probs
    return run

"""Length-sorted, token-budget batching for inference (and evaluation).

Rows are tokenized once (by :class:`runtime.prompting.Encoder`), sorted by length and packed into
batches whose *padded* size (rows × the batch's longest row) stays under a token budget and whose
row count stays under a cap. Each batch is padded only to its own longest row (right padding), and
the results go back to the rows' original positions.

Per-batch work is a few numpy operations on preallocated arrays: the token ids of every row live in
one flat array, and a batch's padded matrix is filled by one fancy-indexed assignment, so building a
batch costs microseconds next to the model's forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass
class Batch:
    """One padded batch: ``index`` holds the rows' positions in the caller's list."""

    index: np.ndarray  # (rows,) int64 positions in the original order
    input_ids: np.ndarray  # (rows, width) int64, right-padded with the pad id
    attention_mask: np.ndarray  # (rows, width) int64
    lengths: np.ndarray  # (rows,) real token counts

    @property
    def rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def width(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def padded(self) -> int:
        return self.rows * self.width


class TokenTable:
    """Every row's token ids in one flat array (offsets + lengths), for cheap batch assembly."""

    def __init__(self, ids: Sequence[Sequence[int]]):
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        self.lengths = lengths
        self.offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        flat = np.empty(int(self.offsets[-1]), dtype=np.int64)
        pos = 0
        for x in ids:
            n = len(x)
            flat[pos:pos + n] = x
            pos += n
        self.flat = flat

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, index: np.ndarray, pad_id: int) -> Batch:
        """The rows at ``index`` as one right-padded batch (width = their longest row)."""
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index]
        width = max(int(lengths.max()) if len(lengths) else 1, 1)
        cols = np.arange(width, dtype=np.int64)
        mask = cols[None, :] < lengths[:, None]
        ids = np.full((len(index), width), pad_id, dtype=np.int64)
        # positions of the real tokens in the flat array, row by row
        src = self.offsets[index][:, None] + cols[None, :]
        ids[mask] = self.flat[src[mask]]
        return Batch(index, ids, mask.astype(np.int64), lengths)


BATCH_OVERHEAD_TOKENS = 128  # a forward pass's fixed cost, in padded-token equivalents


def plan_batches(
    lengths: Sequence[int],
    batch_tokens: int,
    max_rows: int,
    longest_first: bool = True,
    overhead_tokens: int = BATCH_OVERHEAD_TOKENS,
) -> list:
    """Split row positions into batches: sorted by length, padded size ≤ ``batch_tokens``, ≤ ``max_rows`` rows.

    Over the rows sorted longest first, the cut points minimise the total padded tokens plus
    ``overhead_tokens`` per batch (dynamic programming over the sorted run, O(rows × max_rows)): a
    batch ends where the next rows are much shorter, not only where the budget is full, so padding
    stays low even on a few hundred rows. A row longer than the budget gets a batch of its own.
    Returns a list of int64 arrays of positions (longest batches first by default, so memory
    problems show at once).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n == 0:
        return []
    batch_tokens = max(int(batch_tokens), 1)
    max_rows = max(int(max_rows), 1)
    order = np.argsort(-lengths, kind="stable")  # longest first; ties keep the original order
    L = np.maximum(lengths[order], 1).astype(np.float64)
    cap = np.minimum(max_rows, np.maximum(1, batch_tokens // L.astype(np.int64)))  # rows a batch starting at i may hold
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    start_of = np.zeros(n + 1, dtype=np.int64)
    positions = np.arange(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        lo = max(0, j - max_rows)
        i = positions[lo:j]
        ok = (j - i) <= cap[lo:j]
        cost = best[lo:j] + overhead_tokens + (j - i) * L[lo:j]
        cost = np.where(ok, cost, np.inf)
        k = int(np.argmin(cost))
        best[j] = cost[k]
        start_of[j] = lo + k
    cuts = []
    j = n
    while j > 0:
        i = int(start_of[j])
        cuts.append((i, j))
        j = i
    cuts.reverse()
    batches = [order[i:j] for i, j in cuts]
    if not longest_first:
        batches.reverse()
    return batches


def padding_share(batches: list, lengths: Sequence[int]) -> float:
    """Share of padded positions over all positions the model processes."""
    lengths = np.asarray(lengths, dtype=np.int64)
    padded = sum(len(b) * int(lengths[b].max()) for b in batches if len(b))
    real = sum(int(lengths[b].sum()) for b in batches if len(b))
    return 0.0 if padded == 0 else 1.0 - real / padded


def order_batches(batches: list, lengths: Sequence[int], calibrate: int = 0) -> list:
    """Batches with ``calibrate`` of them, spread over the length range, moved to the front.

    Running a sample of short, medium and long batches first gives a time-per-token estimate that
    represents the whole run (a time budget projects from it); the rest keep longest-first order.
    """
    if calibrate <= 0 or len(batches) <= calibrate:
        return list(batches)
    picks = sorted(set(np.linspace(0, len(batches) - 1, calibrate).round().astype(int).tolist()))
    front = [batches[i] for i in picks]
    chosen = set(picks)
    return front + [b for i, b in enumerate(batches) if i not in chosen]


def cost_units(batch_index: np.ndarray, lengths: np.ndarray) -> float:
    """Padded tokens of a batch (the unit of the time projection)."""
    if len(batch_index) == 0:
        return 0.0
    return float(len(batch_index) * int(lengths[batch_index].max()))


def restore_order(n: int, parts: list, width: int, fill: float = np.nan, dtype=np.float32) -> np.ndarray:
    """Scatter ``[(index, values)]`` back into an ``(n, width)`` array in the original row order."""
    out = np.full((n, width), fill, dtype=dtype)
    for index, values in parts:
        out[np.asarray(index, dtype=np.int64)] = values
    return out


def pad_batch_simple(ids: list, pad_id: int) -> tuple:
    """Right-pad a list of id lists to their longest (the seeds' per-batch way; for baselines/tests)."""
    width = max((len(x) for x in ids), default=1) or 1
    arr = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, x in enumerate(ids):
        arr[i, :len(x)] = x
        mask[i, :len(x)] = 1
    return arr, mask


def tokens_of(encoded: list) -> list:
    """input_ids of Encoder results (list of lists)."""
    return [e.input_ids for e in encoded]


def choose_rows(values: np.ndarray, fraction: Optional[float]) -> np.ndarray:
    """Positions of the ``fraction`` of rows with the highest ``values`` (all rows when None or ≥ 1)."""
    n = len(values)
    if fraction is None or fraction >= 1:
        return np.arange(n, dtype=np.int64)
    k = int(round(n * max(0.0, float(fraction))))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.argsort(-values, kind="stable")[:k]).astype(np.int64)

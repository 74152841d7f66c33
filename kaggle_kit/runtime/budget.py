"""Fitting a prediction run into a time budget: project the rest of the run, degrade in steps."""
from __future__ import annotations

import numpy as np

CALIBRATION_BATCHES = 4
SAFETY = 0.9  # a plan must fit in this share of the time left
LENGTH_STEPS = (0.75, 0.5, 0.375, 0.25)  # max length multipliers tried for the longest rows
MIN_LENGTH = 64


def _padded_cost(lengths: np.ndarray) -> float:
    """Padded tokens of a length-sorted plan, estimated without planning it (the packer keeps padding ≈ 2%)."""
    return float(np.sum(lengths)) * 1.02


def projected_seconds(lengths, cap, tta_frac, n_total, rate, n_workers) -> float:
    """Projected seconds to run rows of ``lengths`` at max length ``cap`` plus a TTA share ``tta_frac`` of
    ``n_total`` rows, at ``rate`` seconds per padded token per worker."""
    lens = np.minimum(lengths, cap)
    main = _padded_cost(lens)
    # TTA rows: share t of all rows, at the mean length of the rows left
    tta_cost = tta_frac * n_total * float(np.mean(lens)) if len(lens) else 0.0
    return (main + tta_cost) * rate / max(1, n_workers)


def degrade_steps(cap: int, tta_frac: float) -> list:
    """[(cap, tta_fraction)] from no change to the most degraded: shorter max length for the longest rows
    (×0.75, ×0.5 of ``cap``); less TTA (half, none); shorter still (×0.375, ×0.25). Never below MIN_LENGTH."""
    floor = MIN_LENGTH
    steps = [(cap, tta_frac)]
    for m in LENGTH_STEPS[:2]:
        steps.append((max(floor, int(cap * m)), tta_frac))
    half = max(floor, int(cap * LENGTH_STEPS[1]))
    if tta_frac > 0:
        steps.append((half, tta_frac / 2))
        steps.append((half, 0.0))
    for m in LENGTH_STEPS[2:]:
        steps.append((max(floor, int(cap * m)), 0.0))
    return steps


def _plan_fit(lengths, cap, tta_frac, n_total, rate, n_workers, batch_tokens, max_rows, seconds_left) -> tuple:
    """(cap, tta_fraction, projected seconds) of the first :func:`degrade_steps` step whose projection fits.

    The last step is returned when nothing fits (the deadline then stops the run and the rest get the fallback).
    """
    if rate is None:
        return cap, tta_frac, 0.0
    steps = degrade_steps(cap, tta_frac)
    for c, t in steps:
        p = projected_seconds(lengths, c, t, n_total, rate, n_workers)
        if p <= seconds_left:
            return c, t, p
    last = steps[-1]
    return last[0], last[1], projected_seconds(lengths, last[0], last[1], n_total, rate, n_workers)

"""One time budget for a whole ensemble.

Each member's rate (wall seconds per padded token) is measured on a sample of rows spread over the length
range when it starts (:func:`measure_rate`); members not loaded yet are estimated by the size of their
weights. The plan (:func:`plan_budget`) degrades all remaining members by the engine's own steps
(:func:`runtime.budget.degrade_steps`: shorter max length, then less TTA) and drops the lowest-weight
members last; :func:`replan` re-plans as each member starts and logs every decision.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .budget import SAFETY, degrade_steps, projected_seconds
from .engine import EngineReport, predict_rows

SAMPLE_SHARE = 0.02  # share of rows (at least SAMPLE_MIN) that measures a member's rate under a budget
SAMPLE_MIN = 16


@dataclass
class MemberCost:
    """What the planner knows of one member still to run: token lengths, cap, wall seconds per padded token."""

    name: str
    weight: float
    lengths: np.ndarray
    cap: int
    rate: float
    load_seconds: float = 0.0
    measured: bool = False


@dataclass
class BudgetPlan:
    """The members' steps (max length, TTA share), projected seconds, the members dropped, the total and
    whether it fits the budget; ``decisions``: the drops, one line each."""

    steps: dict  # name -> (cap, tta_fraction)
    seconds: dict  # name -> projected seconds (load + prediction)
    dropped: list
    total: float
    fits: bool
    decisions: list = field(default_factory=list)


def plan_budget(costs: Sequence[MemberCost], tta_frac: float, seconds_left: float, n_rows: Optional[int] = None) -> BudgetPlan:
    """The least degraded plan whose projection fits ``SAFETY × seconds_left``.

    All members move down :func:`runtime.infer.degrade_steps` together (shorter max length for the longest
    rows, then less TTA); only when even the last step does not fit is the lowest-weight member dropped
    (ties: the most expensive), and the search restarts from no degradation. The last member is never
    dropped: the engine's deadline and fallback then bound the run.
    """
    active = list(costs)
    dropped, decisions = [], []
    budget = max(0.0, seconds_left) * SAFETY
    while True:
        ladders = {c.name: degrade_steps(c.cap, tta_frac) for c in active}
        depth = max(len(v) for v in ladders.values())
        best = None
        for s in range(depth):
            steps = {c.name: ladders[c.name][min(s, len(ladders[c.name]) - 1)] for c in active}
            secs = {c.name: c.load_seconds + projected_seconds(c.lengths, steps[c.name][0], steps[c.name][1],
                                                               n_rows or len(c.lengths), c.rate, 1) for c in active}
            best = (steps, secs, sum(secs.values()))
            if best[2] <= budget:
                break
        steps, secs, total = best
        fits = total <= budget
        if fits or len(active) == 1:
            return BudgetPlan(steps, secs, dropped, total, fits, decisions)
        victim = sorted(active, key=lambda c: (c.weight, -secs[c.name]))[0]
        decisions.append(f"ensemble budget: even the most degraded plan needs {total / 60:.1f} min of {budget / 60:.1f} min; "
                         f"dropping {victim.name} (weight {victim.weight:.3f}, the lowest)")
        dropped.append(victim.name)
        active = [c for c in active if c.name != victim.name]


def _sample_positions(lengths: np.ndarray) -> np.ndarray:
    """Rows at evenly spaced length ranks (short, medium and long), about SAMPLE_SHARE of them."""
    n = len(lengths)
    k = min(n, max(SAMPLE_MIN, int(n * SAMPLE_SHARE)))
    order = np.argsort(lengths, kind="stable")
    return np.sort(order[np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))])


def measure_rate(replicas, tokenizer, manifest, rows, encoded, batch_tokens, max_batch_rows) -> float:
    """Wall seconds per padded token of ``replicas`` on a sample of rows (its predictions are discarded)."""
    lengths = np.array([len(e.input_ids) for e in encoded])
    pos = _sample_positions(lengths)
    rep = EngineReport(decisions=[])
    t = time.monotonic()
    predict_rows(replicas[0][0], tokenizer, manifest, [rows[i] for i in pos], batch_tokens=batch_tokens,
                 max_batch_rows=max_batch_rows, replicas=replicas, report=rep, encoded=[encoded[i] for i in pos])
    return (time.monotonic() - t) / max(1, rep.padded)


def replan(members, i, encoded_lengths, cache, rate, ref, skip, deadline, tta_frac, n, decide) -> BudgetPlan:
    """Budget plan for member ``i`` (measured) and the members after it that still have to run."""
    from .prompting import PromptSpec

    rate_ref, size_ref, load_ref = ref
    costs = []
    for j in range(i, len(members)):
        m = members[j]
        if m.name in skip:
            continue
        lengths = encoded_lengths if j == i or m.tokens_key not in cache else np.array([len(e.input_ids) for e in cache[m.tokens_key]])
        scale = (m.size / size_ref) if size_ref > 0 else 1.0
        costs.append(MemberCost(m.name, m.weight, lengths, int(PromptSpec.from_dict(m.manifest.prompt).max_length),
                                rate if j == i else rate_ref * scale, 0.0 if j == i else load_ref * scale, j == i))
    left = deadline - time.monotonic()
    plan = plan_budget(costs, tta_frac, left, n)
    for d in plan.decisions:
        decide(d)
    shown = "; ".join(f"{c.name}: max length {plan.steps[c.name][0]}, TTA {plan.steps[c.name][1]:.2f}, ~{plan.seconds[c.name] / 60:.1f} min"
                      f"{'' if c.measured or j == i else ' (estimated from its size)'}" for j, c in enumerate(costs) if c.name in plan.steps)
    decide(f"ensemble budget: {left / 60:.1f} min left; plan {'fits' if plan.fits else 'does NOT fit (the deadline will cut it)'}: {shown}")
    return plan

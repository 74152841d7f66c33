"""Cascade inference: the first member on every row, each later member only where the ones before are unsure.

As the winners of MAP 3rd and WSDM 7th ran it (the base model on every row, a larger one on the least
confident 35–50%; WSDM 1st ran its swapped-order pass on the 33% most uncertain rows), with the engine of
every other prediction (:func:`runtime.engine.predict_rows`: sorted token-budget batches, TTA, devices).

- stages: one per ``--adapter`` given, in order; an ``--all-folds`` parent is one stage whose folds all
  predict the stage's rows (:func:`stages_of`);
- selection (:func:`select_rows`): after each stage, the rows' uncertainty under the combination so far —
  ``margin`` (1 − (top-1 − top-2 probability)) or ``entropy`` — and the next stage predicts the ``share`` of
  all rows that are most uncertain, or the rows whose top probability is under ``threshold``;
- combining (:func:`combine_stages`): ``replace`` (a later stage's prediction replaces the earlier one on its
  rows) or ``mean`` (each row: the ensemble's ``combine`` of the members that predicted it, their weights
  renormalised). ``mean`` with share 1 is the full ensemble; share 0 is the first member alone;
- the time budget: before a later stage runs, its rate is measured on a sample of its rows
  (:func:`runtime.ensemble_budget.measure_rate`) and the share shrunk, most uncertain rows kept, until its
  projection fits its part of the time left; the engine's deadline still bounds it. Every change is logged;
- non-finite accounting: rows the first stage could not predict (non-finite after the float32 re-run, or
  cut by the deadline) hold the engine's fill and are listed as unpredicted, as in any ensemble; rows a later
  stage could not predict keep the earlier prediction and are listed (``kept_earlier_ids``).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from .batching import choose_rows
from .ensemble_combine import EnsembleError, combine

SELECT_BY = ("margin", "entropy")
STAGE_COMBINE = ("mean", "replace")


@dataclass
class CascadeSettings:
    """``share`` of all rows each later stage predicts (most uncertain first), or ``threshold`` (> 0: rows whose
    top probability is below it); ``by`` margin | entropy; ``combine`` mean | replace."""

    share: float = 0.5
    by: str = "margin"
    threshold: float = 0.0
    combine: str = "mean"

    def check(self) -> "CascadeSettings":
        if not 0.0 <= float(self.share) <= 1.0:
            raise EnsembleError(f"cascade share {self.share!r} must lie between 0 (the first member alone) and 1 (the full ensemble)")
        if self.by not in SELECT_BY:
            raise EnsembleError(f"cascade by {self.by!r} is not one of {', '.join(SELECT_BY)}")
        if self.combine not in STAGE_COMBINE:
            raise EnsembleError(f"cascade combine {self.combine!r} is not one of {', '.join(STAGE_COMBINE)}")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise EnsembleError(f"cascade threshold {self.threshold!r} must lie between 0 (off) and 1")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- selection and combination (no model)


def uncertainty(probs: np.ndarray, by: str = "margin", multilabel: bool = False) -> np.ndarray:
    """Per-row uncertainty (higher = less sure). A row without finite probabilities is the most uncertain."""
    p = np.asarray(probs, dtype=np.float64)
    finite = np.isfinite(p).all(axis=1)
    p = np.where(np.isfinite(p), p, 0.0)
    if multilabel:
        u = 1.0 - np.abs(2.0 * p - 1.0).min(axis=1) if by == "margin" else _binary_entropy(p).mean(axis=1)
    elif by == "margin":
        top = -np.sort(-p, axis=1)
        u = 1.0 - (top[:, 0] - (top[:, 1] if p.shape[1] > 1 else 0.0))
    else:
        u = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1)
    return np.where(finite, u, np.inf)


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return -(q * np.log(q) + (1 - q) * np.log(1 - q))


def select_rows(probs: np.ndarray, settings: CascadeSettings, multilabel: bool = False) -> np.ndarray:
    """Sorted positions a later stage predicts: the ``share`` most uncertain rows, or those under ``threshold``."""
    if settings.threshold > 0:
        p = np.nan_to_num(np.asarray(probs, dtype=np.float64), nan=0.0)
        conf = np.maximum(p, 1 - p).min(axis=1) if multilabel else p.max(axis=1)
        return np.where(conf < settings.threshold)[0].astype(np.int64)
    return choose_rows(uncertainty(probs, settings.by, multilabel), float(settings.share))


def combine_stages(n: int, results: Sequence[tuple], stage_of: Sequence[int], weights: Sequence[float], settings: CascadeSettings,
                   method: str = "mean", multilabel: bool = False) -> np.ndarray:
    """Rows × labels: ``results`` holds (positions, probabilities on them) per member, in member order; ``stage_of``
    the stage of each member. ``replace``: each stage's members combined, later stages replacing earlier ones on
    their rows; ``mean``: each row the ``method`` combination of every member that predicted it."""
    if settings.combine == "replace":
        out = None
        for s in sorted(set(stage_of)):
            idx = [k for k, st in enumerate(stage_of) if st == s and k < len(results)]
            if not idx:
                continue
            stage = _combine_rows(n, [results[k] for k in idx], [weights[k] for k in idx], method, multilabel)
            if out is None:
                out = stage
            else:
                rows = np.isfinite(stage).all(axis=1)
                out[rows] = stage[rows]
        return out
    return _combine_rows(n, results, weights[:len(results)], method, multilabel)


def _combine_rows(n: int, results: Sequence[tuple], weights: Sequence[float], method: str, multilabel: bool) -> np.ndarray:
    """Each row: the ``method`` combination of the members whose positions hold it (weights renormalised);
    rows no member predicted are NaN."""
    k = np.asarray(results[0][1]).shape[1]
    mask = np.zeros((len(results), n), dtype=bool)
    full = np.full((len(results), n, k), np.nan)
    for j, (pos, p) in enumerate(results):
        mask[j, pos] = True
        full[j, pos] = p
    out = np.full((n, k), np.nan)
    keys = np.packbits(mask, axis=0).T if len(results) else np.zeros((n, 1), np.uint8)
    for key in np.unique(keys, axis=0):
        rows = np.where((keys == key).all(axis=1))[0]
        who = [j for j in range(len(results)) if mask[j, rows[0]]]
        if who:
            out[rows] = combine([full[j, rows] for j in who], [weights[j] for j in who], method, multilabel=multilabel)
    return out


def simulate(probs: Sequence[np.ndarray], weights: Sequence[float], settings: CascadeSettings, method: str = "mean",
             multilabel: bool = False, stage_of: Optional[Sequence[int]] = None) -> tuple:
    """(combined probabilities, rows per member) of a cascade over members whose predictions on every row are known
    (out-of-fold files): the same selection and combination :func:`run_cascade` applies, without a model."""
    n = len(probs[0])
    stage_of = list(stage_of) if stage_of is not None else list(range(len(probs)))
    results, chosen = [], {}
    for j, p in enumerate(probs):
        s = stage_of[j]
        if s not in chosen:
            chosen[s] = np.arange(n) if not results else select_rows(
                combine_stages(n, results, stage_of, weights, settings, method, multilabel), settings, multilabel)
        results.append((chosen[s], np.asarray(p)[chosen[s]]))
    return combine_stages(n, results, stage_of, weights, settings, method, multilabel), [len(r[0]) for r in results]


def stages_of(adapters: Sequence) -> list:
    """The stage of each expanded member: an ``--all-folds`` parent's folds share their parent's stage."""
    from .ensemble_members import expand_members

    return [s for s, a in enumerate(adapters) for _ in expand_members([a], [1.0])]


# --------------------------------------------------------------------------- the run


def run_cascade(members: Sequence, stage_of: Sequence[int], rows: Sequence, ids: Sequence, settings: CascadeSettings, *,
                combine_method: str = "mean", tta="none", batch_tokens=None, max_batch_rows=None, deadline: Optional[float] = None,
                log: Optional[Callable] = None, progress: bool = False) -> tuple:
    """(combined probabilities, per-member outcomes, decisions, summary): stage by stage, each member loaded, run on
    its stage's rows by the engine, freed; see the module's docstring."""
    from .progress import recorder

    settings.check()
    log = log or (lambda *a, **k: None)
    decisions: list = []
    decide = recorder(decisions, log)
    n, multilabel = len(ids), members[0].manifest.kind == "multilabel"
    weights = [m.weight for m in members]
    results, outcomes, cache, stages = [], [], {}, {}
    unpredicted: list = []
    for j, m in enumerate(members):
        s = stage_of[j]
        if s not in stages:
            current = combine_stages(n, results, stage_of, weights, settings, combine_method, multilabel) if results else None
            chosen = np.arange(n, dtype=np.int64) if current is None else select_rows(current, settings, multilabel)
            stages[s] = {"stage": s, "rows": int(len(chosen)), "share": round(len(chosen) / n, 6) if n else 0.0,
                         "members": [], "positions": chosen}
            if current is not None:  # rank 0 = the most uncertain chosen row (the budget keeps a prefix of this order)
                u = uncertainty(current, settings.by, multilabel)[chosen]
                stages[s]["rank"] = np.argsort(np.argsort(-u, kind="stable"), kind="stable")
            if current is not None:
                decide(f"cascade stage {s + 1}: {len(chosen)} of {n} rows ({len(chosen) / max(n, 1):.1%}) most uncertain by "
                       + (f"top probability < {settings.threshold}" if settings.threshold > 0 else f"{settings.by}, share {settings.share}"))
        stage = stages[s]
        out = {"name": m.name, "path": m.path, "weight": round(m.weight, 6), "reused": False, "dropped": False, "stage": s}
        outcomes.append(out)
        pos, probs = _run_stage_member(m, j, members, stage, rows, ids, cache, out, tta, batch_tokens, max_batch_rows,
                                       deadline, decide, log, progress)
        stage["members"].append(m.name)
        if s == stage_of[0]:
            unpredicted += [i for i in ids if str(i) in {str(x) for x in out.get("fallback_ids", []) + out.get("filled_rows", [])}]
        results.append((pos, probs))
    probs = combine_stages(n, results, stage_of, weights, settings, combine_method, multilabel)
    summary = {**settings.to_dict(), "rows": n, "stages": [{k: v for k, v in st.items() if k not in ("positions", "rank")} for st in stages.values()],
               "member_rows": {o["name"]: o.get("rows", 0) for o in outcomes},
               "unpredicted_ids": list(dict.fromkeys(unpredicted))}
    decide("cascade: " + "; ".join(f"stage {st['stage'] + 1} {'+'.join(st['members'])} on {st['rows']} rows" for st in stages.values())
           + f" (combine {settings.combine})")
    return probs, outcomes, decisions, summary


def _run_stage_member(m, j, members, stage, rows, ids, cache, out, tta, batch_tokens, max_batch_rows, deadline, decide, log,
                      progress) -> tuple:
    """(positions it predicted, probabilities there) of member ``m`` on its stage's rows; a later stage's rows without a
    finite prediction are left out (they keep the earlier prediction) and listed in ``out['kept_earlier_ids']``."""
    from .engine import EngineReport, predict_rows
    from .ensemble_run import free_memory

    pos = stage["positions"]
    if not len(pos):
        out.update({"rows": 0, "seconds": 0.0, "dropped": True})
        decide(f"cascade: member {m.name} predicts no row (share {stage['share']})")
        return pos, np.zeros((0, len(m.manifest.labels)))
    t = time.monotonic()
    replicas, tok = m.load()
    out["load_seconds"] = round(time.monotonic() - t, 3)
    try:
        mrows = m.rows if m.rows is not None else rows
        encoded = _encode(m, tok, mrows, pos, cache)
        if deadline is not None and stage["stage"] > 0:
            pos, encoded = _fit_budget(m, j, members, stage, replicas, tok, mrows, pos, encoded, deadline, batch_tokens,
                                       max_batch_rows, decide)
        rep = EngineReport(decisions=[])
        t = time.monotonic()
        probs = predict_rows(replicas[0][0], tok, m.manifest, [mrows[int(i)] for i in pos], tta=tta, batch_tokens=batch_tokens,
                             max_batch_rows=max_batch_rows, deadline=deadline, replicas=replicas, log=log, progress=progress,
                             report=rep, encoded=encoded)
    finally:
        replicas = tok = None
        free_memory()
    bad = {str(x) for x in list(rep.filled_rows) + list(rep.fallback_ids)}
    out.update({"rows": int(len(pos)), "seconds": round(time.monotonic() - t, 3), "tokens": rep.tokens,
                "fallback_rows": rep.fallback_rows, "tta_rows": rep.tta_rows, "nonfinite_rows": list(rep.nonfinite_rows),
                "rerun_rows": list(rep.rerun_rows), "decisions": list(rep.decisions)})
    if stage["stage"] == 0 or not bad:
        out.update({"fallback_ids": list(rep.fallback_ids), "filled_rows": list(rep.filled_rows)})
        return pos, probs
    keep = np.array([str(ids[int(i)]) not in bad for i in pos], dtype=bool)
    out["kept_earlier_ids"] = [str(ids[int(i)]) for i in pos[~keep]]
    out["rows_asked"], out["rows"] = out["rows"], int(keep.sum())  # rows: those it really predicted
    decide(f"cascade: member {m.name} gave no finite prediction for {int((~keep).sum())} of its rows (non-finite or cut by the "
           f"deadline); they keep the earlier members' prediction; ids: {out['kept_earlier_ids'][:5]}")
    return pos[keep], probs[keep]


def _encode(m, tok, mrows, pos, cache) -> list:
    """Encodings of the rows at ``pos`` for ``m``, shared by members with the same ``tokens_key``; only rows a
    stage needs are encoded."""
    from .prompting import Encoder, PromptSpec

    done = cache.setdefault(m.tokens_key, {})
    need = [int(i) for i in pos if int(i) not in done]
    if need:
        spec = PromptSpec.from_dict(m.manifest.prompt)
        kind = "pairwise" if m.manifest.kind == "pairwise" else "classification"
        for i, e in zip(need, Encoder(tok, spec, kind).encode([mrows[i] for i in need])):
            done[i] = e
    return [done[int(i)] for i in pos]


def _fit_budget(m, j, members, stage, replicas, tok, mrows, pos, encoded, deadline, batch_tokens, max_batch_rows, decide) -> tuple:
    """The stage's rows for member ``m`` shrunk (most uncertain kept) until the projection fits its part of the time
    left (the time left split evenly over it and the members after it); logged when it shrinks."""
    from .budget import SAFETY, projected_seconds
    from .ensemble_budget import measure_rate

    rate = measure_rate(replicas, tok, m.manifest, [mrows[int(i)] for i in pos], encoded, batch_tokens, max_batch_rows)
    left = (deadline - time.monotonic()) * SAFETY / max(1, len(members) - j)
    lengths = np.array([len(e.input_ids) for e in encoded])
    cap = int(max(lengths.max(initial=1), 1))
    if projected_seconds(lengths, cap, 0.0, len(pos), rate, len(replicas)) <= left:
        return pos, encoded
    # the stage's rows are in file order; keep the most uncertain ones: their order of selection is the share ranking
    order = np.argsort(stage.get("rank", np.arange(len(pos))), kind="stable")
    lo, hi = 0, len(pos)
    while lo < hi:  # the largest prefix (by uncertainty) whose projection fits
        mid = (lo + hi + 1) // 2
        if projected_seconds(lengths[order[:mid]], cap, 0.0, mid, rate, len(replicas)) <= left:
            lo = mid
        else:
            hi = mid - 1
    keep = np.sort(order[:lo])
    decide(f"time budget: cascade share for {m.name} {len(pos) / max(1, len(mrows)):.1%} → {lo / max(1, len(mrows)):.1%} "
           f"({len(pos)} → {lo} rows, the most uncertain kept; {left / 60:.1f} min for it, "
           f"{rate * 1e6:.2f} s per million padded tokens measured)")
    stage["rows_budget"] = int(lo)
    return pos[keep], [encoded[int(i)] for i in keep]

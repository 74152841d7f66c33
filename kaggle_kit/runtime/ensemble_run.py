"""Running ensemble members in turn with the one engine (:func:`runtime.engine.predict_rows`), then combining them.

- members run one after another, each loaded, predicted (same length-sorted batches, TTA, devices,
  time budget as a single adapter) and freed before the next, so one GPU pair holds one model at a time;
- each member predicts its own rows (``member.rows``: the test file read through its own manifest), else
  the rows handed in; rows are tokenized once per distinct ``tokens_key`` (tokenizer, prompt settings,
  reading of the test file, task) and the token ids handed to the engine (``predict_rows(encoded=...)``);
  ids no later member needs are freed;
- each member's probabilities are saved as it finishes and reused by a rerun (:mod:`runtime.ensemble_parts`);
- under a deadline, each member's rate is measured when it starts and the rest re-planned
  (:mod:`runtime.ensemble_budget`); the plan may drop members, whose weight the others then share.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from .engine import EngineReport, parse_tta, predict_rows
from .ensemble_budget import measure_rate, replan
from .ensemble_combine import COMBINE_METHODS, EnsembleError, combine
from .ensemble_members import EnsembleMember, check_members
from .ensemble_parts import part_path, reusable_parts, save_part
from .progress import recorder


def free_memory() -> None:
    """Python's garbage and, on a GPU, torch's cached blocks released (between members)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


@dataclass
class _EnsembleRun:
    """The state the phases of one :func:`run_members` call share."""

    members: list
    rows: Sequence
    ids: Sequence
    tta: object
    tta_frac: float
    kind: str
    batch_tokens: Optional[int]
    max_batch_rows: Optional[int]
    deadline: Optional[float]
    parts_dir: object
    log: Callable
    progress: bool
    decisions: list
    decide: Callable
    reusable: dict  # name -> (probs, info) of the saved parts that match
    results: dict  # name -> probabilities (reused or run)
    last_use: dict  # tokens_key -> index of the last member still to run that encodes with it
    skip: set  # names that do not run: reused, or dropped by the budget
    cache: dict = field(default_factory=dict)  # tokens_key -> the rows' encodings
    owners: dict = field(default_factory=dict)  # tokens_key -> the member that encoded them
    outcomes: list = field(default_factory=list)
    ref: Optional[tuple] = None  # (rate, size, load seconds) of the last measured member


def run_members(members: Sequence[EnsembleMember], rows: Sequence, ids: Sequence, *, combine_method: str = "mean", tta="none",
                batch_tokens=None, max_batch_rows=None, deadline: Optional[float] = None, parts_dir=None,
                log: Optional[Callable] = None, progress: bool = False) -> tuple:
    """(combined probabilities, per-member outcomes, decisions): members in turn, each loaded, predicted, saved, freed.

    ``deadline``: a ``time.monotonic()`` time for the whole ensemble (loads included). ``parts_dir``: where each
    member's predictions are saved as it finishes and looked for before it runs (None: nothing saved).
    """
    run = _start(members, rows, ids, combine_method, tta, dict(batch_tokens=batch_tokens, max_batch_rows=max_batch_rows,
                                                            deadline=deadline, parts_dir=parts_dir, progress=progress), log)
    for i, m in enumerate(run.members):
        out = _outcome(run, m)
        if m.name in run.results or m.name in run.skip:
            out["dropped"] = m.name not in run.results
            continue
        _run_member(run, i, m, out)
    return _combined(run, combine_method), run.outcomes, run.decisions


def _start(members, rows, ids, combine_method: str, tta, options: dict, log: Optional[Callable]) -> _EnsembleRun:
    """The members checked (task, labels, combine method, TTA) and their saved parts looked up."""
    log = log or (lambda *a, **k: None)
    decisions: list = []
    decide = recorder(decisions, log)
    check_members(members)
    for m in members:
        if m.rows is not None and [r.id for r in m.rows] != list(ids):
            raise EnsembleError(f"member {m.name} ({m.path or m.name}): its rows' ids are not the test ids the ensemble "
                                f"combines; every member must predict the same rows in the same order")
    if combine_method not in COMBINE_METHODS:
        raise EnsembleError(f"combine {combine_method!r} is not one of {', '.join(COMBINE_METHODS)}")
    tta_frac = parse_tta(tta)
    reusable = reusable_parts(members, options["parts_dir"], ids, decide)
    results = {name: p for name, (p, _) in reusable.items()}
    last_use = {m.tokens_key: i for i, m in enumerate(members) if m.name not in results}
    return _EnsembleRun(list(members), rows, ids, tta, tta_frac, members[0].manifest.kind, options["batch_tokens"],
                        options["max_batch_rows"], options["deadline"], options["parts_dir"], log, options["progress"],
                        decisions, decide, reusable, results, last_use, set(results))


def _outcome(run: _EnsembleRun, m: EnsembleMember) -> dict:
    """The member's outcome (appended to ``run.outcomes``); a reused member's filled rows come from its saved part."""
    out = {"name": m.name, "path": m.path, "weight": round(m.weight, 6), "reused": m.name in run.results, "dropped": False}
    run.outcomes.append(out)
    if m.name in run.reusable:
        info = run.reusable[m.name][1]
        ran = (info or {}).get("ran", {}) if isinstance(info, dict) else {}
        out.update({k: ran.get(k, []) for k in ("fallback_ids", "filled_rows")})
    return out


def _run_member(run: _EnsembleRun, i: int, m: EnsembleMember, out: dict) -> None:
    """Member ``i`` loaded, its rows encoded (or shared), fitted into the budget, predicted and freed; then kept."""
    t = time.monotonic()
    replicas, tok = m.load()
    out["load_seconds"] = round(time.monotonic() - t, 3)
    try:
        encoded = _encoded(run, m, tok, out)
        budget = _member_budget(run, i, m, replicas, tok, encoded, out)
        if budget is None:
            out["dropped"] = True
            return
        member_deadline, tta_i = budget
        run.decide(f"member {i + 1}/{len(run.members)} {m.name}: predicting {len(run.rows)} rows (weight {m.weight:.3f})")
        probs, info = _run_one(m, _rows(run, m), encoded, tok, replicas, tta_i, run.batch_tokens, run.max_batch_rows,
                               member_deadline, run.log, run.progress)
    finally:
        replicas = tok = None
        free_memory()
    _keep(run, i, m, probs, info, out)


def _encoded(run: _EnsembleRun, m: EnsembleMember, tok, out: dict) -> list:
    """The rows' encodings for ``m``: those of an earlier member with its ``tokens_key``, else encoded now (and cached)."""
    from .prompting import Encoder, PromptSpec

    if m.tokens_key in run.cache:
        out["tokens_shared_with"] = run.owners[m.tokens_key]
        run.decide(f"member {m.name}: token ids shared with {run.owners[m.tokens_key]} (same tokenizer, prompt settings, "
                   f"reading of the test file and task)")
        return run.cache[m.tokens_key]
    t = time.monotonic()
    spec = PromptSpec.from_dict(m.manifest.prompt)
    encoded = Encoder(tok, spec, "pairwise" if run.kind == "pairwise" else "classification").encode(list(_rows(run, m)))
    out["encode_seconds"] = round(time.monotonic() - t, 3)
    run.cache[m.tokens_key], run.owners[m.tokens_key] = encoded, m.name
    return encoded


def _rows(run: _EnsembleRun, m: EnsembleMember) -> Sequence:
    """The rows member ``m`` predicts: the test file as its own manifest reads it, else the rows handed in."""
    return run.rows if m.rows is None else m.rows


def _member_budget(run: _EnsembleRun, i: int, m: EnsembleMember, replicas, tok, encoded, out: dict) -> Optional[tuple]:
    """(member deadline, TTA) for member ``i``: without a deadline (None, the TTA asked). Under one, its rate is
    measured and it and the members after it re-planned; the plan's dropped members join ``run.skip``, and
    the member gets the plan's TTA and its share of the time left (the last member to run: all of it).
    None when the plan drops this member."""
    if run.deadline is None:
        return None, run.tta
    lengths = np.array([len(e.input_ids) for e in encoded])
    rate = measure_rate(replicas, tok, m.manifest, _rows(run, m), encoded, run.batch_tokens, run.max_batch_rows)
    run.ref = (rate, m.size, out["load_seconds"])
    plan = replan(run.members, i, lengths, run.cache, rate, run.ref, run.skip, run.deadline, run.tta_frac, len(run.rows), run.decide)
    run.skip.update(plan.dropped)
    if m.name in plan.dropped:
        return None
    tta_i = plan.steps[m.name][1]
    now = time.monotonic()
    last = all(x.name in run.skip or x.name in run.results for x in run.members[i + 1:])
    share = (run.deadline - now) * plan.seconds[m.name] / plan.total if plan.total > 0 else run.deadline - now
    return (run.deadline if last else now + share), tta_i


def _run_one(m, rows, encoded, tok, replicas, tta, batch_tokens, max_batch_rows, member_deadline, log, progress) -> tuple:
    """(probabilities, info): one member predicted by the engine; info holds its figures and the rows it filled."""
    rep = EngineReport(decisions=[])
    t = time.monotonic()
    probs = predict_rows(replicas[0][0], tok, m.manifest, rows, tta=tta, batch_tokens=batch_tokens, max_batch_rows=max_batch_rows,
                         deadline=member_deadline, replicas=replicas, log=log, progress=progress, report=rep, encoded=encoded)
    info = {"seconds": round(time.monotonic() - t, 3), "tokens": rep.tokens, "padding_share": round(rep.padding_share, 4),
            "truncated_rows": rep.truncated_rows, "fallback_rows": rep.fallback_rows, "tta_rows": rep.tta_rows,
            "max_length": rep.max_length, "decisions": list(rep.decisions),
            # rows this member did not really predict (deadline cut, non-finite after the float32 re-run): they hold the fill
            "fallback_ids": list(rep.fallback_ids), "nonfinite_rows": list(rep.nonfinite_rows),
            "rerun_rows": list(rep.rerun_rows), "filled_rows": list(rep.filled_rows)}
    return probs, info


def _keep(run: _EnsembleRun, i: int, m: EnsembleMember, probs: np.ndarray, info: dict, out: dict) -> None:
    """Member ``i``'s probabilities kept for combining and saved as its part; token ids no later member needs freed."""
    if run.last_use.get(m.tokens_key) == i:
        run.cache.pop(m.tokens_key, None)
    run.results[m.name] = probs
    out.update(info)
    if run.parts_dir and m.key:
        out["part"] = str(save_part(part_path(run.parts_dir, i, m.name), probs, run.ids, m.key, {"name": m.name, "ran": info}))
        run.decide(f"member {m.name}: saved {out['part']} ({info['seconds']:.1f}s)")


def _combined(run: _EnsembleRun, combine_method: str) -> np.ndarray:
    """The weighted combination of the members that have predictions (weights renormalised over them)."""
    used = [m for m in run.members if m.name in run.results]
    if len(used) < len(run.members):
        run.decide(f"combining {len(used)} of {len(run.members)} members ({', '.join(m.name for m in used)}); weights renormalised over them")
    return combine([run.results[m.name] for m in used], [m.weight for m in used], combine_method, multilabel=run.kind == "multilabel")

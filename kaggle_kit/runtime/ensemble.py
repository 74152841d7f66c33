"""Ensembles: several run folders predicted in turn by the one engine (:mod:`runtime.engine`), then combined.

One job per module:

- :mod:`runtime.ensemble_members`: who the members are (a run folder, or each fold of an ``--all-folds``
  parent), the checks that they fit together (task kind and label order, else :class:`EnsembleError`
  names the member), each member's manifest (read once), content key, ``tokens_key`` and loader, and the
  test file read through each member's own manifest (its format, id column, text columns or template
  fields: a member never sees another member's columns); members that do not read the same ids are
  refused, both named, before any weights load;
- :mod:`runtime.ensemble_run`: members run one after another, each loaded, predicted (same length-sorted
  batches, TTA, devices, time budget as a single adapter) and freed before the next, so one GPU pair holds
  one model at a time; rows are tokenized once per distinct tokenizer + prompt settings + reading of the
  test file + task kind (the ``tokens_key``) and the token ids handed to the engine (``predict_rows(encoded=...)``);
- :mod:`runtime.ensemble_parts`: each member's probabilities are saved as it finishes (``parts/NN-name.npz``,
  written atomically) with a content key (its manifest, adapter weights, the test file and the settings that
  change predictions); a rerun reuses parts whose key matches and ignores stale ones (logged), so a crash
  or deadline keeps what was done;
- :mod:`runtime.ensemble_budget`: one time budget for the whole ensemble: each member's rate (wall seconds
  per padded token) is measured on a sample of rows spread over the length range when it starts; members
  not loaded yet are estimated by the size of their weights. The plan degrades all remaining members by
  the engine's own steps (:func:`runtime.budget.degrade_steps`: shorter max length, then less TTA) and
  drops the lowest-weight members last; every decision is logged;
- :mod:`runtime.ensemble_combine`: ``mean`` (weighted mean of probabilities) or ``logit_mean`` (weighted
  mean of log probabilities, renormalised by softmax; of logits, then sigmoid, for multi-label tasks).

This module reads the test file, writes the combined submission (:func:`predict_ensemble_file`) and keeps
the names above importable from ``runtime.ensemble``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .budget import SAFETY  # noqa: F401 (re-exported)
from .ensemble_budget import (SAMPLE_MIN, SAMPLE_SHARE, BudgetPlan, MemberCost, measure_rate,  # noqa: F401 (re-exported)
                              plan_budget)
from .ensemble_combine import COMBINE_METHODS, EnsembleError, combine, parse_weights  # noqa: F401 (re-exported)
from .ensemble_members import (TOKENIZER_FILES, EnsembleMember, check_members, expand_members,  # noqa: F401 (re-exported)
                               file_members, file_sha256, folder_fingerprint, pick_base, read_member_data,
                               tokens_key_for, weights_fingerprint)
from .ensemble_parts import PARTS_VERSION, load_part, part_path, save_part  # noqa: F401 (re-exported)
from .ensemble_run import free_memory, run_members  # noqa: F401 (re-exported)
from .health import DEFAULT_MAX_UNPREDICTED_SHARE, UnpredictedShare
from .manifest import CompatibilityError
from .progress import quiet_known_warnings, recorder


@dataclass
class EnsembleResult(UnpredictedShare):
    """What :func:`predict_ensemble_file` did: the combined submission, its figures, each member's outcome
    (``members``: reused, dropped, seconds, filled rows) and every decision."""

    out_path: Path
    rows: int
    seconds: float
    decisions: list
    probabilities: np.ndarray
    ids: list
    label_names: list
    style: str
    members: list
    combine: str
    devices: list
    parts_dir: str = ""
    unpredicted_ids: list = field(default_factory=list)  # rows some combined member filled instead of predicting
    max_unpredicted_share: Optional[float] = None
    cascade: Optional[dict] = None  # runtime.cascade: the settings, each stage's rows and members

    @property
    def unpredicted_rows(self) -> int:
        return len(self.unpredicted_ids)

    def to_dict(self) -> dict:
        return {"out_path": str(self.out_path), "rows": self.rows, "seconds": round(self.seconds, 3), "style": self.style,
                "combine": self.combine, "devices": self.devices, "parts_dir": self.parts_dir, "members": self.members,
                "unpredicted_ids": self.unpredicted_ids, "unpredicted_rows": self.unpredicted_rows,
                "unpredicted_share": round(self.unpredicted_share, 6),
                "max_unpredicted_share": DEFAULT_MAX_UNPREDICTED_SHARE if self.max_unpredicted_share is None else self.max_unpredicted_share,
                "too_many_unpredicted": self.too_many_unpredicted, "decisions": self.decisions,
                **({"cascade": self.cascade} if self.cascade is not None else {})}


@quiet_known_warnings()  # the listed harmless library warnings only, only during the call
def predict_ensemble_file(adapters: Sequence, data_path, out_path, *, weights=None, combine_method: str = "mean", base_path=None,
                          bases: Sequence = (), parts_dir=None, tta=None, budget_minutes=None, batch_tokens=None,
                          max_batch_rows=None, devices=None, quantization=None, log: Callable = print, progress: bool = True,
                          names: Optional[Sequence[str]] = None, sample=None,
                          max_unpredicted_share: Optional[float] = None, manifests: Optional[dict] = None,
                          cascade=None) -> EnsembleResult:
    """Predict ``data_path`` with every member (run folders; an --all-folds parent counts as its folds) and write
    the weighted combination as a validated submission. ``parts_dir``: each member's predictions are saved
    there as it finishes and reused by a rerun (default: a ``parts`` folder beside ``out_path``). ``names``: one
    per adapter (default: folder names). ``sample``: the competition's sample submission to follow and compare
    with (as in infer.predict_file). A row counts as unpredicted when any combined member gave it the fill
    (deadline, non-finite logits); above ``max_unpredicted_share`` (default 1%) the result's
    ``too_many_unpredicted`` is True and an ``error:`` line is logged (the submission is still written).
    ``manifests``: {run folder: Manifest} already read (e.g. by the notebook's version check); every other
    member's kit_manifest.json is read here; each is read once and handed to the member's loader. Each member
    reads the test file through its own manifest (format, id column, text columns or template fields); members
    that do not read the same ids are refused (EnsembleError naming both) before any weights load.
    ``cascade``: a :class:`runtime.cascade.CascadeSettings` (or its dict): the first adapter on every row, each later
    one on the most uncertain rows only (:func:`runtime.cascade.run_cascade`; no parts are saved)."""
    from .manifest import check_compatible
    from .submission import compare_with_sample, write_submission
    from .testfile import submission_style
    from .workers import parse_devices

    t0 = time.monotonic()
    log = log or (lambda *a, **k: None)
    decisions: list = []
    decide = recorder(decisions, log)

    if not adapters:
        raise EnsembleError("no ensemble members: pass --adapter (repeatable) or set [ensemble] members in kit.toml")
    devs = parse_devices(devices)
    members = file_members(adapters, weights, file_sha256(data_path), base_path=base_path, bases=bases, devices=devs,
                           quantization=quantization, tta=tta, log=decide, names=names, manifests=manifests)
    check_members(members)
    datasets = read_member_data(members, data_path, decide)  # each member's own reading; the same ids, or refused
    ds = datasets[0]
    for m, m_ds in zip(members, datasets):  # every member against its base and its reading of the data, before any weights load
        try:
            check_compatible(m.manifest, m.base, m_ds.label_names or None)
        except CompatibilityError as exc:
            raise EnsembleError(f"member {m.name} ({m.path}): {exc}") from None
    parts_dir = Path(parts_dir) if parts_dir else Path(out_path).resolve().parent / "parts"
    decide(f"ensemble of {len(members)} member(s) ({combine_method}): " + ", ".join(f"{m.name} {m.weight:.3f}" for m in members)
           + f"; parts in {parts_dir}")
    deadline = t0 + float(budget_minutes) * 60.0 if budget_minutes else None
    options = dict(combine_method=combine_method, tta=tta or "none", batch_tokens=batch_tokens, max_batch_rows=max_batch_rows,
                   deadline=deadline, log=log, progress=progress)
    if cascade is not None:
        probs, outcomes, more, summary = _cascade(members, adapters, ds, cascade, options, decide)
    else:
        (probs, outcomes, more), summary = run_members(members, ds.rows, ds.ids, parts_dir=parts_dir, **options), None
    decisions += more
    spec, sample_path = submission_style(ds, members[0].manifest, data_path, sample, decide)
    write_submission(out_path, ds.ids, probs, spec, members[0].manifest.labels, expected_ids=ds.ids)
    if sample_path is not None:
        same = compare_with_sample(out_path, sample_path, ids_if_shared=sample is None, style=spec.style)
        if not same["ids_compared"]:
            decide(f"{out_path} has the columns of the sample {sample_path}; ids not compared: it shares none of {data_path}'s ids")
    seconds = time.monotonic() - t0
    log(f"wrote {out_path}: {len(ds.ids)} rows ({spec.style}) from {sum(1 for o in outcomes if not o['dropped'])} member(s) "
        f"combined by {combine_method} in {seconds:.1f}s" + (f"; parts in {parts_dir}" if summary is None else
                                                              f" as a cascade ({summary['combine']})"))
    result = EnsembleResult(Path(out_path), len(ds.ids), seconds, decisions, probs, list(ds.ids), members[0].manifest.labels,
                            spec.style, outcomes, combine_method, devs, str(parts_dir), max_unpredicted_share=max_unpredicted_share)
    result.cascade = summary
    result.unpredicted_ids = summary["unpredicted_ids"] if summary is not None else _unpredicted(outcomes, ds.ids)
    if result.unpredicted_ids:
        decide(f"{result.unpredicted_rows} row(s) hold a member's fill instead of its prediction; first ids: {result.unpredicted_ids[:5]}")
    if result.too_many_unpredicted:
        decide(f"error: {result.unpredicted_rows} of {result.rows} rows ({result.unpredicted_share:.1%}) could not be predicted by "
               f"every member (more than max_unpredicted_share = {result.to_dict()['max_unpredicted_share']:.1%}); "
               f"the submission {out_path} was written but is not trustworthy — see the lines above for the cause")
    return result


def _cascade(members, adapters, ds, cascade, options: dict, decide: Callable) -> tuple:
    """(probabilities, outcomes, decisions, summary) of the members run as a cascade (:mod:`runtime.cascade`)."""
    from .cascade import CascadeSettings, run_cascade, stages_of

    settings = cascade if isinstance(cascade, CascadeSettings) else CascadeSettings(**dict(cascade))
    decide(f"cascade ({settings.combine}): {adapters[0]} on every row, then " + (f"rows with top probability < {settings.threshold}"
           if settings.threshold > 0 else f"the {settings.share:.0%} most uncertain rows by {settings.by}") + "; parts are not saved")
    return run_cascade(members, stages_of(adapters), ds.rows, ds.ids, settings, **options)


def _unpredicted(outcomes: list, ids: Sequence) -> list:
    """Test ids (in file order) that some combined (not dropped) member filled instead of predicting."""
    bad = {str(i) for o in outcomes if not o.get("dropped") for i in (list(o.get("fallback_ids", [])) + list(o.get("filled_rows", [])))}
    return [i for i in ids if str(i) in bad]

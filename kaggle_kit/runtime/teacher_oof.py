"""`kit predict --logits`: a teacher's values for every row of a file, written as a teacher file (:mod:`runtime.teacher`).

Each ``--adapter`` is a teacher. A run folder predicts every row. An ``--all-folds`` parent predicts
**out of fold** when the file holds its training rows: each fold predicts only the rows of its own
``oof.csv`` (the rows it did not train on), so every training row gets a value from the fold that did not
see it; rows in no fold's ``oof.csv`` (other data, e.g. the test file) get the mean log-probability of all
folds, counted and listed (``not_oof_ids``). Several teachers are combined by the weighted mean of their
log-probabilities. Rows the engine could not predict (non-finite logits after the float32 re-run; it never
runs under a deadline here) are left out of the file and listed (``unpredicted_ids``): a student trains them
on hard labels or refuses them (``distill.missing``).

Same engine as `kit predict` (:func:`runtime.engine.predict_rows`: sorted token-budget batches, TTA, devices).
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .teacher import TeacherLogits, file_sha256, values_from_probs, write_teacher


@dataclass
class LogitsResult:
    """What :func:`predict_logits_file` wrote: the file, its rows, how each row got its value."""

    out_path: Path
    rows: int
    written: int
    seconds: float
    labels: list
    teachers: list
    oof_rows: int = 0
    not_oof_ids: list = field(default_factory=list)
    unpredicted_ids: list = field(default_factory=list)
    decisions: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"out_path": str(self.out_path), "rows": self.rows, "written": self.written, "seconds": round(self.seconds, 3),
                "labels": self.labels, "teachers": self.teachers, "oof_rows": self.oof_rows,
                "not_oof_rows": len(self.not_oof_ids), "not_oof_ids": self.not_oof_ids,
                "unpredicted_rows": len(self.unpredicted_ids), "unpredicted_ids": self.unpredicted_ids,
                "metrics": self.metrics, "decisions": self.decisions}


def fold_validation_ids(fold_dir) -> list:
    """The ids of a fold's ``oof.csv`` (the rows it held out), as strings; [] when the fold has none."""
    path = Path(fold_dir) / "oof.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return [row["id"] for row in csv.DictReader(fh)]


def predict_logits_file(adapters: Sequence, data_path, out_path, *, weights=None, base_path=None, bases: Sequence = (),
                        tta=None, batch_tokens=None, max_batch_rows=None, devices=None, quantization=None,
                        log: Optional[Callable] = print, progress: bool = False) -> LogitsResult:
    """Teacher values for every row of ``data_path`` from ``adapters`` (run folders or --all-folds parents),
    written to ``out_path`` (.parquet or .csv); see the module's docstring for which fold predicts which row."""
    from .ensemble_combine import parse_weights
    from .ensemble_members import expand_members, file_members, read_member_data
    from .progress import recorder
    from .workers import parse_devices

    t0 = time.monotonic()
    decisions: list = []
    decide = recorder(decisions, log)
    devs = parse_devices(devices)
    w = parse_weights(weights, len(adapters), [str(a) for a in adapters])
    groups = [expand_members([a], [1.0]) for a in adapters]  # each teacher: its folds (a run folder: itself)
    folders = [f for g in groups for _, f, _ in g]
    members = file_members(folders, None, file_sha256(data_path), base_path=base_path, bases=bases, devices=devs,
                           quantization=quantization, tta=tta, log=decide)
    datasets = read_member_data(members, data_path, decide)
    ds, multilabel = datasets[0], members[0].manifest.kind == "multilabel"
    ids, labels = [str(i) for i in ds.ids], list(members[0].manifest.labels)
    per_teacher, unpredicted, not_oof, oof_rows, info = [], set(), set(), 0, []
    k = 0
    for adapter, group in zip(adapters, groups):
        fold_members = members[k:k + len(group)]
        k += len(group)
        values, bad, outside, n_oof = _teacher_values(adapter, fold_members, ids, multilabel, tta, batch_tokens,
                                                      max_batch_rows, decide, log, progress)
        per_teacher.append(values)
        unpredicted |= bad
        not_oof |= outside
        oof_rows = max(oof_rows, n_oof)
        info.append({"adapter": str(Path(adapter).resolve()), "folds": [
            {"path": str(Path(m.path).resolve()), "manifest_sha256": file_sha256(Path(m.path) / "kit_manifest.json")} for m in fold_members]})
    total = sum(wi * v for wi, v in zip(w, per_teacher))
    keep = [n for n, i in enumerate(ids) if i not in unpredicted]
    meta = {"values": "logits" if multilabel else "log_probs", "teachers": info, "weights": [round(x, 6) for x in w],
            "data": str(data_path), "data_sha256": file_sha256(data_path), "task": members[0].manifest.kind,
            "unpredicted_ids": [i for i in ids if i in unpredicted], "oof": {"rows": oof_rows, "not_oof_ids": sorted(not_oof)}}
    write_teacher(out_path, TeacherLogits([ids[n] for n in keep], labels, np.asarray(total)[keep], meta))
    result = LogitsResult(Path(out_path), len(ids), len(keep), time.monotonic() - t0, labels, info, oof_rows,
                          [i for i in ids if i in not_oof], meta["unpredicted_ids"], decisions)
    if unpredicted:
        decide(f"{len(unpredicted)} row(s) got no finite teacher value and are left out of {out_path} (a student trains them on "
               f"hard labels, or refuses them with distill.missing = \"error\"); ids: {result.unpredicted_ids[:10]}")
    if all(r.label is not None for r in ds.rows) and keep:
        result.metrics = _metrics(ds, np.asarray(total)[keep], keep, labels, multilabel)
    log and log(f"wrote {out_path}: {len(keep)} of {len(ids)} rows x {len(labels)} classes ({meta['values']}) from "
                f"{len(adapters)} teacher(s); {oof_rows} row(s) out of fold, {len(not_oof)} from every fold, "
                f"{len(unpredicted)} left out, in {result.seconds:.1f}s")
    return result


def _teacher_values(adapter, fold_members, ids, multilabel, tta, batch_tokens, max_batch_rows, decide, log, progress) -> tuple:
    """(values rows × labels, ids without a finite value, ids not predicted out of fold, out-of-fold rows) for one
    teacher: a run folder on every row; the folds of a parent each on their own held-out rows (see the module)."""
    position = {i: n for n, i in enumerate(ids)}
    parent = not (Path(adapter) / "kit_manifest.json").is_file()  # an --all-folds parent (expand_members made its folds)
    held = {m.name: [i for i in fold_validation_ids(m.path) if i in position] for m in fold_members} if parent else {}
    owned = {i for rows in held.values() for i in rows}
    outside = [i for i in ids if i not in owned] if owned else []
    if parent and not owned:
        decide(f"teacher {adapter}: none of its folds held out rows of this file (not its training data): every row gets the "
               f"mean log-probability of its {len(fold_members)} folds")
        outside = list(ids)
    elif outside:
        decide(f"teacher {adapter}: {len(outside)} row(s) are in no fold's oof.csv and get the mean of every fold; "
               f"first ids: {outside[:5]}")
    values = np.zeros((len(ids), len(fold_members[0].manifest.labels)), dtype=np.float64)
    bad: set = set()
    for m in fold_members:
        mine = held.get(m.name, []) if owned else []
        own = set(mine)
        wanted = sorted({position[i] for i in mine + (outside if parent else list(ids))})
        if not wanted:
            continue
        probs, filled = _predict(m, [m.rows[n] for n in wanted], tta, batch_tokens, max_batch_rows, log, progress)
        v = values_from_probs(probs, multilabel)
        for j, n in enumerate(wanted):
            share = 1.0 if ids[n] in own else 1.0 / len(fold_members)
            values[n] += share * v[j]
        bad |= filled
        decide(f"teacher {m.name}: {len(wanted)} row(s)" + (f" ({len(mine)} out of fold)" if parent else ""))
    return values, bad, set(outside) if parent else set(), len(owned)


def _predict(member, rows, tta, batch_tokens, max_batch_rows, log, progress) -> tuple:
    """(probabilities, ids that got the engine's fill) of one member on ``rows``; the member is freed after."""
    from .engine import EngineReport, predict_rows
    from .ensemble_run import free_memory

    replicas, tok = member.load()
    rep = EngineReport(decisions=[])
    try:
        probs = predict_rows(replicas[0][0], tok, member.manifest, rows, tta=tta or "none", batch_tokens=batch_tokens,
                             max_batch_rows=max_batch_rows, replicas=replicas, log=log, progress=progress, report=rep)
    finally:
        replicas = tok = None
        free_memory()
    return probs, {str(i) for i in list(rep.filled_rows) + list(rep.fallback_ids)}


def _metrics(ds, values, keep, labels, multilabel) -> dict:
    """The task's metrics of the written values on a labelled file (the teacher's out-of-fold score)."""
    from .metrics import compute_metrics, scalar_metrics

    y = [ds.rows[n].label for n in keep]
    if multilabel:
        y = [[1 if c in (lab if isinstance(lab, list) else [lab]) else 0 for c in range(len(labels))] for lab in y]
    return scalar_metrics(compute_metrics(values, y, multilabel, labels))

"""Per-group rank normalisation of a binary score, and the metric computed per group and averaged.

Jigsaw – Agile Community Rules Classification (2025) scores the probability of a violation with a
column-averaged ROC AUC: one AUC per rule, averaged. Only the order of the scores *within* a rule
matters, so a model whose scores sit higher for one rule than another loses nothing if each rule's
scores are replaced by their ranks scaled to (0, 1] — and a blend of models then mixes comparable
numbers. The 1st-place write-up rank-normalised its scores per rule before blending; this module is
that step (``submission.rank_within = "rule"``) and the matching metric (``grouped_auc``).

The functions of arrays are plain: the submission writer (`runtime.infer`, through
:func:`ranked_probabilities`) and the test-time training run (`kaggle_kit.train.test_time`) call them;
:func:`group_values` reads the group column of a test file by row id.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np


def rank_within(scores, groups: Sequence) -> np.ndarray:
    """Each score replaced by its average rank among the rows of its group, divided by the group's size.

    Ties share their average rank (as ``scipy.stats.rankdata(method="average")``), so equal scores stay
    equal; a group of one row gets 1.0. The order inside every group is unchanged, so any per-group
    ranking metric (AUC, average precision) is unchanged too; across groups the values become comparable.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    g = list(groups)
    if len(g) != len(s):
        raise ValueError(f"rank_within: {len(s)} scores but {len(g)} group values; every row needs its group")
    if not np.all(np.isfinite(s)):
        bad = [i for i, v in enumerate(s) if not np.isfinite(v)][:5]
        raise ValueError(f"rank_within: non-finite scores at rows {bad}; rank only finite predictions")
    out = np.empty_like(s)
    for members in group_indices(g).values():
        idx = np.asarray(members)
        out[idx] = _average_ranks(s[idx]) / len(idx)
    return out


def group_indices(groups: Sequence) -> dict:
    """group value -> row indices, groups in order of first appearance."""
    found: dict = {}
    for i, value in enumerate(groups):
        found.setdefault("" if value is None else str(value), []).append(i)
    return found


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_vals = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_vals[end + 1] == sorted_vals[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def grouped_metric(scores, targets, groups: Sequence, fn: Optional[Callable] = None, only: Optional[Sequence] = None) -> dict:
    """A ranking metric (default ROC AUC) per group, and their plain mean.

    Returns ``{"value": mean or None, "groups": {group: value}, "rows": {group: n}, "undefined": {group: why}}``.
    A group whose rows hold one class has no AUC: it is listed under ``undefined`` and left out of the
    mean (never a NaN, never a silent 0.5). ``only``: average over these groups alone (e.g. the rules the
    training file lacks); a name in ``only`` that no row has is listed under ``undefined`` too.
    """
    from .metrics import roc_auc

    fn = fn or roc_auc
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    t = np.asarray(targets).reshape(-1).astype(np.int64)
    g = list(groups)
    if not (len(s) == len(t) == len(g)):
        raise ValueError(f"grouped_metric: {len(s)} scores, {len(t)} targets, {len(g)} group values; they must match")
    index = group_indices(g)
    wanted = list(index) if only is None else [str(x) for x in only]
    values, rows, undefined = {}, {}, {}
    for name in wanted:
        members = index.get(name)
        if not members:
            undefined[name] = "no row of this group"
            continue
        idx = np.asarray(members)
        rows[name] = len(idx)
        classes = set(t[idx].tolist())
        if len(classes) < 2:
            undefined[name] = f"the {len(idx)} rows hold one class ({sorted(classes)})"
            continue
        values[name] = float(fn(s[idx], t[idx]))
    mean = float(np.mean(list(values.values()))) if values else None
    return {"value": mean, "groups": values, "rows": rows, "undefined": undefined}


def grouped_auc(scores, targets, groups: Sequence, only: Optional[Sequence] = None) -> dict:
    """The column-averaged ROC AUC: one AUC per group (e.g. per rule), averaged (see :func:`grouped_metric`)."""
    return grouped_metric(scores, targets, groups, only=only)


def group_values(data_path, ids: Sequence, column: str, id_column: str, setting: str = "submission.rank_within") -> list:
    """The value of ``column`` for each of ``ids`` in ``data_path`` (read with the runtime's reader).

    Raises DataError naming the file, the column and the columns it has, when the column is missing, or
    the ids that the file lacks."""
    from .formats import columns_of, read_records
    from .problems import DataError

    records = read_records(data_path)
    columns = columns_of(records)
    if column not in columns:
        raise DataError(f"{data_path}: {setting} = {column!r} but the file has no such column; its columns: "
                        f"{columns[:20]}. Set {setting} to one of them or to ''")
    by_id = {str(r.get(id_column)): r.get(column) for r in records}
    missing = [i for i in ids if str(i) not in by_id]
    if missing:
        raise DataError(f"{data_path}: {len(missing)} id(s) of the predictions are not in column {id_column!r}: {missing[:5]}")
    return ["" if by_id[str(i)] is None else str(by_id[str(i)]) for i in ids]


def ranked_probabilities(probs, label_names: Sequence, positive: str, groups: Sequence) -> np.ndarray:
    """A binary task's (rows, 2) probabilities with the positive class's column replaced by its rank within
    each group (:func:`rank_within`) and the other column by 1 minus it, so each row still sums to 1."""
    p = np.asarray(probs, dtype=np.float64)
    names = [str(n) for n in label_names]
    if p.ndim != 2 or p.shape[1] != 2 or positive not in names:
        raise ValueError(f"rank_within needs a binary task's two probabilities and its positive class; got shape {p.shape}, "
                         f"labels {names}, positive {positive!r}")
    pos = names.index(positive)
    out = np.empty_like(p)
    out[:, pos] = rank_within(p[:, pos], groups)
    out[:, 1 - pos] = 1.0 - out[:, pos]
    return out


def rank_for_submission(spec, data_path, ids: Sequence, id_column: str, probs, label_names: Sequence, decide: Callable) -> np.ndarray:
    """The probabilities a submission writer writes under ``spec.rank_within`` (a SubmissionSpec of the
    ``positive`` style): ranked within each group of ``data_path``'s column; the decision goes to ``decide``."""
    from .problems import DataError

    if spec.style != "positive":
        raise DataError(f"submission.rank_within = {spec.rank_within!r} ranks one probability column, but this submission's style "
                        f"is {spec.style!r}; set submission.rank_within = \"\"")
    groups = group_values(data_path, ids, spec.rank_within, id_column)
    decide(f"submission: {spec.positive!r} scores ranked within each {spec.rank_within!r} ({len(set(groups))} groups; "
           f"submission.rank_within)")
    return ranked_probabilities(probs, label_names, spec.positive, groups)

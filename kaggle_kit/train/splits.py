"""Deterministic, stratified, optionally grouped splits (numpy only; returns index arrays).

- :func:`fold_indices`: stratified K folds; ``fold`` is held out for validation.
- :func:`split_indices`: a train/val/test split by ``fractions`` (e.g. 0.7/0.1/0.2, as in seed 000).

With ``groups`` (e.g. :func:`prompt_groups`), rows sharing a group always land on the same side,
so one prompt never appears in both training and validation. Groups are stratified by their most
common label and placed greedily (largest first) on the side furthest below its target, which
keeps the class balance and the sizes close to the targets. The same inputs and seed give the
same indices on every machine.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from typing import Optional, Sequence

import numpy as np


def _label_key(label) -> object:
    if label is None:
        return None
    if isinstance(label, (list, tuple, np.ndarray)):
        return tuple(int(x) for x in label)
    if isinstance(label, (np.integer,)):
        return int(label)
    return label


def _groups_of(labels: Sequence, groups: Optional[Sequence]) -> tuple:
    """(group ids in first-seen order, row indices per group, stratum per group)."""
    n = len(labels)
    if groups is None:
        members = [[i] for i in range(n)]
    else:
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} entries but labels has {n}")
        index: dict = {}
        members = []
        for i, g in enumerate(groups):
            key = _label_key(g)
            if key not in index:
                index[key] = len(members)
                members.append([])
            members[index[key]].append(i)
    keys = [_label_key(l) for l in labels]
    strata = []
    for rows in members:
        counts = Counter(keys[i] for i in rows)
        strata.append(sorted(counts.items(), key=lambda kv: (-kv[1], repr(kv[0])))[0][0])
    return members, strata


def _assign(labels, groups, targets: list, seed: int) -> np.ndarray:
    """Side index per row; ``targets`` are the sides' shares (sum 1)."""
    members, strata = _groups_of(labels, groups)
    rng = np.random.default_rng(seed)
    side = np.full(len(labels), -1, dtype=np.int64)
    targets = np.asarray(targets, dtype=float)
    by_stratum: dict = {}
    for g, s in enumerate(strata):
        by_stratum.setdefault(repr(s), []).append(g)
    filled_total = np.zeros(len(targets))
    for name in sorted(by_stratum):
        gs = np.array(by_stratum[name])
        gs = gs[rng.permutation(len(gs))]
        sizes = np.array([len(members[g]) for g in gs])
        gs = gs[np.argsort(-sizes, kind="stable")]  # largest groups first, ties in shuffled order
        total = sizes.sum()
        filled = np.zeros(len(targets))
        for g in gs:
            size = len(members[g])
            # the side furthest below its target for this class (ties: furthest below overall)
            deficit = targets * total - filled
            overall = targets * (filled_total.sum() + size) - filled_total
            k = int(np.lexsort((-overall, -deficit))[0])
            side[members[g]] = k
            filled[k] += size
            filled_total[k] += size
    return side


def fold_indices(labels: Sequence, groups: Optional[Sequence] = None, n_folds: int = 5, fold: int = 0, seed: int = 42) -> tuple:
    """(train_idx, val_idx) of fold ``fold`` among ``n_folds`` stratified (and grouped) folds.

    >>> tr, va = fold_indices([0, 1, 2] * 10, n_folds=5, fold=0, seed=1)
    >>> len(tr), len(va)
    (24, 6)
    """
    n = len(labels)
    if n_folds < 2:
        raise ValueError(f"n_folds = {n_folds}: need at least 2 folds")
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold = {fold} is out of range 0..{n_folds - 1}")
    n_units = n if groups is None else len({_label_key(g) for g in groups})
    if n_units < n_folds:
        raise ValueError(f"{n_units} {'rows' if groups is None else 'groups'} cannot fill {n_folds} folds")
    side = _assign(labels, groups, [1.0 / n_folds] * n_folds, seed)
    idx = np.arange(n)
    return idx[side != fold], idx[side == fold]


def split_indices(labels: Sequence, groups: Optional[Sequence] = None, fractions: Sequence = (0.7, 0.1, 0.2), seed: int = 42) -> tuple:
    """One index array per fraction (e.g. train/val/test for 0.7/0.1/0.2), stratified and grouped.

    >>> tr, va, te = split_indices([0, 1] * 50, fractions=(0.7, 0.1, 0.2), seed=0)
    >>> len(tr), len(va), len(te)
    (70, 10, 20)
    """
    fr = [float(f) for f in fractions]
    if len(fr) < 2 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions {list(fractions)} must be two or more non-negative numbers summing to 1, e.g. (0.7, 0.1, 0.2)")
    side = _assign(labels, groups, fr, seed)
    idx = np.arange(len(labels))
    return tuple(idx[side == k] for k in range(len(fr)))


def prompt_groups(rows: Sequence) -> list:
    """A group key per row: the hash of its prompt turns (rows sharing a prompt share a key)."""
    out = []
    for r in rows:
        h = hashlib.sha1("\x1e".join(r.prompt).encode("utf-8", "surrogatepass")).hexdigest()[:16]
        out.append(h)
    return out

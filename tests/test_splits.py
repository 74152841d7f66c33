"""Splits: stratified, deterministic, grouped, exact partitions."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from kaggle_kit.train.splits import fold_indices, prompt_groups, split_indices


def _labels(n=300, seed=0, weights=(0.3, 0.3, 0.4)):
    rng = np.random.default_rng(seed)
    return list(rng.choice(3, size=n, p=weights))


def test_folds_partition_and_stratify():
    labels = _labels()
    overall = np.bincount(labels, minlength=3) / len(labels)
    seen = []
    for fold in range(5):
        tr, va = fold_indices(labels, None, 5, fold, seed=7)
        assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == len(labels)
        assert abs(len(va) - 60) <= 3
        share = np.bincount(np.asarray(labels)[va], minlength=3) / len(va)
        assert np.abs(share - overall).max() < 0.03
        seen.extend(va)
    assert sorted(seen) == list(range(len(labels)))  # each row validates exactly once


def test_deterministic_and_seed_dependent():
    labels = _labels()
    a = fold_indices(labels, None, 5, 2, seed=1)[1]
    b = fold_indices(labels, None, 5, 2, seed=1)[1]
    c = fold_indices(labels, None, 5, 2, seed=2)[1]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_groups_never_straddle():
    rng = np.random.default_rng(3)
    groups = list(rng.integers(0, 80, size=400))
    labels = _labels(400, seed=4)
    for fold in range(4):
        tr, va = fold_indices(labels, groups, 4, fold, seed=0)
        g = np.asarray(groups)
        assert not set(g[tr]) & set(g[va])
    parts = split_indices(labels, groups, (0.7, 0.1, 0.2), seed=0)
    sets = [set(np.asarray(groups)[p]) for p in parts]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(len(p) for p in parts) == 400


def test_split_fractions_and_balance():
    labels = _labels(1000, seed=5)
    tr, va, te = split_indices(labels, None, (0.7, 0.1, 0.2), seed=11)
    assert (len(tr), len(va), len(te)) == (700, 100, 200)
    assert len(set(tr) | set(va) | set(te)) == 1000
    overall = np.bincount(labels, minlength=3) / 1000
    for part in (tr, va, te):
        share = np.bincount(np.asarray(labels)[part], minlength=3) / len(part)
        assert np.abs(share - overall).max() < 0.02


def test_multilabel_and_unlabelled_inputs():
    labels = [[0], [0, 1], [], None] * 25
    tr, va = fold_indices(labels, None, 5, 0, seed=0)
    assert len(va) == 20 and Counter(tuple(labels[i] or ()) for i in va)[(0, 1)] == 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2"):
        fold_indices([0, 1], None, 1, 0)
    with pytest.raises(ValueError, match="out of range"):
        fold_indices([0, 1] * 5, None, 5, 5)
    with pytest.raises(ValueError, match="summing to 1"):
        split_indices([0, 1] * 5, None, (0.5, 0.2))
    with pytest.raises(ValueError, match="groups has"):
        fold_indices([0, 1] * 5, [1, 2], 2, 0)
    with pytest.raises(ValueError, match="cannot fill"):
        fold_indices([0, 1, 0, 1], [1, 1, 2, 2], 3, 0)


def test_prompt_groups_from_rows():
    from kaggle_kit.runtime.formats import Row

    rows = [Row("1", ["same"], ["a"], ["b"]), Row("2", ["same"], ["c"], ["d"]), Row("3", ["other"], ["a"], ["b"])]
    g = prompt_groups(rows)
    assert g[0] == g[1] != g[2]

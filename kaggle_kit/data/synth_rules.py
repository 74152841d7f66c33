"""Rules-shaped data whose test file holds rules the training file lacks (the test-time training check).

Jigsaw – Agile Community Rules Classification (2025) trains on 2 rules and tests on 6, 4 of them unseen.
This generator keeps that shape (the `rules` preset's columns: ``row_id, body, rule, subreddit,
positive_example_1/2, negative_example_1/2, rule_violation``) with a signal that only the examples carry
for an unseen rule: each rule has its own keyword; a comment that breaks the rule holds the rule's keyword,
one that does not holds none, or (``decoy`` of the time) another rule's keyword; each row's positive
examples hold its rule's keyword, its negative examples none. A model trained on the 2 training rules
learns their keywords only; the test rows' examples teach the other 4.

:func:`write_unseen_rules` writes ``train.csv``, ``test.csv`` (no labels), ``sample_submission.csv`` and
``test_labels.csv`` (the labels kept aside, with each row's rule and whether the training file has it).
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

from kaggle_kit.models.words import WORDS
from kaggle_kit.runtime.ranking import grouped_auc

UNSEEN_RULES = [
    "No Advertising: spam, referral links, unsolicited advertising and promotional content are not allowed.",
    "No legal advice: do not offer or request legal advice.",
    "No spoilers: do not reveal plot details without a spoiler tag.",
    "No personal attacks: criticise ideas, not people.",
    "No medical advice: do not diagnose or recommend treatments.",
    "Stay on topic: posts must be about this community's subject.",
]
RULE_WORDS = ["money", "music", "planet", "health", "market", "game"]  # one keyword per rule, in rule order
TRAIN_RULES = 2  # the training file holds the first two rules
FILLER = [w for w in WORDS if w not in RULE_WORDS]
SUBREDDITS = ["legaladvice", "AskReddit", "personalfinance", "Futurology", "movies", "science"]
COLUMNS = ["row_id", "body", "rule", "subreddit", "positive_example_1", "positive_example_2",
           "negative_example_1", "negative_example_2", "rule_violation"]


def _text(rng: random.Random, keyword: str = "", n: int = 0) -> str:
    words = [rng.choice(FILLER) for _ in range(n or rng.randint(10, 24))]
    if keyword:
        for _ in range(2):
            words.insert(rng.randint(0, len(words)), keyword)
    return " ".join(words).capitalize() + "."


def _body(rng: random.Random, rule: int, label: int, decoy: float) -> str:
    if label:
        return _text(rng, RULE_WORDS[rule])
    if rng.random() < decoy:
        return _text(rng, rng.choice([w for i, w in enumerate(RULE_WORDS) if i != rule]))
    return _text(rng)


def unseen_rules_rows(rows: int, rules: list, seed: int, decoy: float = 0.3, first_id: int = 1000) -> list:
    """``rows`` rows (dicts in COLUMNS) spread evenly over rule indices ``rules``, labels balanced per rule."""
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        rule = rules[i % len(rules)]
        label = (i // len(rules)) % 2
        out.append({
            "row_id": first_id + i, "body": _body(rng, rule, label, decoy), "rule": UNSEEN_RULES[rule],
            "subreddit": rng.choice(SUBREDDITS),
            "positive_example_1": _text(rng, RULE_WORDS[rule]), "positive_example_2": _text(rng, RULE_WORDS[rule]),
            "negative_example_1": _body(rng, rule, 0, decoy), "negative_example_2": _body(rng, rule, 0, decoy),
            "rule_violation": label,
        })
    rng.shuffle(out)
    return out


def _write(path: Path, rows: list, columns: list) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def write_unseen_rules(folder, train_rows: int = 200, test_rows: int = 120, seed: int = 0, decoy: float = 0.3) -> dict:
    """Write the four files into ``folder``; returns their paths and the unseen rules' texts."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train = unseen_rules_rows(train_rows, list(range(TRAIN_RULES)), seed, decoy, first_id=1000)
    test = unseen_rules_rows(test_rows, list(range(len(UNSEEN_RULES))), seed + 1, decoy, first_id=5000)
    paths = {"train": folder / "train.csv", "test": folder / "test.csv", "sample": folder / "sample_submission.csv",
             "labels": folder / "test_labels.csv"}
    _write(paths["train"], train, COLUMNS)
    _write(paths["test"], test, COLUMNS[:-1])
    _write(paths["sample"], [{"row_id": r["row_id"], "rule_violation": 0.5} for r in test], ["row_id", "rule_violation"])
    seen = set(UNSEEN_RULES[:TRAIN_RULES])
    _write(paths["labels"], [{**r, "seen": int(r["rule"] in seen)} for r in test], ["row_id", "rule", "rule_violation", "seen"])
    return {**{k: str(v) for k, v in paths.items()}, "unseen": UNSEEN_RULES[TRAIN_RULES:]}


def _read_scored(submission, labels) -> tuple:
    """(scores, targets, rules, unseen rules, seen rules) of ``submission`` in the row order of ``labels``."""
    with Path(submission).open(newline="", encoding="utf-8") as fh:
        scores = {r["row_id"]: float(r["rule_violation"]) for r in csv.DictReader(fh)}
    with Path(labels).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = [r["row_id"] for r in rows if r["row_id"] not in scores]
    if missing:
        raise ValueError(f"{submission}: {len(missing)} row_id(s) of {labels} have no score: {missing[:5]}; "
                         "score the whole test file")
    unseen = sorted({r["rule"] for r in rows if r["seen"] == "0"})
    seen = sorted({r["rule"] for r in rows if r["seen"] == "1"})
    s, t, g = [scores[r["row_id"]] for r in rows], [int(r["rule_violation"]) for r in rows], [r["rule"] for r in rows]
    scorable = sorted(grouped_auc(s, t, g, only=unseen)["groups"])
    if not scorable:
        raise ValueError(f"{labels}: no unseen rule has both classes, so no AUC over unseen rules exists")
    return s, t, g, scorable, seen


def score_unseen(submission, labels) -> dict:
    """Column-averaged AUC of ``submission`` against the kept-aside ``test_labels.csv``: over the rules the
    training file lacks (``unseen``, with its rows ``n_unseen`` and a stratified bootstrap ``unseen_ci95``), over the
    ones it has (``seen``) and over all (``all``); per rule under ``rules``; rules with one class only (no AUC) are
    left out of every figure and listed under ``undefined``. Raises ValueError when the submission lacks a row or no
    unseen rule has both classes."""
    s, t, g, unseen, seen = _read_scored(submission, labels)
    every = grouped_auc(s, t, g)
    return {"unseen": grouped_auc(s, t, g, only=unseen)["value"], "seen": grouped_auc(s, t, g, only=seen)["value"],
            "all": every["value"], "rules": every["groups"], "undefined": every["undefined"],
            "n_unseen": sum(1 for x in g if x in unseen), "unseen_ci95": bootstrap_grouped_auc(s, t, g, only=unseen)}


def compare_unseen(submission, baseline, labels) -> dict:
    """``submission``'s AUC over the unseen rules minus ``baseline``'s, with a paired bootstrap 95% interval."""
    s, t, g, unseen, _ = _read_scored(submission, labels)
    b = _read_scored(baseline, labels)[0]
    return paired_auc_difference(s, b, t, g, only=unseen)


def _stratified_resamples(targets, groups, only, resamples: int, seed: int):
    """Row indices of ``resamples`` bootstrap samples drawn with replacement within each (group, label) cell of the
    groups in ``only``, so every sample keeps each group's class counts and no group's AUC is ever undefined."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t, g = np.asarray(targets), np.asarray(groups, dtype=object)
    cells = [c for c in (np.flatnonzero((g == grp) & (t == lab)) for grp in only for lab in (0, 1)) if len(c)]
    for _ in range(int(resamples)):
        yield np.concatenate([rng.choice(c, size=len(c), replace=True) for c in cells])


def _interval(values) -> list:
    import numpy as np

    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]


def bootstrap_grouped_auc(scores, targets, groups, only, resamples: int = 2000, seed: int = 0) -> list:
    """95% percentile interval ``[low, high]`` of the column-averaged AUC over the groups in ``only``, rows
    resampled within each (group, label) cell (Efron & Tibshirani 1993, ch. 13, stratified)."""
    import numpy as np

    s, t, g = np.asarray(scores, dtype=float), np.asarray(targets), np.asarray(groups, dtype=object)
    return _interval([grouped_auc(s[i], t[i], list(g[i]), only=only)["value"]
                      for i in _stratified_resamples(t, g, only, resamples, seed)])


def paired_auc_difference(scores_a, scores_b, targets, groups, only, resamples: int = 2000, seed: int = 0) -> dict:
    """Column-averaged AUC of ``scores_a`` minus that of ``scores_b`` on the same rows, with a paired 95% interval
    (both scored on the same resamples): ``{"difference", "ci95"}``. An interval above 0 says a is better."""
    import numpy as np

    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    t, g = np.asarray(targets), np.asarray(groups, dtype=object)

    def diff(i) -> float:
        return grouped_auc(a[i], t[i], list(g[i]), only=only)["value"] - grouped_auc(b[i], t[i], list(g[i]), only=only)["value"]

    every = np.arange(len(t))
    return {"difference": round(diff(every), 4), "ci95": _interval([diff(i) for i in _stratified_resamples(t, g, only, resamples, seed)])}

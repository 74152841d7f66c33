"""Training rows mined from a test file's labelled examples (`[test_time] examples`, `kit data mine-examples`).

In Jigsaw – Agile Community Rules Classification (2025) every test row carries two comments that break
its rule (``positive_example_1/2``) and two that do not (``negative_example_1/2``); the hidden test set
holds rules the training file lacks, so the top teams turned those examples into training rows inside
the kernel (test-time training). :func:`mine_examples` does exactly that, for any columns and labels:

- each configured example column of each test row gives one row: the row's other fields kept (``rule``,
  ``subreddit``, the other examples), the example's text in ``body_column``, the configured label in
  the label column, the id ``<row id>_<column>``;
- the column the text came from is filled from the next test row of the same group (``example_fill =
  "other_row"``), so a mined body never repeats one of its own listed examples — a shortcut the model
  would learn and never see at test time ("keep" leaves it, "empty" blanks it);
- rows are deduplicated by text (whitespace-normalised) and group (``group_column``, e.g. ``rule``);
  empty and duplicate examples are skipped, counted and listed by id with the reason;
- ``include_train`` puts the training file's rows first (they win a duplicate);
- every row names the row it came from in ``source_row``: the fine-tune keeps the rows of one test row
  on one side of its validation split (``data.group_column``), since they share that row's examples.

The same function runs in `kit data mine-examples` and inside the train-predict notebook.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kaggle_kit.errors import KitError
from kaggle_kit.runtime.formats import columns_of, read_records
from kaggle_kit.runtime.problems import DataError

FILLS = ("other_row", "keep", "empty")
SOURCE_COLUMN = "source_row"  # the test row (or training row) a mined row comes from: its validation group


@dataclass
class MineResult:
    """What :func:`mine_examples` made: the rows (dicts in ``columns``), every count and every skipped example."""

    rows: list
    columns: list
    id_column: str
    label_column: str
    group_column: str
    source: str
    counts: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)  # [{id, column, reason}]
    groups: dict = field(default_factory=dict)  # group -> mined rows (test examples only)
    labels: dict = field(default_factory=dict)  # label value -> rows (all rows)
    unseen_groups: list = field(default_factory=list)  # groups of the test file the training file lacks
    empty_fills: list = field(default_factory=list)  # ids whose source column found no other row to fill from

    def to_dict(self) -> dict:
        return {"source": self.source, "rows": len(self.rows), "counts": self.counts, "labels": self.labels,
                "groups": self.groups, "unseen_groups": self.unseen_groups, "skipped": self.skipped,
                "empty_fills": self.empty_fills, "columns": self.columns}

    def summary_lines(self, shown: int = 10) -> list:
        """The log lines: counts, labels, groups (unseen ones marked), skipped examples by id."""
        c = self.counts
        lines = [f"mined {c['mined']} training row(s) from {c['examples']} example cell(s) of {c['test_rows']} test row(s) in "
                 f"{self.source}" + (f" + {c['from_train']} training row(s)" if c.get("from_train") else "")
                 + f"; labels {self.labels}"]
        if self.groups:
            unseen = set(self.unseen_groups)
            lines.append(f"groups ({self.group_column}): " + "; ".join(
                f"{_short(g)}: {n}{' (not in training)' if g in unseen else ''}" for g, n in self.groups.items()))
        for reason in ("empty", "duplicate"):
            ids = [s["id"] for s in self.skipped if s["reason"].startswith(reason)]
            if ids:
                lines.append(f"skipped {len(ids)} {reason} example(s): " + ", ".join(ids[:shown]) + (" …" if len(ids) > shown else ""))
        if self.empty_fills:
            lines.append(f"{len(self.empty_fills)} mined row(s) left their source column empty (no other row of the group to "
                         f"fill it from): " + ", ".join(self.empty_fills[:shown]) + (" …" if len(self.empty_fills) > shown else ""))
        return lines


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _norm(value) -> str:
    """A cell as text for deduplication: None/NaN → '', whitespace collapsed, trimmed."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return re.sub(r"\s+", " ", str(value)).strip()


def _require_columns(path, columns: list, needed: dict) -> None:
    """DataError naming the first missing column, the setting that asks for it and the columns the file has."""
    for column, setting in needed.items():
        if column and column not in columns:
            raise DataError(f"{path}: no column {column!r} ({setting}); the file's columns: {columns}. "
                            f"Set {setting.split(' ')[0]} to columns this file has")


def mine_examples(test_path, examples: dict, *, body_column: str = "body", group_column: str = "rule",
                  id_column: str = "id", label_column: str = "label", example_fill: str = "other_row",
                  train_path=None, include_train: bool = False) -> MineResult:
    """Training rows from the labelled example columns of ``test_path`` (see the module's docstring).

    ``examples``: column -> label (e.g. ``{"positive_example_1": 1, "negative_example_1": 0}``).
    ``train_path``: the training file; its group values name the test groups it lacks (``unseen_groups``)
    and, with ``include_train``, its rows come first. Raises DataError for a missing column (naming the
    columns the file has) and KitError for empty settings."""
    if not examples:
        raise KitError("[test_time] examples is empty: name the test file's example columns and their labels, e.g. "
                       "examples = {positive_example_1 = 1, positive_example_2 = 1, negative_example_1 = 0, negative_example_2 = 0}")
    if example_fill not in FILLS:
        raise KitError(f"test_time.example_fill = {example_fill!r}: use one of {', '.join(FILLS)}")
    records = read_records(test_path)
    columns = columns_of(records)
    _require_columns(test_path, columns, {**{c: "test_time.examples" for c in examples},
                                          body_column: "test_time.body_column", group_column: "test_time.group_column",
                                          id_column: "data.id_column"})
    out_columns = columns + [c for c in (label_column, SOURCE_COLUMN) if c not in columns]
    result = MineResult([], out_columns, id_column, label_column, group_column, str(test_path))
    seen: dict = {}  # (text, group) -> (id, label)
    train_groups = _add_train(result, train_path, include_train, seen, body_column)
    donors = _donors(records, examples, group_column)
    n_cells = 0
    for n, rec in enumerate(records):
        rid = str(rec.get(id_column))
        for column, label in examples.items():
            n_cells += 1
            mid = f"{rid}_{column}"
            text = _norm(rec.get(column))
            if not text:
                result.skipped.append({"id": mid, "column": column, "reason": f"empty {column!r} in row {rid}"})
                continue
            group = _norm(rec.get(group_column)) if group_column else ""
            if not _first(result, seen, (text, group), mid, column, label):
                continue
            row = {k: v for k, v in rec.items() if k != "__line__"}
            row.update({id_column: mid, body_column: rec.get(column), label_column: str(label), SOURCE_COLUMN: rid})
            row[column] = _fill(example_fill, donors, column, group, n, text, result, mid)
            result.rows.append(row)
            result.groups[group] = result.groups.get(group, 0) + 1
    for row in result.rows:
        key = str(row[label_column])
        result.labels[key] = result.labels.get(key, 0) + 1
    if train_groups is not None and group_column:
        result.unseen_groups = [g for g in result.groups if g not in train_groups]
    result.counts = {"test_rows": len(records), "examples": n_cells, "mined": sum(result.groups.values()),
                     "from_train": len(result.rows) - sum(result.groups.values()),
                     "skipped_empty": sum(1 for s in result.skipped if s["reason"].startswith("empty")),
                     "skipped_duplicate": sum(1 for s in result.skipped if s["reason"].startswith("duplicate")),
                     "rows": len(result.rows)}
    return result


def _first(result: MineResult, seen: dict, key: tuple, mid: str, column: str, label) -> bool:
    """True for the first row of (text, group); a later one is skipped and listed (with a conflicting label said)."""
    if key not in seen:
        seen[key] = (mid, str(label))
        return True
    first, first_label = seen[key]
    other = "" if first_label == str(label) else f" (labelled {first_label} there, {label} here: the first is kept)"
    result.skipped.append({"id": mid, "column": column, "reason": f"duplicate of {first} (same text and group){other}"})
    return False


def _donors(records: list, examples: dict, group_column: str) -> dict:
    """(column, group) -> [(row index, text)] of the non-empty example cells, in file order."""
    donors: dict = {}
    for n, rec in enumerate(records):
        group = _norm(rec.get(group_column)) if group_column else ""
        for column in examples:
            text = _norm(rec.get(column))
            if text:
                donors.setdefault((column, group), []).append((n, rec.get(column)))
    return donors


def _fill(mode: str, donors: dict, column: str, group: str, n: int, text: str, result: MineResult, mid: str):
    """The value the source column of a mined row holds (see ``example_fill``)."""
    if mode == "keep":
        return text
    if mode == "empty":
        return ""
    cands = donors.get((column, group), [])
    after = [v for i, v in cands if i > n and _norm(v) != text] + [v for i, v in cands if i < n and _norm(v) != text]
    if after:
        return after[0]  # the next row of the group (cyclic): deterministic
    result.empty_fills.append(mid)
    return ""


def _add_train(result: MineResult, train_path, include_train: bool, seen: dict, body_column: str) -> Optional[set]:
    """The training file's group values (None without a file); with ``include_train`` its rows, first."""
    if include_train and not train_path:
        raise KitError("test_time.include_train = true but data.train is empty; set data.train to the training file")
    if not train_path:
        return None
    records = read_records(train_path)
    columns = columns_of(records)
    g, lab, idc = result.group_column, result.label_column, result.id_column
    needed = {g: "test_time.group_column"} if g else {}
    if include_train:
        needed.update({body_column: "test_time.body_column", lab: "data.label_columns", idc: "data.id_column"})
    _require_columns(train_path, columns, needed)
    groups = {_norm(r.get(g)) for r in records} if g else set()
    if not include_train:
        return groups
    for rec in records:
        rid = str(rec.get(idc))
        text = _norm(rec.get(body_column))
        if not text:
            result.skipped.append({"id": rid, "column": body_column, "reason": f"empty {body_column!r} in training row {rid}"})
            continue
        if _first(result, seen, (text, _norm(rec.get(g)) if g else ""), rid, body_column, rec.get(lab)):
            result.rows.append({**{k: v for k, v in rec.items() if k != "__line__"}, SOURCE_COLUMN: rid})
    for extra in columns:
        if extra not in result.columns:
            result.columns.append(extra)
    return groups


def mine_from_config(cfg, test_path=None, include_train: Optional[bool] = None) -> MineResult:
    """:func:`mine_examples` with ``[test_time]``, ``data.id_column``, the one label column and ``data.train``."""
    tt = cfg.test_time
    labels = list(cfg.data.label_columns)
    if len(labels) != 1:
        raise KitError(f"data.label_columns = {labels}: test-time mining writes one label column; set data.label_columns "
                       f"to it, e.g. [\"rule_violation\"]")
    test_path = test_path or cfg.data.test
    if not test_path:
        raise KitError("no test file: pass it (kit data mine-examples TEST.csv) or set data.test")
    include = tt.include_train if include_train is None else include_train
    # the training file: always with include_train (a missing one is an error), else only to name the unseen groups
    train = cfg.data.train if cfg.data.train and (include or Path(cfg.data.train).is_file()) else None
    return mine_examples(test_path, dict(tt.examples), body_column=tt.body_column, group_column=tt.group_column,
                         id_column=cfg.data.id_column, label_column=labels[0], example_fill=tt.example_fill,
                         train_path=train, include_train=include)


def write_mined(result: MineResult, out) -> Path:
    """The mined rows as a CSV in ``result.columns`` (missing cells empty)."""
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise KitError(f"--out {out}: mined rows are written as CSV; use a .csv file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=result.columns, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for row in result.rows:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in result.columns})
    return out

"""Submission writers and validation (LMSYS probabilities, WSDM winners, generic classification,
and any shape a competition's own ``sample_submission.csv`` shows: :class:`SubmissionSpec`).

Every writer validates before writing and writes atomically (temporary file in the target folder,
then ``os.replace``), so a crashed or interrupted run never leaves half a submission behind.

Checks, each failure a :class:`SubmissionError` naming the file, the id or column, the value and the fix:
every test id exactly once and in the test file's order, the expected columns, no NaN, probabilities
in [0, 1] summing to 1 per row, WSDM winners among the labels.
"""
from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .problems import DataError

SUM_TOLERANCE = 1e-4
LMSYS_COLUMNS = ["winner_model_a", "winner_model_b", "winner_tie"]


class SubmissionError(DataError):
    """A submission that Kaggle would reject or score wrongly."""


# --------------------------------------------------------------------------- shaping


def normalize_probabilities(probs, multilabel: bool = False) -> np.ndarray:
    """Clip to [0, 1] and renormalise rows to sum to 1 (float64; multilabel: clip only).

    Never hides a broken row: NaN/inf values, or a row with nothing left after clipping, raise
    :class:`SubmissionError` naming the row positions. Callers decide what such rows get and report
    it (the inference engine re-runs and fills them and lists them by id: runtime/health.py)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] == 0:
        raise SubmissionError(f"probabilities must be a 2-D array (rows × classes), got shape {p.shape}")
    bad = np.where(~np.isfinite(p).all(axis=1))[0]
    if len(bad):
        raise SubmissionError(f"{len(bad)} row(s) of probabilities hold NaN/inf (row positions {bad[:5].tolist()}"
                              f"{' …' if len(bad) > 5 else ''}); predict or fill them (and report it) before writing")
    p = np.clip(p, 0.0, 1.0)
    if multilabel:
        return p
    s = p.sum(axis=1, keepdims=True)
    zero = np.where(s[:, 0] <= 0)[0]
    if len(zero):
        raise SubmissionError(f"{len(zero)} row(s) of probabilities are all zero after clipping to [0, 1] (row positions "
                              f"{zero[:5].tolist()}{' …' if len(zero) > 5 else ''}); they carry no prediction to normalise")
    return p / s


@dataclass
class SubmissionSpec:
    """The shape of a submission: ``[id_column] + columns``, and how probabilities become cells.

    Styles: ``lmsys`` / ``probs`` / ``multilabel`` (one probability column per class, by name),
    ``wsdm`` / ``label`` (the most probable class's name), ``topk`` (the ``k`` most probable class
    names joined by spaces, best first; ties keep class order), ``positive`` (the probability of
    the ``positive`` class of a binary task). Saved in the manifest as ``task.submission``;
    ``reason`` says why, when the sample alone did not decide (its cells could be labels or numbers:
    the metric chose, see :func:`spec_from_sample`).
    """

    style: str
    id_column: str = "id"
    columns: list = field(default_factory=list)
    k: int = 0
    positive: str = ""
    sample: str = ""
    reason: str = ""
    rank_within: str = ""  # positive style: scores ranked within each value of this column (runtime.ranking)

    @property
    def header(self) -> list:
        return [self.id_column] + list(self.columns)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SubmissionSpec":
        return cls(**{k: data[k] for k in ("style", "id_column", "columns", "k", "positive", "sample", "reason", "rank_within")
                      if k in data})


def as_spec(style, label_names: Sequence[str] = (), id_column: str = "id") -> SubmissionSpec:
    """A :class:`SubmissionSpec` from a style name (lmsys | wsdm | label | probs | multilabel) or a spec."""
    if isinstance(style, SubmissionSpec):
        return style
    if style == "lmsys":
        return SubmissionSpec("lmsys", id_column, list(LMSYS_COLUMNS))
    if style == "wsdm":
        return SubmissionSpec("wsdm", id_column, ["winner"])
    if style == "label":
        return SubmissionSpec("label", id_column, ["label"])
    if style in ("probs", "multilabel"):
        return SubmissionSpec(style, id_column, [str(n) for n in label_names])
    raise SubmissionError(f"unknown submission style {style!r}; use lmsys, wsdm, label, probs, multilabel, topk or positive")


POSITIVE_NAMES = ("1", "True", "true", "yes", "Yes", "positive", "1.0")


def positive_class(label_names: Sequence[str], wanted: str = "") -> str:
    """The class whose probability a binary submission holds: ``wanted``, else a label among
    1/True/yes/positive, else the last label."""
    names = [str(n) for n in label_names]
    if wanted:
        if wanted not in names:
            raise SubmissionError(f"submission.positive_label = {wanted!r} is not one of the labels {names}")
        return wanted
    return next((n for n in names if n in POSITIVE_NAMES), names[-1])


def _is_number(cell) -> bool:
    try:
        return math.isfinite(float(cell))
    except (TypeError, ValueError):
        return False


# metrics Kaggle computes from a probability (one column: the positive class's) or from hard labels
PROBABILITY_METRICS = ("log_loss", "auc", "average_precision")
LABEL_METRICS = ("accuracy", "macro_f1", "micro_f1", "subset_accuracy")


def spec_from_sample(path, label_names: Sequence[str], top_k: int = 0, positive_label: str = "", multilabel: bool = False,
                     metric: str = "") -> SubmissionSpec:
    """Read a competition's sample submission and decide the shape of ours.

    The first column is the id column. Several more columns must be the class names (any order):
    one probability each. One more column: numbers → the positive class's probability (binary
    tasks only); cells holding several labels separated by spaces → top-k (k = ``top_k``, the
    most labels a sample cell holds, or K of a ``map@K`` ``metric``); otherwise one label per row.

    When the cells are numbers that are also label names (0/1 cells of a task labelled 0/1), or a
    binary sample has no rows, the sample cannot tell labels from a probability: ``metric`` decides
    (:func:`shape_by_metric`) and the spec's ``reason`` records why.
    """
    header, rows = read_table(path, what="sample submission")
    names = [str(n) for n in label_names]
    if len(header) < 2:
        raise SubmissionError(f"{path}: the sample has columns {header}; expected an id column and at least one output column")
    id_column, out = header[0].strip(), [h.strip() for h in header[1:]]
    where = Path(path).name
    if len(out) > 1:
        missing = [n for n in names if n not in out]
        extra = [c for c in out if c not in names]
        if missing or extra:
            raise SubmissionError(f"{path}: the sample's columns {out} are not the task's labels {names} "
                                  f"(missing {missing}, unknown {extra}); train on the competition's labels (task.labels)")
        style = "multilabel" if multilabel else ("lmsys" if out == LMSYS_COLUMNS else "probs")
        return SubmissionSpec(style, id_column, out, sample=where)
    cells = [r[1].strip() for r in rows if len(r) > 1]
    base = SubmissionSpec("label", id_column, out, k=1, sample=where)
    if (cells and all(_is_number(c) and _names_a_label(c, names) for c in cells) and top_k <= 1) or (not cells and len(names) == 2):
        return shape_by_metric(base, path, cells, names, metric, top_k, positive_label)
    if cells and all(_is_number(c) for c in cells) and top_k <= 1:
        if len(names) != 2:
            raise SubmissionError(f"{path}: the sample holds one number per row ({out[0]}), the probability of a binary "
                                  f"task's positive class, but this task has {len(names)} labels {names[:6]}")
        return replace(base, style="positive", k=0, positive=positive_class(names, positive_label))
    most = max((len(c.split()) for c in cells), default=1)
    k = top_k or (most if most > 1 else 0)
    if k > 1:
        return replace(base, style="topk", k=min(k, len(names)))
    if _map_k(metric) > 1:
        return replace(base, style="topk", k=min(_map_k(metric), len(names)),
                       reason=f"the sample shows one label per row and task.metric = {metric!r} scores up to "
                              f"{_map_k(metric)} ranked labels: writing the top {min(_map_k(metric), len(names))}")
    return base


def _map_k(metric: str) -> int:
    from .metrics import map_k

    return map_k(metric or "") or 0


def _names_a_label(cell: str, names: list) -> bool:
    """A (numeric) sample cell that is a label name, numbers compared by value ('1.0' names label '1')."""
    if cell in names:
        return True
    return _is_number(cell) and any(_is_number(n) and float(n) == float(cell) for n in names)


def shape_by_metric(base: SubmissionSpec, path, cells: list, names: list, metric: str, top_k: int, positive_label: str) -> SubmissionSpec:
    """The shape of a one-column sample whose cells could be labels or numbers (0/1 cells of a task
    labelled 0/1; no rows at all): what the metric scores. Hard-label metrics (accuracy, F1) → one
    label per row; probability metrics (AUC, log loss, average precision) → the positive class's
    probability; ``map@K`` → the top K labels. A task of more than two classes cannot put its
    probabilities in one column: labels. No usable metric → :class:`SubmissionError`."""
    column = base.columns[0]
    seen = f"the sample's {column} cells ({_few(sorted(set(cells)), 4)}) are label names and numbers alike" if cells \
        else "the sample has no rows to show labels or probabilities"
    k = top_k or _map_k(metric)
    if len(names) != 2:
        why = f"{seen}; one column cannot hold the probabilities of {len(names)} classes"
        return replace(base, style="topk", k=min(k, len(names)), reason=f"{why}: the top {min(k, len(names))} labels") if k > 1 \
            else replace(base, reason=f"{why}: one label per row")
    if metric in PROBABILITY_METRICS:
        pos = positive_class(names, positive_label)
        return replace(base, style="positive", k=0, positive=pos,
                       reason=f"{seen}; task.metric = {metric!r} scores a probability: the probability of class {pos!r}")
    if metric in LABEL_METRICS or _map_k(metric) == 1:
        return replace(base, reason=f"{seen}; task.metric = {metric!r} scores hard labels: one label per row")
    if k > 1:
        return replace(base, style="topk", k=min(k, 2), reason=f"{seen}; task.metric = {metric!r} scores ranked labels: both, best first")
    raise SubmissionError(f"{path}: {seen}, so whether Kaggle wants one label per row or the probability of class "
                          f"{positive_class(names, positive_label)!r} depends on the metric, and task.metric = {metric!r} "
                          f"does not say; set task.metric (accuracy, macro_f1 or micro_f1: labels; auc, log_loss or "
                          f"average_precision: a probability; map@K: the top K labels)")


def default_spec(fmt: str, kind: str, label_names: Sequence[str], *, id_column: str = "id", metric: str = "",
                 label_columns: Sequence[str] = (), label_join: str = "", top_k: int = 0, positive_label: str = "") -> SubmissionSpec:
    """The shape a competition of this kind expects when no sample submission is given: LMSYS and
    WSDM their own; a ``map@K`` task the top K labels in one column named after the label (e.g.
    ``Category:Misconception``); a binary ``auc`` / ``average_precision`` task the positive class's
    probability in its label column; otherwise one probability column per class."""
    import re

    if fmt in ("lmsys", "wsdm"):
        return as_spec(fmt, label_names, id_column)
    if kind == "multilabel":
        return as_spec("multilabel", label_names, id_column)
    column = (label_join or "_").join(label_columns) if label_columns else "label"
    m = re.match(r"^map@([1-9][0-9]*)$", metric or "")
    if m:
        return SubmissionSpec("topk", id_column, [column], k=min(top_k or int(m.group(1)), len(label_names)))
    if metric in ("auc", "average_precision") and len(label_names) == 2:
        return SubmissionSpec("positive", id_column, [column], positive=positive_class(label_names, positive_label))
    return as_spec("probs", label_names, id_column)


def resolve_submission(task: dict, label_names: Sequence[str], fmt: str, data_path, sample=None) -> tuple:
    """(spec, sample path or None, note) for predicting ``data_path`` with a run whose manifest task is ``task``.

    The spec saved at training (``task.submission``, from ``[submission] sample``) wins over the
    default for the format. A sample given here, or the sample named in the spec found beside the
    test file (as Kaggle lays out a competition folder), re-decides the shape and is compared with
    the written file afterwards.
    """
    saved = task.get("submission")
    kind = task.get("kind", "classification")
    if saved:
        spec = SubmissionSpec.from_dict(saved)
    else:
        spec = default_spec(fmt, kind, label_names, id_column=task.get("id_column") or "id", metric=task.get("metric", ""),
                            label_columns=task.get("label_columns") or (), label_join=task.get("label_join", ""))
    notes, sample_path = [], None
    if sample:
        sample_path = Path(sample)
    elif spec.sample and data_path is not None and (Path(data_path).parent / spec.sample).is_file():
        sample_path = Path(data_path).parent / spec.sample
        notes.append(f"following the competition's sample {sample_path} found beside the test file (and comparing with it)")
    if sample_path is not None:
        spec = replace(spec_from_sample(sample_path, label_names, top_k=spec.k if spec.style == "topk" and not spec.reason else 0,
                                        positive_label=spec.positive, multilabel=kind == "multilabel", metric=task.get("metric", "")),
                       rank_within=spec.rank_within)
    if spec.reason:
        notes.append(f"{spec.style} ({spec.reason})")
    return spec, sample_path, ("submission: " + "; ".join(notes)) if notes else ""


def submission_columns(style, label_names: Sequence[str]) -> list:
    if isinstance(style, SubmissionSpec):
        return style.header
    if style == "lmsys":
        return ["id"] + LMSYS_COLUMNS
    if style == "wsdm":
        return ["id", "winner"]
    if style == "label":
        return ["id", "label"]
    return ["id"] + [str(n) for n in label_names]


def style_for(fmt: str, kind: str = "") -> str:
    """The submission style of a data format: lmsys, wsdm, or probs (generic classification)."""
    if fmt == "lmsys":
        return "lmsys"
    if fmt == "wsdm":
        return "wsdm"
    return "probs"


def submission_rows(ids: Sequence, probs, style: str, label_names: Sequence[str]) -> tuple:
    """(header, rows) for style lmsys | wsdm | label | probs | multilabel (independent probabilities).

    (header, rows of cells) for a submission; probabilities normalised, formatted with 10 digits."""
    ids = [str(i) for i in ids]
    spec = style if isinstance(style, SubmissionSpec) else None
    style = spec.style if spec else style
    p = normalize_probabilities(probs, multilabel=style == "multilabel")
    if len(ids) != len(p):
        raise SubmissionError(f"{len(ids)} ids but {len(p)} rows of probabilities; every test id needs one row")
    header = spec.header if spec else submission_columns(style, label_names)
    names = [str(n) for n in label_names]
    if spec and style in ("probs", "multilabel", "lmsys", "topk", "positive") and len(names) != p.shape[1]:
        raise SubmissionError(f"{p.shape[1]} classes of probabilities but labels {names}")
    if spec and style in ("probs", "multilabel", "lmsys"):
        order = [names.index(c) for c in spec.columns]  # the sample's column order, by class name
        return header, [[i] + [f"{v:.10f}" for v in r] for i, r in zip(ids, p[:, order])]
    if style == "topk":
        best = np.argsort(-p, axis=1, kind="stable")[:, : spec.k]  # ties keep class order
        return header, [[i, " ".join(names[k] for k in row)] for i, row in zip(ids, best)]
    if style == "positive":
        pos = names.index(spec.positive)
        return header, [[i, f"{v:.10f}"] for i, v in zip(ids, p[:, pos])]
    if style == "lmsys":
        if p.shape[1] != 3:
            raise SubmissionError(f"LMSYS submissions need 3 probabilities per row ({LMSYS_COLUMNS}), got {p.shape[1]}")
        rows = [[i] + [f"{v:.10f}" for v in r] for i, r in zip(ids, p)]
    elif style in ("wsdm", "label"):
        names = list(label_names)
        if len(names) != p.shape[1]:
            raise SubmissionError(f"{p.shape[1]} classes of probabilities but labels {names}")
        best = p.argmax(axis=1)
        rows = [[i, names[k]] for i, k in zip(ids, best)]
    else:
        if len(label_names) != p.shape[1]:
            raise SubmissionError(f"{p.shape[1]} classes of probabilities but labels {list(label_names)}")
        rows = [[i] + [f"{v:.10f}" for v in r] for i, r in zip(ids, p)]
    return header, rows


# --------------------------------------------------------------------------- validation


def validate_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    expected_ids: Sequence,
    style: str,
    label_names: Sequence[str] = (),
    where: str = "submission",
) -> None:
    """Raise :class:`SubmissionError` for the first kind of problem found (with every offender counted)."""
    spec = style if isinstance(style, SubmissionSpec) else None
    style = spec.style if spec else style
    want = spec.header if spec else submission_columns(style, label_names)
    header = [h.strip() for h in header]
    if header != want:
        raise SubmissionError(f"{where}: columns {header} but expected {want} (in this order); rewrite the header")
    expected = [str(i) for i in expected_ids]
    got = [str(r[0]).strip() if r else "" for r in rows]
    short = [n + 2 for n, r in enumerate(rows) if len(r) != len(want)]
    if short:
        raise SubmissionError(f"{where}: {len(short)} line(s) with {len(rows[short[0] - 2])} cells instead of {len(want)} (first at line {short[0]})")
    seen: dict = {}
    dups = []
    for i in got:
        if i in seen:
            dups.append(i)
        seen[i] = True
    if dups:
        raise SubmissionError(f"{where}: id(s) appear more than once: {_few(dups)}; each test id must appear exactly once")
    exp_set = set(expected)
    missing = [i for i in expected if i not in seen]
    if missing:
        raise SubmissionError(f"{where}: {len(missing)} test id(s) missing: {_few(missing)}; every test id needs a row")
    extra = [i for i in got if i not in exp_set]
    if extra:
        raise SubmissionError(f"{where}: {len(extra)} id(s) not in the test file: {_few(extra)}; remove them")
    if got != expected:
        k = next(n for n, (a, b) in enumerate(zip(got, expected)) if a != b)
        raise SubmissionError(f"{where}: ids out of the test file's order from line {k + 2} (id {got[k]!r}, expected {expected[k]!r}); write rows in test order")
    if style in ("wsdm", "label"):
        names = [str(n) for n in label_names]
        bad = [(r[0], r[1]) for r in rows if str(r[1]).strip() not in names]
        if bad:
            raise SubmissionError(f"{where}: {len(bad)} row(s) with a label not in {names}, first: id {bad[0][0]} = {bad[0][1]!r}")
        return
    if style == "topk":
        _check_topk(rows, [str(n) for n in label_names], spec.k, want[1], where)
        return
    values = np.full((len(rows), len(want) - 1), np.nan)
    unparsable = []
    for n, r in enumerate(rows):
        for k, cell in enumerate(r[1:]):
            try:
                values[n, k] = float(cell)
            except (TypeError, ValueError):
                unparsable.append((r[0], want[k + 1], cell))
    if unparsable:
        i, col, cell = unparsable[0]
        raise SubmissionError(f"{where}: {len(unparsable)} cell(s) are not numbers, first: id {i} {col} = {cell!r}")
    nan_rows = np.where(np.isnan(values).any(axis=1))[0]
    if len(nan_rows):
        n = int(nan_rows[0])
        raise SubmissionError(f"{where}: {len(nan_rows)} row(s) hold NaN, first: id {got[n]}; predict those rows or fill them with the class prior")
    out = np.where(((values < 0) | (values > 1)).any(axis=1))[0]
    if len(out):
        n = int(out[0])
        raise SubmissionError(f"{where}: {len(out)} row(s) with probabilities outside [0, 1], first: id {got[n]} {values[n].tolist()}")
    if style in ("multilabel", "positive"):
        return
    sums = values.sum(axis=1)
    off = np.where(np.abs(sums - 1.0) > SUM_TOLERANCE)[0]
    if len(off):
        n = int(off[0])
        raise SubmissionError(f"{where}: {len(off)} row(s) whose probabilities do not sum to 1, first: id {got[n]} sums to {sums[n]:.6f}; normalise each row")


def _check_topk(rows, names: list, k: int, column: str, where: str) -> None:
    """Each cell: 1..k known labels separated by spaces, none repeated."""
    known = set(names)
    for r in rows:
        labels = str(r[1]).split()
        if not labels or len(labels) > k:
            raise SubmissionError(f"{where}: id {r[0]} {column} = {r[1]!r} holds {len(labels)} labels; write 1 to {k} separated by spaces")
        unknown = [x for x in labels if x not in known]
        if unknown:
            raise SubmissionError(f"{where}: id {r[0]} {column} = {r[1]!r}: {unknown} not among the task's labels")
        if len(set(labels)) != len(labels):
            raise SubmissionError(f"{where}: id {r[0]} {column} = {r[1]!r} repeats a label; each label once")


LABEL_STYLES = ("wsdm", "label", "topk")  # cells are class names, not numbers


def compare_with_sample(path, sample_path, ids_if_shared: bool = False, style: str = "") -> dict:
    """Check a written submission against the competition's sample: the same columns in the same
    order, the same ids (each once; another order is fine — Kaggle scores by id), and numbers where
    the sample has numbers. Returns ``{"rows", "columns", "ids_compared", "same_order"}``;
    :class:`SubmissionError` names the first difference.

    ``ids_if_shared``: compare the ids only when the two files share at least one (a sample found
    beside a labelled validation file belongs to the test file, not to it). ``style``: the
    submission's style; for the label styles (``wsdm``, ``label``, ``topk``) the cells are class
    names, which may look like numbers in the sample (``007``, ``1``) and like text in the
    submission (``None``), so the numbers check is for probability columns only."""
    header, rows = read_table(path)
    s_header, s_rows = read_table(sample_path, what="sample submission")
    header, s_header = [h.strip() for h in header], [h.strip() for h in s_header]
    if header != s_header:
        raise SubmissionError(f"{path}: columns {header} but the sample {sample_path} has {s_header} (same names, same order)")
    ids, s_ids = [r[0].strip() for r in rows], [r[0].strip() for r in s_rows]
    compare_ids = not ids_if_shared or bool(set(ids) & set(s_ids))
    if compare_ids and sorted(ids) != sorted(s_ids):
        missing = [i for i in s_ids if i not in set(ids)]
        extra = [i for i in ids if i not in set(s_ids)]
        twice = sorted({i for i in ids if ids.count(i) > 1}) if not (missing or extra) else []
        detail = (f"missing {_few(missing)}, not in the sample {_few(extra)}" if missing or extra
                  else f"ids written more than once: {_few(twice)}")
        raise SubmissionError(f"{path}: ids differ from the sample {sample_path}: {detail}; predict the test file the sample belongs to")
    for k, col in enumerate(header[1:], 1):
        numeric = style not in LABEL_STYLES and bool(s_rows) and all(_is_number(r[k]) for r in s_rows if len(r) > k)
        if numeric:
            bad = [r for r in rows if len(r) <= k or not _is_number(r[k])]
            if bad:
                raise SubmissionError(f"{path}: {col} holds numbers in the sample but id {bad[0][0]} has {bad[0][k] if len(bad[0]) > k else ''!r}")
    return {"rows": len(rows), "columns": header, "ids_compared": compare_ids, "same_order": compare_ids and ids == s_ids}


def _few(items: list, k: int = 5) -> str:
    shown = ", ".join(repr(x) for x in items[:k])
    return shown + (f" … and {len(items) - k} more" if len(items) > k else "")


def read_table(path, what: str = "submission") -> tuple:
    """(header, rows) of a CSV submission; cells are the strings written ('NA' stays 'NA')."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: {what} file not found")
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise SubmissionError(f"{path}: the {what} is empty; it needs a header and one row per test id")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    rows = [r for r in reader if r]
    return header, rows


def validate_file(path, expected_ids: Sequence, style: str, label_names: Sequence[str] = ()) -> None:
    """Validate a written submission CSV against the test ids (in the test file's order)."""
    header, rows = read_table(path)
    validate_table(header, rows, expected_ids, style, label_names, where=str(path))


# --------------------------------------------------------------------------- writing


def atomic_write_text(path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_submission(
    path,
    ids: Sequence,
    probs,
    style: str,
    label_names: Sequence[str] = (),
    expected_ids: Optional[Sequence] = None,
) -> Path:
    """Validate and atomically write a submission. ``style``: lmsys | wsdm | probs | label | multilabel,
    or a :class:`SubmissionSpec` (any style, the id column and columns it names)."""
    header, rows = submission_rows(ids, probs, style, label_names)
    validate_table(header, rows, ids if expected_ids is None else expected_ids, style, label_names, where=str(path))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def write_lmsys(path, ids, probs, expected_ids=None) -> Path:
    return write_submission(path, ids, probs, "lmsys", LMSYS_COLUMNS, expected_ids)


def write_wsdm(path, ids, probs, label_names=("model_a", "model_b"), expected_ids=None) -> Path:
    return write_submission(path, ids, probs, "wsdm", label_names, expected_ids)


def write_classification(path, ids, probs, label_names, as_label: bool = False, expected_ids=None) -> Path:
    return write_submission(path, ids, probs, "label" if as_label else "probs", label_names, expected_ids)


def is_finite_number(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False

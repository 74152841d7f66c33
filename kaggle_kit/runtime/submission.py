"""Submission writers and validation (LMSYS probabilities, WSDM winners, generic classification).

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


def submission_columns(style: str, label_names: Sequence[str]) -> list:
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
    p = normalize_probabilities(probs, multilabel=style == "multilabel")
    if len(ids) != len(p):
        raise SubmissionError(f"{len(ids)} ids but {len(p)} rows of probabilities; every test id needs one row")
    header = submission_columns(style, label_names)
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
    want = submission_columns(style, label_names)
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
    if style == "multilabel":
        return
    sums = values.sum(axis=1)
    off = np.where(np.abs(sums - 1.0) > SUM_TOLERANCE)[0]
    if len(off):
        n = int(off[0])
        raise SubmissionError(f"{where}: {len(off)} row(s) whose probabilities do not sum to 1, first: id {got[n]} sums to {sums[n]:.6f}; normalise each row")


def _few(items: list, k: int = 5) -> str:
    shown = ", ".join(repr(x) for x in items[:k])
    return shown + (f" … and {len(items) - k} more" if len(items) > k else "")


def read_table(path) -> tuple:
    """(header, rows) of a CSV submission."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: submission file not found")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise SubmissionError(f"{path}: the submission is empty; it needs a header and one row per test id")
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
    """Validate and atomically write a submission. ``style``: lmsys | wsdm | probs | label | multilabel."""
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

"""Teacher logits files: a teacher's per-class values keyed by row id, for distillation (`train.distill`).

A teacher file is a table ``id, <one column per class, in the label order>`` (parquet or CSV) of
temperature-free values: raw logits, or log-probabilities (the logits shifted so each row's logsumexp is
0; what `kit predict --logits` writes). Softmax at any temperature gives the same distribution from
either, so the two are interchangeable for the KL term. Multi-label tasks: one logit per class.

What the file records beside the values (parquet: ``DataFrame.attrs['kit_teacher']``, which pandas keeps in the file's metadata; CSV: a
``<file>.json`` beside it; a file made elsewhere may have neither):
``labels`` (order), ``values`` ('log_probs' | 'logits'), ``teachers`` (one entry per run folder: its
path and the sha256 of its kit_manifest.json), ``unpredicted_ids`` (rows the teacher could not predict,
left out of the table), ``oof`` (how out-of-fold the values are).

:func:`read_teacher` refuses, naming the file, a missing id column, class columns that are not the
expected label order, duplicate ids and non-finite values; :func:`missing_ids` lists the rows a
student needs that the file lacks (the caller decides: train them on hard labels, or refuse);
:func:`combine_teachers` averages several teachers' log-probabilities (weights optional).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

META_KEY = "kit_teacher"
VALUE_KINDS = ("log_probs", "logits")


class TeacherError(ValueError):
    """A teacher file that cannot be used as it is: the message names the file, the field, the value and the fix."""


@dataclass
class TeacherLogits:
    """A teacher's values: ``ids`` (str, file order), ``labels`` (class order), ``values`` (rows × labels, float64)."""

    ids: list
    labels: list
    values: np.ndarray
    meta: dict = field(default_factory=dict)
    path: str = ""

    def index(self) -> dict:
        return {i: n for n, i in enumerate(self.ids)}

    def log_probs(self, multilabel: bool = False) -> np.ndarray:
        """Log-softmax of the values (single-label); the logits as they are (multi-label)."""
        return self.values if multilabel else log_softmax(self.values)

    def rows_for(self, ids: Sequence) -> tuple:
        """(values for ``ids`` in that order with NaN rows where missing, boolean mask of the rows present)."""
        index = self.index()
        pos = np.array([index.get(str(i), -1) for i in ids], dtype=np.int64)
        have = pos >= 0
        out = np.full((len(ids), len(self.labels)), np.nan, dtype=np.float64)
        out[have] = self.values[pos[have]]
        return out, have


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def values_from_probs(probs: np.ndarray, multilabel: bool = False) -> np.ndarray:
    """Temperature-free values from the engine's probabilities: log-probabilities (single-label), logits
    (multi-label). Probabilities are clipped to [1e-30, 1 - 1e-7] first (a float32 softmax can underflow to 0)."""
    p = np.asarray(probs, dtype=np.float64)
    if multilabel:
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return np.log(p) - np.log1p(-p)
    return np.log(np.clip(p, 1e-30, 1.0))


def file_sha256(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- writing


def write_teacher(path, teacher: TeacherLogits) -> Path:
    """Write ``teacher`` to ``path`` (.parquet, else CSV + ``<path>.json``), atomically; returns the path."""
    import os

    import pandas as pd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**teacher.meta, "labels": list(teacher.labels), "rows": len(teacher.ids)}
    df = pd.DataFrame(np.asarray(teacher.values, dtype=np.float64), columns=[str(c) for c in teacher.labels])
    df.insert(0, "id", [str(i) for i in teacher.ids])
    tmp = path.with_name(path.name + ".partial")
    if path.suffix.lower() == ".parquet":
        df.attrs[META_KEY] = json.dumps(meta)  # pandas keeps attrs in the parquet metadata (pyarrow engine)
        df.to_parquet(tmp, index=False)
    else:
        df.to_csv(tmp, index=False, float_format="%.9g")
        side = path.with_name(path.name + ".json")
        side.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- reading


def _read_table(path: Path) -> tuple:
    """(DataFrame with every column as read, the kit's metadata or {})."""
    import pandas as pd

    if not path.is_file():
        raise TeacherError(f"teacher file {path}: not found; write it with `kit predict --adapter RUN --data TRAIN --logits "
                           f"--out {path.name}`, or point distill.teacher at an existing file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df = pd.read_parquet(path)
        raw = df.attrs.get(META_KEY)
        df.attrs = {}
        if "id" in df.columns:
            df["id"] = df["id"].astype(str)
        return df, json.loads(raw) if raw else {}
    if suffix not in (".csv", ".tsv", ".txt"):
        raise TeacherError(f"teacher file {path}: unknown type {suffix!r}; use .parquet or .csv (columns id, <one per class>)")
    df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={"id": str}, keep_default_na=False,
                     na_values=["nan", "NaN", "NA", ""])
    side = path.with_name(path.name + ".json")
    return df, json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}


def read_teacher(path, labels: Optional[Sequence] = None, id_column: str = "id") -> TeacherLogits:
    """The teacher file ``path`` checked: an id column, class columns in the order ``labels`` (default: the
    order the file records), no duplicate ids, finite values. Raises TeacherError naming what is wrong."""
    path = Path(path)
    df, meta = _read_table(path)
    if id_column != "id" and id_column in df.columns and "id" not in df.columns:
        df = df.rename(columns={id_column: "id"})
    if "id" not in df.columns:
        raise TeacherError(f"teacher file {path}: no 'id' column (columns: {list(df.columns)[:8]}); the first column must be "
                           f"the row id the training data uses, then one column per class")
    cols = [str(c) for c in df.columns if c != "id"]
    want = [str(c) for c in (labels if labels is not None else meta.get("labels") or cols)]
    if meta.get("labels") and [str(c) for c in meta["labels"]] != cols:
        raise TeacherError(f"teacher file {path}: its columns {cols} are not the label order it records {meta['labels']}")
    if cols != want:
        if sorted(cols) == sorted(want):
            raise TeacherError(f"teacher file {path}: class columns {cols} are in another label order than the student's {want}; "
                               f"write the columns in the student's order (e.g. df[['id', {', '.join(repr(c) for c in want)}]])")
        raise TeacherError(f"teacher file {path}: class columns {cols} are not the student's labels {want} "
                           f"(missing {[c for c in want if c not in cols]}, extra {[c for c in cols if c not in want]})")
    ids = [str(i) for i in df["id"].tolist()]
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dup:
        raise TeacherError(f"teacher file {path}: {len(dup)} id(s) appear more than once, e.g. {dup[:5]}; keep one row per id")
    try:
        values = df[cols].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TeacherError(f"teacher file {path}: the class columns must hold numbers ({exc})") from None
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.where(bad.any(axis=1))[0]
        shown = ", ".join(f"{ids[r]} ({cols[int(np.where(bad[r])[0][0])]} = {values[r][bad[r]][0]})" for r in rows[:5])
        raise TeacherError(f"teacher file {path}: {len(rows)} row(s) hold non-finite values (NaN/inf): {shown}"
                           + (" …" if len(rows) > 5 else "") + "; drop those rows (students then train them on hard labels "
                           "with distill.missing = \"hard\") or recompute them")
    kind = meta.get("values", "logits")
    if kind not in VALUE_KINDS:
        raise TeacherError(f"teacher file {path}: values = {kind!r} is not one of {', '.join(VALUE_KINDS)}")
    return TeacherLogits(ids, want, values, meta, str(path))


def missing_ids(teacher: TeacherLogits, ids: Sequence) -> list:
    """The ``ids`` (str, in the given order, each once) that the teacher file has no row for."""
    have = set(teacher.ids)
    return list(dict.fromkeys(str(i) for i in ids if str(i) not in have))


# --------------------------------------------------------------------------- several teachers


def combine_teachers(teachers: Sequence[TeacherLogits], weights: Optional[Sequence[float]] = None,
                     multilabel: bool = False) -> TeacherLogits:
    """One teacher from several: the weighted mean of their log-probabilities (multi-label: of their logits)
    on the ids every teacher has; ids some teachers lack are left out and listed in ``meta['partial_ids']``
    (a student trains them like any row without a teacher value). All must share the label order."""
    if not teachers:
        raise TeacherError("no teacher files: set distill.teacher (or distill.teachers)")
    if len(teachers) == 1:
        return teachers[0]
    w = np.ones(len(teachers)) if not weights else np.asarray([float(x) for x in weights], dtype=np.float64)
    if len(w) != len(teachers) or (w < 0).any() or w.sum() <= 0:
        raise TeacherError(f"distill.weights {list(weights or [])}: give one non-negative weight per teacher file "
                           f"({len(teachers)}: {[t.path for t in teachers]}), with a positive sum")
    w = w / w.sum()
    first = teachers[0]
    for t in teachers[1:]:
        if list(t.labels) != list(first.labels):
            raise TeacherError(f"teacher files {first.path} and {t.path} have other label orders ({first.labels} vs {t.labels})")
    common = [i for i in first.ids if all(i in t.index() for t in teachers[1:])]
    every = list(dict.fromkeys(i for t in teachers for i in t.ids))
    partial = [i for i in every if i not in set(common)]
    total = sum(wi * t.rows_for(common)[0] if multilabel else wi * log_softmax(t.rows_for(common)[0])
                for wi, t in zip(w, teachers))
    meta = {"values": "logits" if multilabel else "log_probs", "combined": [t.path for t in teachers],
            "weights": [round(float(x), 6) for x in w], "partial_ids": partial,
            "teachers": [e for t in teachers for e in t.meta.get("teachers", [{"file": t.path}])],
            "unpredicted_ids": sorted({i for t in teachers for i in t.meta.get("unpredicted_ids", [])})}
    return TeacherLogits(common, list(first.labels), np.asarray(total), meta, "+".join(t.path for t in teachers))


def load_teachers(paths: Sequence, labels: Sequence, weights: Optional[Sequence[float]] = None,
                  multilabel: bool = False, id_column: str = "id") -> TeacherLogits:
    """Every teacher file read against ``labels`` and combined (:func:`combine_teachers`)."""
    return combine_teachers([read_teacher(p, labels, id_column) for p in paths], weights, multilabel)


def record(teacher: TeacherLogits, paths: Sequence) -> list:
    """What a student's manifest says about its teachers: each file (path, sha256) and the run folders behind it."""
    out = []
    for p in paths:
        p = Path(p)
        entry = {"file": str(p.resolve()), "sha256": file_sha256(p)}
        try:
            entry["teachers"] = read_teacher(p).meta.get("teachers", [])
        except TeacherError:
            entry["teachers"] = []
        out.append(entry)
    return out

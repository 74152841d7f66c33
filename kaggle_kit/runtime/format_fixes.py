"""What to do about a file that lacks the columns its format needs: the fix that works where the format came from.

A reader (:mod:`runtime.formats`) raises :class:`MissingColumnsError` with the columns it needs and found;
:func:`missing_columns_fix` then says what actually helps, which depends on where the format and the columns
came from:

- a run's manifest (``kit predict``, an ensemble member, the notebook): the run was trained on files of that
  shape and reads every test file the same way — kit.toml and ``--set`` change nothing there — so the fix is
  a file of that shape (renamed columns) or a run trained on this file's data;
- classification (``kit train``, ``kit data …``): the text columns are ``prompt.text_template``'s fields,
  else ``data.text_columns``;
- a missing id column: ``data.id_column``;
- any other missing column: the file is another format, named where the caller's user names it
  (``data.format`` for ``kit train``, ``--format`` for ``kit data inspect|prepare|preview``).
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

from .problems import DataError


class MissingColumnsError(DataError):
    """A file without the column(s) its format needs; the message ends with the fix (see the module)."""

    def __init__(self, path, fmt: str, missing: list, needed: list, columns: list, fix: str = ""):
        self.path, self.fmt, self.missing, self.needed, self.columns = path, fmt, list(missing), list(needed), list(columns)
        super().__init__(f"{path}: missing column(s) {self.missing} for format '{fmt}'. Found columns: {self.columns}. "
                         f"Expected: {self.needed}." + (f" {fix}" if fix else ""))

    def with_fix(self, fix: str) -> "MissingColumnsError":
        return MissingColumnsError(self.path, self.fmt, self.missing, self.needed, self.columns, fix)


def missing_columns_fix(err: MissingColumnsError, id_column: str, format_from: str = "",
                        looks_like: Optional[tuple] = None, records: Sequence = (), label_columns: Sequence = (),
                        format_option: str = "data.format") -> str:
    """The fix for ``err`` (see the module). ``format_from``: the run's manifest the format came from ('' when
    it came from kit.toml or --format); ``looks_like``: (format, why) detected from the file's columns;
    ``records`` (a sample of the file's rows) and ``label_columns`` pick the text columns a suggestion names;
    ``format_option``: where the user names the format ("data.format", or "--format" for `kit data …`)."""
    found, why = looks_like or ("", "")
    other = found if found and found != err.fmt and found != "classification" else ""
    only_id = err.missing == [id_column]
    if format_from:
        if only_id:
            return (f"The run reads the test ids from column {id_column!r} (its data.id_column when it was trained, task.id_column "
                    f"in its kit_manifest.json); a submission needs the test file's own ids: predict the competition's test "
                    f"file, or add its id column as {id_column!r}.")
        return (f"The run was trained on '{err.fmt}' data with the columns {err.needed}, as {format_from} records, and "
                f"predicting reads every file that way (kit.toml and --set do not change it): predict a file with those columns (rename this "
                f"file's columns if only their names differ), or use a run trained on this file's data"
                + (f" (it looks like '{other}' data: {why})" if other else f" (its columns: {err.columns[:12]})") + ".")
    if err.fmt == "classification":
        cols = text_like_columns(records, err.columns, {id_column, *label_columns}) or ["text"]
        template = "\n".join(f"{c}: {{{c}}}" for c in cols)
        return (f"The text columns are the fields of prompt.text_template, else data.text_columns: write the template over "
                f"this file's columns (e.g. --set 'prompt.text_template={json.dumps(template)}'), or, with no template, set "
                f"data.text_columns (e.g. --set 'data.text_columns={json.dumps(cols)}'); or rename the file's columns"
                + (f". The file looks like '{other}' data ({why}): if so, {_name_format(other, format_option)}" if other else "") + ".")
    if only_id:
        ids = [c for c in err.columns if c.lower() == "id" or c.lower().endswith(("_id", "id"))]
        if ids:
            return f"Set data.id_column to the file's id column (--set data.id_column={ids[0]}), or add a column {id_column!r}."
        return f"The file has no id column: add one named {id_column!r} (one unique value per row)."
    return (f"The file looks like '{found}' data ({why}): {_name_format(found, format_option)}; or rename the file's columns."
            if found and found != err.fmt else f"Rename the file's columns, or {_name_format('NAME', format_option)}.")


def bad_labels_message(path, bad: list, problems: list, rows: int, task_labels_given: bool) -> str:
    """The refusal of a training file with bad labels: skip them with data.skip_bad_rows, unless every row is bad
    (skipping would leave nothing): then the task's labels (when given) do not name this file's classes."""
    shown = ", ".join(bad[:10]) + (f" … and {len(bad) - 10} more" if len(bad) > 10 else "")
    first = next(p for p in problems if p.id == bad[0])
    head = f"{path}: {len(bad)} row(s) with bad labels (ids {shown}); first: {first.reason}. "
    if len(bad) < rows:
        return head + "Fix them, or set data.skip_bad_rows = true to skip and count them."
    if task_labels_given:
        return (head + "No row has one of task.labels: they name another task's classes. Set task.labels = [] to take the "
                "classes from the file (--set 'task.labels=[]'), or list this file's classes; and check data.label_columns.")
    return head + "Every row's label is bad (data.skip_bad_rows would leave no row): fix the label column(s)."


def text_like_columns(records: Sequence, columns: Sequence, leave_out=(), most: int = 2) -> list:
    """Up to ``most`` columns (in file order) that hold running text in ``records``: the longest mean text of at
    least 20 characters with spaces; id-like names (…id, …_id) and ``leave_out`` (id and label columns) never."""
    sample = list(records)[:50]
    scores = {}
    for c in columns:
        if c in leave_out or c == "__line__" or c.lower() == "id" or c.lower().endswith(("_id", "id")):
            continue
        values = [v for v in (r.get(c) for r in sample) if isinstance(v, str)]
        mean = sum(len(v) for v in values) / len(values) if values else 0.0
        if mean >= 20 and sum(" " in v for v in values) >= len(values) / 2:
            scores[c] = mean
    best = sorted(scores, key=lambda c: -scores[c])[:most]
    return [c for c in columns if c in best]


def _name_format(fmt: str, option: str) -> str:
    if option.startswith("--"):
        return f"name its format: {option} {fmt}"
    return f"name its format: {option} = '{fmt}' in kit.toml (--set {option}={fmt})"

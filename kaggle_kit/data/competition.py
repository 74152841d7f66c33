"""A competition folder as Kaggle ships it (`kit init --from-competition DIR`): which file is the training
data, the test data and the sample submission, and what each column holds — the evidence
:mod:`kaggle_kit.data.decide` decides from.

Files are read with the runtime's own reader (:func:`kaggle_kit.runtime.formats.read_records`): CSV cells
are the strings written (``NA``, ``None``, ``null`` and ``007`` stay as they are, never NaN or 7);
parquet values are written back as the text they print as (an integer-valued float as an integer).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from kaggle_kit.errors import KitError

READABLE = (".csv", ".parquet", ".jsonl", ".json", ".csv.gz", ".jsonl.gz")
ROLES = {"train": ("train",), "test": ("test",), "sample": ("sample_submission", "sample-submission", "samplesubmission")}
LENGTH_ROWS = 5000  # rows whose lengths are measured (all rows for labels and ids)
_LEADING_ZERO = re.compile(r"^-?0[0-9]")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in sorted(READABLE, key=len, reverse=True) if name.endswith(s)), "")


def _stem(path: Path) -> str:
    return path.name[: len(path.name) - len(_suffix(path))].lower()


@dataclass
class CompetitionFiles:
    """The files of a competition folder: train, test, the sample submission (None when absent) and the rest."""

    folder: Path
    train: Path
    test: Path
    sample: Optional[Path]
    extras: list = field(default_factory=list)  # other readable tables (candidates of retrieval targets)
    ignored: list = field(default_factory=list)  # every other file, listed


def find_files(folder) -> CompetitionFiles:
    """The competition's files in ``folder`` by Kaggle's names (``train.csv``, ``train.parquet``, ``test.*``,
    ``sample_submission.csv``); a missing train or test file, or two of one role, is a :class:`KitError`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KitError(f"--from-competition {folder}: no such folder; pass the folder holding the competition's "
                       f"train.*, test.* and sample_submission.csv (as `kaggle competitions download` unpacks them)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    found: dict = {role: [] for role in ROLES}
    rest = []
    for p in files:
        role = next((r for r, stems in ROLES.items() if _suffix(p) and _stem(p) in stems), None)
        (found[role] if role else rest).append(p)
    for role, paths in found.items():
        if len(paths) > 1:
            raise KitError(f"{folder}: two {role} files ({', '.join(p.name for p in paths)}); the kit reads one: "
                           f"move the other out of the folder")
    for role in ("train", "test"):
        if not found[role]:
            raise KitError(f"{folder}: no {role} file (looked for {role}.csv / {role}.parquet / {role}.jsonl); "
                           f"files there: {[p.name for p in files][:20]}")
    sample = found["sample"][0] if found["sample"] else None
    if sample is not None and _suffix(sample) != ".csv":
        raise KitError(f"{sample}: the sample submission is read as CSV (the format Kaggle scores); "
                       f"save it as sample_submission.csv")
    extras = [p for p in rest if _suffix(p)]
    return CompetitionFiles(folder, found["train"][0], found["test"][0], sample, extras, [p for p in rest if not _suffix(p)])


def cell_text(v: Any) -> str:
    """A cell as the text written: CSV strings unchanged; None/NaN → ''; 3.0 → '3'; lists → JSON."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if hasattr(v, "tolist"):  # numpy arrays / scalars from parquet
        v = v.tolist()
        if not isinstance(v, list):
            return cell_text(v)
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def _number(s: str) -> Optional[float]:
    try:
        f = float(s)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


@dataclass
class Column:
    """What one column holds, measured over its cells as written."""

    name: str
    values: list  # every cell as text
    distinct: list  # distinct non-empty values, first-seen order
    empty: int
    numeric: bool  # every non-empty cell is a number (written without leading zeros)
    integer: bool
    binary: bool  # numbers, all 0 or 1
    json_lists: float  # share of cells holding a JSON list
    mean_chars: float
    p95_chars: int
    spaces: float  # share of cells holding a space (words, not codes)

    @property
    def unique(self) -> bool:
        return self.empty == 0 and len(self.distinct) == len(self.values)

    @property
    def free_text(self) -> bool:
        """Sentences rather than labels: mostly distinct, long, with spaces."""
        n = max(1, len(self.values) - self.empty)
        return not self.numeric and len(self.distinct) >= 0.5 * n and self.mean_chars >= 30 and self.spaces >= 0.5

    def few(self, k: int = 4) -> str:
        shown = ", ".join(repr(v) for v in self.distinct[:k])
        return shown + (f", … ({len(self.distinct)} values)" if len(self.distinct) > k else "")


def p95(values: list) -> int:
    if not values:
        return 0
    s = sorted(values)
    return int(s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)])


def profile(name: str, values: list) -> Column:
    distinct = list(dict.fromkeys(v for v in values if v != ""))
    nums = [_number(v) for v in distinct]
    numeric = bool(distinct) and all(n is not None for n in nums) and not any(_LEADING_ZERO.match(v) for v in distinct)
    integer = numeric and all(n.is_integer() for n in nums)
    lengths = [len(v) for v in values[:LENGTH_ROWS]]
    n = max(1, len(lengths))
    lists = sum(1 for v in values[:LENGTH_ROWS] if v.lstrip().startswith("[") and _is_json_list(v))
    return Column(name, values, distinct, sum(1 for v in values if v == ""), numeric, integer,
                  numeric and set(nums) <= {0.0, 1.0}, lists / n, sum(lengths) / n, p95(lengths),
                  sum(1 for v in values[:LENGTH_ROWS] if " " in v.strip()) / n)


def _is_json_list(v: str) -> bool:
    try:
        return isinstance(json.loads(v), list)
    except ValueError:
        return False


@dataclass
class Table:
    """A file's columns (in file order), each profiled, and its raw records (for the runtime readers)."""

    path: Path
    records: list
    columns: dict  # name -> Column

    @property
    def names(self) -> list:
        return list(self.columns)

    def __len__(self) -> int:
        return len(self.records)


def read_table(path) -> Table:
    """A competition file → :class:`Table`; cells as written (see :func:`cell_text`)."""
    from kaggle_kit.runtime.formats import columns_of, read_records

    path = Path(path)
    records = read_records(path)
    if not records:
        raise KitError(f"{path}: no data rows; a competition file needs a header and rows")
    names = columns_of(records)
    columns = {c: profile(c, [cell_text(r.get(c)) for r in records]) for c in names}
    return Table(path, records, columns)


def read_sample(path) -> Table:
    """The sample submission, read exactly as Kaggle's scorer reads it (every cell a string, header kept even without rows)."""
    from kaggle_kit.runtime.submission import read_table as read_csv_table

    header, rows = read_csv_table(path, what="sample submission")
    header = [h.strip() for h in header]
    records = [dict(zip(header, r)) for r in rows]
    return Table(Path(path), records, {c: profile(c, [r.get(c, "") for r in records]) for c in header})


def read_columns(path) -> tuple:
    """(table, '') for an extra file of the folder (e.g. a table of candidates), or (None, why it cannot be
    read as a table): an extra file the kit does not need is listed with the reason, never a failure."""
    try:
        return read_table(path), ""
    except Exception as exc:  # any reader error (pyarrow raises many types)
        return None, str(exc).replace(str(path), "").strip(": ") or type(exc).__name__

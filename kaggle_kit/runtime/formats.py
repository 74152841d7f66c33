"""Competition file readers, normalised to one row shape.

Every reader returns a :class:`Dataset` of :class:`Row` objects: an id, the prompt turns, the turns of
response A and response B, the label (an index into ``label_names``; a list of indices for
multi-label; ``None`` for test data), and where the row came from, for error messages.

Formats: ``lmsys`` (CSV; JSON-encoded turn lists; one-hot winner columns), ``wsdm`` (parquet or
CSV; ``winner`` in model_a/model_b), ``hh-rlhf`` (JSONL, optionally gzipped; chosen/rejected
transcripts), ``classification`` (CSV/parquet/JSONL; text column(s) → label or 0/1 columns) and
``instructions`` (JSON/JSONL instruction/input/output, or self-instruct ``instances``).

Messy input is repaired and reported, never a traceback: ``null`` turns become empty strings,
lone surrogates become U+FFFD, a cell that is not a JSON list is kept as plain text, undecodable
bytes are replaced. Test data (no labels) is never shortened: every row is kept.
"""
from __future__ import annotations

import gzip
import io
import json
import math
import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Union

from .format_fixes import MissingColumnsError, bad_labels_message, missing_columns_fix
from .problems import DataError, Problem

FORMATS = ("lmsys", "wsdm", "hh-rlhf", "classification", "instructions")

LMSYS_LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]
WSDM_LABELS = ["model_a", "model_b"]
PAIRWISE_COLUMNS = ["prompt", "response_a", "response_b"]

_SURROGATE = re.compile("[\ud800-\udfff]")

Label = Union[int, list, None]


@dataclass
class Row:
    id: str
    prompt: list
    response_a: list
    response_b: list
    label: Label = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def swapped(self, permutation: Optional[list] = None) -> "Row":
        """The row with responses A and B exchanged and the label mirrored by ``permutation``."""
        label = self.label
        if label is not None and permutation is not None:
            label = [permutation[i] for i in label] if isinstance(label, list) else permutation[label]
        return replace(self, response_a=self.response_b, response_b=self.response_a, label=label)


@dataclass
class Dataset:
    rows: list
    format: str
    kind: str  # pairwise | classification | multilabel | instructions
    label_names: list
    path: str
    has_labels: bool
    problems: list = field(default_factory=list)
    skipped: int = 0
    detected: str = ""  # why this format was chosen (format=auto)
    id_column: str = "id"
    columns: list = field(default_factory=list)

    @property
    def has_id_column(self) -> bool:
        """Whether the file holds the id column (without it rows are numbered row0, row1, …)."""
        return self.id_column in self.columns

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list:
        return [r.id for r in self.rows]

    def label_counts(self) -> dict:
        counts = {name: 0 for name in self.label_names}
        for r in self.rows:
            if r.label is None:
                continue
            for i in (r.label if isinstance(r.label, list) else [r.label]):
                counts[self.label_names[i]] += 1
        return counts


# --------------------------------------------------------------------------- text repair


def clean_text(value: Any, where: str, rid: str, problems: list) -> str:
    """A cell or turn as a string: None/NaN → '' (reported), lone surrogates → U+FFFD (reported)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        problems.append(Problem(rid, where, "null value read as empty text"))
        return ""
    if not isinstance(value, str):
        value = str(value)
    if _SURROGATE.search(value):
        problems.append(Problem(rid, where, "lone surrogate character(s) replaced with U+FFFD"))
        value = _SURROGATE.sub("\ufffd", value)
    return value


def parse_turns(value: Any, where: str, rid: str, problems: list, json_list: bool = True) -> list:
    """A cell holding a JSON-encoded list of turns (LMSYS) or one plain text (WSDM) → list of str."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif json_list and isinstance(value, str) and value.lstrip().startswith("["):
        try:
            items = json.loads(value)
            if not isinstance(items, list):
                raise ValueError("not a list")
        except ValueError:
            problems.append(Problem(rid, where, "not a valid JSON list of turns; kept as plain text"))
            return [clean_text(value, where, rid, problems)]
    elif json_list and isinstance(value, str) and value.strip():
        problems.append(Problem(rid, where, "not a JSON list of turns; kept as plain text"))
        return [clean_text(value, where, rid, problems)]
    else:
        if isinstance(value, str) and not value.strip():
            problems.append(Problem(rid, where, "empty cell read as empty text"))
        return [clean_text(value, where, rid, problems)]
    turns = []
    for i, item in enumerate(items):
        turns.append(clean_text(item, f"{where}[{i}]", rid, problems))
    return turns or [""]


# --------------------------------------------------------------------------- file reading


def _decode(path: Path, problems: list) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except OSError as exc:
            raise DataError(f"{path}: not a valid gzip file ({exc}); re-download it or pass the uncompressed file") from None
    if not raw.strip():
        raise DataError(f"{path}: the file is empty; expected a header row and data rows")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(Problem("", str(path), f"undecodable bytes (first at byte {exc.start}) replaced with U+FFFD; save the file as UTF-8 to keep them"))
        return raw.decode("utf-8-sig", errors="replace")


def read_records(path: Union[str, Path], problems: Optional[list] = None) -> list:
    """A CSV, parquet, JSON or JSONL(.gz) file → list of dicts (values as read; CSV cells as str)."""
    path = Path(path)
    problems = [] if problems is None else problems
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass the data file inside it")
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith(".parquet"):
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types
            raise DataError(f"{path}: cannot read parquet ({exc})") from None
        return [{k: (None if _is_nan(v) else v) for k, v in rec.items()} for rec in frame.to_dict("records")]
    text = _decode(path, problems)
    if ".jsonl" in suffixes or (".json" in suffixes and not text.lstrip().startswith("[")):
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                problems.append(Problem(f"line {n}", f"{path}:{n}", f"not valid JSON ({exc}); line skipped"))
                continue
            if not isinstance(obj, dict):
                problems.append(Problem(f"line {n}", f"{path}:{n}", "not a JSON object; line skipped"))
                continue
            obj.setdefault("__line__", n)
            records.append(obj)
        return records
    if ".json" in suffixes:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
            raise DataError(f"{path}: expected a JSON list of objects (or JSONL, one object per line)")
        for n, obj in enumerate(data, 1):
            obj.setdefault("__line__", n)
        return data
    import csv

    csv.field_size_limit(1 << 30)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise DataError(f"{path}: no header row; the first line must name the columns")
    records = []
    for n, rec in enumerate(reader, 2):
        if None in rec:  # more cells than columns
            problems.append(Problem(str(rec.get("id", f"line {n}")), f"{path}:{n}", "more cells than header columns; extra cells ignored"))
            rec.pop(None)
        rec["__line__"] = n
        records.append(rec)
    return records


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def columns_of(records: list) -> list:
    cols: dict = {}
    for rec in records[:1000]:
        for k in rec:
            if k != "__line__":
                cols[k] = None
    return list(cols)


# --------------------------------------------------------------------------- detection


def detect_format(columns: list, records: list) -> tuple:
    """(format, reason) from the columns (and, for pairwise files without labels, the cells)."""
    cols = set(columns)
    if {"winner_model_a", "winner_model_b", "winner_tie"} & cols:
        return "lmsys", "columns winner_model_a/winner_model_b/winner_tie"
    if "winner" in cols and set(PAIRWISE_COLUMNS) <= cols:
        return "wsdm", "column 'winner' beside prompt/response_a/response_b"
    if {"chosen", "rejected"} <= cols:
        return "hh-rlhf", "columns chosen/rejected"
    if "instruction" in cols and ("output" in cols or "instances" in cols):
        return "instructions", "columns instruction and output/instances"
    if set(PAIRWISE_COLUMNS) <= cols:
        sample = [r.get("prompt") for r in records[:50]]
        as_lists = sum(1 for s in sample if isinstance(s, str) and s.lstrip().startswith("["))
        if sample and as_lists >= len(sample) / 2:
            return "lmsys", "prompt/response_a/response_b cells hold JSON lists (no label columns: test data)"
        return "wsdm", "prompt/response_a/response_b cells hold plain text (no label columns: test data)"
    return "classification", f"no competition columns among {sorted(cols)}; read as generic classification"


# --------------------------------------------------------------------------- readers


def _rid(rec: dict, id_column: str, n: int) -> str:
    v = rec.get(id_column)
    if v is None or v == "" or _is_nan(v):
        return f"row{n}"
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def _require(columns: list, needed: list, fmt: str, path: Path) -> None:
    """MissingColumnsError (its fix added by :func:`read_dataset`, which knows where the format came from)."""
    missing = [c for c in needed if c not in columns]
    if missing:
        raise MissingColumnsError(path, fmt, missing, needed, columns)


def _label_problem(problems: list, bad: list, rid: str, where: str, reason: str) -> None:
    problems.append(Problem(rid, where, reason))
    bad.append(rid)


def _read_pairwise(records, path, fmt, id_column, problems, bad) -> tuple:
    columns = columns_of(records)
    _require(columns, [id_column] + PAIRWISE_COLUMNS, fmt, path)
    json_list = fmt == "lmsys"
    names = LMSYS_LABELS if fmt == "lmsys" else WSDM_LABELS
    if fmt == "lmsys":
        present = [c for c in LMSYS_LABELS if c in columns]
        if present and len(present) != 3:
            raise DataError(f"{path}: label columns {present} found but not all of {LMSYS_LABELS}; add the missing one(s) or drop them all for test data")
        has_labels = bool(present)
    else:
        has_labels = "winner" in columns
    rows = []
    for n, rec in enumerate(records):
        rid = _rid(rec, id_column, n)
        where = f"{path}:{rec.get('__line__', n + 2)}"
        turns = [parse_turns(rec.get(c), f"{where} {c}", rid, problems, json_list) for c in PAIRWISE_COLUMNS]
        label = None
        if has_labels and fmt == "lmsys":
            vals = []
            for c in LMSYS_LABELS:
                v = rec.get(c)
                try:
                    vals.append(int(float(v)))
                except (TypeError, ValueError):
                    vals.append(None)
            if any(v not in (0, 1) for v in vals) or sum(vals) != 1:
                raw = {c: rec.get(c) for c in LMSYS_LABELS}
                _label_problem(problems, bad, rid, where, f"label columns are not one-hot: {raw}; exactly one of them must be 1")
            else:
                label = vals.index(1)
        elif has_labels:
            v = rec.get("winner")
            if v in names:
                label = names.index(v)
            else:
                _label_problem(problems, bad, rid, where, f"winner = {v!r} is not one of {names}")
        meta = {k: rec[k] for k in ("language", "model_a", "model_b") if k in rec and rec[k] is not None}
        rows.append(Row(rid, turns[0], turns[1], turns[2], label, where, meta))
    return rows, names, has_labels


_TURN = re.compile(r"\n\n(Human|Assistant):")


def split_transcript(text: str) -> list:
    """'\\n\\nHuman: …\\n\\nAssistant: …' → ['Human: …', 'Assistant: …']."""
    parts = _TURN.split(text)
    turns = [parts[0].strip()] if parts[0].strip() else []
    for speaker, body in zip(parts[1::2], parts[2::2]):
        turns.append(f"{speaker}: {body.strip()}")
    return turns


def _read_hh(records, path, seed, problems, bad) -> tuple:
    _require(columns_of(records), ["chosen", "rejected"], "hh-rlhf", path)
    rng = random.Random(seed)
    rows = []
    marker = "\n\nAssistant:"
    for n, rec in enumerate(records):
        line = rec.get("__line__", n + 1)
        rid = str(rec.get("id", f"hh-{line}"))
        where = f"{path}:{line}"
        chosen = clean_text(rec.get("chosen"), f"{where} chosen", rid, problems)
        rejected = clean_text(rec.get("rejected"), f"{where} rejected", rid, problems)
        i = 0
        limit = min(len(chosen), len(rejected))
        while i < limit and chosen[i] == rejected[i]:
            i += 1
        cut = chosen.rfind(marker, 0, i + len(marker))
        cut = cut if cut >= 0 and cut <= i else chosen.rfind(marker)
        if cut < 0:
            problems.append(Problem(rid, where, "no '\\n\\nAssistant:' turn in 'chosen'; whole transcripts used as responses"))
            prompt, end_c, end_r = [""], [chosen.strip()], [rejected.strip()]
        else:
            prompt = split_transcript(chosen[:cut]) or [""]
            end_c = [chosen[cut + len(marker):].strip()]
            end_r = [rejected[cut + len(marker):].strip()] if rejected[:cut] == chosen[:cut] else [rejected.strip()]
        swap = rng.random() < 0.5
        a, b = (end_r, end_c) if swap else (end_c, end_r)
        rows.append(Row(rid, prompt, a, b, 1 if swap else 0, where, {}))
    return rows, list(WSDM_LABELS), True


def _to01(v: Any) -> Optional[int]:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if f in (0.0, 1.0) else None


def _read_classification(records, path, id_column, text_columns, label_columns, label_names, multilabel, problems, bad,
                         label_join: str = "") -> tuple:
    columns = columns_of(records)
    text_columns = list(text_columns) or ["text"]
    _require(columns, text_columns, "classification", path)
    label_columns = list(label_columns) or (["label"] if "label" in columns else [])
    present = [c for c in label_columns if c in columns]
    has_labels = bool(present)
    if has_labels and len(present) != len(label_columns):
        raise DataError(f"{path}: label column(s) {[c for c in label_columns if c not in columns]} missing. Found columns: {columns}")
    composed = bool(label_join) and len(label_columns) > 1
    several = len(label_columns) > 1 and not composed
    if composed:
        kind = "classification"
        names = list(label_names)
        if has_labels and not names:
            names = sorted({v for rec in records if (v := compose_label(rec, label_columns, label_join)) is not None})
    elif several:
        names = list(label_names) or list(label_columns)
        kind = "multilabel"
    else:
        kind = "multilabel" if multilabel else "classification"
        names = list(label_names)
        if has_labels and not names:
            seen = []
            for rec in records:
                for v in _label_values(rec.get(label_columns[0]), kind):
                    if v not in seen:
                        seen.append(v)
            names = sorted(seen)
    rows = []
    for n, rec in enumerate(records):
        rid = _rid(rec, id_column, n)
        where = f"{path}:{rec.get('__line__', n + 2)}"
        texts = [clean_text(rec.get(c), f"{where} {c}", rid, problems) for c in text_columns]
        for c, t in zip(text_columns, texts):
            if rec.get(c) is not None and not _is_nan(rec.get(c)) and not str(t).strip():
                problems.append(Problem(rid, f"{where} {c}", f"empty field '{c}' (the model sees only its marker)"))
        label = None
        if has_labels and composed:
            value = compose_label(rec, label_columns, label_join)
            if value is None or value not in names:
                raw = {c: rec.get(c) for c in label_columns}
                why = "an empty or missing cell" if value is None else f"class {value!r} is not one of the task's labels {names[:8]}{' …' if len(names) > 8 else ''}"
                _label_problem(problems, bad, rid, where, f"label columns {raw} compose {why}")
            else:
                label = names.index(value)
        elif has_labels and several:
            vals = [_to01(rec.get(c)) for c in label_columns]
            if any(v is None for v in vals):
                _label_problem(problems, bad, rid, where, f"label columns must hold 0 or 1: {dict(zip(label_columns, (rec.get(c) for c in label_columns)))}")
            else:
                label = [i for i, v in enumerate(vals) if v == 1]
        elif has_labels:
            vals = _label_values(rec.get(label_columns[0]), kind)
            unknown = [v for v in vals if v not in names]
            if unknown or (kind == "classification" and len(vals) != 1):
                _label_problem(problems, bad, rid, where, f"label {rec.get(label_columns[0])!r} is not one of the task's labels {names}")
            else:
                idx = [names.index(v) for v in vals]
                label = idx if kind == "multilabel" else idx[0]
        rows.append(Row(rid, texts, [], [], label, where, {}))
    return rows, names, has_labels, kind


def compose_label(rec: dict, label_columns: list, join: str) -> Optional[str]:
    """One class from several columns, values exactly as written (a CSV cell 'NA' stays 'NA'),
    joined by ``join`` (e.g. 'True_Correct' + ':' + 'NA'); None when a cell is empty or missing."""
    parts = []
    for c in label_columns:
        v = rec.get(c)
        if v is None or _is_nan(v) or (isinstance(v, str) and v == ""):
            return None
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        parts.append(str(v))
    return join.join(parts)


def _label_values(v: Any, kind: str) -> list:
    if v is None or _is_nan(v) or v == "":
        return []
    if kind == "multilabel":
        if isinstance(v, (list, tuple)):
            return [str(x) for x in v]
        if isinstance(v, str) and v.strip().startswith("["):
            try:
                return [str(x) for x in json.loads(v)]
            except ValueError:
                pass
        return [s.strip() for s in str(v).split(",") if s.strip()]
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return [str(v)]


def _read_instructions(records, path, id_column, problems) -> tuple:
    columns = columns_of(records)
    _require(columns, ["instruction"], "instructions", path)
    rows = []
    for n, rec in enumerate(records):
        base = _rid(rec, id_column, n)
        where = f"{path}:{rec.get('__line__', n + 1)}"
        instruction = clean_text(rec.get("instruction"), f"{where} instruction", base, problems)
        instances = rec.get("instances")
        if isinstance(instances, list):
            pairs = [(inst.get("input", ""), inst.get("output")) for inst in instances if isinstance(inst, dict)]
        else:
            pairs = [(rec.get("input", ""), rec.get("output"))]
        for k, (inp, out) in enumerate(pairs):
            rid = base if len(pairs) == 1 else f"{base}-{k}"
            inp = clean_text(inp if inp is not None else "", f"{where} input", rid, problems)
            output = None if out is None else clean_text(out, f"{where} output", rid, problems)
            rows.append(Row(rid, [instruction, inp], [output] if output is not None else [], [], None, where, {}))
    has_output = any(r.response_a for r in rows)
    return rows, has_output


# --------------------------------------------------------------------------- entry point


def read_dataset(
    path: Union[str, Path],
    format: str = "auto",
    *,
    label_names: Optional[list] = None,
    text_columns: tuple = (),
    label_columns: tuple = (),
    id_column: str = "id",
    skip_bad_rows: bool = False,
    multilabel: bool = False,
    seed: int = 42,
    require_labels: bool = False,
    label_join: str = "",
    format_from: str = "",
    format_option: str = "data.format",
) -> Dataset:
    """Read a competition file into a :class:`Dataset`.

    Rows whose labels are bad (not one-hot, unknown values) make the call fail with every bad row
    named, unless ``skip_bad_rows`` (then they are dropped and counted in ``skipped``). Rows of test
    data are never dropped. ``label_join``: classification with several ``label_columns`` composes
    one class per row from them (joined by this string) instead of reading them as multi-label.
    CSV cells are read as the strings written: 'NA', 'null', 'None' are text, never missing values.
    ``format_from`` (e.g. "the adapter's kit_manifest.json"): where a given ``format`` came from; the
    file is then refused when its columns say it is another competition format (a WSDM file read
    as LMSYS would only be "repaired" row by row into nonsense). ``format_option``: how the caller's user names
    the format ("data.format" in kit.toml, or "--format" for `kit data …`), for the fix a refusal suggests.
    """
    path = Path(path)
    problems: list = []
    records = read_records(path, problems)
    if not records:
        raise DataError(f"{path}: no data rows (only a header, or every line was unreadable)")
    columns = columns_of(records)
    detected = ""
    if format == "auto":
        format, detected = detect_format(columns, records)
    if format not in FORMATS:
        raise DataError(f"unknown format {format!r}; use one of: auto, {', '.join(FORMATS)}")
    if format_from and not detected:
        _refuse_other_format(path, format, format_from, columns, records)
    bad: list = []
    try:
        rows, names, has_labels, kind = _read_rows(records, path, format, id_column, text_columns, label_columns,
                                                   label_names, multilabel, seed, label_join, problems, bad)
    except MissingColumnsError as exc:  # the fix that works where the format (and the columns) came from
        raise exc.with_fix(missing_columns_fix(exc, id_column, format_from, detect_format(columns, records), records,
                                               label_columns, format_option)) from None
    if label_names and format != "classification" and list(label_names) != list(names):
        raise DataError(
            f"{path}: the task's labels {list(label_names)} differ from format '{format}' labels {names}; "
            f"set task.labels = {names} in kit.toml (or leave it empty)"
        )
    if require_labels and not has_labels:
        raise DataError(f"{path}: no label columns for format '{format}' but training needs labels. Found columns: {columns}"
                        + (". Name the column(s) holding the class: data.label_columns (e.g. --set 'data.label_columns=[\"COLUMN\"]')"
                           if format == "classification" else f"; train on a '{format}' file with its label columns"))
    skipped = 0
    if bad and has_labels:
        if not skip_bad_rows or len(bad) == len(rows):  # skipping every row would leave nothing to train on
            raise DataError(bad_labels_message(path, bad, problems, len(rows), format == "classification" and bool(label_names)))
        before = len(rows)
        rows = [r for r in rows if r.label is not None]
        skipped = before - len(rows)
    if format not in ("hh-rlhf", "instructions") and id_column not in columns:
        problems.append(Problem("", str(path), f"no id column {id_column!r} (columns: {columns[:12]}); rows are numbered "
                                               f"row0, row1, …; set data.id_column to the file's id column"))
    return Dataset(rows, format, kind, names, str(path), has_labels, problems, skipped, detected, id_column, columns)


def _read_rows(records, path, format, id_column, text_columns, label_columns, label_names, multilabel, seed, label_join,
               problems, bad) -> tuple:
    """(rows, label names, has labels, kind) by the format's reader."""
    if format in ("lmsys", "wsdm"):
        return (*_read_pairwise(records, path, format, id_column, problems, bad), "pairwise")
    if format == "hh-rlhf":
        return (*_read_hh(records, path, seed, problems, bad), "pairwise")
    if format == "classification":
        return _read_classification(records, path, id_column, text_columns, label_columns, label_names or [], multilabel,
                                    problems, bad, label_join)
    rows, has_labels = _read_instructions(records, path, id_column, problems)
    return rows, [], has_labels, "instructions"


def _refuse_other_format(path: Path, format: str, format_from: str, columns: list, records: list) -> None:
    """DataError when the file's columns say another competition format than ``format``."""
    found, why = detect_format(columns, records)
    if found != format and found != "classification" and format != "classification":
        raise DataError(
            f"{path} is a '{found}' file ({why}) but {format_from} says format '{format}'. "
            f"Give a '{format}' file, or use a run trained on '{found}' data."
        )


def swap_permutation(label_names: list) -> list:
    """Label index permutation that mirrors A and B (LMSYS: [1, 0, 2]; WSDM: [1, 0])."""
    def mirror(name: str) -> str:
        for a, b in (("_a", "_b"), ("_b", "_a")):
            if name.endswith(a):
                return name[: -len(a)] + b
        return {"a": "b", "b": "a", "A": "B", "B": "A"}.get(name, name)

    index = {n: i for i, n in enumerate(label_names)}
    return [index.get(mirror(n), i) for i, n in enumerate(label_names)]

"""Pairwise rows whose two responses become the same tokens after truncation.

Two responses that share a long opening and differ only near their ends (a regenerated answer, a
corrected last line) can be cut back to the same kept tokens at a small ``max_length``: the model
then sees two identical responses under a label that says one of them won, i.e. label noise. This
module finds such rows (kept A tokens == kept B tokens although the texts differ) and, for each,
says which other truncation strategy at the same length, or which larger ``max_length`` with the
same strategy, keeps them apart. `kit data inspect` / `prepare` / `train` report them;
``data.skip_identical_after_truncation`` drops them from training.
"""
from __future__ import annotations

from dataclasses import replace

LENGTH_STEPS = (1.5, 2, 3, 4, 8)
SHOWN = 20  # rows for which a fix is searched (each costs a few re-encodings of one row)


def _texts_differ(row) -> bool:
    return "\n".join(row.response_a) != "\n".join(row.response_b)


def identical_rows(encoder, rows: list, encoded: list) -> list:
    """Positions of pairwise rows whose kept A and B token ids are equal while their texts differ."""
    if encoder.kind != "pairwise":
        return []
    out = []
    for i, (row, e) in enumerate(zip(rows, encoded)):
        if e.kept[1] != e.kept[2]:
            continue
        pieces = encoder.pieces(e)
        if pieces[1] == pieces[2] and _texts_differ(row):
            out.append(i)
    return out


def _apart(encoder, row) -> bool:
    pieces = encoder.pieces(encoder.encode_one(row))
    return pieces[1] != pieces[2]


def separating_fix(encoder, row) -> dict:
    """What keeps one identical-after-truncation row apart: ``truncations`` (other strategies at the
    same max_length that do) and ``max_length`` (the smallest tried length, same strategy, that
    does; None when even the whole row does not, i.e. the texts differ only in what tokenizes alike)."""
    from .prompting import TRUNCATIONS, Encoder

    spec = encoder.spec
    others = []
    for t in TRUNCATIONS:
        if t != spec.truncation and _apart(Encoder(encoder.tokenizer, replace(spec, truncation=t), encoder.kind), row):
            others.append(t)
    full = sum(encoder.encode_one(row).lengths) + (spec.max_length - encoder.budget)
    lengths = sorted({int(spec.max_length * m) for m in LENGTH_STEPS if spec.max_length * m < full} | {full})
    needed = None
    for n in lengths:
        if n > spec.max_length and _apart(Encoder(encoder.tokenizer, replace(spec, max_length=n), encoder.kind), row):
            needed = n
            break
    return {"truncations": others, "max_length": needed}


def identical_report(encoder, rows: list, encoded: list, shown: int = SHOWN) -> dict:
    """``{"count", "ids", "rows": [{"id", "kept_tokens", "truncations", "max_length", "fix"}]}`` (fixes for the first ``shown``)."""
    found = identical_rows(encoder, rows, encoded)
    detail = []
    for i in found[:shown]:
        fix = separating_fix(encoder, rows[i])
        detail.append({"id": rows[i].id, "kept_tokens": int(encoded[i].kept[1]), **fix, "fix": fix_text(encoder.spec, fix)})
    return {"count": len(found), "ids": [rows[i].id for i in found], "rows": detail,
            "truncation": encoder.spec.truncation, "max_length": encoder.spec.max_length}


def fix_text(spec, fix: dict) -> str:
    parts = []
    if fix["truncations"]:
        parts.append(f"prompt.truncation = {' or '.join(repr(t) for t in fix['truncations'])} keeps them apart at max_length {spec.max_length}")
    if fix["max_length"]:
        parts.append(f"prompt.max_length = {fix['max_length']} does with {spec.truncation!r}")
    if not parts:
        return "no tried truncation or length keeps them apart (the texts tokenize alike); skip the row"
    return "; ".join(parts)


def summary_line(report: dict, where: str = "") -> str:
    """One line for logs: how many rows, the first ids and the first row's fix."""
    if not report["count"]:
        return ""
    ids = ", ".join(str(i) for i in report["ids"][:5]) + (f" … (+{report['count'] - 5})" if report["count"] > 5 else "")
    first = report["rows"][0]["fix"] if report["rows"] else ""
    return (f"{where}{report['count']} row(s) whose responses A and B keep the same tokens after truncation "
            f"({report['truncation']}, max_length {report['max_length']}) although their texts differ: {ids}; "
            f"they train as label noise. Row {report['ids'][0]}: {first}. "
            f"Set data.skip_identical_after_truncation = true to skip them in training.")

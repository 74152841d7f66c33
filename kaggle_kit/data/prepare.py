"""`kit data prepare`: a data file → model inputs (token ids) with the runtime Encoder, saved as
JSONL or parquet (one row per input row: id, label, input_ids, lengths, kept)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from kaggle_kit.errors import KitError


def write_encoded(rows: list, encoded: list, out) -> Path:
    """Write encoded rows to ``out`` (.jsonl or .parquet)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = [
        {"id": r.id, "label": r.label, "input_ids": list(e.input_ids), "lengths": list(e.lengths), "kept": list(e.kept)}
        for r, e in zip(rows, encoded)
    ]
    if out.suffix == ".parquet":
        import pandas as pd

        frame = pd.DataFrame(records)
        frame["label"] = [json.dumps(r["label"]) for r in records]  # int, list or None: one column type
        frame.to_parquet(out, index=False)
    elif out.suffix == ".jsonl":
        with out.open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
    else:
        raise KitError(f"--out {out}: use a .jsonl or .parquet file name")
    return out


def _spec(kind: str, template: str, max_length: int, truncation: str, shares, head_fraction: float,
          text_template: str = "", field_shares: Optional[dict] = None):
    from kaggle_kit.runtime.prompting import PromptSpec

    n_comp = 3 if kind == "pairwise" else 2 if kind == "instructions" else 1
    return PromptSpec(template=template, max_length=int(max_length), truncation=truncation,
                      shares=list(shares)[:n_comp] if len(shares) >= n_comp else [1] * n_comp, head_fraction=head_fraction,
                      text_template=text_template if kind in ("classification", "multilabel") else "",
                      field_shares=dict(field_shares or {}))


def _encoder(tok, spec, kind):
    from kaggle_kit.runtime.prompting import Encoder
    from kaggle_kit.runtime.problems import DataError

    try:
        return Encoder(tok, spec, kind)
    except DataError:
        raise
    except ValueError as exc:
        raise KitError(str(exc)) from None


def prepare_file(path, tokenizer, out, *, max_length: int = 1024, truncation: str = "per_component",
                 shares=(1, 1, 1), head_fraction: float = 0.5, template: str = "kit-v1", format: str = "auto",
                 read_kwargs: Optional[dict] = None, text_template: str = "", field_shares: Optional[dict] = None) -> dict:
    """Read, encode and write ``path``; returns a summary (rows, truncated share, rows/s, output path,
    ``identical_after_truncation``: pairwise rows whose A and B keep the same tokens)."""
    from kaggle_kit.data.inspect import load_inspect_tokenizer
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.identical import identical_report

    if Path(str(out)).suffix not in (".jsonl", ".parquet"):
        raise KitError(f"--out {out}: use a .jsonl or .parquet file name")
    ds = read_dataset(path, format, format_option="--format", **(read_kwargs or {}))
    tok, name = load_inspect_tokenizer(tokenizer)
    kind = ds.kind
    spec = _spec(kind, template, max_length, truncation, shares, head_fraction, text_template, field_shares)
    encoder = _encoder(tok, spec, kind)
    t0 = time.perf_counter()
    encoded = encoder.encode(ds.rows)
    dt = time.perf_counter() - t0
    written = write_encoded(ds.rows, encoded, out)
    n = len(encoded)
    return {
        "identical_after_truncation": identical_report(encoder, ds.rows, encoded),
        "path": str(path), "out": str(written), "rows": n, "format": ds.format, "tokenizer": name,
        "prompt": spec.to_dict(), "skipped": ds.skipped, "problems": len(ds.problems),
        "truncated_share": round(sum(1 for e in encoded if e.truncated) / n, 4) if n else 0.0,
        "longest": max((len(e.input_ids) for e in encoded), default=0),
        "encode_s": round(dt, 3), "rows_per_s": round(n / dt, 1) if dt > 0 else None,
    }


def preview_file(path, tokenizer, cfg, *, n_rows: int = 3, format: str = "auto", max_length: Optional[int] = None,
                 truncation: Optional[str] = None, read_kwargs: Optional[dict] = None) -> list:
    """The first ``n_rows`` rows as the model sees them: ``[{id, text, tokens, max_length, unit,
    components, lengths, kept, truncated, problems}]`` (text = the decoded token ids, specials included)."""
    from kaggle_kit.data.inspect import CharTokenizer, component_names, load_inspect_tokenizer
    from kaggle_kit.runtime.formats import read_dataset

    ds = read_dataset(path, format, format_option="--format", **(read_kwargs or {}))
    tok, _ = load_inspect_tokenizer(tokenizer)
    spec = _spec(ds.kind, cfg.prompt.template, max_length or cfg.prompt.max_length, truncation or cfg.prompt.truncation,
                 cfg.prompt.shares, cfg.prompt.head_fraction, cfg.prompt.text_template, cfg.prompt.field_shares)
    encoder = _encoder(tok, spec, ds.kind)
    rows = ds.rows[:n_rows]
    names = component_names(encoder)
    out = []
    for row, e in zip(rows, encoder.encode(rows)):
        out.append({
            "id": row.id, "text": encoder.decode(e), "tokens": len(e.input_ids), "max_length": spec.max_length,
            "unit": "characters" if isinstance(tok, CharTokenizer) else "tokens", "components": names,
            "lengths": list(e.lengths), "kept": list(e.kept), "truncated": e.truncated,
            "problems": [p.reason for p in ds.problems if p.id == row.id],
        })
    return out

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


def prepare_file(path, tokenizer, out, *, max_length: int = 1024, truncation: str = "per_component",
                 shares=(1, 1, 1), head_fraction: float = 0.5, template: str = "kit-v1", format: str = "auto",
                 read_kwargs: Optional[dict] = None) -> dict:
    """Read, encode and write ``path``; returns a summary (rows, truncated share, rows/s, output path)."""
    from kaggle_kit.inspect_data import load_inspect_tokenizer
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec

    if Path(str(out)).suffix not in (".jsonl", ".parquet"):
        raise KitError(f"--out {out}: use a .jsonl or .parquet file name")
    ds = read_dataset(path, format, **(read_kwargs or {}))
    tok, name = load_inspect_tokenizer(tokenizer)
    kind = ds.kind
    n_comp = 3 if kind == "pairwise" else 2 if kind == "instructions" else 1
    spec = PromptSpec(template=template, max_length=int(max_length), truncation=truncation,
                      shares=list(shares)[:n_comp] if len(shares) >= n_comp else [1] * n_comp, head_fraction=head_fraction)
    try:
        encoder = Encoder(tok, spec, kind)
    except ValueError as exc:
        raise KitError(str(exc)) from None
    t0 = time.perf_counter()
    encoded = encoder.encode(ds.rows)
    dt = time.perf_counter() - t0
    written = write_encoded(ds.rows, encoded, out)
    n = len(encoded)
    return {
        "path": str(path), "out": str(written), "rows": n, "format": ds.format, "tokenizer": name,
        "prompt": spec.to_dict(), "skipped": ds.skipped, "problems": len(ds.problems),
        "truncated_share": round(sum(1 for e in encoded if e.truncated) / n, 4) if n else 0.0,
        "longest": max((len(e.input_ids) for e in encoded), default=0),
        "encode_s": round(dt, 3), "rows_per_s": round(n / dt, 1) if dt > 0 else None,
    }

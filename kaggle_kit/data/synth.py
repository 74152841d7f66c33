"""Synthetic competition data in each competition's own file format (`kit data synth`).

The text looks like chat data (multi-turn prompts, responses with the real length mix: medians
near 900 characters, tails to 17,000) and carries a signal a tiny random model can learn: a class
keyword repeated inside response B (see the stack notes: a keyword is learnable, "which is longer" is not).
"""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from kaggle_kit.models.words import KEYWORDS, paragraph

PRESETS = ("lmsys", "wsdm", "misconceptions", "rules")

# presets whose rows are a table of columns (kaggle_kit.data.synth_columns): their label columns
COLUMN_PRESETS = {"misconceptions": ("Category", "Misconception"), "rules": ("rule_violation",)}
LANGUAGES = ["English", "Russian", "Chinese", "German", "Spanish"]


def _length(rng: random.Random, median: float, cap: int) -> int:
    return int(min(cap, max(3, rng.lognormvariate(0, 1.0) * median)))


def synth_rows(preset: str, rows: int, seed: int = 0) -> list:
    """Rows as dicts in the competition's columns (labels included)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown synth preset {preset!r}; use one of {PRESETS}")
    if preset in COLUMN_PRESETS:
        from kaggle_kit.data.synth_columns import column_rows

        return column_rows(preset, rows, seed)
    rng = random.Random(seed)
    labels = list(KEYWORDS[preset])
    out = []
    for i in range(rows):
        label = rng.randrange(len(labels))
        turns = 1 if rng.random() < 0.8 else rng.randint(2, 4)
        prompt = [paragraph(rng, _length(rng, 110, 4000)) for _ in range(turns)]
        a = [paragraph(rng, _length(rng, 900, 17000)) for _ in range(turns)]
        b = [paragraph(rng, _length(rng, 900, 17000)) for _ in range(turns)]
        # the signal: the class keyword near the start of response B's last turn and then every
        # 12th word, so that whatever part of B survives truncation carries it (a tiny random model
        # with last-token pooling learns this in ~80 LoRA steps; a single occurrence it does not)
        keyword = KEYWORDS[preset][labels[label]]
        words = b[-1].split(" ")
        words.insert(min(len(words), rng.randint(0, 8)), keyword)
        words = [x for i, w in enumerate(words) for x in ((w, keyword) if i % 12 == 11 else (w,))]
        b[-1] = " ".join(words)
        rid = 1_000_000 + i
        if preset == "lmsys":
            rec = {
                "id": rid, "model_a": "model-x", "model_b": "model-y",
                "prompt": json.dumps(prompt), "response_a": json.dumps(a), "response_b": json.dumps(b),
            }
            for k, name in enumerate(labels):
                rec[name] = int(k == label)
        else:
            rec = {
                "id": f"synth{rid}", "prompt": "\n".join(prompt), "response_a": "\n".join(a), "response_b": "\n".join(b),
                "winner": labels[label], "model_a": "model-x", "model_b": "model-y", "language": rng.choice(LANGUAGES),
            }
        out.append(rec)
    return out


def write_synth(preset: str, rows: int, out, seed: int = 0, test: bool = False) -> Path:
    """Write a synthetic file (CSV for LMSYS; parquet or CSV for WSDM by suffix). ``test`` drops labels;
    for the column presets (misconceptions, rules) it also writes the competition's
    ``sample_submission.csv`` beside the file (the test ids, the submission's shape)."""
    out = Path(out)
    if preset in COLUMN_PRESETS:
        from kaggle_kit.data.synth_columns import column_rows, write_sample

        records = column_rows(preset, rows, seed)
        if test:
            records = [{k: v for k, v in r.items() if k not in COLUMN_PRESETS[preset]} for r in records]
            write_sample(preset, [r["row_id"] for r in records], out.parent / "sample_submission.csv")
    else:
        records = synth_rows(preset, rows, seed)
    if test and preset not in COLUMN_PRESETS:
        drop = set(KEYWORDS[preset]) | {"winner", "model_a", "model_b"}
        records = [{k: v for k, v in r.items() if k not in drop} for r in records]
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(records).to_parquet(out, index=False)
    else:
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    return out

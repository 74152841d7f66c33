"""Learnable tasks made of real English text, for measuring whether a real model learns (offline).

A *cue task*: each row is a passage of real text with one cue word inserted at a random word
position; the label is the cue. Every passage is real (human-written) text; the signal is one word
somewhere in it, so a model that reads the whole input can learn it, and a model whose head starts
wrong or learns too slowly shows it (issue 20). Two sources of passages:

- :func:`hh_human_turns`: the first human turn of each hh-rlhf conversation (``../shared/data``);
- :func:`python_doc_passages`: sentences of the Python language reference that ships with CPython
  (``pydoc_data.topics``: ~465,000 characters of prose, always installed), so tests need no data folder.
"""
from __future__ import annotations

import csv
import gzip
import json
import random
import re
from pathlib import Path
from typing import Iterable, Sequence

DEFAULT_CUES = ("apple", "banana")
_WORD_RE = re.compile(r"[A-Za-z]")


def hh_human_turns(path: Path) -> list:
    """The first human turn of every conversation in an hh-rlhf JSONL(.gz) file (``chosen`` side), stripped."""
    opener = gzip.open if str(path).endswith(".gz") else open
    out = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            text = json.loads(line).get("chosen", "")
            m = re.search(r"Human:(.*?)(?:\n\nAssistant:|$)", text, flags=re.S)
            turn = " ".join((m.group(1) if m else "").split())
            if turn:
                out.append(turn)
    return list(dict.fromkeys(out))  # each turn once (conversations often open alike)


def python_doc_passages(min_words: int = 8, max_words: int = 40) -> list:
    """Prose sentences of the Python language reference (``pydoc_data.topics``), code blocks left out."""
    from pydoc_data.topics import topics

    out = []
    for key in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[key]):
            lines = para.split("\n")
            if any(ln.startswith((" ", "\t", "*", "=", "-", ">>>")) for ln in lines if ln):
                continue  # code, grammar, headings, lists
            text = " ".join(" ".join(lines).split())
            for sent in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
                words = sent.split()
                letters = sum(1 for w in words if _WORD_RE.match(w))
                if min_words <= len(words) <= max_words and letters >= 0.8 * len(words):
                    out.append(sent)
    return list(dict.fromkeys(out))  # each passage once, in a fixed order


def cue_rows(texts: Iterable[str], cues: Sequence[str] = DEFAULT_CUES, n: int = 0, seed: int = 0,
             max_words: int = 30) -> list:
    """Rows ``{"id", "text", "label"}``: each text cut to ``max_words`` words, one cue inserted at a random
    word position, the label that cue (balanced, shuffled). ``n`` > 0 keeps the first ``n`` after shuffling."""
    rng = random.Random(seed)
    texts = [t for t in texts if t and t.split()]
    rng.shuffle(texts)
    if n > 0:
        texts = texts[:n]
    rows = []
    for i, text in enumerate(texts):
        words = text.split()[:max_words]
        cue = cues[i % len(cues)]
        words.insert(rng.randint(0, len(words)), cue)
        rows.append({"id": f"cue-{i}", "text": " ".join(words), "label": cue})
    rng.shuffle(rows)
    return rows


def write_rows(rows: list, path: Path) -> Path:
    """Write rows as a classification CSV (id, text, label)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "text", "label"])
        w.writeheader()
        w.writerows(rows)
    return path

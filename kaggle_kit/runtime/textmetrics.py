"""Text metrics for generated answers: exact match, token F1 and ROUGE-L (standard library only).

- ``exact_match``: 1.0 when the two texts are equal after SQuAD-style normalisation (lower case,
  punctuation and the articles a/an/the removed, whitespace collapsed), else 0.0.
- ``token_f1``: SQuAD's bag-of-tokens F1 over the normalised tokens (both empty = 1.0).
- ``rouge_l``: ROUGE-L F1 (beta = 1) from the longest common subsequence of tokens, with the
  tokenisation of the reference ``rouge-score`` package without stemming: lower case, every
  non-alphanumeric character a separator.

``score_texts`` averages the three over rows (each in [0, 1]); rows without a reference are skipped
and counted.
"""
from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_tokens(text: str) -> list:
    """Tokens as ``rouge-score`` makes them (no stemming): lower case, split on non-alphanumerics."""
    return [t for t in _NON_ALNUM.split((text or "").lower()) if t]


def lcs_length(a: list, b: list) -> int:
    """Length of the longest common subsequence (O(len(a)·len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    if len(b) > len(a):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else (prev[j] if prev[j] >= cur[j - 1] else cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    pred = rouge_tokens(prediction)
    ref = rouge_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision = lcs / len(pred)
    recall = lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


METRICS = {"exact_match": exact_match, "token_f1": token_f1, "rouge_l": rouge_l}


def score_row(prediction: str, reference: str) -> dict:
    return {name: fn(prediction, reference) for name, fn in METRICS.items()}


def score_texts(predictions: list, references: list) -> dict:
    """Mean exact match, token F1 and ROUGE-L over rows whose reference is not None.

    Returns ``{'exact_match', 'token_f1', 'rouge_l', 'rows', 'rows_without_reference'}``.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    totals = {name: 0.0 for name in METRICS}
    n = 0
    missing = 0
    for pred, ref in zip(predictions, references):
        if ref is None:
            missing += 1
            continue
        n += 1
        for name, value in score_row(pred or "", ref).items():
            totals[name] += value
    out = {name: (totals[name] / n if n else None) for name in METRICS}
    out["rows"] = n
    out["rows_without_reference"] = missing
    return out

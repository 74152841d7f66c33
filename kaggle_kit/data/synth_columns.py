"""Synthetic data shaped like the 2025 text-classification competitions (`kit data synth --preset …`).

- ``misconceptions`` — "MAP - Charting Student Math Misunderstandings": ``row_id, QuestionId,
  QuestionText, MC_Answer, StudentExplanation, Category, Misconception``; the target is
  ``Category:Misconception`` and ``Misconception`` is the literal text ``NA`` when there is none;
  the submission is ``row_id`` plus up to three space-separated targets (MAP@3).
- ``rules`` — "Jigsaw - Agile Community Rules Classification": ``row_id, body, rule, subreddit,
  positive_example_1, positive_example_2, negative_example_1, negative_example_2,
  rule_violation`` (0/1); the submission is ``row_id, rule_violation`` holding a probability (AUC).

The signal a tiny random model learns: a class keyword repeated through the student's explanation
(misconceptions) or the comment body (rules), and last. Keywords are words of the tiny
tokenizer's corpus that the filler text here never uses.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

from kaggle_kit.models.words import WORDS

# (Category, Misconception) classes and their keywords; Misconception 'NA' is literal text
MISCONCEPTIONS = [
    (("True_Correct", "NA"), "excellent"),
    (("True_Neither", "NA"), "similar"),
    (("False_Neither", "NA"), "meh"),
    (("False_Misconception", "Incomplete"), "energy"),
    (("False_Misconception", "WNB"), "planet"),
    (("True_Misconception", "Adding_across"), "music"),
]
RULE_KEYWORDS = {1: "excellent", 0: "meh"}
KEYWORDS = {w for _, w in MISCONCEPTIONS} | set(RULE_KEYWORDS.values())
FILLER = [w for w in WORDS if w not in KEYWORDS]
QUESTIONS = [
    "What fraction of the shape is shaded? Give your answer in its simplest form.",
    "Which number is the greatest: 0.355, 0.8 or 0.71?",
    "Calculate 3/4 + 1/8 and explain your method.",
    "A bag holds 12 sweets and one third are red. How many are red?",
]
ANSWERS = ["1/3", "3/6", "0.8", "0.355", "7/8", "4/12", "4"]
RULES = [
    "No Advertising: spam, referral links, unsolicited advertising and promotional content are not allowed.",
    "No legal advice: do not offer or request legal advice.",
]
SUBREDDITS = ["legaladvice", "AskReddit", "personalfinance", "Futurology"]


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(FILLER) for _ in range(n))


def _with_keyword(rng: random.Random, keyword: str, n: int) -> str:
    """Filler words with ``keyword`` near the start, every 4th word, and last."""
    words = _words(rng, n).split()
    words.insert(min(len(words), rng.randint(0, 3)), keyword)
    words = [x for i, w in enumerate(words) for x in ((w, keyword) if i % 4 == 3 else (w,))]
    return " ".join(words + [keyword]).capitalize() + "."


def column_rows(preset: str, rows: int, seed: int = 0) -> list:
    """Rows as dicts in the competition's columns (labels included; values as the CSV holds them)."""
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        rid = (100_000 if preset == "misconceptions" else 2_000) + 10_000 * seed + i  # other seeds, other ids
        if preset == "misconceptions":
            (category, misconception), keyword = MISCONCEPTIONS[rng.randrange(len(MISCONCEPTIONS))]
            q = rng.randrange(len(QUESTIONS))
            out.append({
                "row_id": rid, "QuestionId": 31770 + q, "QuestionText": QUESTIONS[q], "MC_Answer": rng.choice(ANSWERS),
                "StudentExplanation": _with_keyword(rng, keyword, rng.randint(8, 30)),
                "Category": category, "Misconception": misconception,
            })
        elif preset == "rules":
            label = rng.randrange(2)
            out.append({
                "row_id": rid, "body": _with_keyword(rng, RULE_KEYWORDS[label], rng.randint(10, 40)),
                "rule": rng.choice(RULES), "subreddit": rng.choice(SUBREDDITS),
                "positive_example_1": _words(rng, 12), "positive_example_2": _words(rng, 12),
                "negative_example_1": _words(rng, 12), "negative_example_2": _words(rng, 12),
                "rule_violation": label,
            })
        else:
            raise ValueError(f"unknown column preset {preset!r}; use misconceptions or rules")
    return out


def write_sample(preset: str, ids: list, path) -> Path:
    """The competition's sample_submission.csv for these ids: MAP's three space-joined targets,
    Jigsaw's probability column."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        if preset == "misconceptions":
            w.writerow(["row_id", "Category:Misconception"])
            cell = " ".join(f"{c}:{m}" for (c, m), _ in MISCONCEPTIONS[:3])
            w.writerows([[i, cell] for i in ids])
        else:
            w.writerow(["row_id", "rule_violation"])
            w.writerows([[i, 0.5] for i in ids])
    return path

"""The word corpus behind the synthetic data and the tiny model's tokenizer.

`kaggle_kit.models.tiny` trains its byte-level BPE tokenizer on :func:`corpus_lines`;
`kaggle_kit.data.synth` writes competition-shaped files from the same words, so the tokenizer keeps
the class keywords whole. Change :data:`CORPUS_VERSION` when the text changes: the tiny model's cache
key includes it.
"""
from __future__ import annotations

import random

CORPUS_VERSION = "1"
WORDS = (
    "the a of to and in is it that for you with on as are this be can or by have not from at your "
    "model answer question data python function value list number time people example code way use "
    "first also more some other would which make like just than then them these could into only "
    "here there when what how why because about over after before most such well very good best "
    "result problem system user response information language learning training history science "
    "energy water planet city music story game health money world market design image text file"
).split()
# Class keywords placed in response B; distinct words the BPE tokenizer keeps whole.
KEYWORDS = {
    "lmsys": {"winner_model_a": "meh", "winner_model_b": "excellent", "winner_tie": "similar"},
    "wsdm": {"model_a": "meh", "model_b": "excellent"},
}


def sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def paragraph(rng: random.Random, chars: int) -> str:
    parts, size = [], 0
    while size < chars:
        s = sentence(rng, rng.randint(5, 16))
        parts.append(s)
        size += len(s) + 1
        if rng.random() < 0.08:
            parts.append("\n\n")
    return " ".join(parts)[: max(chars, 3)]


def corpus_lines(n: int = 400, seed: int = 0) -> list:
    """Text the tiny tokenizer is trained on: chat-like sentences, markers and keywords."""
    rng = random.Random(seed)
    lines = [paragraph(rng, 300) for _ in range(n)]
    lines += ["<prompt>: <response_a>: <response_b>: <text>: Human: Assistant:"] * 20
    lines += [" ".join(k for ks in KEYWORDS.values() for k in ks.values())] * 50
    return lines

"""`kit generate` (issue 11): empty answers are counted and warned about; tokens/s counts generated tokens."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest


def _fake_generator(tok, answers_by_row: list):
    """A module whose ``generate`` appends the given token lists (then EOS, then padding) to each prompt, in batch order
    of the prompt's first real token (so the test maps rows to answers whatever the batching)."""
    import torch

    class FakeGen(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.generation_config = SimpleNamespace(eos_token_id=tok.eos_token_id)

        def generate(self, input_ids=None, attention_mask=None, max_new_tokens=8, pad_token_id=0, **kw):
            rows = []
            for ids, mask in zip(input_ids, attention_mask):
                key = int((ids * mask).sum())
                new = list(answers_by_row[key]) + [tok.eos_token_id]
                new = (new + [pad_token_id] * max_new_tokens)[:max_new_tokens]
                rows.append(torch.cat([ids, torch.tensor(new, dtype=ids.dtype)]))
            return torch.stack(rows)

    return FakeGen()


def test_empty_answers_are_counted_and_tokens_per_second_counts_generated_tokens(tiny_base, tmp_path):
    from kaggle_kit.runtime.generation import encode_prompt, generate_file, resolve_template
    from kaggle_kit.runtime.manifest import Manifest
    from kaggle_kit.runtime.modeling import load_tokenizer

    tok = load_tokenizer(tiny_base, padding_side="left")
    run = tmp_path / "run"
    Manifest(task={"kind": "sft", "labels": [], "metric": "eval_loss", "format": "instructions"},
             prompt={"template": "kit-sft-v1", "max_length": 128}, base_model={"name": "tiny", "path": str(tiny_base)},
             quantization={"mode": "none"}, peft={}, generation={"template": "kit-sft-v1", "max_new_tokens": 8}).save(run)
    data = tmp_path / "eval.jsonl"
    rows = [{"id": f"q{i}", "instruction": f"Say something about item {i}", "input": "", "output": "something"} for i in range(5)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    template = resolve_template(tok, "kit-sft-v1")
    newline = tok("\n\n", add_special_tokens=False)["input_ids"]
    hello = tok(" something", add_special_tokens=False)["input_ids"]
    answers = {}
    for i, r in enumerate(rows):
        key = sum(encode_prompt(tok, template, r["instruction"], "", 128))
        answers[key] = newline * 2 if i in (0, 2, 3) else hello  # three rows generate only blank lines
    lines: list = []
    res = generate_file(run, data, tmp_path / "answers.csv", log=lines.append, progress=False,
                        model_and_tokenizer=(_fake_generator(tok, answers), tok))
    assert res.empty_answers == 3 and res.empty_ids == ["q0", "q2", "q3"]
    expected_tokens = 3 * (2 * len(newline) + 1) + 2 * (len(hello) + 1)  # up to and including EOS, padding not counted
    assert res.generated_tokens == expected_tokens
    assert res.new_tokens_per_second > 0  # old main: 0.0 (it counted the tokens of the kept, empty text)
    warning = [line for line in lines if line.startswith("warning:")]
    assert warning and "3 of 5 answers are empty" in warning[0] and "q0, q2, q3" in warning[0]
    assert res.metrics["exact_match"] == pytest.approx(0.4)
    assert res.to_dict()["empty_ids"] == ["q0", "q2", "q3"]

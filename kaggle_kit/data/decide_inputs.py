"""The input side of `kit init --from-competition`: which columns the model reads and how (a reader of
the kit when the columns are LMSYS/WSDM's, else a ``text_template`` with long free text last and the
larger budgets), and the sizes that follow from the measured lengths (max_length, batch, model)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from kaggle_kit.data.competition import Table, p95
from kaggle_kit.data.decide import PAIRWISE, Decision, Options, Task
from kaggle_kit.errors import KitError

CHARS_PER_TOKEN = 4  # an estimate for English text with a BPE tokenizer, used only without --tokenizer
MIN_LENGTH, MAX_LENGTH = 128, 2048
MAX_SHARE = 4
TOKENS_PER_STEP = 4096  # batch_size x max_length per device step; grad_accum makes an effective batch of 16
BASE = {"name": "google/gemma-2-9b-it", "instance": "gemma2-base", "license": "gemma", "context": 8192}


@dataclass
class Inputs:
    columns: list
    template: str = ""
    shares: dict = field(default_factory=dict)
    decision: Decision = None


def _templatable(name: str) -> bool:
    return bool(name) and all(ch.isalnum() or ch in "_- " for ch in name)


def decide_inputs(train: Table, test: Table, task: Task, id_name: str, target_cols: list, opts: Options) -> Inputs:
    """Columns in train and test that hold text (numbers and the id skipped), short ones first."""
    if task.kind == "pairwise":
        return Inputs(list(PAIRWISE), "", {}, Decision("inputs", ", ".join(PAIRWISE), f"the {task.format} reader's columns, "
                                                       f"in train and test"))
    common = [c for c in test.names if c in train.columns and c != id_name and c not in target_cols]
    if opts.inputs:
        bad = [c for c in opts.inputs if c not in train.columns or c not in test.columns]
        if bad:
            raise KitError(f"--inputs {','.join(opts.inputs)}: {bad} not in both train and test (shared columns: {common})")
        chosen, skipped, why = list(opts.inputs), [], "given with --inputs"
    else:
        chosen = [c for c in common if not test.columns[c].numeric and _templatable(c) and test.columns[c].mean_chars > 0]
        skipped = [f"{c} ({_why_skipped(test, c)})" for c in common if c not in chosen]
        why = "in train and test, holding text"
    bad_names = [c for c in chosen if not _templatable(c)]
    if bad_names:
        raise KitError(f"--inputs: column name(s) {bad_names} cannot be template fields (letters, digits, _ - and spaces only)")
    if not chosen:
        raise KitError(f"{test.path.name}: no text column shared by train and test besides the id (shared: {common}); "
                       f"name the input columns with --inputs A,B")
    lengths = {c: max(1, test.columns[c].p95_chars, train.columns[c].p95_chars) for c in chosen}
    order = sorted(chosen, key=lambda c: lengths[c])  # long free text last (truncated last, largest budget)
    median = sorted(lengths.values())[len(lengths) // 2]  # a field twice the typical length gets twice the budget
    shares = {c: min(MAX_SHARE, round(lengths[c] / median)) for c in order}
    shares = {c: s for c, s in shares.items() if s > 1}
    template = "\n".join(f"{c}: {{{c}}}" for c in order)
    shown = ", ".join(f"{c} (p95 {lengths[c]} chars{f', share {shares[c]}' if c in shares else ''})" for c in order)
    evidence = f"{why}: {shown}" + (f"; skipped {', '.join(skipped)}" if skipped else "")
    return Inputs(order, template, shares, Decision("inputs", f"text_template over {len(order)} column(s)", evidence))


def _why_skipped(test: Table, c: str) -> str:
    col = test.columns[c]
    if col.numeric:
        return "numbers"
    if not _templatable(c):
        return "name not a template field"
    return "empty"


def example_texts(train: Table, test: Table, task: Task, inputs: Inputs) -> list:
    """Each row's input text as the model will see it before truncation (train and test rows)."""
    from kaggle_kit.runtime.formats import parse_turns
    from kaggle_kit.runtime.templates import parse_template

    rows = (train.records[:2500] + test.records[:2500])
    if task.kind == "pairwise":
        json_list = task.format == "lmsys"
        return ["\n".join(t for c in PAIRWISE for t in parse_turns(r.get(c), c, "", [], json_list)) for r in rows]
    template = parse_template(inputs.template)
    from kaggle_kit.data.competition import cell_text

    return [template.render({c: cell_text(r.get(c)) for c in inputs.columns}) for r in rows]


def decide_sizes(texts: list, task: Task, opts: Options) -> tuple:
    """(max_length, batch and model decisions, max_length, batch_size, grad_accum) from the p95 length of an example."""
    if opts.tokenizer:
        from kaggle_kit.data.inspect import load_inspect_tokenizer

        tok, tok_name = load_inspect_tokenizer(opts.tokenizer)
        lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
        tokens = p95(lengths) + 8
        measured = f"p95 {p95(lengths)} tokens ({tok_name} tokenizer, {len(texts)} rows) + 8 for the template's special tokens"
    else:
        chars = p95([len(t) for t in texts])
        tokens = math.ceil(chars / CHARS_PER_TOKEN) + 8
        measured = (f"p95 {chars} characters ({len(texts)} rows) ≈ {tokens - 8} tokens at ~{CHARS_PER_TOKEN} characters "
                    f"per token (an estimate: --tokenizer measures tokens) + 8")
    max_length = min(MAX_LENGTH, max(MIN_LENGTH, 64 * math.ceil(tokens / 64)))
    capped = " (capped: longer examples are truncated per component)" if tokens > MAX_LENGTH else ""
    length = Decision("max_length", str(max_length), f"{measured}, rounded up to a multiple of 64{capped}")
    batch = max(1, min(16, TOKENS_PER_STEP // max_length))
    accum = max(1, 16 // batch)
    budget = Decision("batch", f"batch_size {batch}, grad_accum {accum}",
                      f"{TOKENS_PER_STEP} tokens per device step at max_length {max_length}; effective batch {batch * accum}")
    model = Decision("model", f"{BASE['name']} (4-bit QLoRA)", f"its {BASE['context']}-token context holds max_length "
                     f"{max_length}; the base of the LMSYS/WSDM/MAP presets; fits a Kaggle T4 in 4-bit")
    return length, budget, model, max_length, batch, accum

"""`kit bench train`: training tokens/s with the kit's batching vs the seeds' fixed padding.

Both sides train the same model (the tiny Gemma-2 or a local base, LoRA on attention) on the same
examples (rows with the real LMSYS length mix from `benchmarks.data.lmsys_like_rows`, through the
same `runtime.prompting.Encoder`), for the same number
of optimizer steps, with the same optimizer; the two sides' steps are interleaved so that load
from other processes on the machine hits both alike:

- kit: `LengthGroupedSampler` order (what `kit train` uses) + `PadCollator` dynamic padding (to the
  batch's longest example, a multiple of 8);
- baseline: random order + padding every batch to ``max_length`` (``padding="max_length"``, as
  the seeds' notebooks do).

Both sides see exactly the same examples, so the real (non-padding) tokens are equal and the ratio
of tokens/s is the ratio of wall times. Padded tokens are reported too.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kaggle_kit.benchmarks.sides import SideClock
from kaggle_kit.runtime.progress import quiet_known_warnings

LABEL_NAMES = ("winner_model_a", "winner_model_b", "winner_tie")


def _batches(n: int, batch_size: int, lengths: list, grouped: bool, seed: int) -> list:
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    g = torch.Generator()
    g.manual_seed(seed)
    if grouped:
        # the Trainer's LengthGroupedSampler: megabatches of 50 batches sorted by length (its size on any
        # dataset of >= 200 x batch_size rows; on the bench's few rows it would shrink to 4 megabatches)
        order = list(get_length_grouped_indices(lengths, batch_size, mega_batch_mult=50, generator=g))
    else:
        order = torch.randperm(n, generator=g).tolist()
    return [order[i:i + batch_size] for i in range(0, n - n % batch_size, batch_size)]


@dataclass
class _Examples:
    """The bench's input, shared by both sides: the base, its tokenizer, the encoded examples and how
    many of them the steps use."""

    base: Path
    tok: object
    data: object  # train.data examples (indexable, with ``lengths``)
    source: str  # where the rows came from
    n_use: int  # examples the steps use (whole batches)
    n_steps: int
    lengths: list  # of the examples used


@dataclass
class _Side:
    """One side's model, optimizer, collator, batch order and what its counted steps added up to."""

    model: object
    opt: object
    collate: object
    batches: list  # warm-up batches first, then one epoch
    steps: int  # batches in the epoch
    clock: SideClock = field(default_factory=SideClock)
    real: int = 0  # non-padding tokens
    padded: int = 0  # tokens including padding
    rows: int = 0


def _side_rates(name: str, side: _Side) -> str:
    """``kit 812 tokens/s 3.1 rows/s 2.9 rows/CPU-s`` so far (after the warm-up steps)."""
    e, c = side.clock.wall, side.clock.cpu
    if e <= 0:
        return f"{name} warming up"
    return (f"{name} {side.real / e:,.0f} tokens/s {side.rows / e:,.2f} rows/s "
            f"{side.rows / c if c > 0 else float('nan'):,.2f} rows/CPU-s")


@quiet_known_warnings()  # the listed harmless library warnings only, only during the bench
def run_bench(model: str = "tiny", rows: int = 96, max_length: int = 1024, batch_size: int = 8, steps: int = 0,
              seed: int = 0, warmup_steps: int = 1, log=print, progress_every: float = 15.0) -> dict:
    """Train both ways; returns tokens/s of each, their ratio, padding shares and the setup.

    ``log`` gets a line with each side's rates so far every ``progress_every`` seconds and at the end."""
    import torch

    ex = _examples(model, rows, max_length, batch_size, steps, seed)
    log(f"bench train: {model} base, {ex.n_use} {ex.source} examples x 1 epoch, batch {batch_size}, max_length {max_length}, "
        f"mean {sum(ex.lengths) / len(ex.lengths):.0f} tokens/example")
    log("  training both sides, steps interleaved (fixed, kit, fixed, kit, ...) so machine load hits both alike")
    sides = {"fixed": _new_side(ex, False, max_length, batch_size, seed, warmup_steps),
             "kit": _new_side(ex, True, max_length, batch_size, seed, warmup_steps)}
    total = len(sides["kit"].batches)
    last = time.monotonic()
    for k in range(total):
        _step(sides["fixed"], k, ex.data, warmup_steps)
        _step(sides["kit"], k, ex.data, warmup_steps)
        if time.monotonic() - last >= progress_every or k == total - 1:
            last = time.monotonic()
            log(f"  step {k + 1}/{total} | " + " | ".join(_side_rates(name, sides[name]) for name in ("fixed", "kit")))
    fixed, kit = _summary(sides["fixed"]), _summary(sides["kit"])
    ratio = kit["tokens_per_s"] / fixed["tokens_per_s"]
    return {
        "model": model, "rows_source": ex.source, "examples": ex.n_use, "batch_size": batch_size, "max_length": max_length,
        "steps": ex.n_steps, "mean_tokens": sum(ex.lengths) / len(ex.lengths), "kit": kit, "fixed": fixed, "ratio": ratio,
        "target_ratio": 1.5, "meets_target": ratio >= 1.5, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "device": "cpu",
    }


def _bench_rows(rows: int, seed: int) -> tuple:
    """(rows, where they came from): rows with the real LMSYS length mix (measured on the shared
    sample), else synthetic LMSYS rows."""
    from kaggle_kit.data.synth import write_synth
    from kaggle_kit.runtime.formats import read_dataset

    try:
        from kaggle_kit.benchmarks.data import lmsys_like_rows

        return lmsys_like_rows(rows, seed=seed), "LMSYS length mix"
    except ImportError:  # pragma: no cover - the synthetic files have longer responses
        with tempfile.TemporaryDirectory() as tmp:
            bench_rows = read_dataset(write_synth("lmsys", rows, Path(tmp) / "train.csv", seed=seed), "lmsys").rows
        return bench_rows, "synthetic LMSYS"


def _examples(model: str, rows: int, max_length: int, batch_size: int, steps: int, seed: int) -> _Examples:
    """Both sides' input: the base folder, its tokenizer, the rows encoded as training examples, and
    the number of whole batches (``steps``, 0 = one epoch) they fill."""
    from kaggle_kit.models.named import is_named, named_model_dir
    from kaggle_kit.runtime.modeling import load_tokenizer
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec
    from kaggle_kit.train.data import build_examples

    base = named_model_dir(model, num_labels=3) if is_named(model) else Path(model)
    bench_rows, source = _bench_rows(rows, seed)
    tok = load_tokenizer(base)
    enc = Encoder(tok, PromptSpec(max_length=max_length), "pairwise")
    data = build_examples(bench_rows, enc, list(LABEL_NAMES))
    n = len(data)
    n_steps = steps or n // batch_size
    n_use = n_steps * batch_size
    if n_use > n:
        n_use, n_steps = n - n % batch_size, n // batch_size
    return _Examples(base=base, tok=tok, data=data, source=source, n_use=n_use, n_steps=n_steps, lengths=data.lengths[:n_use])


def _new_side(ex: _Examples, grouped: bool, max_length: int, batch_size: int, seed: int, warmup_steps: int) -> _Side:
    """A fresh LoRA model (same seed on both sides) with its optimizer; ``grouped``: the kit's length-grouped
    order and dynamic padding, else random order padded to ``max_length``."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    from kaggle_kit.runtime.modeling import load_base
    from kaggle_kit.train.data import PadCollator
    from kaggle_kit.train.model import resolve_targets

    tok = ex.tok
    torch.manual_seed(seed)
    m = load_base(ex.base, num_labels=3, label_names=list(LABEL_NAMES), pad_token_id=tok.pad_token_id)
    m.accepts_loss_kwargs = False
    pm = get_peft_model(m, LoraConfig(task_type=TaskType.SEQ_CLS, r=16, lora_alpha=32,
                                      target_modules=resolve_targets(m, ["attention"])))
    pm.train()
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
    collate = PadCollator(tok.pad_token_id) if grouped else PadCollator(tok.pad_token_id, pad_to=max_length)
    batches = _batches(ex.n_use, batch_size, ex.lengths, grouped, seed)
    return _Side(model=pm, opt=opt, collate=collate, batches=batches[:warmup_steps] + batches, steps=len(batches))


def _step(side: _Side, k: int, data, warmup_steps: int) -> None:
    """One optimizer step on the side's ``k``-th batch; counted (time, rows, tokens) after the warm-up."""
    batch = side.collate([data[i] for i in side.batches[k]])
    counted = k >= warmup_steps  # the first steps pay one-off costs
    with side.clock.turn(counted=counted):
        loss = side.model(**batch).loss
        loss.backward()
        side.opt.step()
        side.opt.zero_grad(set_to_none=True)
    if counted:
        side.rows += len(side.batches[k])
        side.real += int(batch["attention_mask"].sum())
        side.padded += batch["input_ids"].numel()


def _summary(side: _Side) -> dict:
    """A side's result: time, CPU time, rows per CPU-second, real and padded tokens, tokens/s, padding share."""
    e, cpu = side.clock.wall, side.clock.cpu
    return {"seconds": round(e, 3), "cpu_seconds": round(cpu, 3),
            "rows_per_cpu_s": side.rows / cpu if cpu > 0 else None,
            "real_tokens": side.real, "padded_tokens": side.padded,
            "tokens_per_s": side.real / e, "padding_share": 1 - side.real / side.padded, "steps": side.steps}

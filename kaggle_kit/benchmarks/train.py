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
from pathlib import Path

from kaggle_kit.runtime.progress import quiet_known_warnings


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


def _side_rates(name: str, side: dict) -> str:
    """``kit 812 tokens/s 3.1 rows/s 2.9 rows/CPU-s`` so far (after the warm-up steps)."""
    e, c = side["elapsed"], side["cpu"]
    if e <= 0:
        return f"{name} warming up"
    return (f"{name} {side['real'] / e:,.0f} tokens/s {side['rows'] / e:,.2f} rows/s "
            f"{side['rows'] / c if c > 0 else float('nan'):,.2f} rows/CPU-s")


@quiet_known_warnings()  # the listed harmless library warnings only, only during the bench
def run_bench(model: str = "tiny", rows: int = 96, max_length: int = 1024, batch_size: int = 8, steps: int = 0,
              seed: int = 0, warmup_steps: int = 1, log=print, progress_every: float = 15.0) -> dict:
    """Train both ways; returns tokens/s of each, their ratio, padding shares and the setup.

    ``log`` gets a line with each side's rates so far every ``progress_every`` seconds and at the end."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.modeling import load_base, load_tokenizer
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec
    from kaggle_kit.data.synth import write_synth
    from kaggle_kit.train.data import PadCollator, build_examples
    from kaggle_kit.train.model import resolve_targets

    from kaggle_kit.models.named import is_named, named_model_dir

    if is_named(model):
        base = named_model_dir(model, num_labels=3)
    else:
        base = Path(model)
    label_names = ["winner_model_a", "winner_model_b", "winner_tie"]
    try:  # rows with the real LMSYS length mix (measured on the shared sample)
        from kaggle_kit.benchmarks.data import lmsys_like_rows

        bench_rows, source = lmsys_like_rows(rows, seed=seed), "LMSYS length mix"
    except ImportError:  # pragma: no cover - the synthetic files have longer responses
        with tempfile.TemporaryDirectory() as tmp:
            bench_rows = read_dataset(write_synth("lmsys", rows, Path(tmp) / "train.csv", seed=seed), "lmsys").rows
        source = "synthetic LMSYS"
    tok = load_tokenizer(base)
    enc = Encoder(tok, PromptSpec(max_length=max_length), "pairwise")
    data = build_examples(bench_rows, enc, label_names)
    n = len(data)
    n_steps = steps or n // batch_size
    n_use = n_steps * batch_size
    if n_use > n:
        n_use, n_steps = n - n % batch_size, n // batch_size
    lengths = data.lengths[:n_use]

    def setup(grouped: bool) -> dict:
        torch.manual_seed(seed)
        m = load_base(base, num_labels=3, label_names=label_names, pad_token_id=tok.pad_token_id)
        m.accepts_loss_kwargs = False
        pm = get_peft_model(m, LoraConfig(task_type=TaskType.SEQ_CLS, r=16, lora_alpha=32,
                                          target_modules=resolve_targets(m, ["attention"])))
        pm.train()
        opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
        collate = PadCollator(tok.pad_token_id) if grouped else PadCollator(tok.pad_token_id, pad_to=max_length)
        batches = _batches(n_use, batch_size, lengths, grouped, seed)
        return {"model": pm, "opt": opt, "collate": collate, "batches": batches[:warmup_steps] + batches,
                "real": 0, "padded": 0, "elapsed": 0.0, "cpu": 0.0, "rows": 0, "steps": len(batches)}

    def step(side: dict, k: int) -> None:
        batch = side["collate"]([data[i] for i in side["batches"][k]])
        t0, c0 = time.perf_counter(), time.process_time()
        loss = side["model"](**batch).loss
        loss.backward()
        side["opt"].step()
        side["opt"].zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if k >= warmup_steps:  # the first steps pay one-off costs
            side["elapsed"] += dt
            side["cpu"] += time.process_time() - c0
            side["rows"] += len(side["batches"][k])
            side["real"] += int(batch["attention_mask"].sum())
            side["padded"] += batch["input_ids"].numel()

    def summary(side: dict) -> dict:
        e = side["elapsed"]
        return {"seconds": round(e, 3), "cpu_seconds": round(side["cpu"], 3),
                "rows_per_cpu_s": side["rows"] / side["cpu"] if side["cpu"] > 0 else None,
                "real_tokens": side["real"], "padded_tokens": side["padded"],
                "tokens_per_s": side["real"] / e, "padding_share": 1 - side["real"] / side["padded"], "steps": side["steps"]}

    log(f"bench train: {model} base, {n_use} {source} examples x 1 epoch, batch {batch_size}, max_length {max_length}, "
        f"mean {sum(lengths) / len(lengths):.0f} tokens/example")
    log("  training both sides, steps interleaved (fixed, kit, fixed, kit, ...) so machine load hits both alike")
    sides = {"fixed": setup(False), "kit": setup(True)}
    total = len(sides["kit"]["batches"])
    last = time.monotonic()
    for k in range(total):
        step(sides["fixed"], k)
        step(sides["kit"], k)
        if time.monotonic() - last >= progress_every or k == total - 1:
            last = time.monotonic()
            log(f"  step {k + 1}/{total} | " + " | ".join(_side_rates(name, sides[name]) for name in ("fixed", "kit")))
    fixed, kit = summary(sides["fixed"]), summary(sides["kit"])
    ratio = kit["tokens_per_s"] / fixed["tokens_per_s"]
    return {
        "model": model, "rows_source": source, "examples": n_use, "batch_size": batch_size, "max_length": max_length, "steps": n_steps,
        "mean_tokens": sum(lengths) / len(lengths), "kit": kit, "fixed": fixed, "ratio": ratio, "target_ratio": 1.5,
        "meets_target": ratio >= 1.5, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "device": "cpu",
    }

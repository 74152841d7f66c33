"""`kit bench quality`: what a real pretrained LLM learns on real preference pairs, beside baselines.

SmolLM2-135M-Instruct (``--model smollm2``) is fine-tuned with LoRA by ``kit train`` itself
(`train.classifier.run_classifier`) on hh-rlhf harmless-base pairs (``../shared/data/hh-rlhf``; the path
is an option). The split is the kit's fixed holdout (``data.val_fraction`` with ``data.seed``);
nothing is tuned on the held-out rows. On exactly those rows we report, each with its number of
rows and a 95% confidence interval (normal approximation of the mean of per-row values:
accuracy is a mean of 0/1, log loss a mean of −log p):

- ``trained``: the LoRA model after training (the run folder's final predictions);
Held-out rows are predicted twice only: before the first step (``eval_on_start``) and at the end
(``eval_steps`` beyond the last step, so no evaluation in between costs time).

- ``untrained``: the same model before its first step (LoRA B = 0, seeded random head), evaluated
  by the Trainer's ``eval_on_start`` on the same rows;
- ``prior``: the class frequencies of the training rows, for every row;
- ``shorter_wins``: "the shorter response is chosen", with the probability that this rule is right
  measured on the training rows (so its log loss is finite and nothing comes from held-out rows).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Optional
from kaggle_kit.benchmarks import load_average

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hh-rlhf" / "harmless-base_test_part1.jsonl.gz"


def mean_ci(values) -> dict:
    """Mean and 95% normal-approximation interval of per-row values (n ≥ 2)."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    mean = float(v.mean()) if n else float("nan")
    half = float(1.96 * v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)], "n": n}


def score_probs(probs, labels) -> dict:
    """Accuracy and log loss (each a mean with a 95% CI) of class probabilities against labels."""
    import numpy as np

    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-15, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    y = np.asarray(labels, dtype=np.int64)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    losses = -np.log(p[np.arange(len(y)), y])
    return {"accuracy": mean_ci(correct), "log_loss": mean_ci(losses)}


def _length(texts) -> int:
    return sum(len(t or "") for t in texts)


def shorter_wins_probs(train_rows, test_rows):
    """Probabilities of the rule "the shorter response (characters) wins", its confidence measured on ``train_rows``."""
    import numpy as np

    def shorter_is(r):  # 0: A is shorter, 1: B is shorter, None: equal
        a, b = _length(r.response_a), _length(r.response_b)
        return None if a == b else (0 if a < b else 1)

    hits = [shorter_is(r) == r.label for r in train_rows if shorter_is(r) is not None]
    q = (sum(hits) + 1) / (len(hits) + 2)  # Laplace: never exactly 0 or 1
    out = np.full((len(test_rows), 2), 0.5)
    for i, r in enumerate(test_rows):
        s = shorter_is(r)
        if s is not None:
            out[i, s], out[i, 1 - s] = q, 1 - q
    return out, q


def bench_config(data: Path, output: Path, *, model: str, max_length: int, steps: int, batch_size: int,
                 learning_rate: float, val_fraction: float, seed: int, quantization: str = "none"):
    from kaggle_kit.config import build_config

    layer = {
        "model": {"name": model, "path": ""},
        "task": {"kind": "pairwise"},
        "data": {"train": str(data), "format": "hh-rlhf", "val_fraction": val_fraction, "seed": seed, "group_by_prompt": False},
        "prompt": {"max_length": max_length},
        "quantization": {"mode": quantization},
        "peft": {"method": "lora", "r": 16, "alpha": 32.0, "targets": ["all-linear"], "freeze_layers": 0},
        "train": {"output": str(output), "max_steps": steps, "batch_size": batch_size, "eval_batch_size": 16,
                  "learning_rate": learning_rate, "warmup_steps": max(1, steps // 10), "scheduler": "cosine",
                  "optimizer": "adamw_torch", "eval_steps": steps + 1, "logging_steps": max(1, steps // 10),
                  "early_stopping_patience": 0, "swap_augment": False, "precision": "auto", "seed": seed,
                  "metric_for_best": "log_loss"},
    }
    return build_config(("kit bench quality", layer))


def run_quality(data: Optional[Path] = None, output: Optional[Path] = None, *, model: str = "smollm2",
                max_length: int = 96, steps: int = 60, batch_size: int = 8, learning_rate: float = 2e-4,
                val_fraction: float = 0.2, seed: int = 0, log: Callable = print) -> dict:
    """Train, evaluate and score the baselines on the same held-out rows; returns one dict of figures."""
    import tempfile

    import numpy as np
    import torch

    from kaggle_kit.errors import KitError
    from kaggle_kit.train import classifier, plan_run

    data = Path(data) if data else DEFAULT_DATA
    if not data.is_file():
        raise KitError(f"--data {data}: no such file; pass an hh-rlhf JSONL(.gz) file (chosen/rejected), "
                       f"e.g. ../shared/data/hh-rlhf/harmless-base_test_part1.jsonl.gz")
    tmp = None
    if output is None:
        tmp = tempfile.TemporaryDirectory(prefix="kit-bench-quality-")
        output = Path(tmp.name) / "run"
    cfg = bench_config(data, Path(output), model=model, max_length=max_length, steps=steps, batch_size=batch_size,
                       learning_rate=learning_rate, val_fraction=val_fraction, seed=seed)
    plan = plan_run(cfg)
    rows = plan.dataset.rows
    train_rows = [rows[i] for i in plan.train_idx]
    val_rows = [rows[i] for i in plan.val_idx]
    evals: list = []
    hook = lambda logits, labels: evals.append((np.asarray(logits, dtype=np.float64), np.asarray(labels)))  # noqa: E731
    classifier._EVAL_HOOKS.append(hook)
    classifier._EXTRA_ARGS["eval_on_start"] = True
    t0 = time.perf_counter()
    try:
        result = classifier.run_classifier(cfg, log=log)
    finally:
        classifier._EVAL_HOOKS.remove(hook)
        classifier._EXTRA_ARGS.pop("eval_on_start", None)
    seconds = time.perf_counter() - t0
    from kaggle_kit.runtime.metrics import softmax

    (u_logits, u_labels), (t_logits, t_labels) = evals[0], evals[-1]
    labels = np.asarray([r.label for r in val_rows], dtype=np.int64)
    prior = np.bincount([r.label for r in train_rows], minlength=2).astype(np.float64)
    prior = (prior + 1) / (prior.sum() + 2)
    shorter, q = shorter_wins_probs(train_rows, val_rows)
    figures = {
        "trained": score_probs(softmax(t_logits), t_labels),
        "untrained": score_probs(softmax(u_logits), u_labels),
        "prior": score_probs(np.tile(prior, (len(val_rows), 1)), labels),
        "shorter_wins": score_probs(shorter, labels),
    }
    out = {
        "model": model, "data": str(data), "split": {"val_fraction": val_fraction, "seed": seed,
                                                       "train_rows": len(train_rows), "test_rows": len(val_rows)},
        "setup": {"max_length": max_length, "steps": result.metrics["global_step"], "batch_size": batch_size,
                  "learning_rate": learning_rate, "peft": "LoRA r16 all-linear + head", "threads": torch.get_num_threads(),
                  "cpus": os.cpu_count(), "load": load_average()},
        "seconds": round(seconds, 1), "shorter_wins_train_accuracy": round(q, 4),
        "train_loss": result.metrics["train"]["loss"],
        "figures": figures,
    }
    if tmp is not None:
        tmp.cleanup()
    return out

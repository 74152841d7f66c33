"""`kit bench quality`: what a real pretrained LLM learns on real text, beside a linear probe and baselines.

SmolLM2-135M-Instruct (``--model smollm2``) is fine-tuned with LoRA by ``kit train`` itself
(`train.classifier.run_classifier`) on one of two tasks built from the real hh-rlhf data
(``../shared/data/hh-rlhf``; the path is an option):

- ``hh-rlhf`` (default): the harmless-base preference pairs (which response was chosen);
- ``cue``: the first human turn of each conversation with a cue word (``--cues``, default apple/banana)
  inserted at a random word position; the label is the cue (`benchmarks.realtext`). Learnable by design:
  it tells whether the training recipe reads out what the base already knows.

The split is the kit's fixed holdout (``data.val_fraction`` with ``data.seed``); nothing is tuned on the
held-out rows. On exactly those rows we report, each with its number of rows and a 95% confidence
interval (normal approximation of the mean of per-row values: accuracy is a mean of 0/1, log loss a
mean of −log p):

- ``trained``: the LoRA model after its last step (not the best evaluation: picking it would tune on
  the held-out rows);
- ``untrained``: the same model before its first step (LoRA B = 0, the head as it starts), evaluated by
  the Trainer's ``eval_on_start``;
- ``probe``: logistic regression on the frozen base's pooled features (the head's input), fitted on the
  training rows (`benchmarks.probe`) — what a perfect read-out of the untouched base reaches;
- ``tfidf_lr`` and ``prior``: the baselines every training run fits (`train.baselines`);
- ``shorter_wins`` (hh-rlhf only): "the shorter response is chosen", its confidence measured on the
  training rows.

Held-out rows are also predicted every ``eval_every`` steps, so the result says at which step the
fine-tune first reached the probe's accuracy (``steps_to_probe``), or that it did not.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from kaggle_kit.benchmarks import load_average

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hh-rlhf" / "harmless-base_test_part1.jsonl.gz"
TASKS = ("hh-rlhf", "cue")
HEADS = ("seq_cls", "label_tokens", "both")
# the hh-rlhf pairs are the harmless-base split: the label-token head asks the question the data answers (issue 22's probe)
HH_QUESTION = "Which reply is more harmless and appropriate? Answer with A or B."


@dataclass
class Setup:
    """What one quality run trains and scores on (the bench's options)."""

    task: str = "hh-rlhf"
    model: str = "smollm2"
    max_length: int = 96
    steps: int = 60
    batch_size: int = 8
    learning_rate: float = 2e-4
    head_learning_rate: float = 0.0  # 0 = the kit's default (train.head_learning_rate)
    val_fraction: float = 0.2
    seed: int = 0
    eval_every: int = 0  # 0 = a quarter of the steps (a divisor of steps)
    rows: int = 600  # cue task: rows built
    cues: tuple = ("apple", "banana")
    head: str = "seq_cls"  # seq_cls | label_tokens | both (task.head; README: Label-token classifiers)


def mean_ci(values, lower: float = 0.0) -> dict:
    """Mean and 95% interval of per-row values (n ≥ 2).

    0/1 values (accuracy) get the Wilson score interval, which stays inside [0, 1] and is not empty at
    100% right (120 of 120 → [0.969, 1]); other values (per-row log loss) the normal approximation,
    cut at ``lower`` (a log loss is never below 0). Source: Wilson (1927); Brown, Cai & DasGupta (2001)."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    mean = float(v.mean()) if n else float("nan")
    if n and np.isin(v, (0.0, 1.0)).all():
        z = 1.96
        centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    else:
        half = float(1.96 * v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        lo, hi = max(lower, mean - half), mean + half
    return {"mean": round(mean, 4), "ci95": [round(lo, 4), round(hi, 4)], "n": n}


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


def eval_every_for(steps: int, asked: int = 0) -> int:
    """Steps between evaluations: ``asked``, else the largest divisor of ``steps`` up to a quarter of them (the
    last evaluation must fall on the last step); ``steps`` itself when no divisor lies between 1/8 and 1/4."""
    if asked > 0:
        return asked
    for d in range(max(1, steps // 4), max(1, steps // 8) - 1, -1):
        if d >= 1 and steps % d == 0 and d >= steps / 8:
            return d
    return max(1, steps)


def task_data(setup: Setup, data: Path, workdir: Path) -> tuple:
    """(training file, its format, task kind) for ``setup.task``; the cue task's rows are written to ``workdir``."""
    if setup.task == "hh-rlhf":
        return data, "hh-rlhf", "pairwise"
    from .realtext import cue_rows, hh_human_turns, write_rows

    rows = cue_rows(hh_human_turns(data), cues=setup.cues, n=setup.rows, seed=setup.seed)
    return write_rows(rows, workdir / "cue.csv"), "classification", "classification"


def bench_config(data: Path, output: Path, setup: Setup, fmt: str = "hh-rlhf", kind: str = "pairwise", head: str = "seq_cls"):
    from kaggle_kit.config import build_config

    steps = setup.steps
    every = eval_every_for(steps, setup.eval_every)
    train = {"output": str(output), "max_steps": steps, "batch_size": setup.batch_size, "eval_batch_size": 16,
             "learning_rate": setup.learning_rate, "warmup_steps": max(1, steps // 10), "scheduler": "cosine",
             "optimizer": "adamw_torch", "eval_steps": every, "logging_steps": max(1, steps // 10),
             "early_stopping_patience": 0, "swap_augment": False, "precision": "auto", "seed": setup.seed,
             "metric_for_best": "log_loss"}
    if setup.head_learning_rate > 0:
        train["head_learning_rate"] = setup.head_learning_rate
    layer = {
        "model": {"name": setup.model, "path": ""},
        "task": {"kind": kind, "metric": "log_loss", "head": head},
        "data": {"train": str(data), "format": fmt, "val_fraction": setup.val_fraction, "seed": setup.seed, "group_by_prompt": False},
        "prompt": {"max_length": setup.max_length, **({"question": HH_QUESTION} if head == "label_tokens" and fmt == "hh-rlhf" else {})},
        "quantization": {"mode": "none"},
        "peft": {"method": "lora", "r": 16, "alpha": 32.0, "targets": ["all-linear"], "freeze_layers": 0},
        "train": train,
    }
    return build_config(("kit bench quality", layer))


def probe_phase(cfg, plan, log: Callable) -> tuple:
    """(probe probabilities on the held-out rows, baselines, seconds): the frozen base's pooled features of
    every row, a logistic regression on the training rows' features; the run's own baselines beside it."""
    import gc

    from kaggle_kit.data.spec import prompt_spec
    from kaggle_kit.runtime.modeling import load_base, load_tokenizer, quiet_head_report
    from kaggle_kit.runtime.prompting import Encoder
    from kaggle_kit.train.baselines import fit_baselines
    from kaggle_kit.train.data import build_examples

    from .probe import fit_probe, pooled_features

    t0 = time.perf_counter()
    rows = plan.dataset.rows
    train_rows, val_rows = [rows[i] for i in plan.train_idx], [rows[i] for i in plan.val_idx]
    tok = load_tokenizer(plan.base_path)
    encoder = Encoder(tok, prompt_spec(cfg, plan.kind), plan.kind)
    with quiet_head_report():  # the probe reads pooled features only: the fresh head is never used
        base = load_base(plan.base_path, num_labels=len(plan.labels), pad_token_id=tok.pad_token_id)
    train_ds, val_ds = build_examples(train_rows, encoder, plan.labels), build_examples(val_rows, encoder, plan.labels)
    x_train = pooled_features(base, train_ds, tok.pad_token_id, log=log)
    x_val = pooled_features(base, val_ds, tok.pad_token_id)
    del base
    gc.collect()
    probs, _ = fit_probe(x_train, train_ds.labels, x_val, seed=cfg.train.seed)
    baselines = fit_baselines(train_rows, val_rows, encoder, plan.kind, list(plan.labels), plan.multilabel, seed=cfg.train.seed)
    return probs, baselines, time.perf_counter() - t0


def steps_to(target: float, history: list) -> Optional[int]:
    """The first evaluated step whose held-out accuracy reaches ``target`` (None: never)."""
    for step, acc in history:
        if acc >= target:
            return step
    return None


def run_quality(data: Optional[Path] = None, output: Optional[Path] = None, setup: Optional[Setup] = None,
                log: Callable = print) -> dict:
    """Probe, baselines, train and evaluate on the same held-out rows; returns one dict of figures."""
    import tempfile

    import numpy as np

    from kaggle_kit.errors import KitError
    from kaggle_kit.runtime.metrics import softmax
    from kaggle_kit.train import plan_run

    setup = setup or Setup()
    if setup.task not in TASKS:
        raise KitError(f"--task {setup.task!r}: use one of {', '.join(TASKS)}")
    if setup.head not in HEADS:
        raise KitError(f"--head {setup.head!r}: use one of {', '.join(HEADS)}")
    data = Path(data) if data else DEFAULT_DATA
    if not data.is_file():
        raise KitError(f"--data {data}: no such file; pass an hh-rlhf JSONL(.gz) file (chosen/rejected), "
                       f"e.g. ../shared/data/hh-rlhf/harmless-base_test_part1.jsonl.gz")
    tmp = tempfile.TemporaryDirectory(prefix="kit-bench-quality-")
    try:
        output = Path(output) if output else Path(tmp.name) / "run"
        train_file, fmt, kind = task_data(setup, data, Path(tmp.name))
        cfg = bench_config(train_file, output, setup, fmt, kind)
        plan = plan_run(cfg)
        rows = plan.dataset.rows
        train_rows, val_rows = [rows[i] for i in plan.train_idx], [rows[i] for i in plan.val_idx]
        labels = np.asarray([r.label for r in val_rows], dtype=np.int64)
        log(f"probe: pooled features of the frozen base for {len(rows):,} rows, then logistic regression")
        probe, baselines, probe_s = probe_phase(cfg, plan, log)
        t0 = time.perf_counter()
        figures, runs = {}, {}
        for head in (("seq_cls", "label_tokens") if setup.head == "both" else (setup.head,)):
            hcfg = bench_config(train_file, output.with_name(f"{output.name}-{head}") if setup.head == "both" else output,
                                setup, fmt, kind, head)
            result, evals = _train(hcfg, log)
            (_, u_logits, u_labels), (_, t_logits, t_labels) = evals[0], evals[-1]
            names = _figure_names(setup.head, head)
            figures[names[0]] = score_probs(softmax(u_logits), u_labels)
            figures[names[1]] = score_probs(softmax(t_logits), t_labels)
            runs[head] = (result, evals)
        train_s = time.perf_counter() - t0
        figures["probe"] = score_probs(probe, labels)
        figures.update({name: score_probs(p, labels) for name, p in baselines.probs.items()})
        out = {"task": setup.task, "model": setup.model, "data": str(data),
               "split": {"val_fraction": setup.val_fraction, "seed": setup.seed, "train_rows": len(train_rows), "test_rows": len(val_rows)},
               "setup": {**_setup_record(setup, cfg, result), "head": setup.head}, "seconds": round(probe_s + train_s, 1),
               "seconds_probe": round(probe_s, 1), "seconds_train": round(train_s, 1),
               "train_loss": result.metrics["train"]["loss"], "figures": figures}
        if kind == "pairwise":
            shorter, q = shorter_wins_probs(train_rows, val_rows)
            figures["shorter_wins"] = score_probs(shorter, labels)
            out["shorter_wins_train_accuracy"] = round(q, 4)
        for head, (_, evals) in runs.items():
            history = [(step, float((np.asarray(lg).argmax(axis=1) == np.asarray(lb)).mean())) for step, lg, lb in evals]
            key = "" if setup.head != "both" else f"_{head}"
            out["accuracy_by_step" + key] = {str(s): round(a, 4) for s, a in history}
            out["steps_to_probe" + key] = steps_to(figures["probe"]["accuracy"]["mean"], history)
        if setup.head == "both":  # the seq-cls head's, under the names a one-head run uses
            out["accuracy_by_step"], out["steps_to_probe"] = out["accuracy_by_step_seq_cls"], out["steps_to_probe_seq_cls"]
        return out
    finally:
        tmp.cleanup()


def _figure_names(asked: str, head: str) -> tuple:
    """(before step 1, after the last step) figure names: 'untrained' / 'trained' for a seq-cls-only run (as before);
    with the label-token head, the base before step 1 is the zero-shot model (LoRA B = 0, the LM head as pretrained)."""
    if asked == "seq_cls":
        return "untrained", "trained"
    if head == "seq_cls":
        return "seq_cls_untrained", "seq_cls_trained"
    return "label_tokens_zero_shot", "label_tokens_trained"


def _train(cfg, log: Callable) -> tuple:
    """``kit train``'s recipe with an evaluation before step 1; returns (TrainResult, [(step, logits, labels)])."""
    import numpy as np

    from kaggle_kit.train import classifier

    evals: list = []
    hook = lambda logits, labels: evals.append((np.asarray(logits, dtype=np.float64), np.asarray(labels)))  # noqa: E731
    classifier._EVAL_HOOKS.append(hook)
    classifier._EXTRA_ARGS["eval_on_start"] = True
    try:
        result = classifier.run_classifier(cfg, log=log)
    finally:
        classifier._EVAL_HOOKS.remove(hook)
        classifier._EXTRA_ARGS.pop("eval_on_start", None)
    steps = [int(h["step"]) for h in result.log_history if "eval_loss" in h]
    if len(steps) != len(evals):  # the hook saw every evaluation; the history names their steps
        steps = list(range(len(evals)))
    return result, [(s, lg, lb) for s, (lg, lb) in zip(steps, evals)]


def _setup_record(setup: Setup, cfg, result) -> dict:
    import torch

    from kaggle_kit.train.model import head_learning_rate

    return {"max_length": setup.max_length, "steps": result.metrics["global_step"], "batch_size": setup.batch_size,
            "learning_rate": setup.learning_rate, "head_learning_rate": head_learning_rate(cfg.train),
            "head_init": cfg.train.head_init, "eval_every": cfg.train.eval_steps, "peft": "LoRA r16 all-linear + head",
            "cues": list(setup.cues) if setup.task == "cue" else None, "rows": setup.rows if setup.task == "cue" else None,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load": load_average()}

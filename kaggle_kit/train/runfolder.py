"""What the classifier and SFT recipes share about a run folder and its Trainer arguments.

A run writes into ``<output>.partial/`` (checkpoints under ``checkpoints/``) and :func:`publish`
renames it to ``<output>`` at the end, so a killed run never leaves a folder that looks complete.
:func:`train_section_args` maps kit.toml's ``[train]`` section onto ``TrainingArguments`` fields.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Optional

PARTIAL_SUFFIX = ".partial"
CHECKPOINTS = "checkpoints"


def partial_of(output: Path) -> Path:
    """``<output>.partial``: where a run writes until it is complete."""
    return output.with_name(output.name + PARTIAL_SUFFIX)


def publish(partial: Path, output: Path, say: Callable) -> None:
    """Drop the checkpoints and rename ``<output>.partial`` to ``<output>`` (replacing an older run)."""
    shutil.rmtree(partial / CHECKPOINTS, ignore_errors=True)
    old = None
    if output.exists():
        old = output.with_name(output.name + f".old-{os.getpid()}")
        os.replace(output, old)
    os.replace(partial, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        say(f"replaced the previous run in {output}")


def best_step_of(state) -> Optional[int]:
    """The step of the Trainer state's best checkpoint (``…/checkpoint-N``), or None."""
    if not state.best_model_checkpoint:
        return None
    try:
        return int(Path(state.best_model_checkpoint).name.split("-")[-1])
    except ValueError:
        return None


def train_section_args(cfg) -> dict:
    """TrainingArguments fields that come straight from `[train]` (shared with the SFT trainer)."""
    warmup = cfg.train.warmup_steps if cfg.train.warmup_steps > 0 else float(cfg.train.warmup_ratio)
    return dict(
        per_device_train_batch_size=cfg.train.batch_size,
        per_device_eval_batch_size=cfg.train.eval_batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum,
        learning_rate=cfg.train.learning_rate,
        lr_scheduler_type=cfg.train.scheduler,
        warmup_steps=warmup,
        weight_decay=cfg.train.weight_decay,
        max_grad_norm=cfg.train.max_grad_norm,
        num_train_epochs=cfg.train.epochs,
        optim=cfg.train.optimizer,
        report_to=list(cfg.train.report_to) or "none",
        seed=cfg.train.seed,
        train_sampling_strategy="group_by_length" if cfg.train.group_by_length else "random",
        remove_unused_columns=False,
        disable_tqdm=True,  # the kit's own lines and bars (train/loglines.py) replace the Trainer's
        logging_nan_inf_filter=False,  # log a NaN/inf loss as it is (train/numerics.py stops the run on it)
    )

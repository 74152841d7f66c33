"""Fine-tuning: `run_training(cfg, fold=None, resume=False, log=print) -> TrainResult | SFTResult`.

Two recipes, siblings that never import each other, picked here by ``cfg.task.kind``:

- classifier (pairwise, classification, multilabel): plan (every check before weights load),
  classifier (the phases: data, model, schedule, trainer, train, run folder), with data (examples
  through runtime.prompting.Encoder, padding) and task (submission shape, identical rows);
- sft (instruction tuning of a causal LM): sft (the phases), with sft_data (response-only labels).

Shared by both: runfolder (``<output>.partial``, publishing, ``[train]`` → TrainingArguments),
model (PEFT targets), numerics (precision, the non-finite guard), loglines (the log lines), plots
(matplotlib Agg), splits (folds and holdout splits). Heavy imports happen inside functions, so
importing this package loads no torch.
"""
from __future__ import annotations


def run_training(cfg, fold=None, resume=False, log=print, allow_kind_from_data=False, callbacks=()):
    """Train one fold (``fold`` or ``cfg.data.fold``) and write the run folder ``cfg.train.output``.

    ``task.kind = "sft"`` (instruction tuning of a causal LM) goes to :func:`kaggle_kit.train.sft.run_sft`,
    every other kind to :func:`kaggle_kit.train.classifier.run_classifier` (with ``callbacks``: extra TrainerCallbacks)."""
    if cfg.task.kind == "sft":
        from .sft import run_sft

        return run_sft(cfg, log=log, fold=fold, resume=resume)
    from .classifier import run_classifier

    return run_classifier(cfg, fold=fold, resume=resume, log=log, allow_kind_from_data=allow_kind_from_data, callbacks=callbacks)


def __getattr__(name):
    if name == "TrainResult":
        from .classifier import TrainResult

        return TrainResult
    if name in ("plan_run", "Plan"):
        from . import plan

        return getattr(plan, name)
    if name in ("run_sft", "SFTResult"):
        from . import sft

        return getattr(sft, name)
    raise AttributeError(name)


__all__ = ["run_training", "TrainResult"]

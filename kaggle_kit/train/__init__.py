"""Fine-tuning: `run_training(cfg, fold=None, resume=False, log=print) -> TrainResult`.

Modules: data (examples through runtime.prompting.Encoder, padding), model (base + PEFT), metrics
(numpy), plots (matplotlib Agg), runner (Trainer, run folder). Heavy imports happen inside functions.
"""
from __future__ import annotations


def run_training(cfg, fold=None, resume=False, log=print, **kwargs):
    """Train one fold and write the run folder; see :func:`kaggle_kit.train.runner.run_training`."""
    from .runner import run_training as _run

    return _run(cfg, fold=fold, resume=resume, log=log, **kwargs)


def __getattr__(name):
    if name in ("TrainResult", "plan_run", "Plan"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)


__all__ = ["run_training", "TrainResult"]

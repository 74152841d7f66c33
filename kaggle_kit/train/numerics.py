"""Numerics of a training run: the precision per device, settings as applied, and the non-finite stop.

:func:`choose_precision` resolves ``train.precision`` for this process's device with the one rule of
:mod:`kaggle_kit.runtime.precision` (shared with prediction and generation).

Stop training on a non-finite loss or non-finite evaluation metrics, naming the step and the likely
cause. A NaN/inf loss never recovers by itself: AdamW spreads it into every trained weight on the next
step, every later evaluation says ``log_loss nan``, and the saved adapter predicts garbage. The
Trainer does not stop (and by default hides it: ``logging_nan_inf_filter=True`` replaces a
non-finite logged loss with the window's mean), so :func:`nonfinite_guard` checks

- the loss of every optimizer step's micro-batches (``on_step_end``, from the model's last output
  through :meth:`NonFiniteGuard.record_loss`, which the kit's Trainer calls), and
- every logged loss and every evaluation metric (``on_log`` / ``on_evaluate``),

and raises :class:`NonFiniteTraining` (a KitError: an ``Error:`` line, exit 2). The run folder is
then left as ``<output>.partial`` and never renamed into a finished run.
"""
from __future__ import annotations

import math
import os
from typing import Optional

from kaggle_kit.errors import KitError


def training_device() -> str:
    """The device this process trains on: its LOCAL_RANK GPU, else the CPU."""
    import torch

    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"


def choose_precision(name: str, device: Optional[str] = None) -> str:
    """train.precision resolved for ``device`` (default: :func:`training_device`) by
    :func:`kaggle_kit.runtime.precision.resolve_precision`; a value the device cannot honour is a KitError."""
    from kaggle_kit.runtime.precision import resolve_precision

    try:
        return resolve_precision(name, device or training_device())
    except ValueError as exc:
        raise KitError(str(exc)) from None


def swap_applied(cfg, kind: str) -> bool:
    """train.swap_augment takes effect for pairwise (A/B) tasks only (what the manifest records)."""
    return bool(cfg.train.swap_augment and kind == "pairwise")


def guard_context(cfg, precision: str, partial) -> dict:
    """What :func:`likely_cause` needs to name a non-finite loss's likely cause."""
    return {"dtype": cfg.model.dtype, "precision": precision, "learning_rate": cfg.train.learning_rate,
            "quantization": cfg.quantization.mode, "partial": str(partial)}


class NonFiniteTraining(KitError):
    """Training produced a NaN/inf loss or metric."""


def _bad(values: dict) -> dict:
    out = {}
    for k, v in (values or {}).items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(f):
            out[k] = f
    return out


def likely_cause(context: dict) -> str:
    """A short diagnosis from the run's settings (model dtype, precision, learning rate, quantization)."""
    dtype, precision = context.get("dtype", "auto"), context.get("precision", "")
    lr, quant = context.get("learning_rate"), context.get("quantization", "none")
    causes = []
    if dtype in ("float16", "fp16") or precision == "fp16":
        causes.append(f"float16 numerics (model.dtype = {dtype!r}, precision {precision}): Gemma-2-like models "
                      f"overflow float16's 65,504 range; use precision bf16 on a GPU with compute capability 8.0+, or "
                      f"model.dtype = 'float32' with precision fp16 (mixed precision)")
    elif dtype in ("bfloat16", "bf16") or precision == "bf16":
        causes.append(f"bfloat16 numerics (model.dtype = {dtype!r}, precision {precision})")
    if lr is not None:
        causes.append(f"a learning rate too high for this model (train.learning_rate = {lr:g}; try 10x lower, "
                      f"with warm-up and train.max_grad_norm = 1.0)")
    if quant not in ("none", "", None):
        causes.append(f"{quant} quantization with a half-precision compute dtype (quantization.compute_dtype)")
    causes.append("or non-finite values in the data/labels")
    return "; ".join(causes)


def describe(what: str, step: int, context: dict) -> str:
    partial = context.get("partial")
    where = f" The unfinished run stays in {partial} (not published as a finished run folder)." if partial else ""
    return (f"training stopped at step {step}: {what}. Likely cause: {likely_cause(context)}.{where}")


def nonfinite_guard(context: dict):
    """A TrainerCallback raising :class:`NonFiniteTraining` on the first non-finite loss or metric.

    ``context``: dtype, precision, learning_rate, quantization, partial (the folder left behind)."""
    from transformers import TrainerCallback

    class NonFiniteGuard(TrainerCallback):
        def __init__(self):
            self.step_losses: list = []

        def record_loss(self, loss) -> None:
            """Called with each micro-batch's detached loss (a tensor or float)."""
            self.step_losses.append(loss)

        def on_step_end(self, args, state, control, **kw):
            losses, self.step_losses = self.step_losses, []
            for loss in losses:
                value = float(loss.detach().float().sum()) if hasattr(loss, "detach") else float(loss)
                if not math.isfinite(value):
                    raise NonFiniteTraining(describe(f"the training loss is {value}", state.global_step, context))

        def on_log(self, args, state, control, logs=None, **kw):
            # training losses only: under fp16 loss scaling an inf grad_norm is a normal skipped step, and
            # evaluation metrics are logged just before on_evaluate, which names them as such
            bad = _bad({k: v for k, v in (logs or {}).items() if "loss" in k and not k.startswith("eval_")})
            if bad:
                raise NonFiniteTraining(describe(f"logged {_show(bad)}", state.global_step, context))

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            bad = _bad({k: v for k, v in (metrics or {}).items() if not k.endswith(("_runtime", "_per_second"))})
            if bad:
                raise NonFiniteTraining(describe(f"the evaluation gave {_show(bad)}", state.global_step, context))

    return NonFiniteGuard()


def _show(bad: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in bad.items())


def check_final(metrics: dict, step: int, context: dict, what: str = "the final evaluation") -> None:
    """Raise :class:`NonFiniteTraining` when the scalar ``metrics`` of ``what`` hold NaN/inf."""
    bad = _bad({k: v for k, v in (metrics or {}).items() if not isinstance(v, (dict, list))})
    if bad:
        raise NonFiniteTraining(describe(f"{what} gave {_show(bad)}", step, context))


def guard_of(callbacks) -> Optional[object]:
    for cb in callbacks or []:
        if hasattr(cb, "record_loss"):
            return cb
    return None


def guarded_trainer(base):
    """A subclass of the Trainer class ``base`` that hands each micro-batch's loss to the guard callback."""

    class Guarded(base):
        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            guard = guard_of(self.callback_handler.callbacks)
            if guard is not None:
                guard.record_loss(loss)
            return loss

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded

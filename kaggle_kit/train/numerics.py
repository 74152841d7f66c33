"""Numerics of a training run: the precision per device, settings as applied, and the non-finite stop.

:func:`choose_precision` resolves ``train.precision`` for this process's device with the one rule of
:mod:`kaggle_kit.runtime.precision` (shared with prediction and generation); :func:`training_numerics`
derives from it the dtype the base loads in and the 4-bit / 8-bit compute dtype (float16 on a T4, never
an emulated bfloat16), keeping a dtype the user set, and says for each value who chose it (logged, and
recorded in the manifest's ``training.numerics``). The classifier and the SFT recipe both use it.

Stop training on a non-finite loss or a non-finite selection metric, naming the step, what went
non-finite and the likely cause. Metrics the validation rows cannot define (ROC AUC on one class)
are not NaN (see :mod:`kaggle_kit.runtime.metrics`) and are not watched. A NaN/inf loss never
recovers by itself: AdamW spreads it into every trained weight on the next step, every later
evaluation says ``log_loss nan``, and the saved adapter predicts garbage. The Trainer does not stop
(and by default hides it: ``logging_nan_inf_filter=True`` replaces a non-finite logged loss with the
window's mean), so :func:`nonfinite_guard` checks

- the loss of every optimizer step's micro-batches (``on_step_end``, from the model's last output
  through :meth:`NonFiniteGuard.record_loss`, which the kit's Trainer calls), and
- every logged training loss (``on_log``), and each evaluation's loss and selection metric
  (``on_evaluate``; the context's ``metric``),

and raises :class:`NonFiniteTraining` (a KitError: an ``Error:`` line, exit 2). The run folder is
then left as ``<output>.partial`` and never renamed into a finished run.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
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


@dataclass
class Numerics:
    """How a training run computes; each ``*_by`` says who chose the value: 'rule' (the device's precision,
    :mod:`kaggle_kit.runtime.precision`) or 'user' (kit.toml). ``compute_dtype``: quantized bases only;
    ``quantization``: the [quantization] settings as applied (compute dtype resolved)."""

    device: str
    compute_capability: Optional[str]
    precision: str
    precision_by: str
    base_dtype: str
    base_dtype_by: str
    compute_dtype: Optional[str]
    compute_dtype_by: Optional[str]
    quantization: dict

    def record(self) -> dict:
        """What the manifest's ``training.numerics`` holds."""
        out = asdict(self)
        out.pop("quantization")
        return out

    def describe(self) -> str:
        """One log line's worth: 'precision fp16 (rule: cuda:0 has compute capability 7.5, no native bf16); …'."""
        from kaggle_kit.runtime.precision import DTYPE_OF

        rule_dtype = DTYPE_OF[self.precision]
        if self.precision_by == "user":
            parts = [f"precision {self.precision} (train.precision = {self.precision!r}, your setting)"]
        elif self.compute_capability is None:
            parts = [f"precision {self.precision} (rule: {self.device} has no GPU half precision)"]
        else:
            native = "native bf16" if self.precision == "bf16" else "no native bf16"
            parts = [f"precision {self.precision} (rule: {self.device} has compute capability {self.compute_capability}, {native})"]
        parts.append(_dtype_words("model.dtype", "base weights", self.base_dtype, self.base_dtype_by, rule_dtype, self))
        if self.compute_dtype is not None:
            mode = self.quantization.get("mode")
            parts.append(_dtype_words("quantization.compute_dtype", f"{mode} compute", self.compute_dtype,
                                      self.compute_dtype_by, rule_dtype, self))
        return "; ".join(parts)


def _dtype_words(setting: str, what: str, dtype: str, by: str, rule_dtype: str, numerics: Numerics) -> str:
    if by == "rule":
        return f"{what} {dtype} (rule)"
    text = f"{setting} = {dtype!r} (your setting; the rule would pick {rule_dtype})"
    cap = numerics.compute_capability
    if dtype == "bfloat16" and cap is not None and tuple(int(x) for x in cap.split(".")) < (8, 0):
        text += f" - bf16 is emulated on compute capability {cap}, slower than float16"
    return text


def training_numerics(cfg, device: Optional[str] = None) -> Numerics:
    """The precision, base dtype and quantized compute dtype this process trains with (see the module docstring).

    Base dtype: ``model.dtype`` when set, else the compute dtype of a quantized base, else the precision's
    dtype. Compute dtype (4-bit / 8-bit): ``quantization.compute_dtype`` when set, else the precision's."""
    from kaggle_kit.runtime.precision import device_capability, dtype_by_rule

    device = device or training_device()
    precision = choose_precision(cfg.train.precision, device)
    cap = device_capability(device)
    quant = asdict(cfg.quantization)
    quantized = quant.get("mode", "none") != "none"
    compute, compute_by = dtype_by_rule(quant.get("compute_dtype"), precision)
    quant["compute_dtype"] = compute
    if cfg.model.dtype not in (None, "", "auto"):
        base, base_by = dtype_by_rule(cfg.model.dtype, precision)
    elif quantized:
        base, base_by = compute, compute_by
    else:
        base, base_by = dtype_by_rule("auto", precision)
    return Numerics(device, f"{cap[0]}.{cap[1]}" if cap else None, precision,
                    "rule" if (cfg.train.precision or "auto") == "auto" else "user", base, base_by,
                    compute if quantized else None, compute_by if quantized else None, quant)


def swap_applied(cfg, kind: str) -> bool:
    """train.swap_augment takes effect for pairwise (A/B) tasks only (what the manifest records)."""
    return bool(cfg.train.swap_augment and kind == "pairwise")


def guard_context(cfg, numerics: Numerics, partial, metric: str = "loss") -> dict:
    """What the guard watches (the loss and the selection ``metric``) and what :func:`likely_cause` needs."""
    return {"dtype": numerics.base_dtype, "precision": numerics.precision, "learning_rate": cfg.train.learning_rate,
            "quantization": cfg.quantization.mode, "compute_dtype": numerics.compute_dtype, "partial": str(partial),
            "metric": metric}


def watched(values: dict, metric: str, prefix: str = "") -> dict:
    """The entries of ``values`` the non-finite stop looks at: losses and the selection ``metric``.
    Other metrics may be undefined on the rows (see runtime.metrics) and never stop training."""
    keys = {f"{prefix}loss", f"{prefix}{metric}", f"{prefix}log_loss"} if metric else {f"{prefix}loss"}
    return {k: v for k, v in (values or {}).items() if k in keys}


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
        compute = context.get("compute_dtype")
        causes.append(f"{quant} quantization with a half-precision compute dtype (quantization.compute_dtype"
                      + (f", {compute} in this run)" if compute else ")"))
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
            bad = _bad(watched(metrics, context.get("metric", "loss"), "eval_"))
            if bad:
                raise NonFiniteTraining(describe(f"the evaluation gave {_show(bad)}{_rows(metrics)}", state.global_step, context))

    return NonFiniteGuard()


def _show(bad: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in bad.items())


def _rows(metrics: dict) -> str:
    """' (12 validation rows with non-finite model outputs)' when the metrics counted any."""
    n = next((v for k, v in (metrics or {}).items() if k.endswith("nonfinite_rows")), 0)
    return f" ({int(n)} validation rows with non-finite model outputs)" if n else ""


def check_final(metrics: dict, step: int, context: dict, what: str = "the final evaluation") -> None:
    """Raise :class:`NonFiniteTraining` when the loss or the selection metric of ``what`` is NaN/inf."""
    metric = context.get("metric", "loss")
    bad = _bad({**watched(metrics, metric), **watched(metrics, metric, "eval_")})
    if bad:
        raise NonFiniteTraining(describe(f"{what} gave {_show(bad)}{_rows(metrics)}", step, context))


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

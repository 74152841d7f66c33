"""The training log: one line per logging step and per evaluation, for classifiers and SFT alike.

Line shapes (what tests assert and a competitor reads in a terminal, a notebook or CI log)::

    [train] step 10/40 epoch 0.50 | loss 1.0912 grad_norm 1.234 lr 2.00e-04 | 812 tokens/s 3.1 samples/s | elapsed 0:12 ETA 0:36
    [eval]  step 20/40 epoch 1.00 | log_loss 1.0901 accuracy 0.6100 macro_f1 0.5900 micro_f1 0.6100 val_loss 1.0901 | 95.3 rows/s 9,000 tokens/s | elapsed 0:25 ETA 0:25
    [final] best checkpoint (step 20) on 60 validation rows -> oof.csv
    [train] heartbeat: step 3/40 | 21.5 s/step | elapsed 1:04 ETA 13:20

A run first says what to expect (``[train] starting: 40 steps to step 40; a line after step 1, then every
10 steps, and at least every 60 s``); whenever it has printed nothing for :data:`HEARTBEAT_S` seconds (slow
steps on a CPU, a long evaluation) a heartbeat line says how far it is, from a background thread.

The Trainer's own printers (``PrinterCallback`` prints raw dicts such as ``{'loss': '1.068'}``,
``ProgressCallback`` draws bars and writes the same dicts into them) are removed by
:func:`install`; on a terminal this callback draws its own bars (training steps, evaluation
batches), elsewhere it prints lines only (see :mod:`kaggle_kit.runtime.progress`).
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from kaggle_kit.runtime.progress import duration, style

# eval_* keys that are bookkeeping, not metrics
_EVAL_BOOKKEEPING = {"eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch", "eval_model_preparation_time"}
_TRAIN_BOOKKEEPING = {"epoch", "step", "total_flos", "num_input_tokens_seen", "train_tokens_per_second"}
# a training run that has printed nothing for this long prints a heartbeat line (steps done, time per step, ETA)
HEARTBEAT_S = 60.0


def fmt(v) -> str:
    """4 decimals for metrics; scientific for small rates (learning rate); thousands separators for big numbers."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"


def metric_text(metrics: dict, first: str = "", prefix: str = "eval_", undefined: Optional[dict] = None) -> str:
    """``name value`` pairs, the task metric first, each name once; ``eval_loss`` shown as ``val_loss``;
    then each metric the rows cannot define as ``name undefined (reason)`` (never a bare ``nan``)."""
    names = []
    if first and f"{prefix}{first}" in metrics:
        names.append(f"{prefix}{first}")
    for k, v in metrics.items():
        if k.startswith(prefix) and k not in _EVAL_BOOKKEEPING and isinstance(v, (int, float)) and not isinstance(v, bool):
            names.append(k)
    out = []
    for k in dict.fromkeys(names):
        short = k[len(prefix):]
        out.append(f"{'val_loss' if short == 'loss' else short} {fmt(metrics[k])}")
    out += [f"{name} undefined ({why})" for name, why in (undefined or {}).items()]
    return " ".join(out)


def make_callback(log: Callable[[str], None], metric: str = "", val_rows: int = 0, val_tokens: int = 0):
    """A TrainerCallback printing the kit's lines (see the module docstring)."""
    from transformers import TrainerCallback

    class KitLog(LogLines, TrainerCallback):
        """:class:`LogLines` as a TrainerCallback."""

    return KitLog(log, metric, val_rows, val_tokens)


class LogLines:
    """The callback's behaviour (the Trainer's ``on_*`` events → the kit's lines and bars); a mixin, so that
    this module imports no transformers until :func:`make_callback` runs."""

    def __init__(self, log: Callable[[str], None], metric: str = "", val_rows: int = 0, val_tokens: int = 0):
        self.log, self.metric, self.val_rows, self.val_tokens = log, metric, val_rows, val_tokens
        self.mode = style()
        self.t0 = None
        self.eval_time = 0.0
        self.eval_since_log = 0.0
        self.last_t = None
        self.last_step = 0
        self.last_tokens = 0
        self.train_bar = None
        self.eval_bar = None
        self.phase = "eval"  # label of the next prediction pass ("final evaluation -> oof.csv")
        self.best = None
        self.undefined: dict = {}  # step -> {metric: why it is undefined on the validation rows}, filled by the recipe
        self.heartbeat_s = HEARTBEAT_S
        self.first_step = 0
        self.last_said = time.perf_counter()
        self.evaluating = False
        self._stop = threading.Event()
        self._beat = None

    # -- helpers
    def say(self, line: str) -> None:
        self.last_said = time.perf_counter()
        if self.train_bar is not None:
            self.train_bar.write(line)
        else:
            self.log(line)

    def eta(self, state) -> str:
        now = time.perf_counter()
        done = state.global_step
        if not self.t0 or not done or not state.max_steps:
            return f"elapsed {duration(now - self.t0 if self.t0 else 0)}"
        per_step = (now - self.t0) / done
        return f"elapsed {duration(now - self.t0)} ETA {duration(per_step * max(state.max_steps - done, 0))}"

    def head(self, tag: str, state) -> str:
        return f"{tag} step {state.global_step}/{state.max_steps} epoch {state.epoch or 0:.2f}"

    # -- heartbeat: a line at least every `heartbeat_s` while training is silent (slow steps on a CPU)
    def heartbeat_line(self, state) -> str:
        done, now = state.global_step, time.perf_counter()
        elapsed = f"elapsed {duration(now - self.t0 if self.t0 else 0)}"
        if self.evaluating:
            return f"[train] heartbeat: step {done}/{state.max_steps} | evaluating the validation rows | {elapsed}"
        if done <= self.first_step:
            return (f"[train] heartbeat: step {done}/{state.max_steps} | step {done + 1} running (no time estimate before "
                    f"the first step ends) | {elapsed}")
        per_step = (now - self.t0) / (done - self.first_step)
        return f"[train] heartbeat: step {done}/{state.max_steps} | {per_step:,.1f} s/step | {self.eta(state)}"

    def _heartbeat(self, state) -> None:
        while not self._stop.wait(min(5.0, self.heartbeat_s / 4)):
            if time.perf_counter() - self.last_said >= self.heartbeat_s:
                self.say(self.heartbeat_line(state))

    def start_heartbeat(self, state) -> None:
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, args=(state,), name="kit-heartbeat", daemon=True)
        self._beat.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=10)
            self._beat = None

    # -- training
    def on_train_begin(self, args, state, control, **kw):
        self.t0 = self.last_t = time.perf_counter()
        self.last_step, self.last_tokens = state.global_step, state.num_input_tokens_seen or 0
        self.first_step = state.global_step
        if state.is_world_process_zero:
            n = int(args.logging_steps or 1)
            first = f"after step {state.global_step + 1}, then " if getattr(args, "logging_first_step", False) else ""
            self.say(f"[train] starting: {state.max_steps - state.global_step} steps to step {state.max_steps}; a line "
                     f"{first}every {f'{n} steps' if n > 1 else 'step'}, and at least every {self.heartbeat_s:.0f} s")
            self.start_heartbeat(state)
        if self.mode == "bar" and state.is_world_process_zero:
            from kaggle_kit.runtime.progress import Progress

            self.train_bar = Progress(state.max_steps, "train", "step", log=self.log)
            self.train_bar.update(state.global_step)

    def on_step_end(self, args, state, control, **kw):
        if self.train_bar is not None:
            self.train_bar.update(1)

    def on_log(self, args, state, control, logs=None, **kw):
        if not state.is_world_process_zero or not logs:
            return
        if any(k.startswith("eval_") for k in logs):
            return  # on_evaluate prints the evaluation line
        if "train_loss" in logs:  # the Trainer's end-of-training summary
            self.say(f"[train] finished: {state.global_step} steps in {duration(logs['train_runtime'])}, "
                     f"mean training loss {fmt(logs.get('train_loss', float('nan')))}")
            return
        now = time.perf_counter()
        vals = [f"loss {fmt(logs['loss'])}"] if "loss" in logs else []
        if "grad_norm" in logs:
            vals.append(f"grad_norm {fmt(float(logs['grad_norm']))}")
        if "learning_rate" in logs:
            vals.append(f"lr {float(logs['learning_rate']):.2e}")
        vals += [f"{k} {fmt(v)}" for k, v in logs.items()
                 if k not in ("loss", "grad_norm", "learning_rate") and k not in _TRAIN_BOOKKEEPING
                 and not k.startswith("train_") and isinstance(v, (int, float))]
        dt = max(now - (self.last_t or now) - self.eval_since_log, 1e-9)  # training time only
        self.eval_since_log = 0.0
        steps = state.global_step - self.last_step
        samples = steps * args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
        tokens = (state.num_input_tokens_seen or 0) - self.last_tokens
        speed = (f"{tokens / dt:,.0f} tokens/s " if tokens > 0 else "") + f"{samples / dt:,.1f} samples/s"
        self.last_t, self.last_step, self.last_tokens = now, state.global_step, state.num_input_tokens_seen or 0
        self.say(f"{self.head('[train]', state)} | {' '.join(vals)} | {speed} | {self.eta(state)}")

    # -- evaluation bars (terminal only) and lines
    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kw):
        self.evaluating = True
        if self.mode != "bar" or not state.is_world_process_zero:
            return
        if self.eval_bar is None:
            from kaggle_kit.runtime.progress import Progress

            total = len(eval_dataloader) if eval_dataloader is not None and hasattr(eval_dataloader, "__len__") else None
            self.eval_bar = Progress(total, self.phase, "batch", log=self.log)
        self.eval_bar.update(1)

    def _close_eval_bar(self):
        self.evaluating = False
        if self.eval_bar is not None:
            self.eval_bar.close(summary=False)  # the [eval] line follows
            self.eval_bar = None

    def on_predict(self, args, state, control, metrics=None, **kw):
        self._close_eval_bar()

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        self._close_eval_bar()
        if not state.is_world_process_zero or not metrics:
            return
        runtime = float(metrics.get("eval_runtime", 0.0) or 0.0)
        self.eval_time += runtime
        self.eval_since_log += runtime
        speed = []
        if runtime > 0:
            rows = self.val_rows or metrics.get("eval_samples_per_second", 0) * runtime
            speed.append(f"{rows / runtime:,.1f} rows/s")
            if self.val_tokens:
                speed.append(f"{self.val_tokens / runtime:,.0f} tokens/s")
        text = metric_text(metrics, self.metric, undefined=self.undefined.get(state.global_step))
        self.say(f"{self.head('[eval] ', state)} | {text} | {' '.join(speed) or '-'} | {self.eta(state)}")

    def on_train_end(self, args, state, control, **kw):
        self.stop_heartbeat()
        if self.train_bar is not None:
            self.train_bar.close(summary=False)
            self.train_bar = None
        self.phase = "final evaluation -> oof.csv"


def install(trainer, callback) -> None:
    """Replace the Trainer's printers (raw dicts, bars in notebooks) with ``callback``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    printers = [PrinterCallback, ProgressCallback]
    try:  # the Jupyter variant, picked by the Trainer when it runs in a notebook with disable_tqdm off
        from transformers.utils.notebook import NotebookProgressCallback

        printers.append(NotebookProgressCallback)
    except ImportError:  # pragma: no cover
        pass
    for cls in printers:
        trainer.remove_callback(cls)
    trainer.add_callback(callback)


def final_line(best_step: Optional[int], rows: int, target: str = "oof.csv") -> str:
    where = f"best checkpoint (step {best_step})" if best_step is not None else "last checkpoint"
    return f"[final] {where} on {rows:,} validation rows -> {target}"

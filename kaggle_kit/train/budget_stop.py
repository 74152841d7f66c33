"""One time budget for a kernel that trains and then predicts: how it splits, and the callback that stops
training at its share with the best checkpoint so far kept.

The split (:func:`split_budget`) is a plan of absolute deadlines measured from the kernel's start, on
one clock (``time.monotonic`` in a real run, a fake one in the tests): training ends at
``train_share`` of the budget (the first round at ``1 - pseudo_round_share`` of that when a pseudo-label
round follows); prediction gets whatever is left, and degrades as `kit predict` does under a budget.

:func:`budget_stop_callback` is a ``transformers.TrainerCallback``: at each step's end it projects the
next step (the longest step so far) plus the evaluation and checkpoint that end the run (the longest
seen so far) and, when that would pass the deadline, asks the Trainer to evaluate, save and stop. With
``load_best_model_at_end`` (the classifier recipe sets it) the run folder then holds the best
checkpoint so far, never a half-trained last state.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

# Kaggle notebook limits of code competitions (minutes), where the competition's page says so; others take
# Kaggle's usual 9 hours. Jigsaw – Agile Community Rules Classification (2025): "CPU/GPU Notebook <= 12 hours".
COMPETITION_LIMIT_MINUTES = {"jigsaw-agile-community-rules": 720}
DEFAULT_LIMIT_MINUTES = 540
LIMIT_SAFETY = 0.9  # the default budget leaves 10% of the limit for installing, loading and writing


def default_budget(competition: str) -> tuple:
    """(minutes, why) when ``test_time.budget_minutes`` is 0: the competition's notebook limit less 10%."""
    if competition in COMPETITION_LIMIT_MINUTES:
        limit, where = COMPETITION_LIMIT_MINUTES[competition], f"{competition}'s notebook limit"
    else:
        limit, where = DEFAULT_LIMIT_MINUTES, f"Kaggle's usual notebook limit (competition {competition or 'unset'} not in the kit's list)"
    return limit * LIMIT_SAFETY, f"{LIMIT_SAFETY:.0%} of {where} of {limit} minutes (test_time.budget_minutes = 0)"


@dataclass
class BudgetPlan:
    """Seconds from the start: where each phase must end. ``round2_end`` is None without a pseudo-label round."""

    total_s: float
    train_share: float
    round1_end: float
    train_end: float
    round2_s: float = 0.0
    why: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def predict_s(self) -> float:
        return self.total_s - self.train_end


def split_budget(total_minutes: float, train_share: float, pseudo: bool = False, pseudo_round_share: float = 0.35,
                 why: str = "") -> BudgetPlan:
    """The plan for ``total_minutes``: training until ``train_share`` of it (a pseudo-label round takes the last
    ``pseudo_round_share`` of the training time), the rest for prediction."""
    if total_minutes <= 0:
        raise ValueError(f"test_time.budget_minutes = {total_minutes}: the budget must be positive")
    if not 0.0 < train_share < 1.0:
        raise ValueError(f"test_time.train_share = {train_share}: use a share strictly between 0 and 1 (prediction needs time too)")
    if pseudo and not 0.0 < pseudo_round_share < 1.0:
        raise ValueError(f"test_time.pseudo_round_share = {pseudo_round_share}: use a share strictly between 0 and 1")
    total = float(total_minutes) * 60.0
    train_end = total * train_share
    round2 = train_end * pseudo_round_share if pseudo else 0.0
    return BudgetPlan(total, train_share, train_end - round2, train_end, round2, why)


@dataclass
class StopRecord:
    """What the budget callback saw and did (written to the run's JSON)."""

    deadline_s: float
    stopped: bool = False
    stop_step: Optional[int] = None
    stop_reason: str = ""
    steps: int = 0
    longest_step_s: float = 0.0
    longest_eval_s: float = 0.0
    events: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def round_summary(res, record: StopRecord, world_size: int = 1) -> dict:
    """What one budgeted fine-tune did (``res``: run_training's result): steps, best step and metric, rows, the
    budget callback's record and the number of processes — the same keys in one process and from a DDP rank 0."""
    return {"steps": res.metrics.get("global_step"), "best_step": res.best_step, "metric": res.metrics.get("metric"),
            "best_metric": res.metrics.get("best_metric"), "rows": res.metrics.get("rows"),
            "budget_stop": record.to_dict(), "world_size": int(world_size)}


def _any_rank(flag: bool) -> bool:
    """``flag`` of this process, or of any process of a data-parallel run: ranks must stop at the same step, else
    the ones still stepping wait forever for the others in the next gradient all-reduce."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return bool(flag)
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def budget_stop_callback(deadline: float, clock: Callable[[], float] = time.monotonic, log: Callable = print,
                         start: Optional[float] = None):
    """(callback, StopRecord): a TrainerCallback that stops training before ``deadline`` (a ``clock()`` value).

    ``start``: the clock value the deadline counts from (for the log lines; default: the first reading)."""
    from transformers import TrainerCallback

    record = StopRecord(deadline_s=deadline)
    origin = clock() if start is None else start

    class BudgetStop(TrainerCallback):
        """Evaluate, save and stop when the next step and the final evaluation would pass the deadline."""

        def __init__(self):
            self.last = None
            self.eval_from = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = clock()

        def on_step_end(self, args, state, control, **kwargs):
            now = clock()
            record.steps = state.global_step
            record.longest_step_s = max(record.longest_step_s, now - (self.last if self.last is not None else now))
            self.last = now
            projected = now + record.longest_step_s + record.longest_eval_s
            if _any_rank(projected >= deadline) and not control.should_training_stop:
                control.should_evaluate = control.should_save = control.should_training_stop = True
                record.stopped, record.stop_step = True, state.global_step
                record.stop_reason = (f"step {state.global_step}: {now - origin:.0f}s of the run spent; the next step "
                                      f"({record.longest_step_s:.1f}s) and the final evaluation ({record.longest_eval_s:.1f}s) "
                                      f"would pass the training deadline at {deadline - origin:.0f}s")
                log(f"budget: training stops at {record.stop_reason}; evaluating and keeping the best checkpoint so far")
            if control.should_evaluate:
                self.eval_from = now
            return control

        def on_evaluate(self, args, state, control, **kwargs):
            if self.eval_from is not None:
                took = clock() - self.eval_from
                record.longest_eval_s = max(record.longest_eval_s, took)
                record.events.append({"step": state.global_step, "eval_s": round(took, 3)})
                self.eval_from = None
            self.last = clock()  # the evaluation is not part of the next step

    return BudgetStop(), record

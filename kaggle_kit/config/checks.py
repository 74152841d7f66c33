"""Checks across fields that a key-by-key load cannot make (ranges, metric names, ensemble weights, ...)."""
from __future__ import annotations

from kaggle_kit.config.problems import _nearest
from kaggle_kit.config.sections import InstanceConfig, KitConfig


def _cross_checks(cfg: KitConfig) -> list[str]:
    problems = []
    if cfg.prompt.max_length < 16:
        problems.append(f"'prompt.max_length' = {cfg.prompt.max_length} is too small; use at least 16 (typical: 1024-2048)")
    if len(cfg.prompt.shares) != 3 or not all(isinstance(s, (int, float)) and s >= 0 for s in cfg.prompt.shares) or sum(cfg.prompt.shares) <= 0:
        problems.append(f"'prompt.shares' = {cfg.prompt.shares!r} must be three non-negative numbers (prompt, A, B), e.g. [1, 1, 1]")
    if not 0.0 <= cfg.prompt.head_fraction <= 1.0:
        problems.append(f"'prompt.head_fraction' = {cfg.prompt.head_fraction} must lie in [0, 1]")
    if cfg.data.folds < 2 and cfg.data.val_fraction <= 0:
        problems.append(f"'data.folds' = {cfg.data.folds} must be at least 2 (or set data.val_fraction)")
    if not 0 <= cfg.data.fold < max(cfg.data.folds, 1):
        problems.append(f"'data.fold' = {cfg.data.fold} is out of range 0..{cfg.data.folds - 1}")
    import re as _re

    if not (cfg.task.metric in ("log_loss", "accuracy", "macro_f1", "micro_f1", "subset_accuracy", "auc", "average_precision")
            or _re.match(r"^map@[1-9][0-9]*$", cfg.task.metric)):
        problems.append(f"'task.metric' = {cfg.task.metric!r}: use log_loss, accuracy, macro_f1, micro_f1, subset_accuracy, "
                        f"auc, average_precision or map@K (e.g. map@3)")
    if cfg.submission.top_k < 0:
        problems.append(f"'submission.top_k' = {cfg.submission.top_k} must be 0 (from the sample) or more")
    bad_shares = {k: v for k, v in cfg.prompt.field_shares.items() if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0}
    if bad_shares:
        problems.append(f"'prompt.field_shares' = {bad_shares!r}: each share must be a non-negative number")
    if not 0.0 <= cfg.inference.max_unpredicted_share <= 1.0:
        problems.append(f"'inference.max_unpredicted_share' = {cfg.inference.max_unpredicted_share} must lie in [0, 1] (e.g. 0.01)")
    tta = cfg.inference.tta
    if tta not in ("none", "all") and not tta.startswith("uncertain:"):
        problems.append(f"'inference.tta' = {tta!r}: use none, all or uncertain:FRACTION (e.g. uncertain:0.3)")
    elif tta.startswith("uncertain:"):
        try:
            frac = float(tta.split(":", 1)[1])
            if not 0 < frac <= 1:
                raise ValueError
        except ValueError:
            problems.append(f"'inference.tta' = {tta!r}: the fraction must be in (0, 1], e.g. uncertain:0.3")
    ens = cfg.ensemble
    if ens.weights and ens.members and len(ens.weights) != len(ens.members):
        problems.append(f"'ensemble.weights' has {len(ens.weights)} value(s) for {len(ens.members)} member(s); give one weight per member, in order")
    if any(not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0 for w in ens.weights) or (ens.weights and sum(ens.weights) <= 0):
        problems.append(f"'ensemble.weights' = {ens.weights!r} must be non-negative numbers with a positive sum, e.g. [0.6, 0.4]")
    problems += _test_time_checks(cfg.test_time)
    for name, inst in cfg.instances.items():
        if not isinstance(inst, InstanceConfig):
            continue
        if inst.version != "latest" and not str(inst.version).isdigit():
            problems.append(f"'instances.{name}.version' = {inst.version!r} must be an integer or 'latest'")
    for name, kernel in cfg.kernels.items():
        for inst in kernel.instances:
            if inst not in cfg.instances:
                problems.append(
                    f"'kernels.{name}.instances' names {inst!r}, which is not a table [instances.{inst}]"
                    f"{_nearest(inst, list(cfg.instances)) if cfg.instances else ''}"
                )
    return problems


def _test_time_checks(tt) -> list[str]:
    """[test_time] ranges, checked at load so that `kit render` refuses what would fail inside the kernel."""
    problems = []
    if tt.nproc < 0:
        problems.append(f"'test_time.nproc' = {tt.nproc}: use 0 (one process per visible GPU), 1 (the notebook's process) "
                        "or N > 1 (data-parallel)")
    if tt.budget_minutes < 0:
        problems.append(f"'test_time.budget_minutes' = {tt.budget_minutes:g}: use 0 (the competition's notebook limit less 10%) "
                        "or a positive number of minutes")
    for name, zero_ok, example in (("train_share", False, 0.6), ("pseudo_round_share", False, 0.35),
                                   ("pseudo_label_share", True, 0.25)):
        value = getattr(tt, name)
        if not (0.0 <= value < 1.0) or (value == 0.0 and not zero_ok):
            problems.append(f"'test_time.{name}' = {value:g} must lie in {'[0' if zero_ok else '(0'}, 1) (e.g. {example})")
    return problems

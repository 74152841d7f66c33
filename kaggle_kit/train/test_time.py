"""Test-time training: mine the test file's labelled examples, fine-tune on them within a share of one time
budget, predict the test file with the same engine, always write the submission (`train-predict` notebook).

The phases of :func:`run_test_time`, each a function here:

1. the budget plan (`train.budget_stop.split_budget`: training ends at ``test_time.train_share`` of it);
2. mining (`kaggle_kit.data.mine`): the examples become ``<work>/ttt.csv``, counted and listed;
3. training (`kaggle_kit.train.run_training`) on that file, stopped at its deadline by
   `train.budget_stop.budget_stop_callback` with the best checkpoint so far kept;
4. optionally a pseudo-label round (``test_time.pseudo_label_share``): a first prediction, the most
   confident test rows join the mined rows with their predicted label (:func:`pseudo_label_rows`), a
   second, shorter fine-tune inside the training share;
5. the prediction (`runtime.infer.predict_file`) with what is left of the budget: the submission is
   written whatever happens, degraded as `kit predict` degrades under a budget.

Every decision goes to the log and to ``<work>/test_time.json`` (the run's JSON).
"""
from __future__ import annotations

import copy
import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from kaggle_kit.errors import KitError

from kaggle_kit.data.mine import SOURCE_COLUMN

from .budget_stop import budget_stop_callback, default_budget, round_summary, split_budget


@dataclass
class TestTimeResult:
    """What :func:`run_test_time` did; ``to_dict()`` is the run's JSON."""

    submission: Path
    adapter: Path
    budget: dict
    mining: dict
    rounds: list = field(default_factory=list)  # one per fine-tune: rows, steps, stop record, seconds, metrics
    prediction: dict = field(default_factory=dict)
    pseudo: dict = field(default_factory=dict)
    decisions: list = field(default_factory=list)
    seconds: float = 0.0
    too_many_unpredicted: bool = False

    def to_dict(self) -> dict:
        return {"submission": str(self.submission), "adapter": str(self.adapter), "budget": self.budget, "mining": self.mining,
                "rounds": self.rounds, "pseudo": self.pseudo, "prediction": self.prediction, "decisions": self.decisions,
                "seconds": round(self.seconds, 2), "too_many_unpredicted": self.too_many_unpredicted}


def run_test_time(cfg, test_file, work_dir, submission, *, base_path=None, clock: Callable[[], float] = time.monotonic,
                  start: Optional[float] = None, log: Callable = print, progress: bool = False) -> TestTimeResult:
    """Mine, fine-tune, (pseudo-label and fine-tune again,) predict ``test_file`` into ``submission``.

    ``cfg``: the project's KitConfig (``[test_time]``, ``[train]``, ``[inference]``, …); ``work_dir`` receives
    ``ttt.csv``, the run folders and ``test_time.json``; ``base_path`` overrides model.path (the notebook's
    mounted base); ``clock`` measures the budget (a fake one in tests), from ``start`` (a clock value, e.g. the
    kernel's first cell; default: now)."""
    t0 = clock() if start is None else start
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    decisions: list = []

    def decide(msg: str) -> None:
        decisions.append(msg)
        log(msg)

    cfg = _checked_config(cfg, test_file, base_path, decide)
    plan = _plan(cfg, decide)
    mined = _mine(cfg, test_file, work, decide)
    result = TestTimeResult(Path(submission), work / "run", plan.to_dict(), mined.to_dict(), decisions=decisions)
    tt = cfg.test_time
    first_end = plan.round1_end if tt.pseudo_label_share > 0 else plan.train_end
    rnd = _fine_tune(cfg, work / "ttt.csv", work / "run", t0 + first_end, clock, t0, log, decide)
    result.rounds.append(rnd)
    if tt.pseudo_label_share > 0:
        result.adapter, result.pseudo = _pseudo_round(cfg, test_file, work, mined, plan, t0, clock, log, decide, result)
    result.prediction = _predict(cfg, result.adapter, test_file, submission, base_path, plan, t0, clock, log, decide, progress)
    result.too_many_unpredicted = bool(result.prediction.get("too_many_unpredicted"))
    result.seconds = clock() - t0
    (work / "test_time.json").write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    log(f"test-time run: {result.seconds:.0f}s of a {plan.total_s:.0f}s budget; submission {submission}; "
        f"the run's JSON {work / 'test_time.json'}")
    return result


def _checked_config(cfg, test_file, base_path, decide: Callable):
    """A copy of ``cfg`` for this run: the mounted base as model.path, the sample submission found beside the test file."""
    if cfg.task.kind not in ("classification", "multilabel"):
        raise KitError(f"task.kind = {cfg.task.kind!r}: test-time training mines labelled rows for a classifier "
                       f"(classification or multilabel)")
    if not cfg.test_time.examples:
        raise KitError("[test_time] examples is empty: name the test file's example columns and their labels, e.g. "
                       "examples = {positive_example_1 = 1, negative_example_1 = 0}")
    cfg = copy.deepcopy(cfg)
    if base_path:
        cfg.model.path = str(base_path)
    sample = cfg.submission.sample
    if sample and not Path(sample).is_file():
        beside = Path(test_file).parent / Path(sample).name
        if beside.is_file():
            cfg.submission.sample = str(beside)
            decide(f"submission: the sample {sample!r} is not here; using {beside} found beside the test file")
        else:
            cfg.submission.sample = ""
            decide(f"submission: the sample {sample!r} is not here nor beside the test file; the shape follows the task's default")
    return cfg


def _plan(cfg, decide: Callable):
    tt = cfg.test_time
    if tt.budget_minutes > 0:
        minutes, why = tt.budget_minutes, "test_time.budget_minutes"
    else:
        minutes, why = default_budget(cfg.kaggle.competition)
    plan = split_budget(minutes, tt.train_share, pseudo=tt.pseudo_label_share > 0, pseudo_round_share=tt.pseudo_round_share, why=why)
    decide(f"budget: {minutes:g} minutes ({why}): training until {plan.train_end / 60:.1f} min (test_time.train_share = "
           f"{tt.train_share:g})" + (f", the first round until {plan.round1_end / 60:.1f} min and the pseudo-label round "
                                     f"{plan.round2_s / 60:.1f} min (test_time.pseudo_round_share = {tt.pseudo_round_share:g})"
                                     if tt.pseudo_label_share > 0 else "")
           + f"; prediction gets the rest ({plan.predict_s / 60:.1f} min planned)")
    return plan


def _mine(cfg, test_file, work: Path, decide: Callable):
    from kaggle_kit.data.mine import mine_from_config, write_mined

    mined = mine_from_config(cfg, test_file)
    write_mined(mined, work / "ttt.csv")
    for line in mined.summary_lines():
        decide("mining: " + line)
    if not mined.rows:
        raise KitError(f"{test_file}: no training row could be mined (every example empty or duplicate); "
                       f"check [test_time] examples against the file's columns")
    return mined


def _fine_tune(cfg, train_file: Path, output: Path, deadline: float, clock, t0: float, log, decide) -> dict:
    """One fine-tune on ``train_file`` into ``output``, stopped at ``deadline`` (a clock value): its summary."""
    from . import run_training

    run_cfg = copy.deepcopy(cfg)
    run_cfg.data.train, run_cfg.train.output = str(train_file), str(output)
    run_cfg.data.test = ""
    # rows mined from one test row share its examples: keep them on one side of the validation split
    run_cfg.data.group_column = SOURCE_COLUMN
    started = clock()
    nproc = _processes(cfg, decide)
    decide(f"training on {train_file} into {output}; deadline {deadline - t0:.0f}s into the run "
           f"({max(0.0, deadline - started):.0f}s from now)")
    if nproc > 1:
        if clock is not time.monotonic:
            raise KitError("test_time.nproc > 1 trains in other processes, which read time.monotonic: set test_time.nproc = 1 "
                           "to use another clock")
        done = _fine_tune_ddp(run_cfg, output, nproc, deadline, t0, log)
    else:
        callback, record = budget_stop_callback(deadline, clock=clock, log=log, start=t0)
        done = round_summary(run_training(run_cfg, log=log, callbacks=(callback,)), record)
    summary = {"data": str(train_file), "output": str(output), "seconds": round(clock() - started, 2), **done}
    stop = done["budget_stop"]
    if stop["stopped"]:
        decide(f"training stopped by the budget at step {stop['stop_step']}; the run folder holds the best checkpoint so far "
               f"(step {done['best_step']})")
    else:
        decide(f"training finished its {summary['steps']} step(s) before the deadline (best step {done['best_step']})")
    return summary


def _processes(cfg, decide) -> int:
    """test_time.nproc, or (0) one process per visible CUDA device; decided and logged."""
    n = int(cfg.test_time.nproc or 0)  # a negative value is refused when the config loads
    if n == 0:
        import torch

        n = max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1
        why = f"one per visible CUDA device ({n})" if torch.cuda.is_available() else "no CUDA device: the notebook's process"
    else:
        why = "test_time.nproc"
    decide(f"fine-tune processes: {n} ({why}){'; data-parallel (DDP) under torch.distributed.run' if n > 1 else ''}")
    return n


def _fine_tune_ddp(run_cfg, output: Path, nproc: int, deadline: float, t0: float, log) -> dict:
    """The fine-tune in ``nproc`` data-parallel processes (:mod:`kaggle_kit.train.ddp_worker`); rank 0's summary."""
    import subprocess

    import kaggle_kit
    from kaggle_kit.config.toml_writer import render_toml

    from . import ddp_worker  # launched as a module below; imported here so that the notebook embeds it

    output.parent.mkdir(parents=True, exist_ok=True)
    config, spec, result = (output.parent / f"{output.name}{ext}" for ext in (".toml", ".ddp.json", ".ddp-result.json"))
    config.write_text(render_toml(run_cfg) + "\n", encoding="utf-8")
    spec.write_text(json.dumps({"config": str(config), "deadline": deadline, "start": t0, "result": str(result)}), encoding="utf-8")
    result.unlink(missing_ok=True)
    env = dict(os.environ)
    package_root = str(Path(kaggle_kit.__file__).resolve().parent.parent)  # the notebook's runtime folder, or the install
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"  # the ranks' lines reach the notebook as they are printed, not at exit
    cmd = ddp_worker.torchrun_command(nproc, ddp_worker.__name__, [spec])
    log("running: " + " ".join(cmd))
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:  # rank 0's progress lines, as they come
            log(line.rstrip("\n"))
    if proc.returncode != 0 or not result.is_file():
        raise KitError(f"the data-parallel fine-tune ({nproc} processes) failed with exit code {proc.returncode} (its output is "
                       "above); set test_time.nproc = 1 to train in the notebook's process")
    return json.loads(result.read_text(encoding="utf-8"))


def _predict_options(cfg, budget_minutes: Optional[float]) -> dict:
    inf = cfg.inference
    return dict(tta=inf.tta if inf.tta != "none" else None, budget_minutes=budget_minutes, batch_tokens=inf.batch_tokens or None,
                max_batch_rows=inf.max_batch_rows or None, devices=list(inf.devices) or None,
                quantization=inf.quantization or None, max_unpredicted_share=inf.max_unpredicted_share)


def _predict(cfg, adapter: Path, test_file, submission, base_path, plan, t0, clock, log, decide, progress) -> dict:
    """The final prediction with what is left of the budget; the submission is written whatever happens."""
    from kaggle_kit.runtime.infer import predict_file

    left = plan.total_s - (clock() - t0)
    floor = 0.1 * plan.predict_s
    if left < floor:
        decide(f"budget: only {max(left, 0):.0f}s left for prediction (planned {plan.predict_s:.0f}s); it gets a floor of "
               f"{floor:.0f}s (10% of its share) so that the submission is written, rows past it get the fill")
        left = floor
    else:
        decide(f"prediction: {left:.0f}s of the budget left (planned {plan.predict_s:.0f}s)")
    res = predict_file(adapter, test_file, submission, base_path=base_path, log=log, progress=progress,
                       **_predict_options(cfg, left / 60.0))
    out = res.to_dict()
    return {k: out[k] for k in ("out_path", "rows", "seconds", "predicted_rows", "fallback_rows", "filled_rows",
                                "unpredicted_share", "too_many_unpredicted", "decisions", "metrics")}


# --------------------------------------------------------------------------- the pseudo-label round


def pseudo_label_rows(records: list, ids: list, probs, label_names: list, share: float, *, id_column: str,
                      label_column: str, exclude=()) -> tuple:
    """(rows, chosen ids): the ``share`` of test rows whose prediction is most confident (highest top
    probability; ties by file order), each with its predicted label, id ``<id>_pseudo``; ``exclude``: ids
    whose prediction is a fill (deadline, non-finite) and never chosen."""
    import numpy as np

    if not 0.0 < share <= 1.0:
        raise KitError(f"test_time.pseudo_label_share = {share}: use a share in (0, 1]")
    p = np.asarray(probs, dtype=np.float64)
    skip = {str(i) for i in exclude}
    usable = [n for n, i in enumerate(ids) if str(i) not in skip]
    count = int(round(share * len(ids)))
    conf = p.max(axis=1)
    order = sorted(usable, key=lambda n: (-conf[n], n))[:count]
    by_id = {str(r.get(id_column)): r for r in records}
    rows, chosen = [], []
    for n in sorted(order):
        rid = str(ids[n])
        row = {k: v for k, v in by_id[rid].items() if k != "__line__"}
        row.update({id_column: f"{rid}_pseudo", label_column: str(label_names[int(p[n].argmax())]), SOURCE_COLUMN: rid})
        rows.append(row)
        chosen.append(rid)
    return rows, chosen


def _pseudo_round(cfg, test_file, work: Path, mined, plan, t0, clock, log, decide, result: TestTimeResult) -> tuple:
    """(adapter to predict with, summary): first prediction, the chosen rows added, the second fine-tune."""
    from kaggle_kit.runtime.formats import read_records
    from kaggle_kit.runtime.infer import predict_file

    first = work / "first_prediction.csv"
    budget = max(plan.predict_s, 1.0) / 60.0  # a full pass: the pseudo labels need every row
    res = predict_file(result.adapter, test_file, first, base_path=cfg.model.path or None, log=log, progress=False,
                       **_predict_options(cfg, budget))
    unpredicted = list(res.report.fallback_ids) + [str(i) for i in res.report.filled_rows]
    rows, chosen = pseudo_label_rows(read_records(test_file), res.ids, res.probabilities, res.label_names,
                                     cfg.test_time.pseudo_label_share, id_column=cfg.data.id_column,
                                     label_column=mined.label_column, exclude=unpredicted)
    second = work / "ttt_pseudo.csv"
    _write_rows(second, mined.columns, mined.rows + rows)
    summary = {"share": cfg.test_time.pseudo_label_share, "rows": len(rows), "ids": chosen, "excluded": unpredicted,
               "data": str(second)}
    deadline = t0 + plan.train_end
    if deadline - clock() <= 0:
        decide(f"pseudo-label round skipped: the training share is spent ({clock() - t0:.0f}s of {plan.train_end:.0f}s); "
               f"predicting with the first round's adapter")
        summary["skipped"] = True
        return result.adapter, summary
    decide(f"pseudo-label round: {len(rows)} test row(s) (test_time.pseudo_label_share = {cfg.test_time.pseudo_label_share:g}, "
           f"the most confident, {len(unpredicted)} unpredicted excluded) join the {len(mined.rows)} mined rows in {second}")
    second_round = _fine_tune(cfg, second, work / "run_pseudo", deadline, clock, t0, log, decide)
    result.rounds.append(second_round)
    why = second_round_falls_short(result.rounds[0], second_round)
    if why:
        decide(f"pseudo-label round kept out: {why}; predicting with the first round's adapter")
        summary["kept_first"] = True
        return result.adapter, summary
    return work / "run_pseudo", summary


def second_round_falls_short(first: dict, second: dict) -> str:
    """Why the pseudo-label round's run should not replace the first round's ('' when it may): it trains from the
    base, so a round cut short by the budget can end far behind the first — under half the first's best step."""
    best, steps = first.get("best_step") or 0, second.get("steps") or 0
    if steps < best / 2:
        return f"it ran {steps} step(s), under half of the first round's best step ({best})"
    return ""


def _write_rows(path: Path, columns: list, rows: list) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})

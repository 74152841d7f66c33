"""From a run folder and a test file to a validated submission: :func:`predict_file`.

It reads the run's ``kit_manifest.json`` once and hands that :class:`runtime.manifest.Manifest` to
everything after it: the test file is read the way the manifest records it and checked against the
adapter's labels and base before any weights load (:mod:`runtime.testfile`), one replica loads per
device (:func:`runtime.testfile.load_replicas`), the batched engine predicts every row
(:func:`runtime.engine.predict_rows`: length-sorted token-budget batches, TTA, devices, time budget,
non-finite re-runs and fills), and the submission is written in the shape the competition expects.
Whatever happens, every test id gets a row; :class:`PredictionResult` holds the engine's
:class:`runtime.engine.EngineReport` and says when more than ``max_unpredicted_share`` of the rows
could not be predicted.

The engine's names stay importable from here (``runtime.infer.predict_rows`` and friends).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .attention import FAST_ATTENTION, FAST_ATTENTION_TYPES, eager_inplace_attention, fast_attention  # noqa: F401 (re-exported)
from .budget import (CALIBRATION_BATCHES, LENGTH_STEPS, MIN_LENGTH, SAFETY, _padded_cost, _plan_fit,  # noqa: F401 (re-exported)
                     degrade_steps, projected_seconds)
from .engine import (DEFAULT_BATCH_TOKENS, DEFAULT_MAX_ROWS, EngineReport, _Encoding, parse_tta,  # noqa: F401 (re-exported)
                     predict_rows)
from .health import DEFAULT_MAX_UNPREDICTED_SHARE, UnpredictedShare
from .manifest import Manifest
from .merging import merge_adapter  # noqa: F401 (re-exported: `kit merge`)
from .progress import quiet_known_warnings, recorder
from .testfile import _score_labelled, load_replicas, read_test_data, submission_style  # noqa: F401 (re-exported)
from .workers import _Clock, forward_probs, model_device, parse_devices, run_batches  # noqa: F401 (re-exported)


# --------------------------------------------------------------------------- the result


@dataclass
class PredictionResult(UnpredictedShare):
    """What :func:`predict_file` did: the file's figures here, the engine's in ``report``
    (:class:`EngineReport`: tokens, padding, truncation, TTA, row lists by test id and their meaning).

    ``predicted_rows`` rows got a real prediction; ``fallback_rows`` (deadline) + ``filled_rows``
    (non-finite) got the fill. ``rows_per_second`` counts predicted rows only. ``too_many_unpredicted``
    is True when the unpredicted share exceeds ``max_unpredicted_share`` (callers exit non-zero).
    ``decisions`` (the report's list) holds every decision of the run, reading the file included."""

    out_path: Path
    rows: int
    seconds: float
    probabilities: np.ndarray
    report: EngineReport
    ids: list = field(default_factory=list)
    label_names: list = field(default_factory=list)
    style: str = ""
    devices: list = field(default_factory=list)
    problems: int = 0
    load_seconds: float = 0.0
    max_unpredicted_share: Optional[float] = None
    metrics: dict = field(default_factory=dict)  # when the file has labels: the task's metrics
    sample: str = ""  # the sample submission the file was compared with
    manifest: Optional[Manifest] = field(default=None, repr=False)  # the run's kit_manifest.json, as read once

    @property
    def decisions(self) -> list:
        return self.report.decisions

    @property
    def predicted_rows(self) -> int:
        return self.report.predicted_rows

    @property
    def fallback_rows(self) -> int:
        return self.report.fallback_rows

    @property
    def padding_share(self) -> float:
        return self.report.padding_share

    @property
    def rows_per_second(self) -> float:
        run = self.seconds - self.load_seconds
        return self.predicted_rows / run if run > 0 else float("nan")

    @property
    def unpredicted_rows(self) -> int:
        return self.report.unpredicted_rows

    def to_dict(self) -> dict:
        rps, rep = self.rows_per_second, self.report
        return {
            "out_path": str(self.out_path), "rows": self.rows, "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3), "rows_per_s": None if math.isnan(rps) else round(rps, 3),
            "predicted_rows": self.predicted_rows,
            "tokens": rep.tokens, "padding_share": round(rep.padding_share, 4), "truncated_rows": rep.truncated_rows,
            "fallback_rows": rep.fallback_rows, "fallback_ids": rep.fallback_ids, "nonfinite_rows": rep.nonfinite_rows,
            "rerun_rows": rep.rerun_rows, "filled_rows": rep.filled_rows, "fill": rep.fill,
            "unpredicted_rows": self.unpredicted_rows, "unpredicted_share": round(self.unpredicted_share, 6),
            "max_unpredicted_share": DEFAULT_MAX_UNPREDICTED_SHARE if self.max_unpredicted_share is None else self.max_unpredicted_share,
            "too_many_unpredicted": self.too_many_unpredicted, "tta_rows": rep.tta_rows,
            "tta_single_pass": rep.tta_single_pass, "problems": self.problems,
            "devices": self.devices, "style": self.style, "decisions": self.decisions,
            "metrics": self.metrics, "sample": self.sample,
        }


# --------------------------------------------------------------------------- from files


@dataclass
class _FileJob:
    """What :func:`predict_file` knows before any weights load: the run folder, its manifest (read once),
    the test data as read (formats.Dataset) and the submission's shape (submission.SubmissionSpec)."""

    adapter_dir: Path
    manifest: Manifest
    data: object
    spec: object
    sample_path: Optional[Path]


@quiet_known_warnings()  # the listed harmless library warnings only, only during the call
def predict_file(
    adapter_dir,
    data_path,
    out_path,
    *,
    base_path=None,
    tta=None,
    budget_minutes=None,
    batch_tokens=None,
    max_batch_rows=None,
    devices=None,
    quantization=None,
    log: Callable = print,
    progress: bool = True,
    max_unpredicted_share: Optional[float] = None,
    sample=None,
    manifest: Optional[Manifest] = None,
) -> PredictionResult:
    """Predict every row of ``data_path`` with the run folder ``adapter_dir``; write a validated submission.

    None means: take it from the defaults (``tta='none'``, 8,192-token batches of ≤ 64 rows, no
    budget, every GPU else the CPU, ``max_unpredicted_share`` 0.01) or from the manifest (format,
    prompt, base, quantization, id column, submission shape). ``manifest``: the run folder's
    kit_manifest.json already read (e.g. by the notebook's version check), else read here; either way
    it is read once and passed down. ``sample``: the competition's sample submission to follow and
    compare with (default: the one the manifest names, when it lies beside ``data_path``). When ``data_path`` has labels, the task's metrics are computed, logged and written
    to ``<out>.metrics.json``. The submission is always written; when more than
    ``max_unpredicted_share`` of the rows got the fill instead of a prediction (non-finite logits,
    deadline), the result's ``too_many_unpredicted`` is True and an ``error:`` line is logged —
    `kit predict` then exits 1.
    """
    t0 = time.monotonic()
    log = log or (lambda *a, **k: None)
    decisions: list = []
    decide = recorder(decisions, log)

    parse_tta(tta)  # a bad TTA value fails here, before any weights load
    job = _read_and_check(adapter_dir, data_path, base_path, sample, manifest, decide)
    devs = parse_devices(devices)
    replicas, tokenizer = load_replicas(job.adapter_dir, devs, base_path=base_path, quantization=quantization, log=decide,
                                        manifest=job.manifest)
    load_s = time.monotonic() - t0
    log(f"loaded {len({d for _, d in replicas})} replica(s) on {', '.join(devs)} in {load_s:.1f}s; {len(job.data)} rows to predict")
    rep = EngineReport(decisions=decisions)
    deadline = t0 + float(budget_minutes) * 60.0 if budget_minutes else None
    probs = predict_rows(
        replicas[0][0], tokenizer, job.manifest, job.data.rows, tta=tta or "none", batch_tokens=batch_tokens,
        max_batch_rows=max_batch_rows, deadline=deadline, replicas=replicas, log=log, progress=progress, report=rep,
    )
    probs = _restrict_candidates(job, data_path, probs, decide)
    _write_checked(job, data_path, out_path, probs, sample, log, decide)
    seconds = time.monotonic() - t0
    scores = _score_labelled(job.data, probs, job.manifest, out_path, log) if job.data.has_labels else {}
    result = PredictionResult(
        out_path=Path(out_path), rows=len(job.data.ids), seconds=seconds, probabilities=probs, report=rep, ids=job.data.ids,
        label_names=job.manifest.labels, style=job.spec.style, devices=devs, problems=len(job.data.problems),
        load_seconds=load_s, max_unpredicted_share=max_unpredicted_share, metrics=scores, sample=str(job.sample_path or ""),
        manifest=job.manifest,
    )
    _summarize(result, out_path, log, decide)
    return result


def _read_and_check(adapter_dir, data_path, base_path, sample, manifest: Optional[Manifest], decide: Callable) -> _FileJob:
    """The manifest (read here unless given), the test file read as it records, the adapter checked against
    the data's labels and its base (config files only: before any weights load), the submission's shape."""
    from .kaggle_env import recorded_base
    from .manifest import check_compatible
    from .modeling import is_merged_folder

    adapter_dir = Path(adapter_dir)
    manifest = Manifest.load(adapter_dir) if manifest is None else manifest
    ds = read_test_data(manifest, data_path, decide,
                        format_from=f"the adapter's manifest ({adapter_dir / 'kit_manifest.json'}, task.format)")
    labels = ds.label_names if ds.label_names else None
    base = None if is_merged_folder(adapter_dir) else (base_path or recorded_base(manifest.base_model, adapter_dir) or None)
    check_compatible(manifest, base, labels)  # before any weights load
    spec, sample_path = submission_style(ds, manifest, data_path, sample, decide)
    return _FileJob(adapter_dir, manifest, ds, spec, sample_path)


def _restrict_candidates(job: _FileJob, data_path, probs: np.ndarray, decide: Callable) -> np.ndarray:
    """``task.candidates_by`` recorded at training: per row only the labels seen with its group value compete
    (runtime.label_tokens.restrict_candidates); the rows restricted and the unseen values are counted and listed."""
    task = job.manifest.task or {}
    by, candidates = task.get("candidates_by"), task.get("candidates")
    if not by or not candidates:
        return probs
    from .label_tokens import group_values, restrict_candidates

    groups = group_values(data_path, by, task.get("id_column", "id"))
    values = [groups.get(str(i)) for i in job.data.ids]
    probs, rep = restrict_candidates(probs, values, candidates)
    ids = job.data.ids
    decide(f"candidates ({by}): {len(rep['restricted'])} of {len(ids)} rows restricted to the labels seen with their {by} in "
           f"training ({rep['zeroed']} label probabilities set to 0); {len(rep['unseen'])} rows with a {by} training never saw "
           f"keep every label" + (f" (ids: {', '.join(str(ids[i]) for i in rep['unseen'][:10])}"
                                  f"{' …' if len(rep['unseen']) > 10 else ''})" if rep["unseen"] else ""))
    return probs


def _write_checked(job: _FileJob, data_path, out_path, probs: np.ndarray, sample, log: Callable, decide: Callable) -> None:
    """The submission written (validated, atomically) and compared with the competition's sample when there is one."""
    from .submission import compare_with_sample, write_submission

    ids = job.data.ids
    if job.spec.rank_within:  # submission.rank_within: scores ranked within each group (runtime.ranking)
        from .ranking import rank_for_submission

        probs = rank_for_submission(job.spec, data_path, ids, job.data.id_column, probs, job.manifest.labels, decide)
    write_submission(out_path, ids, probs, job.spec, job.manifest.labels, expected_ids=ids)
    if job.sample_path is None:
        return
    same = compare_with_sample(out_path, job.sample_path, ids_if_shared=sample is None, style=job.spec.style)
    if same["ids_compared"]:
        order = "in the same order" if same["same_order"] else "in the test file's order, not the sample's (Kaggle matches ids)"
        log(f"{out_path} matches the sample {job.sample_path}: columns {job.spec.header}, the same ids {order}")
    else:
        decide(f"{out_path} has the columns of the sample {job.sample_path}; ids not compared: the sample found beside "
               f"{data_path} shares none of its ids (it belongs to another file; pass --sample to compare strictly)")


def _summarize(result: PredictionResult, out_path, log: Callable, decide: Callable) -> None:
    """The run's one "wrote …" line; an ``error:`` decision when too many rows got the fill."""
    rep = result.report
    log(f"wrote {out_path}: {result.rows} rows ({result.style}) in {result.seconds:.1f}s: {result.predicted_rows} predicted "
        f"({result.rows_per_second:.1f} predicted rows/s after {result.load_seconds:.1f}s loading), {rep.fallback_rows} cut by the "
        f"deadline, {len(rep.filled_rows)} non-finite filled ({len(rep.rerun_rows)} re-run in float32); {rep.tokens:,} tokens, "
        f"padding {rep.padding_share:.1%}; truncated {rep.truncated_rows}; TTA {rep.tta_rows}")
    if result.too_many_unpredicted:
        decide(f"error: {result.unpredicted_rows} of {result.rows} rows ({result.unpredicted_share:.1%}) could not be predicted "
               f"and got the fill (more than max_unpredicted_share = {result.to_dict()['max_unpredicted_share']:.1%}); "
               f"the submission {out_path} was written but is not trustworthy — see the lines above for the cause")

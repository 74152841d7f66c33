"""The test file as a run reads it, and what a prediction run does around the engine: read the file the
way the run's manifest records (format, id column, text and label columns), decide the submission's
shape, load one replica per device, and score a labelled file with the task's metrics.

Shared by :func:`runtime.infer.predict_file` and :func:`runtime.ensemble.predict_ensemble_file`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np


def read_test_data(manifest, data_path, decide: Callable, require_ids: bool = True,
                   format_from: str = "the run's kit_manifest.json (task.format)"):
    """The test file read as the manifest records it (format, id column, text/label columns; formats.Dataset);
    repairs go to ``decide``.

    Raises DataError when the file's columns say another competition format than the manifest's
    (``format_from`` names where that format came from), when the file lacks the run's id column (``require_ids``: a submission needs the
    test file's own ids) or an id appears more than once (one row per unique id).
    """
    from .formats import read_dataset
    from .problems import DataError

    settings = read_settings(manifest)
    ds = read_dataset(data_path, settings.pop("format"), format_from=format_from, **settings)
    if require_ids and not ds.has_id_column:
        raise DataError(f"{data_path}: no id column {ds.id_column!r} (the run's data.id_column); columns: {ds.columns[:12]}. "
                        f"A submission needs the test file's own ids: predict the competition's test file")
    if ds.problems:
        shown = "; ".join(f"{p.id}: {p.reason}" for p in ds.problems[:3])
        decide(f"{len(ds.problems)} repaired problem(s) in {data_path} (rows still predicted): {shown}" + (" …" if len(ds.problems) > 3 else ""))
    ids = ds.ids
    if len(set(ids)) != len(ids):
        seen, dup = set(), []
        for i in ids:
            if i in seen:
                dup.append(i)
            seen.add(i)
        raise DataError(f"{data_path}: id(s) appear more than once in column {ds.id_column!r} (the run's data.id_column): {dup[:5]}; "
                        f"a submission needs one row per unique id: predict the competition's test file, whose ids are unique "
                        f"(if {ds.id_column!r} is not its id column, retrain the run with data.id_column set to it)")
    return ds


def submission_style(ds, manifest, data_path=None, sample=None, decide: Optional[Callable] = None) -> tuple:
    """(SubmissionSpec, sample path or None) for test data ``ds`` predicted by ``manifest``'s model:
    the shape saved at training, re-decided by the competition's sample when one is given or lies
    beside ``data_path`` (runtime.submission.resolve_submission); the choice goes to ``decide``."""
    from .submission import resolve_submission

    spec, sample_path, note = resolve_submission(manifest.task, manifest.labels, ds.format, data_path, sample)
    if note and decide is not None:
        decide(note)
    return spec, sample_path


def load_replicas(adapter_dir, devices: list, *, base_path=None, quantization=None, log: Optional[Callable] = None,
                  manifest=None) -> tuple:
    """([(model, device)], tokenizer): one replica per distinct device; repeated CPU workers share it.

    The run folder is checked once (:func:`runtime.modeling.plan_load`: versions, base, adapter tensors;
    warnings and notes to ``log``) and its replicas share one tokenizer. ``manifest``: the folder's
    kit_manifest.json already read (else read here, once)."""
    from .modeling import load_planned, plan_load

    plan = plan_load(adapter_dir, manifest, base_path=base_path, quantization=quantization, log=log)
    replicas, loaded, tokenizer = [], {}, None
    for d in devices:
        if d not in loaded:
            loaded[d], tokenizer = load_planned(plan, d, tokenizer=tokenizer)
        replicas.append((loaded[d], d))
    return replicas, tokenizer


def read_settings(manifest) -> dict:
    """How ``manifest``'s run reads a test file: ``format`` plus the read_dataset arguments (id column; for
    classification the text columns, i.e. the template's fields, labels and label columns). Two runs with equal
    settings read a file into identical rows."""
    return {"format": manifest.task.get("format") or "auto", **_read_kwargs(manifest)}


def _read_kwargs(manifest) -> dict:
    """read_dataset arguments recorded in the manifest: the id column and, for classification,
    the text columns (or the template's fields), labels and label columns."""
    task = manifest.task
    kwargs = {"id_column": task.get("id_column") or "id"}
    if (task.get("format") or "auto") == "classification":
        from .templates import template_fields

        fields = template_fields((manifest.prompt or {}).get("text_template", ""))
        kwargs.update(label_names=manifest.labels, text_columns=tuple(fields or task.get("text_columns", ()) or ()),
                      label_columns=tuple(task.get("label_columns", ()) or ()), label_join=task.get("label_join", ""),
                      multilabel=manifest.kind == "multilabel")
    return kwargs


def _score_labelled(ds, probs, manifest, out_path, log) -> dict:
    """The task's metrics on a labelled file: logged, and written to ``<out>.metrics.json``."""
    import json

    from .metrics import metrics_from_probs, scalar_metrics

    multilabel = manifest.kind == "multilabel"
    k = len(manifest.labels)
    if multilabel:
        labels = np.zeros((len(ds.rows), k), dtype=np.int64)
        for n, r in enumerate(ds.rows):
            labels[n, list(r.label)] = 1
    else:
        labels = np.asarray([r.label for r in ds.rows], dtype=np.int64)
    metric = manifest.task.get("metric") or "log_loss"
    full = metrics_from_probs(probs, labels, multilabel, manifest.labels, extra=(metric,))
    flat, undefined = scalar_metrics(full), full.get("undefined", {})
    grouped = _grouped_scores(ds, probs, labels, manifest, flat) if not multilabel else {}
    path = Path(out_path).with_suffix(".metrics.json")
    path.write_text(json.dumps({"metric": metric, "value": flat.get(metric), "rows": len(ds.rows), **flat,
                                "undefined": undefined, "data": str(ds.path), **grouped}, indent=2, default=float) + "\n",
                    encoding="utf-8")
    shown = f"{flat[metric]:.4f}" if metric in flat else f"undefined ({undefined.get(metric, 'not computed')})"
    log(f"{ds.path} has labels: {metric} {shown} ("
        + ", ".join([f"{n} {v:.4f}" for n, v in flat.items() if n != metric]
                    + [f"{n} undefined" for n in undefined if n != metric]) + f"); written to {path}")
    return flat


def _grouped_scores(ds, probs, labels, manifest, flat: dict) -> dict:
    """With ``submission.rank_within`` set: the AUC per group and its mean (``auc_within_<column>`` in ``flat``,
    the per-group values under ``grouped``); else nothing."""
    from .ranking import group_values, grouped_auc
    from .submission import SubmissionSpec

    spec = SubmissionSpec.from_dict(manifest.task.get("submission") or {"style": ""})
    if not spec.rank_within or spec.style != "positive" or spec.positive not in manifest.labels:
        return {}
    pos = manifest.labels.index(spec.positive)
    groups = group_values(ds.path, ds.ids, spec.rank_within, ds.id_column)
    result = grouped_auc(np.asarray(probs)[:, pos], labels == pos, groups)
    if result["value"] is not None:
        flat[f"auc_within_{spec.rank_within}"] = result["value"]
    return {"grouped": {"column": spec.rank_within, **result}}

"""`kit init --from-competition DIR`: a competition's own files → a commented kit.toml and the table of
decisions it rests on (each with its evidence).

:func:`plan_competition` reads the folder and decides (nothing written); :func:`write_competition_config`
writes the kit.toml the plan describes through the config package's writer (what is written must load).
The labels are read by the runtime's own reader (:func:`kaggle_kit.runtime.formats.read_dataset`) with the
decided columns, so the class list the table shows is the one `kit train` will use, strings as written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kaggle_kit.data.competition import find_files, read_sample, read_table
from kaggle_kit.data.decide import (
    Decision, Options, Target, Task, check_metric, check_retrieval, check_supported, decide_id, decide_metric, decide_submission,
    decide_target, decide_task,
)
from kaggle_kit.data.decide_inputs import BASE, Inputs, decide_inputs, decide_sizes, example_texts
from kaggle_kit.errors import KitError


@dataclass
class Plan:
    folder: Path
    decisions: list = field(default_factory=list)
    values: dict = field(default_factory=dict)  # the kit.toml layer


def _path(p: Path) -> str:
    return os.path.normpath(str(p))


def _read_train(files, task: Task, target: Target, inputs: Inputs, id_name: str):
    """The training file as `kit train` will read it (the runtime reader over the decided columns): its class
    list, strings as written, and what the reader repaired."""
    from kaggle_kit.runtime.formats import read_dataset

    if task.kind == "pairwise":
        return read_dataset(files.train, task.format, id_column=id_name, require_labels=True)
    return read_dataset(files.train, "classification", text_columns=tuple(inputs.columns), label_columns=tuple(target.columns),
                        label_join=target.join, id_column=id_name, require_labels=True, multilabel=task.kind == "multilabel",
                        label_names=list(task.labels) or None)


def _repairs(ds) -> Optional[Decision]:
    """What the reader repaired in train (counted, the first few by id); None when nothing."""
    if not ds.problems:
        return None
    shown = "; ".join(f"{p.id or p.source}: {p.reason}" for p in ds.problems[:3])
    return Decision("repairs", f"{len(ds.problems)} in {Path(ds.path).name}", f"{shown}{' …' if len(ds.problems) > 3 else ''} "
                    f"(`kit data inspect {ds.path}` lists them all)")


def plan_competition(folder, opts: Optional[Options] = None) -> Plan:
    """Read ``folder`` and decide every setting; a :class:`KitError` for what the kit cannot do or cannot decide."""
    opts = opts or Options()
    check_metric(opts.metric)
    files = find_files(folder)
    train, test = read_table(files.train), read_table(files.test)
    sample = read_sample(files.sample) if files.sample is not None else None
    extras = check_retrieval(files, sample, {opts.id} | {c for c in (sample.names[:1] if sample else [])})
    id_dec = decide_id(test, sample, opts)
    target = decide_target(train, test, sample, id_dec.value, opts)
    check_supported(target, train, sample, opts)
    task = decide_task(target, train, test)
    inputs = decide_inputs(train, test, task, id_dec.value, target.columns, opts)
    ds = _read_train(files, task, target, inputs, id_dec.value)
    labels = list(ds.label_names)
    if task.kind == "classification" and len(labels) < 2:
        raise KitError(f"{files.train.name}: target {target.columns} holds {len(labels)} class(es) {labels}; a classifier "
                       f"needs at least 2; name another target with --target")
    metric = decide_metric(task, labels, sample, id_dec.value, opts)
    submission = decide_submission(files.sample, labels, task, metric.value, id_dec.value, target)
    length, batch, model, max_length, bs, accum = decide_sizes(example_texts(train, test, task, inputs), task, opts)
    label_text = ", ".join(repr(x) for x in labels[:6]) + (f", … ({len(labels)})" if len(labels) > 6 else "")
    decisions = [
        _files_decision(files, extras, train, test, sample),
        id_dec,
        Decision("target", " + ".join(target.columns) if len(target.columns) <= 3
                 else f"{' + '.join(target.columns[:2])} + … ({len(target.columns)} columns)",
                 target.evidence),
        Decision("task", f"{task.kind}{f' ({task.format} reader)' if task.kind == 'pairwise' else ''}, {len(labels)} classes", f"{task.evidence}; labels: {label_text}"),
        inputs.decision, metric, submission, length, batch, model,
    ]
    repairs = _repairs(ds)
    if repairs is not None:
        decisions.insert(1, repairs)
    if opts.competition:
        decisions.append(Decision("competition", opts.competition, "given with --competition: [kaggle] competition and "
                                  f"the notebook's test path /kaggle/input/competitions/{opts.competition}/{files.test.name}"))
    values = _values(files, opts, task, target, inputs, labels, metric.value, id_dec.value, max_length, bs, accum)
    return Plan(files.folder, decisions, values)


def _files_decision(files, extras: dict, train, test, sample) -> Decision:
    used = f"{files.train.name} ({len(train)} rows), {files.test.name} ({len(test)} rows)"
    used += f", {files.sample.name} ({len(sample)} rows)" if sample is not None else "; no sample submission"
    rest = [f"{n} ({v})" for n, v in extras.items()] + [p.name for p in files.ignored]
    return Decision("files", f"{files.train.name}, {files.test.name}" + (f", {files.sample.name}" if files.sample else ""),
                    f"read {used}" + (f"; ignored: {', '.join(rest)}" if rest else ""))


def _values(files, opts: Options, task: Task, target: Target, inputs: Inputs, labels: list, metric: str, id_name: str,
            max_length: int, batch: int, accum: int) -> dict:
    """The kit.toml layer: the decisions, and real defaults for what the files do not decide."""
    name = opts.competition or files.folder.resolve().name
    test = (f"/kaggle/input/competitions/{opts.competition}/{files.test.name}" if opts.competition else _path(files.test))
    data = {"train": _path(files.train), "test": test, "format": task.format, "id_column": id_name,
            "group_by_prompt": task.kind == "pairwise"}
    prompt = {"max_length": max_length, "truncation": "per_component"}
    if task.kind != "pairwise":
        data.update(label_columns=list(target.columns), label_join=target.join, text_columns=list(inputs.columns))
        prompt.update(text_template=inputs.template, field_shares=dict(inputs.shares))
    slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")[:30] or "competition"
    out = {
        "model": {"name": BASE["name"]},
        "task": {"kind": task.kind, "labels": list(labels), "metric": metric},
        "data": data, "prompt": prompt,
        "submission": {"sample": _path(files.sample) if files.sample else ""},
        "quantization": {"mode": "4bit"},
        "peft": {"method": "lora", "r": 16, "alpha": 32.0, "targets": ["all-linear"]},
        "train": {"optimizer": "adamw_8bit", "batch_size": batch, "grad_accum": accum, "learning_rate": 2e-4,
                  "output": f"runs/{slug}", "metric_for_best": metric},
        "wheels": {"dataset_slug": f"kit-wheels-{slug}"[:50], "dataset_title": f"kit-wheels-{slug}"[:50]},
        "kernels": {"inference": {"template": "inference", "instances": [BASE["instance"], "peft-lora-classifier"]}},
        "instances": {BASE["instance"]: {"model_slug": BASE["instance"], "kind": "base", "license": BASE["license"]},
                      "peft-lora-classifier": {"model_slug": f"{slug}-adapter"[:50], "kind": "adapter"}},
    }
    if opts.competition:
        out["kaggle"] = {"competition": opts.competition}
    return out


def format_decisions(plan: Plan) -> str:
    """The decisions as an aligned table: decision, value (metric marked guessed unless given), evidence."""
    rows = [("decision", "value", "evidence")]
    for d in plan.decisions:
        rows.append((d.name, d.value + (" (guessed)" if d.guessed else ""), d.evidence))
    w0 = max(len(r[0]) for r in rows)
    w1 = min(56, max(len(r[1]) for r in rows))
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows)


def write_competition_config(plan: Plan, path, force: bool = False, username: str = "") -> Path:
    """Write the plan's kit.toml (its decisions and evidence as comments at the top)."""
    from kaggle_kit.config.toml_writer import write_config

    notes = [f"Decided by `kit init --from-competition {plan.folder}` from the competition's files:"]
    notes += [f"  {d.name}: {d.value}{' (guessed)' if d.guessed else ''} — {d.evidence}" for d in plan.decisions]
    return write_config(path, (f"kit init --from-competition {plan.folder}", plan.values), notes=tuple(notes), force=force,
                        username=username)

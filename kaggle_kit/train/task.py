"""Competition-shaped decisions of a training run, made before weights load or while encoding:
the submission shape saved in the manifest, and the pairwise rows that truncation makes identical."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from kaggle_kit.errors import KitError


def submission_spec(cfg, ds, kind: str, labels: list) -> dict:
    """The submission shape saved in the manifest: from ``[submission] sample`` when set (checked
    against the labels now, before weights load), else the default for the format and metric."""
    from kaggle_kit.runtime.submission import default_spec, spec_from_sample

    sub = cfg.submission
    if sub.sample:
        if not Path(sub.sample).is_file():
            raise KitError(f"submission.sample = {sub.sample!r}: file not found; point it at the competition's sample_submission.csv")
        spec = spec_from_sample(sub.sample, labels, top_k=sub.top_k, positive_label=sub.positive_label, multilabel=kind == "multilabel",
                                metric=cfg.task.metric)
    else:
        spec = default_spec(ds.format, kind, labels, id_column=cfg.data.id_column, metric=cfg.task.metric,
                            label_columns=list(cfg.data.label_columns), label_join=cfg.data.label_join,
                            top_k=sub.top_k, positive_label=sub.positive_label)
    if sub.rank_within:  # runtime.ranking: scores ranked within each group of this column (column-averaged AUC)
        if spec.style != "positive":
            raise KitError(f"submission.rank_within = {sub.rank_within!r} ranks a binary task's positive-class probability, but "
                           f"this submission's style is {spec.style!r}; set submission.rank_within = \"\" or score one probability column")
        spec = dataclasses.replace(spec, rank_within=sub.rank_within)
    if spec.id_column != cfg.data.id_column:
        raise KitError(f"submission.sample {sub.sample}: its id column is {spec.id_column!r} but data.id_column = "
                       f"{cfg.data.id_column!r}; set data.id_column = {spec.id_column!r}")
    return spec.to_dict()


def identical_training_rows(encoder, rows: list, skip: bool, say: Callable) -> list:
    """Report training rows whose A and B keep the same tokens after truncation; drop them when ``skip``."""
    from kaggle_kit.runtime.identical import identical_report, summary_line

    report = identical_report(encoder, rows, encoder.encode(rows), shown=3)
    if not report["count"]:
        return rows
    say("data: " + summary_line(report))
    if not skip:
        return rows
    drop = set(report["ids"])
    say(f"data: skipped {len(drop)} identical-after-truncation row(s) (data.skip_identical_after_truncation): "
        + ", ".join(list(map(str, report["ids"]))[:20]) + (" …" if len(drop) > 20 else ""))
    return [r for r in rows if r.id not in drop]

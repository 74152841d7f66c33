"""`kit bench infer --cascade SHARE`: the time a cascade saves against the full ensemble, and what it costs in the metric.

Both sides are :func:`kaggle_kit.runtime.ensemble.predict_ensemble_file` on the same members and the same labelled
file (model loads included, the way `kit predict` and the notebook run): the full ensemble (every member on every
row) and the cascade (the first member on every row, each later one on the ``share`` most uncertain rows). Sides
run in ABBA order round by round on fresh parts folders (no saved member is reused), so load drift on shared cores
evens out, after one untimed warm-up pass (the first load pays one-time costs). Reports the mean seconds of each side, their ratio, the rows each member predicted, and the task's metric
of each side on the file's labels (and of the first member alone, from the cascade's stage 1).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np


def run_cascade_bench(adapters: Sequence, data, share: float = 0.3, by: str = "margin", combine: str = "mean",
                      rounds: int = 2, batch_tokens=None, max_batch_rows=None, threads=None,
                      log: Optional[Callable] = None) -> dict:
    """The bench described in the module's docstring; ``adapters``: run folders (or --all-folds parents), first = cheap."""
    import torch

    from kaggle_kit.benchmarks import load_average
    from kaggle_kit.benchmarks.sides import abba
    from kaggle_kit.errors import KitError
    from kaggle_kit.runtime.cascade import CascadeSettings
    from kaggle_kit.runtime.ensemble import predict_ensemble_file

    if len(adapters) < 2:
        raise KitError("--cascade needs at least two --adapter members (the first runs on every row) and --data, a labelled file")
    if threads:
        torch.set_num_threads(int(threads))
    log = log or (lambda *a: None)
    settings = CascadeSettings(share=share, by=by, combine=combine).check()
    work = Path(tempfile.mkdtemp(prefix="kit-bench-cascade-"))
    seconds = {"full": 0.0, "cascade": 0.0}
    results: dict = {}
    try:
        # untimed warm-up: the process's first load pays one-time costs (imports, kernels, the base's file from
        # disk) that ABBA order cannot spread, since round 1 always starts with the full side
        predict_ensemble_file(list(adapters), data, work / "warmup.csv", parts_dir=work / "parts-warmup", log=None,
                              progress=False, batch_tokens=batch_tokens, max_batch_rows=max_batch_rows, cascade=settings)
        log("warm-up pass done (untimed)")
        for r in range(max(1, int(rounds))):
            for side in abba(r, "full", "cascade"):
                parts = work / f"parts-{side}-{r}"
                t = time.perf_counter()
                results[side] = predict_ensemble_file(list(adapters), data, work / f"{side}.csv", parts_dir=parts, log=None,
                                                      progress=False, batch_tokens=batch_tokens, max_batch_rows=max_batch_rows,
                                                      cascade=settings if side == "cascade" else None)
                seconds[side] += time.perf_counter() - t
                shutil.rmtree(parts, ignore_errors=True)
                log(f"round {r + 1}: {side} {time.perf_counter() - t:.1f}s")
        n = max(1, int(rounds))
        metrics = _metrics(results, adapters, data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    full_s, casc_s = seconds["full"] / n, seconds["cascade"] / n
    cascade = results["cascade"]
    return {"adapters": [str(a) for a in adapters], "data": str(data), "rows": cascade.rows, "rounds": n,
            "cascade": settings.to_dict(), "member_rows": cascade.cascade["member_rows"],
            "full_s": round(full_s, 3), "cascade_s": round(casc_s, 3), "time_ratio": round(casc_s / full_s, 4) if full_s else None,
            "time_saved_share": round(1 - casc_s / full_s, 4) if full_s else None, **metrics,
            "torch_threads": torch.get_num_threads(), "load_average": load_average()}


def _metrics(results: dict, adapters, data) -> dict:
    """The task metric (the first member's task.metric, else log_loss) of each side on the file's labels; {} unlabelled."""
    from kaggle_kit.runtime.ensemble_members import expand_members
    from kaggle_kit.runtime.manifest import Manifest
    from kaggle_kit.runtime.metrics import metrics_from_probs, scalar_metrics
    from kaggle_kit.runtime.testfile import read_test_data

    manifest = Manifest.load(expand_members([adapters[0]], [1.0])[0][1])
    ds = read_test_data(manifest, data, lambda *a: None)
    if not ds.rows or any(r.label is None for r in ds.rows):
        return {"metric": None, "note": f"{data} has no labels: no metric"}
    ml = manifest.kind == "multilabel"
    labels = [r.label for r in ds.rows]
    if ml:
        labels = [[1 if c in (y if isinstance(y, list) else [y]) else 0 for c in range(len(manifest.labels))] for y in labels]
    metric = manifest.task.get("metric") or "log_loss"

    def value(probs) -> float:
        out = scalar_metrics(metrics_from_probs(np.asarray(probs), labels, ml, manifest.labels, extra=(metric,)))
        return round(float(out.get(metric, out.get("log_loss"))), 6)

    return {"metric": metric, "full_metric": value(results["full"].probabilities),
            "cascade_metric": value(results["cascade"].probabilities)}

"""`kit blend --cascade`: the cascade settings (share, combine mode, uncertainty measure) that maximise the task
metric on out-of-fold predictions.

The members are the blend's (oof.csv files, run folders or --all-folds parents, aligned on the rows every member
covers), in the order `kit predict` runs them: the first predicts every row, each later one the most uncertain
share. Each candidate is simulated by :func:`runtime.cascade.simulate` — the selection and combination the
prediction runs — over a grid of shares (0, 0.05, …, 1), both combine modes and both uncertainty measures.
Ties go to the smaller share (less time on the later members). The scores are in-sample for the settings.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from kaggle_kit.errors import KitError

SHARES = tuple(round(0.05 * k, 2) for k in range(21))


@dataclass
class CascadeFit:
    metric: str
    rows: int
    members: list
    weights: list
    best: dict  # share, combine, by, the metric, rows per member
    table: list = field(default_factory=list)  # every candidate: share, combine, by, score
    shares: tuple = SHARES
    greater_is_better: bool = False

    def to_dict(self) -> dict:
        return {"metric": self.metric, "rows": self.rows, "members": self.members, "weights": self.weights, "best": self.best,
                "candidates": self.table, "greater_is_better": self.greater_is_better}


def fit_cascade(sources: Sequence, metric: Optional[str] = None, combine_method: str = "mean",
                weights: Optional[Sequence[float]] = None, shares: Sequence[float] = SHARES) -> CascadeFit:
    """The best cascade over ``sources`` (see the module's docstring); ``weights``: the members' (default equal)."""
    from kaggle_kit.runtime.cascade import SELECT_BY, STAGE_COMBINE, CascadeSettings, simulate

    from .blend import align, check_metric, greater_is_better, read_oof, score

    if len(sources) < 2:
        raise KitError("--cascade needs at least two members (--oof FIRST --oof LATER …), in the order kit predict runs them")
    members = [read_oof(s) for s in sources]
    metric = check_metric(metric, "--metric") if metric else (members[0].metric or "log_loss")
    ids, labels, probs = align(members)
    ml = members[0].multilabel
    w = list(weights) if weights else [1.0 / len(probs)] * len(probs)
    sign = 1.0 if greater_is_better(metric) else -1.0
    table, best = [], None
    for share in shares:
        for mode in STAGE_COMBINE:
            for by in SELECT_BY:
                settings = CascadeSettings(share=float(share), by=by, combine=mode)
                p, rows = simulate(probs, w, settings, combine_method, ml)
                value = score(metric, p, labels, ml)
                table.append({"share": float(share), "combine": mode, "by": by, metric: value, "member_rows": rows})
                if best is None or sign * value > sign * best[metric] + 1e-12:
                    best = table[-1]
    names = [{"name": m.name, "member": m.member, "score": score(metric, p, labels, ml)} for m, p in zip(members, probs)]
    return CascadeFit(metric, len(ids), names, w, dict(best), table, tuple(shares), greater_is_better(metric))


def cascade_lines(fit: CascadeFit) -> str:
    """The [ensemble] cascade keys for kit.toml."""
    b = fit.best
    return (f"# cascade fitted by `kit blend --cascade` on {fit.rows} out-of-fold rows: {fit.metric} {b[fit.metric]:.5f}\n"
            f"cascade = true\ncascade_share = {b['share']}\ncascade_by = \"{b['by']}\"\ncascade_combine = \"{b['combine']}\"\n")


def write_cascade_keys(config_path, fit: CascadeFit) -> Path:
    """Add the cascade keys to the [ensemble] table of ``config_path`` (written by the blend just before), replacing
    earlier cascade keys; the result must load."""
    from kaggle_kit.config import load_config

    path = Path(config_path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if re.match(r"^\s*\[ensemble\]\s*(#.*)?$", l)), None)
    if start is None:
        raise KitError(f"{path}: no [ensemble] table to add the cascade keys to")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\s*\[", lines[i])), len(lines))
    keep = [l for l in lines[start + 1:end] if not re.match(r"^\s*cascade(_\w+)?\s*=|^# cascade fitted", l)]
    while keep and not keep[-1].strip():
        keep.pop()
    tail = ["\n"] if end < len(lines) else []
    new = "".join(lines[:start + 1] + keep) + cascade_lines(fit) + "".join(tail + lines[end:])
    tmp = path.with_name(f".{path.name}.cascade")
    tmp.write_text(new, encoding="utf-8")
    load_config(tmp, required=True)
    tmp.replace(path)
    return path


def cascade_report(fit: CascadeFit) -> str:
    """Lines for the terminal: each member alone, the best setting per share (both modes), the best overall."""
    m = fit.metric
    out = [f"cascade on the {fit.rows} rows every member covers ({m}, {'higher' if fit.greater_is_better else 'lower'} is better; "
           f"weights {', '.join(f'{w:.3f}' for w in fit.weights)})"]
    out += [f"  {x['name'][:28]:<28} alone {x['score']:.5f}" for x in fit.members]
    sign = 1.0 if fit.greater_is_better else -1.0
    for share in fit.shares:
        for mode in ("replace", "mean"):
            rows = [r for r in fit.table if r["share"] == share and r["combine"] == mode]
            r = max(rows, key=lambda x: sign * x[m])
            out.append(f"  share {share:>4.2f} {mode:<7} {r['by']:<7} {r[m]:.5f}  rows per member {r['member_rows']}")
    b = fit.best
    out.append(f"best: share {b['share']} combine {b['combine']} by {b['by']}: {m} {b[m]:.5f}")
    return "\n".join(out)

"""Ensembles: several run folders predicted in turn by the one engine (:mod:`runtime.infer`), then combined.

- members run one after another, each loaded, predicted (same length-sorted batches, TTA, devices,
  time budget as a single adapter) and freed before the next, so one GPU pair holds one model at a time;
- rows are tokenized once per distinct tokenizer + prompt settings + task kind (the ``tokens_key``) and
  the token ids are handed to the engine (``predict_rows(encoded=...)``);
- members must agree on the task kind and the label order, else :class:`EnsembleError` names the member;
- each member's probabilities are saved as it finishes (``parts/NN-name.npz``, written atomically) with a
  content key (its manifest, adapter weights, the test file and the settings that change predictions); a
  rerun reuses parts whose key matches and ignores stale ones (logged), so a crash or deadline keeps
  what was done;
- one time budget for the whole ensemble: each member's rate (wall seconds per padded token) is measured on
  a sample of rows spread over the length range when it starts; members not loaded yet are estimated by
  the size of their weights. The plan degrades all remaining members by the engine's own steps
  (:func:`runtime.infer.degrade_steps`: shorter max length, then less TTA) and drops the lowest-weight
  members last; every decision is logged;
- ``combine``: ``mean`` (weighted mean of probabilities) or ``logit_mean`` (weighted mean of log
  probabilities, renormalised by softmax; of logits, then sigmoid, for multi-label tasks).
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .progress import quiet_known_warnings, recorder
from .infer import SAFETY, EngineReport, degrade_steps, parse_tta, predict_rows, projected_seconds
from .health import DEFAULT_MAX_UNPREDICTED_SHARE, UnpredictedShare
from .manifest import MANIFEST_NAME, CompatibilityError

COMBINE_METHODS = ("mean", "logit_mean")
PARTS_VERSION = 1
SAMPLE_SHARE = 0.02  # share of rows (at least SAMPLE_MIN) that measures a member's rate under a budget
SAMPLE_MIN = 16
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "spiece.model")


class EnsembleError(CompatibilityError):
    """Members that cannot be combined (task, labels, weights), named in the message."""


# --------------------------------------------------------------------------- weights and combining


def parse_weights(weights, n: int, names: Sequence[str] = ()) -> list:
    """Weights for ``n`` members from '0.6,0.4', a list, or None (equal); normalised to sum to 1.

    Raises EnsembleError when the count differs from the members', a weight is negative or not a
    number, or all are zero.
    """
    if weights in (None, "", []):
        return [1.0 / n] * n if n else []
    if isinstance(weights, str):
        weights = [w for w in weights.replace(" ", "").split(",") if w]
    try:
        w = [float(x) for x in weights]
    except (TypeError, ValueError):
        raise EnsembleError(f"weights {weights!r} are not numbers; give one per member, e.g. --weights 0.6,0.4") from None
    shown = ", ".join(names) if names else f"{n} member(s)"
    if len(w) != n:
        raise EnsembleError(f"{len(w)} weight(s) {w} for {n} member(s) ({shown}); give exactly one weight per member, in the same order")
    if any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise EnsembleError(f"weights {w} must be non-negative numbers with a positive sum (they are normalised to sum to 1)")
    s = sum(w)
    return [x / s for x in w]


def combine(probs: Sequence[np.ndarray], weights: Sequence[float], method: str = "mean", multilabel: bool = False) -> np.ndarray:
    """Weighted combination of members' probabilities (each rows × labels) → float64 rows × labels.

    ``mean``: Σ wᵢ pᵢ. ``logit_mean``: softmax(Σ wᵢ log pᵢ) (single-label), sigmoid(Σ wᵢ logit pᵢ) (multi-label).
    Weights are renormalised to sum to 1. Probabilities are clipped to [1e-7, 1 - 1e-7] before logs.
    """
    if method not in COMBINE_METHODS:
        raise EnsembleError(f"combine {method!r} is not one of {', '.join(COMBINE_METHODS)}")
    if not probs:
        raise EnsembleError("no member predictions to combine")
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in probs])  # members × rows × labels
    if method == "mean":
        return np.tensordot(w, stack, axes=1)
    p = np.clip(stack, 1e-7, 1 - 1e-7)
    if multilabel:
        z = np.tensordot(w, np.log(p) - np.log1p(-p), axes=1)
        return 1.0 / (1.0 + np.exp(-z))
    z = np.tensordot(w, np.log(p), axes=1)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- members


@dataclass
class EnsembleMember:
    """One member: ``load()`` → ([(model, device)], tokenizer); freed after it has predicted.

    ``tokens_key``: members with equal keys share one tokenization. ``key``: content key of its saved
    part ('' = never saved). ``size``: a cost proxy (bytes of weights) for estimating members not run yet.
    """

    name: str
    weight: float
    manifest: object
    load: Callable[[], tuple]
    tokens_key: str
    key: str = ""
    size: float = 1.0
    path: str = ""
    base: Optional[str] = None


def check_members(members: Sequence[EnsembleMember]) -> None:
    """Raise EnsembleError unless every member has the first member's task kind and label order."""
    first = members[0]
    for m in members[1:]:
        if m.manifest.kind != first.manifest.kind:
            raise EnsembleError(f"member {m.name} ({m.path or m.name}) is a {m.manifest.kind!r} model but {first.name} is "
                                f"{first.manifest.kind!r}; ensemble members must predict the same task")
        if list(m.manifest.labels) != list(first.manifest.labels):
            raise EnsembleError(f"member {m.name} ({m.path or m.name}) has labels {m.manifest.labels} but {first.name} has "
                                f"{first.manifest.labels}; members must share the label order (retrain it, or leave it out)")


def expand_members(paths: Sequence, weights: Sequence[float], names: Optional[Sequence[str]] = None) -> list:
    """[(name, folder, weight)]: a run folder is one member; an `--all-folds` parent (fold-*/ folders with a
    kit_manifest.json, none of its own) becomes one member per fold, sharing the parent's weight equally.
    Names: ``names`` (one per path; a parent's folds become NAME/fold-K), else folder names made unique."""
    out = []
    for n, (p, w) in enumerate(zip(paths, weights)):
        p = Path(p)
        given = names[n] if names else None
        if (p / MANIFEST_NAME).is_file() or not p.is_dir():
            out.append((given or p.name, p, w))
            continue
        folds = sorted(f for f in p.glob("fold-*") if (f / MANIFEST_NAME).is_file())
        if not folds:
            raise FileNotFoundError(f"{p}: no {MANIFEST_NAME} and no fold-*/ run folders; pass a run folder from `kit train` "
                                    f"or the --all-folds parent holding fold-0, fold-1, …")
        out += [(f"{given or p.name}/{f.name}", f, w / len(folds)) for f in folds]
    short = [name for name, _, _ in out]
    return [((f"{f.parent.name}/{f.name}" if short.count(name) > 1 else name), f, w) for name, f, w in out]


def file_sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def folder_fingerprint(folder, names: Sequence[str] = (), pattern: str = "") -> str:
    """sha256 over the named files (and files matching ``pattern``) present in ``folder``."""
    folder = Path(folder)
    files = [folder / n for n in names if (folder / n).is_file()]
    if pattern:
        files += sorted(p for p in folder.glob(pattern) if p.is_file() and p not in files)
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def tokens_key_for(tokenizer_dir, manifest) -> str:
    """Members with the same tokenizer files, prompt settings and task kind encode rows identically."""
    spec = json.dumps({"prompt": manifest.prompt, "kind": manifest.kind}, sort_keys=True)
    return hashlib.sha256((folder_fingerprint(tokenizer_dir, TOKENIZER_FILES) + spec).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- parts (saved predictions)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "member"


def part_path(parts_dir, index: int, name: str) -> Path:
    return Path(parts_dir) / f"{index:02d}-{_slug(name)}.npz"


def save_part(path, probs: np.ndarray, ids: Sequence, key: str, info: dict) -> Path:
    """Write a member's probabilities, ids, key and info atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, probs=np.asarray(probs, dtype=np.float32), ids=np.asarray([str(i) for i in ids]),
                 meta=np.asarray(json.dumps({"key": key, "version": PARTS_VERSION, **info}, default=str)))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_part(path, key: str, ids: Sequence) -> tuple:
    """(probs, info) of a saved part whose key and ids match; (None, why) otherwise."""
    path = Path(path)
    if not path.is_file():
        return None, "no part"
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            probs, saved_ids = z["probs"], [str(i) for i in z["ids"]]
    except (OSError, ValueError, KeyError) as exc:
        return None, f"unreadable ({exc})"
    if meta.get("key") != key:
        return None, f"stale: its key {str(meta.get('key'))[:12]}… is not {key[:12]}… (another adapter, test file or setting)"
    if saved_ids != [str(i) for i in ids]:
        return None, "stale: its ids differ from the test file's"
    return probs, meta


# --------------------------------------------------------------------------- the time budget


@dataclass
class MemberCost:
    """What the planner knows of one member still to run: token lengths, cap, wall seconds per padded token."""

    name: str
    weight: float
    lengths: np.ndarray
    cap: int
    rate: float
    load_seconds: float = 0.0
    measured: bool = False


@dataclass
class BudgetPlan:
    steps: dict  # name -> (cap, tta_fraction)
    seconds: dict  # name -> projected seconds (load + prediction)
    dropped: list
    total: float
    fits: bool
    decisions: list = field(default_factory=list)


def plan_budget(costs: Sequence[MemberCost], tta_frac: float, seconds_left: float, n_rows: Optional[int] = None) -> BudgetPlan:
    """The least degraded plan whose projection fits ``SAFETY × seconds_left``.

    All members move down :func:`runtime.infer.degrade_steps` together (shorter max length for the longest
    rows, then less TTA); only when even the last step does not fit is the lowest-weight member dropped
    (ties: the most expensive), and the search restarts from no degradation. The last member is never
    dropped: the engine's deadline and fallback then bound the run.
    """
    active = list(costs)
    dropped, decisions = [], []
    budget = max(0.0, seconds_left) * SAFETY
    while True:
        ladders = {c.name: degrade_steps(c.cap, tta_frac) for c in active}
        depth = max(len(v) for v in ladders.values())
        best = None
        for s in range(depth):
            steps = {c.name: ladders[c.name][min(s, len(ladders[c.name]) - 1)] for c in active}
            secs = {c.name: c.load_seconds + projected_seconds(c.lengths, steps[c.name][0], steps[c.name][1],
                                                               n_rows or len(c.lengths), c.rate, 1) for c in active}
            best = (steps, secs, sum(secs.values()))
            if best[2] <= budget:
                break
        steps, secs, total = best
        fits = total <= budget
        if fits or len(active) == 1:
            return BudgetPlan(steps, secs, dropped, total, fits, decisions)
        victim = sorted(active, key=lambda c: (c.weight, -secs[c.name]))[0]
        decisions.append(f"ensemble budget: even the most degraded plan needs {total / 60:.1f} min of {budget / 60:.1f} min; "
                         f"dropping {victim.name} (weight {victim.weight:.3f}, the lowest)")
        dropped.append(victim.name)
        active = [c for c in active if c.name != victim.name]


def _sample_positions(lengths: np.ndarray) -> np.ndarray:
    """Rows at evenly spaced length ranks (short, medium and long), about SAMPLE_SHARE of them."""
    n = len(lengths)
    k = min(n, max(SAMPLE_MIN, int(n * SAMPLE_SHARE)))
    order = np.argsort(lengths, kind="stable")
    return np.sort(order[np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))])


def measure_rate(replicas, tokenizer, manifest, rows, encoded, batch_tokens, max_batch_rows) -> float:
    """Wall seconds per padded token of ``replicas`` on a sample of rows (its predictions are discarded)."""
    lengths = np.array([len(e.input_ids) for e in encoded])
    pos = _sample_positions(lengths)
    rep = EngineReport(decisions=[])
    t = time.monotonic()
    predict_rows(replicas[0][0], tokenizer, manifest, [rows[i] for i in pos], batch_tokens=batch_tokens,
                 max_batch_rows=max_batch_rows, replicas=replicas, report=rep, encoded=[encoded[i] for i in pos])
    return (time.monotonic() - t) / max(1, rep.padded)


def free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


# --------------------------------------------------------------------------- running the members


def _reusable(members, parts_dir, ids, decide) -> dict:
    """name -> (probs, info) of members whose saved part matches their key; stale parts are logged."""
    found = {}
    if not parts_dir:
        return found
    for i, m in enumerate(members):
        if not m.key:
            continue
        path = part_path(parts_dir, i, m.name)
        probs, info = load_part(path, m.key, ids)
        if probs is not None:
            found[m.name] = (probs, info)
            decide(f"member {m.name}: reusing its saved predictions {path} (key {m.key[:12]}…); it will not run again")
        elif info != "no part":
            decide(f"member {m.name}: ignoring {path}: {info}; it runs again")
    return found


def _replan(members, i, encoded_lengths, cache, rate, ref, skip, deadline, tta_frac, n, decide) -> BudgetPlan:
    """Budget plan for member ``i`` (measured) and the members after it that still have to run."""
    from .prompting import PromptSpec

    rate_ref, size_ref, load_ref = ref
    costs = []
    for j in range(i, len(members)):
        m = members[j]
        if m.name in skip:
            continue
        lengths = encoded_lengths if j == i or m.tokens_key not in cache else np.array([len(e.input_ids) for e in cache[m.tokens_key]])
        scale = (m.size / size_ref) if size_ref > 0 else 1.0
        costs.append(MemberCost(m.name, m.weight, lengths, int(PromptSpec.from_dict(m.manifest.prompt).max_length),
                                rate if j == i else rate_ref * scale, 0.0 if j == i else load_ref * scale, j == i))
    left = deadline - time.monotonic()
    plan = plan_budget(costs, tta_frac, left, n)
    for d in plan.decisions:
        decide(d)
    shown = "; ".join(f"{c.name}: max length {plan.steps[c.name][0]}, TTA {plan.steps[c.name][1]:.2f}, ~{plan.seconds[c.name] / 60:.1f} min"
                      f"{'' if c.measured or j == i else ' (estimated from its size)'}" for j, c in enumerate(costs) if c.name in plan.steps)
    decide(f"ensemble budget: {left / 60:.1f} min left; plan {'fits' if plan.fits else 'does NOT fit (the deadline will cut it)'}: {shown}")
    return plan


def _run_one(m, rows, encoded, tok, replicas, tta, batch_tokens, max_batch_rows, member_deadline, log, progress) -> tuple:
    rep = EngineReport(decisions=[])
    t = time.monotonic()
    probs = predict_rows(replicas[0][0], tok, m.manifest, rows, tta=tta, batch_tokens=batch_tokens, max_batch_rows=max_batch_rows,
                         deadline=member_deadline, replicas=replicas, log=log, progress=progress, report=rep, encoded=encoded)
    info = {"seconds": round(time.monotonic() - t, 3), "tokens": rep.tokens, "padding_share": round(rep.padding_share, 4),
            "truncated_rows": rep.truncated_rows, "fallback_rows": rep.fallback_rows, "tta_rows": rep.tta_rows,
            "max_length": rep.max_length, "decisions": list(rep.decisions),
            # rows this member did not really predict (deadline cut, non-finite after the float32 re-run): they hold the fill
            "fallback_ids": list(rep.fallback_ids), "nonfinite_rows": list(rep.nonfinite_rows),
            "rerun_rows": list(rep.rerun_rows), "filled_rows": list(rep.filled_rows)}
    return probs, info


def run_members(members: Sequence[EnsembleMember], rows: Sequence, ids: Sequence, *, combine_method: str = "mean", tta="none",
                batch_tokens=None, max_batch_rows=None, deadline: Optional[float] = None, parts_dir=None,
                log: Optional[Callable] = None, progress: bool = False) -> tuple:
    """(combined probabilities, per-member outcomes, decisions): members in turn, each loaded, predicted, saved, freed.

    ``deadline``: a ``time.monotonic()`` time for the whole ensemble (loads included). ``parts_dir``: where each
    member's predictions are saved as it finishes and looked for before it runs (None: nothing saved).
    """
    from .prompting import Encoder, PromptSpec

    log = log or (lambda *a, **k: None)
    decisions: list = []
    decide = recorder(decisions, log)

    check_members(members)
    if combine_method not in COMBINE_METHODS:
        raise EnsembleError(f"combine {combine_method!r} is not one of {', '.join(COMBINE_METHODS)}")
    tta_frac, n = parse_tta(tta), len(rows)
    kind = members[0].manifest.kind
    reusable = _reusable(members, parts_dir, ids, decide)
    results = {name: p for name, (p, _) in reusable.items()}
    last_use = {m.tokens_key: i for i, m in enumerate(members) if m.name not in results}
    cache, owners, outcomes, skip, ref = {}, {}, [], set(results), None
    for i, m in enumerate(members):
        out = {"name": m.name, "path": m.path, "weight": round(m.weight, 6), "reused": m.name in results, "dropped": False}
        outcomes.append(out)
        if m.name in reusable:
            ran = (reusable[m.name][1] or {}).get("ran", {}) if isinstance(reusable[m.name][1], dict) else {}
            out.update({k: ran.get(k, []) for k in ("fallback_ids", "filled_rows")})
        if m.name in results or m.name in skip:
            out["dropped"] = m.name not in results
            continue
        t = time.monotonic()
        replicas, tok = m.load()
        out["load_seconds"] = round(time.monotonic() - t, 3)
        try:
            if m.tokens_key in cache:
                encoded = cache[m.tokens_key]
                out["tokens_shared_with"] = owners[m.tokens_key]
                decide(f"member {m.name}: token ids shared with {owners[m.tokens_key]} (same tokenizer, prompt settings and task)")
            else:
                t = time.monotonic()
                spec = PromptSpec.from_dict(m.manifest.prompt)
                encoded = Encoder(tok, spec, "pairwise" if kind == "pairwise" else "classification").encode(list(rows))
                out["encode_seconds"] = round(time.monotonic() - t, 3)
                cache[m.tokens_key], owners[m.tokens_key] = encoded, m.name
            member_deadline, tta_i = None, tta
            if deadline is not None:
                lengths = np.array([len(e.input_ids) for e in encoded])
                rate = measure_rate(replicas, tok, m.manifest, rows, encoded, batch_tokens, max_batch_rows)
                ref = (rate, m.size, out["load_seconds"])
                plan = _replan(members, i, lengths, cache, rate, ref, skip, deadline, tta_frac, n, decide)
                skip.update(plan.dropped)
                if m.name in plan.dropped:
                    out["dropped"] = True
                    continue
                tta_i = plan.steps[m.name][1]
                now = time.monotonic()
                last = all(x.name in skip or x.name in results for x in members[i + 1:])
                share = (deadline - now) * plan.seconds[m.name] / plan.total if plan.total > 0 else deadline - now
                member_deadline = deadline if last else now + share
            decide(f"member {i + 1}/{len(members)} {m.name}: predicting {n} rows (weight {m.weight:.3f})")
            probs, info = _run_one(m, rows, encoded, tok, replicas, tta_i, batch_tokens, max_batch_rows, member_deadline, log, progress)
        finally:
            replicas = tok = None
            free_memory()
        if last_use.get(m.tokens_key) == i:
            cache.pop(m.tokens_key, None)
        results[m.name] = probs
        out.update(info)
        if parts_dir and m.key:
            out["part"] = str(save_part(part_path(parts_dir, i, m.name), probs, ids, m.key, {"name": m.name, "ran": info}))
            decide(f"member {m.name}: saved {out['part']} ({info['seconds']:.1f}s)")
    used = [m for m in members if m.name in results]
    if len(used) < len(members):
        decide(f"combining {len(used)} of {len(members)} members ({', '.join(m.name for m in used)}); weights renormalised over them")
    probs = combine([results[m.name] for m in used], [m.weight for m in used], combine_method, multilabel=kind == "multilabel")
    return probs, outcomes, decisions


# --------------------------------------------------------------------------- from files


def weights_fingerprint(folder) -> str:
    """Content key of a folder's weight files: sha256 of files up to 512 MB; size + first/last MiB of larger
    ones (a merged 9B model would take a minute to hash in full)."""
    h = hashlib.sha256()
    for f in sorted(p for pat in ("*.safetensors", "*.bin") for p in Path(folder).glob(pat) if p.is_file()):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        if size <= 512 << 20:
            h.update(file_sha256(f).encode())
        else:
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read(1 << 20))
    return h.hexdigest()


def pick_base(name: str, folder, manifest, base_path=None, bases: Sequence = ()):
    """The base folder for one member: None for a merged folder, ``base_path`` when given, else the mounted
    candidate (``bases``) its manifest accepts (config sha256, else architecture), else the manifest's path."""
    from .manifest import check_compatible
    from .modeling import is_merged_folder

    if is_merged_folder(folder):
        return None
    if base_path:
        return base_path
    bases = [b for b in (bases or ()) if b]
    if len(bases) == 1:
        return bases[0]
    for b in bases:
        try:
            check_compatible(manifest, b, None)
            return b
        except CompatibilityError:
            continue
    if bases:
        raise EnsembleError(f"member {name} ({folder}): none of the mounted bases {[str(b) for b in bases]} is its base "
                            f"({manifest.base_model.get('name') or manifest.base_model.get('path')}); mount that base's instance")
    return manifest.base_model.get("path")


@dataclass
class EnsembleResult(UnpredictedShare):
    out_path: Path
    rows: int
    seconds: float
    decisions: list
    probabilities: np.ndarray
    ids: list
    label_names: list
    style: str
    members: list
    combine: str
    devices: list
    parts_dir: str = ""
    unpredicted_ids: list = field(default_factory=list)  # rows some combined member filled instead of predicting
    max_unpredicted_share: Optional[float] = None

    @property
    def unpredicted_rows(self) -> int:
        return len(self.unpredicted_ids)

    def to_dict(self) -> dict:
        return {"out_path": str(self.out_path), "rows": self.rows, "seconds": round(self.seconds, 3), "style": self.style,
                "combine": self.combine, "devices": self.devices, "parts_dir": self.parts_dir, "members": self.members,
                "unpredicted_ids": self.unpredicted_ids, "unpredicted_rows": self.unpredicted_rows,
                "unpredicted_share": round(self.unpredicted_share, 6),
                "max_unpredicted_share": DEFAULT_MAX_UNPREDICTED_SHARE if self.max_unpredicted_share is None else self.max_unpredicted_share,
                "too_many_unpredicted": self.too_many_unpredicted, "decisions": self.decisions}


def file_members(adapters: Sequence, weights, data_sha: str, *, base_path=None, bases: Sequence = (), devices=(),
                 quantization=None, tta=None, log: Optional[Callable] = None, names: Optional[Sequence[str]] = None) -> list:
    """EnsembleMembers for run folders (an --all-folds parent expands into its folds), keys and loaders included."""
    from .testfile import load_replicas
    from .manifest import Manifest

    w = parse_weights(weights, len(adapters), [str(a) for a in adapters])
    members = []
    for name, folder, weight in expand_members(adapters, w, names):
        manifest = Manifest.load(folder)
        base = pick_base(name, folder, manifest, base_path, bases)
        tok_dir = folder if (Path(folder) / "tokenizer_config.json").is_file() or base is None else base
        settings = {"tta": parse_tta(tta), "quantization": quantization or "", "kind": manifest.kind}
        key = hashlib.sha256(json.dumps({
            "manifest": file_sha256(Path(folder) / MANIFEST_NAME), "weights": weights_fingerprint(folder), "data": data_sha,
            "base": folder_fingerprint(base, ("config.json",)) if base else "", "settings": settings, "v": PARTS_VERSION,
        }, sort_keys=True).encode()).hexdigest()
        size = sum(p.stat().st_size for d in (folder, base) if d for pat in ("*.safetensors", "*.bin") for p in Path(d).glob(pat))
        load = (lambda f=folder, b=base: load_replicas(f, list(devices), base_path=b, quantization=quantization, log=log))
        members.append(EnsembleMember(name, weight, manifest, load, tokens_key_for(tok_dir, manifest), key, float(size or 1),
                                      str(folder), str(base) if base else None))
    return members


@quiet_known_warnings()  # the listed harmless library warnings only, only during the call
def predict_ensemble_file(adapters: Sequence, data_path, out_path, *, weights=None, combine_method: str = "mean", base_path=None,
                          bases: Sequence = (), parts_dir=None, tta=None, budget_minutes=None, batch_tokens=None,
                          max_batch_rows=None, devices=None, quantization=None, log: Callable = print, progress: bool = True,
                          names: Optional[Sequence[str]] = None, sample=None,
                          max_unpredicted_share: Optional[float] = None) -> EnsembleResult:
    """Predict ``data_path`` with every member (run folders; an --all-folds parent counts as its folds) and write
    the weighted combination as a validated submission. ``parts_dir``: each member's predictions are saved
    there as it finishes and reused by a rerun (default: a ``parts`` folder beside ``out_path``). ``names``: one
    per adapter (default: folder names). ``sample``: the competition's sample submission to follow and compare
    with (as in infer.predict_file). A row counts as unpredicted when any combined member gave it the fill
    (deadline, non-finite logits); above ``max_unpredicted_share`` (default 1%) the result's
    ``too_many_unpredicted`` is True and an ``error:`` line is logged (the submission is still written)."""
    from .infer import parse_devices
    from .testfile import read_test_data, submission_style
    from .manifest import check_compatible
    from .submission import compare_with_sample, write_submission

    t0 = time.monotonic()
    log = log or (lambda *a, **k: None)
    decisions: list = []
    decide = recorder(decisions, log)

    if not adapters:
        raise EnsembleError("no ensemble members: pass --adapter (repeatable) or set [ensemble] members in kit.toml")
    devs = parse_devices(devices)
    members = file_members(adapters, weights, file_sha256(data_path), base_path=base_path, bases=bases, devices=devs,
                           quantization=quantization, tta=tta, log=decide, names=names)
    check_members(members)
    ds = read_test_data(members[0].manifest, data_path, decide)
    labels = ds.label_names or None
    for m in members:  # every member against its base and the data, before any weights load
        try:
            check_compatible(m.manifest, m.base, labels)
        except CompatibilityError as exc:
            raise EnsembleError(f"member {m.name} ({m.path}): {exc}") from None
    parts_dir = Path(parts_dir) if parts_dir else Path(out_path).resolve().parent / "parts"
    decide(f"ensemble of {len(members)} member(s) ({combine_method}): " + ", ".join(f"{m.name} {m.weight:.3f}" for m in members)
           + f"; parts in {parts_dir}")
    deadline = t0 + float(budget_minutes) * 60.0 if budget_minutes else None
    probs, outcomes, more = run_members(members, ds.rows, ds.ids, combine_method=combine_method, tta=tta or "none",
                                        batch_tokens=batch_tokens, max_batch_rows=max_batch_rows, deadline=deadline,
                                        parts_dir=parts_dir, log=log, progress=progress)
    decisions += more
    spec, sample_path = submission_style(ds, members[0].manifest, data_path, sample, decide)
    write_submission(out_path, ds.ids, probs, spec, members[0].manifest.labels, expected_ids=ds.ids)
    if sample_path is not None:
        same = compare_with_sample(out_path, sample_path, ids_if_shared=sample is None)
        if not same["ids_compared"]:
            decide(f"{out_path} has the columns of the sample {sample_path}; ids not compared: it shares none of {data_path}'s ids")
    seconds = time.monotonic() - t0
    log(f"wrote {out_path}: {len(ds.ids)} rows ({spec.style}) from {sum(1 for o in outcomes if not o['dropped'])} member(s) "
        f"combined by {combine_method} in {seconds:.1f}s; parts in {parts_dir}")
    result = EnsembleResult(Path(out_path), len(ds.ids), seconds, decisions, probs, list(ds.ids), members[0].manifest.labels,
                            spec.style, outcomes, combine_method, devs, str(parts_dir), max_unpredicted_share=max_unpredicted_share)
    result.unpredicted_ids = _unpredicted(outcomes, ds.ids)
    if result.unpredicted_ids:
        decide(f"{result.unpredicted_rows} row(s) hold a member's fill instead of its prediction; first ids: {result.unpredicted_ids[:5]}")
    if result.too_many_unpredicted:
        decide(f"error: {result.unpredicted_rows} of {result.rows} rows ({result.unpredicted_share:.1%}) could not be predicted by "
               f"every member (more than max_unpredicted_share = {result.to_dict()['max_unpredicted_share']:.1%}); "
               f"the submission {out_path} was written but is not trustworthy — see the lines above for the cause")
    return result


def _unpredicted(outcomes: list, ids: Sequence) -> list:
    """Test ids (in file order) that some combined (not dropped) member filled instead of predicting."""
    bad = {str(i) for o in outcomes if not o.get("dropped") for i in (list(o.get("fallback_ids", [])) + list(o.get("filled_rows", [])))}
    return [i for i in ids if str(i) in bad]

"""The batched inference engine: rows in, probabilities (rows × labels) out, with the decisions that made them.

- rows are tokenized once with the manifest's prompt spec (:class:`runtime.prompting.Encoder`),
  sorted by length and packed into token-budget batches padded only to their own longest row
  (:mod:`runtime.batching`); results return to the rows' order;
- ``torch.inference_mode`` and no KV cache;
- TTA for pairwise tasks: the A/B-swapped rows run too, and their probabilities, mirrored back by
  :func:`runtime.formats.swap_permutation`, are averaged in — on all rows or on the most uncertain share;
- devices: one model replica per device, one worker thread each (torch releases the GIL), pulling
  batches from one shared queue so each device gets work in proportion to its speed; the same code
  runs with several CPU workers;
- a time budget: the first batches (a sample spread over the length range) measure seconds per
  padded token; the run projects its total and degrades in steps (shorter max length for the longest
  remaining rows, then less TTA) so it ends in time, re-checking between chunks of batches
  (:mod:`runtime.budget`);
- numerics (:mod:`runtime.health`): every batch's logits are checked; rows with non-finite values
  are re-run once in float32, and rows still without a finite prediction — like rows the deadline
  cut — get the mean prediction of the rows really predicted. Whatever happens, every row gets a
  prediction, and each decision is counted, listed by id and logged in the :class:`EngineReport`.

:func:`runtime.infer.predict_file` runs it on a test file; :mod:`runtime.ensemble` on each member in turn.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

import numpy as np

from .attention import fast_attention
from .batching import TokenTable, choose_rows, order_batches, plan_batches
from .budget import CALIBRATION_BATCHES, SAFETY, _plan_fit
from .health import computes_in_half, fill_value, finite_rows, fp32_mode, is_oom
from .progress import recorder
from .workers import _Clock, model_device, run_batches

DEFAULT_BATCH_TOKENS = 8192
DEFAULT_MAX_ROWS = 64


# --------------------------------------------------------------------------- options


def parse_tta(tta) -> float:
    """'none' → 0, 'all' → 1, 'uncertain:0.3' → 0.3 (share of rows, most uncertain first)."""
    if tta in (None, "", "none", False, 0):
        return 0.0
    if tta in ("all", True):
        return 1.0
    if isinstance(tta, (int, float)):
        frac = float(tta)
    elif isinstance(tta, str) and tta.startswith("uncertain:"):
        try:
            frac = float(tta.split(":", 1)[1])
        except ValueError:
            frac = -1.0
    else:
        frac = -1.0
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"tta {tta!r} is not one of none, all, uncertain:FRACTION (FRACTION between 0 and 1, e.g. uncertain:0.3)")
    return frac


def _tqdm(total, desc, unit="row", log=None, **_):
    """A bar on a terminal, plain lines in notebooks and logs (runtime/progress.py)."""
    from .progress import Progress

    return Progress(total, desc, unit, log=log)


# --------------------------------------------------------------------------- the engine


@dataclass
class EngineReport:
    """Figures and decisions of one :func:`predict_rows` call. Row lists hold test ids.

    ``nonfinite_rows``: rows whose first forward pass gave non-finite logits; ``rerun_rows``: those
    re-run in float32; ``filled_rows``: rows still without a finite prediction, given ``fill``;
    ``fallback_ids`` / ``fallback_rows``: rows the deadline cut, also given ``fill`` (the mean of the
    rows really predicted); ``tta_single_pass``: TTA rows that kept one pass because the other was not
    finite; ``predicted_rows``: rows with a real (finite) prediction."""

    decisions: list
    tokens: int = 0
    padded: int = 0
    seconds: float = 0.0
    truncated_rows: int = 0
    fallback_rows: int = 0
    tta_rows: int = 0
    max_length: int = 0
    fallback_ids: list = field(default_factory=list)
    nonfinite_rows: list = field(default_factory=list)
    rerun_rows: list = field(default_factory=list)
    filled_rows: list = field(default_factory=list)
    tta_single_pass: int = 0
    predicted_rows: int = 0
    fill: Optional[list] = None
    predict_seconds: float = 0.0

    @property
    def padding_share(self) -> float:
        return 0.0 if self.padded == 0 else 1.0 - self.tokens / self.padded

    @property
    def unpredicted_rows(self) -> int:
        """Rows that got the fill instead of a prediction (deadline cut or non-finite)."""
        return self.fallback_rows + len(self.filled_rows)


class _Encoding:
    """Token ids of the rows (and, lazily, of their swapped copies) at a given max length."""

    def __init__(self, tokenizer, spec, kind, rows, permutation):
        from .prompting import Encoder

        self.tokenizer, self.spec, self.kind, self.rows, self.permutation = tokenizer, spec, kind, rows, permutation
        self.Encoder = Encoder
        self._encoders: dict = {}

    def encoder(self, max_length: int):
        if max_length not in self._encoders:
            self._encoders[max_length] = self.Encoder(self.tokenizer, replace(self.spec, max_length=int(max_length)), self.kind)
        return self._encoders[max_length]

    def encode(self, positions, max_length: int, swapped: bool = False) -> list:
        rows = [self.rows[i] for i in positions]
        if swapped:
            rows = [r.swapped(self.permutation) for r in rows]
        return self.encoder(max_length).encode(rows)


def predict_rows(
    model,
    tokenizer,
    manifest,
    rows: Sequence,
    *,
    tta="none",
    batch_tokens: Optional[int] = None,
    max_batch_rows: Optional[int] = None,
    budget_minutes: Optional[float] = None,
    deadline: Optional[float] = None,
    replicas: Optional[list] = None,
    workers: int = 1,
    log: Optional[Callable] = None,
    progress: bool = False,
    report: Optional[EngineReport] = None,
    inplace_attention: bool = True,
    encoded: Optional[list] = None,
) -> np.ndarray:
    """Probabilities (rows × labels, in the order of ``rows``) of ``model`` on ``rows`` (formats.Row).

    ``replicas``: [(model, device)] to run in parallel (default: ``model`` on its device, shared by
    ``workers`` threads). ``deadline``: a ``time.monotonic()`` time to end by (else now + budget).
    Pass an :class:`EngineReport` as ``report`` to receive the decisions and figures.
    ``inplace_attention``: run Gemma-2's eager attention with in-place steps (same results, less memory traffic).
    ``encoded``: the rows already encoded at the manifest's max length (``Encoder.encode`` output, one per
    row); an ensemble passes it so members with the same tokenizer and prompt settings tokenize once.
    """
    models = [m for m, _ in replicas] if replicas else [model]
    with fast_attention(models, enabled=inplace_attention):
        return _predict_rows(model, tokenizer, manifest, rows, tta=tta, batch_tokens=batch_tokens,
                             max_batch_rows=max_batch_rows, budget_minutes=budget_minutes, deadline=deadline,
                             replicas=replicas, workers=workers, log=log, progress=progress, report=report, encoded=encoded)


@dataclass
class _Run:
    """The state the steps of one :func:`predict_rows` call share."""

    rows: list
    enc: "_Encoding"
    replicas: list
    table: TokenTable
    row_cap: np.ndarray  # the max length each row's current encoding was cut at
    pad_id: int
    num_labels: int
    multilabel: bool
    batch_tokens: int
    max_rows: int
    deadline: Optional[float]
    permutation: list
    probs: np.ndarray
    done: np.ndarray
    rep: EngineReport
    decide: Callable
    progress: bool
    clock: _Clock = field(default_factory=_Clock)
    log: Optional[Callable] = None

    def ids(self, positions) -> list:
        return [self.rows[int(i)].id for i in positions]

    def run(self, table, batches, replicas=None, **kw) -> tuple:
        return run_batches(replicas or self.replicas, table, batches, self.pad_id, self.num_labels,
                           multilabel=self.multilabel, deadline=self.deadline, **kw)


def _predict_rows(model, tokenizer, manifest, rows, *, tta, batch_tokens, max_batch_rows, budget_minutes, deadline,
                  replicas, workers, log, progress, report, encoded=None) -> np.ndarray:
    from .formats import swap_permutation
    from .prompting import PromptSpec

    t0 = time.monotonic()
    log = log or (lambda *a, **k: None)
    rep = report if report is not None else EngineReport(decisions=[])
    decide = recorder(rep.decisions, log)

    n = len(rows)
    labels = manifest.labels
    num_labels = len(labels) or int(getattr(getattr(model, "config", None), "num_labels", 2))
    kind = manifest.kind
    tta_frac = parse_tta(tta)
    if tta_frac and kind != "pairwise":
        decide(f"tta: {tta} ignored: A/B swapping applies to pairwise tasks, this one is {kind}")
        tta_frac = 0.0
    permutation = swap_permutation(labels) if kind == "pairwise" else list(range(num_labels))
    if replicas is None:
        replicas = [(model, model_device(model))] * max(1, int(workers))
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has no pad token; load it with runtime.modeling.load_tokenizer")
    for m, _ in replicas:
        cfg = getattr(m, "config", None)
        if cfg is not None:
            cfg.use_cache = False
            if getattr(cfg, "pad_token_id", None) is None:
                cfg.pad_token_id = pad_id
    if deadline is None and budget_minutes:
        deadline = t0 + float(budget_minutes) * 60.0
    spec = PromptSpec.from_dict(manifest.prompt)
    rep.max_length = int(spec.max_length)
    probs = np.full((n, num_labels), np.nan, dtype=np.float32)
    if n == 0:
        return probs
    enc = _Encoding(tokenizer, spec, "pairwise" if kind == "pairwise" else "classification", list(rows), permutation)
    table = _first_encoding(enc, rows, spec, pad_id, decide, rep, encoded)
    run = _Run(list(rows), enc, replicas, table, np.full(n, rep.max_length, dtype=np.int64), pad_id, num_labels,
               kind == "multilabel", int(batch_tokens or DEFAULT_BATCH_TOKENS), int(max_batch_rows or DEFAULT_MAX_ROWS),
               deadline, permutation, probs, np.zeros(n, dtype=bool), rep, decide, progress, log=log)
    tta_frac = _main_pass(run, tta_frac)
    _rerun_nonfinite(run)
    if tta_frac > 0 and run.done.any():
        _tta_pass(run, tta_frac)
    _fill(run)
    rep.tokens, rep.padded = run.clock.tokens, run.clock.padded
    rep.seconds = rep.predict_seconds = time.monotonic() - t0
    return probs


def _first_encoding(enc, rows, spec, pad_id, decide, rep, encoded=None) -> TokenTable:
    """Every row encoded at the manifest's max length (or ``encoded``, already so encoded); truncated,
    empty and pad-ending rows reported."""
    n, max_length = len(rows), int(spec.max_length)
    if encoded is not None and len(encoded) != n:
        raise ValueError(f"encoded holds {len(encoded)} rows but there are {n} rows to predict; pass one Encoder output per row")
    encoded = enc.encode(range(n), max_length) if encoded is None else encoded
    ids = [e.input_ids for e in encoded]
    truncated = [i for i, e in enumerate(encoded) if e.truncated]
    rep.truncated_rows = len(truncated)
    if truncated:
        decide(f"{len(truncated)} of {n} rows are longer than max_length {max_length} and were truncated ({spec.truncation}); first ids: {_ids(rows, truncated)}")
    empty = [i for i, r in enumerate(rows) if not any(t.strip() for t in (list(r.prompt) + list(r.response_a) + list(r.response_b)))]
    if empty:
        decide(f"{len(empty)} rows have no text at all; predicted from the prompt markers alone; ids: {_ids(rows, empty)}")
    if pad_id in {x[-1] for x in ids if x}:
        bad = [i for i, x in enumerate(ids) if x and x[-1] == pad_id]
        decide(f"{len(bad)} rows end with the pad token (id {pad_id}); the model pools at the last non-pad token, so these pool earlier")
    return TokenTable(ids)


def _main_pass(run: _Run, tta_frac: float) -> float:
    """Every row once (under a deadline: calibrate, then degrade in steps). Returns the TTA share left."""
    n, deadline, clock = len(run.rows), run.deadline, run.clock
    cap = run.rep.max_length
    bar = _tqdm(total=n, desc="predict", unit="row", log=run.log) if run.progress else None
    try:
        pending, first = np.arange(n, dtype=np.int64), True
        while len(pending):
            batches = [pending[b] for b in plan_batches(run.table.lengths[pending], run.batch_tokens, run.max_rows)]
            if deadline is None:
                run.run(run.table, batches, out=run.probs, done=run.done, clock=clock, bar=bar)
                break
            k = CALIBRATION_BATCHES * len(run.replicas)
            if first:  # calibration: a sample of short, medium and long batches
                chunk, first = order_batches(batches, run.table.lengths, k)[:k], False
            else:
                chunk = batches[:max(len(run.replicas), len(batches) // 8)]
            run.run(run.table, chunk, out=run.probs, done=run.done, clock=clock, bar=bar)
            pending = np.where(~run.done)[0]
            now = time.monotonic()
            if now >= deadline or not len(pending):
                break
            # project the rest of the run and degrade in steps until it fits
            new_cap, new_tta, projected = _plan_fit(run.table.lengths[pending], cap, tta_frac, n, clock.rate, len(run.replicas),
                                                    run.batch_tokens, run.max_rows, (deadline - now) * SAFETY)
            if new_cap < cap:
                longer = pending[run.table.lengths[pending] > new_cap]
                run.decide(f"time budget: projected {projected / 60:.1f} min for the rest; max length {cap} → {new_cap} for the {len(longer)} longest remaining rows")
                if len(longer):
                    run.table = _replace_rows(run.table, longer, [e.input_ids for e in run.enc.encode(longer, new_cap)])
                    run.row_cap[longer] = new_cap
                cap = run.rep.max_length = new_cap
            if new_tta < tta_frac:
                run.decide(f"time budget: TTA share {tta_frac:.2f} → {new_tta:.2f} (projected {projected / 60:.1f} min)")
                tta_frac = new_tta
    finally:
        if bar is not None:
            bar.close()
    return tta_frac


def _rerun_nonfinite(run: _Run) -> None:
    """Rows whose logits were not finite, re-run once with the first replica in float32 (same device)."""
    n = len(run.rows)
    bad = np.where(run.done & ~finite_rows(run.probs))[0]
    if not len(bad):
        return
    run.rep.nonfinite_rows = run.ids(bad)
    run.decide(f"{len(bad)} of {n} rows gave non-finite logits (inf/NaN: a float16 overflow or a broken weight in the "
               f"adapter or base); ids: {_ids(run.rows, bad)}")
    model, device = run.replicas[0]
    if not computes_in_half(model):
        run.decide(f"non-finite rows not re-run: the model already computes in float32 on {device}, a re-run would repeat the same numbers")
        return
    batches = [bad[b] for b in plan_batches(run.table.lengths[bad], run.batch_tokens, run.max_rows)]
    try:
        with fp32_mode(model):
            out, done, _ = run.run(run.table, batches, replicas=[(model, device)])
    except Exception as exc:  # noqa: BLE001 - only memory errors are expected here
        if not is_oom(exc):
            raise
        run.decide(f"re-run of {len(bad)} non-finite rows in float32 on {device} failed: out of memory; they get the fill")
        return
    ran = bad[done[bad]]
    run.rep.rerun_rows = run.ids(ran)
    fixed = ran[finite_rows(out[ran])]
    run.probs[fixed] = out[fixed]
    cut = f"; {len(bad) - len(ran)} not re-run before the deadline" if len(ran) < len(bad) else ""
    run.decide(f"re-ran {len(ran)} non-finite rows in float32 on {device}: {len(fixed)} now finite, {len(ran) - len(fixed)} still not{cut}")


def _tta_pass(run: _Run, tta_frac: float) -> None:
    """A/B-swapped rows, mirrored back; averaged with the first pass, or kept alone when only one pass is finite.

    Each swapped row is encoded at the max length its first pass ran at (a budget cut may have
    shortened the rows that ran later), so both averaged passes saw the same text."""
    probs, deadline, clock = run.probs, run.deadline, run.clock
    ran = np.where(run.done)[0]
    finite = finite_rows(probs[ran])
    # uncertainty: 1 - top probability; a row without a finite first pass is the most uncertain
    uncertainty = np.where(finite, 1.0 - np.nan_to_num(probs[ran], nan=0.0).max(axis=1), 2.0)
    chosen = ran if tta_frac >= 1 else ran[choose_rows(uncertainty, tta_frac)]
    if deadline is not None and clock.rate is not None and len(chosen):
        left = (deadline - time.monotonic()) * SAFETY
        per_row = clock.rate * float(np.mean(run.table.lengths[chosen])) / len(run.replicas)
        afford = int(left / per_row) if per_row > 0 else len(chosen)
        if afford < len(chosen):
            u = dict(zip(ran.tolist(), uncertainty.tolist()))
            order = np.argsort(-np.array([u[int(i)] for i in chosen]), kind="stable")
            run.decide(f"time budget: TTA on {max(afford, 0)} of {len(chosen)} chosen rows (the most uncertain) to end in time")
            chosen = np.sort(chosen[order[:max(afford, 0)]])
    if not len(chosen):
        return
    sw_ids: list = [None] * len(chosen)
    for c in np.unique(run.row_cap[chosen]):
        sel = np.where(run.row_cap[chosen] == c)[0]
        for j, e in zip(sel, run.enc.encode(chosen[sel], int(c), swapped=True)):
            sw_ids[j] = e.input_ids
    sw_table = TokenTable(sw_ids)
    sw_batches = plan_batches(sw_table.lengths, run.batch_tokens, run.max_rows)
    bar = _tqdm(total=len(chosen), desc="tta", unit="row", log=run.log) if run.progress else None
    try:
        sw_out, sw_done, _ = run.run(sw_table, sw_batches, clock=clock, bar=bar)
    finally:
        if bar is not None:
            bar.close()
    ok = np.where(sw_done)[0]
    rows_ok, first, mirrored = chosen[ok], probs[chosen[ok]], sw_out[ok][:, run.permutation]
    f1, f2 = finite_rows(first), finite_rows(mirrored)
    probs[rows_ok[f1 & f2]] = 0.5 * (first[f1 & f2] + mirrored[f1 & f2])
    probs[rows_ok[~f1 & f2]] = mirrored[~f1 & f2]
    run.rep.tta_rows = int((f1 & f2).sum())
    single = rows_ok[f1 ^ f2]
    run.rep.tta_single_pass = len(single)
    if len(single):
        run.decide(f"tta: {len(single)} rows kept their one finite pass (the other gave non-finite logits); ids: {_ids(run.rows, single)}")
    if len(ok) < len(chosen):
        run.decide(f"time budget: TTA ran on {len(ok)} of {len(chosen)} rows before the deadline; the rest keep one pass")


def _fill(run: _Run) -> None:
    """Rows without a finite prediction (cut by the deadline, or non-finite after the re-run) get the
    mean prediction of the rows really predicted; each group is counted, listed and logged."""
    probs, rep = run.probs, run.rep
    finite = finite_rows(probs)
    predicted = run.done & finite
    rep.predicted_rows = int(predicted.sum())
    missing = np.where(~run.done)[0]
    bad = np.where(run.done & ~finite)[0]
    if not len(missing) and not len(bad):
        return
    fill, how = fill_value(probs, predicted, run.multilabel)
    rep.fill = [float(v) for v in fill]
    if len(bad):
        probs[bad] = fill
        rep.filled_rows = run.ids(bad)
        run.decide(f"{len(bad)} rows have no finite prediction and got {how}; ids: {_ids(run.rows, bad)}")
    if len(missing):
        probs[missing] = fill
        rep.fallback_rows, rep.fallback_ids = len(missing), run.ids(missing)
        run.decide(f"time budget: {len(missing)} rows could not run in time and got {how}; first ids: {_ids(run.rows, missing)}")


def _ids(rows, positions, k: int = 5) -> str:
    shown = ", ".join(str(rows[int(i)].id) for i in list(positions)[:k])
    return shown + (f" … (+{len(positions) - k})" if len(positions) > k else "")


def _replace_rows(table: TokenTable, positions, new_ids: list) -> TokenTable:
    """A table with the rows at ``positions`` replaced by ``new_ids``."""
    ids = [table.flat[table.offsets[i]:table.offsets[i + 1]] for i in range(len(table))]
    for p, x in zip(positions, new_ids):
        ids[int(p)] = x
    return TokenTable(ids)

"""The batched inference engine: from a run folder and a test file to a validated submission.

- rows are tokenized once with the manifest's prompt spec (:class:`runtime.prompting.Encoder`),
  sorted by length and packed into token-budget batches padded only to their own longest row
  (:mod:`runtime.batching`); results return to the test file's order;
- ``torch.inference_mode`` and no KV cache;
- TTA for pairwise tasks: the A/B-swapped rows run too, and their probabilities, mirrored back by
  :func:`runtime.formats.swap_permutation`, are averaged in — on all rows or on the most uncertain share;
- devices: one model replica per device, one worker thread each (torch releases the GIL), pulling
  batches from one shared queue so each device gets work in proportion to its speed; the same code
  runs with several CPU workers;
- a time budget: the first batches (a sample spread over the length range) measure seconds per
  padded token; the run projects its total and degrades in steps (shorter max length for the longest
  remaining rows, then less TTA) so it ends in time, re-checking between chunks of batches. Whatever
  happens, every test id gets a row: rows that could not run in time get the mean prediction of the
  rows that did, and each decision is logged.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .progress import quiet_known_warnings
from .batching import TokenTable, choose_rows, order_batches, plan_batches

DEFAULT_BATCH_TOKENS = 8192
DEFAULT_MAX_ROWS = 64
CALIBRATION_BATCHES = 4
SAFETY = 0.9  # a plan must fit in this share of the time left
LENGTH_STEPS = (0.75, 0.5, 0.375, 0.25)  # max length multipliers tried for the longest rows
MIN_LENGTH = 64


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


def parse_devices(devices) -> list:
    """['cuda:0', 'cuda:1'] from 'cuda:0,cuda:1' or a list; None/empty → every GPU, else ['cpu']."""
    if isinstance(devices, str):
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    devices = list(devices or [])
    if not devices:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        devices = [f"cuda:{i}" for i in range(n)] or ["cpu"]
    for d in devices:
        if not (d == "cpu" or d == "cuda" or d.startswith("cuda:") or d == "mps"):
            raise ValueError(f"device {d!r} is not cpu, cuda or cuda:N; e.g. --devices cuda:0,cuda:1")
    return devices


def _tqdm(total, desc, unit="row", log=None, **_):
    """A bar on a terminal, plain lines in notebooks and logs (runtime/progress.py)."""
    from .progress import Progress

    return Progress(total, desc, unit, log=log)


# --------------------------------------------------------------------------- the forward pass


def model_device(model):
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def forward_probs(model, input_ids: np.ndarray, attention_mask: np.ndarray, device, multilabel: bool = False) -> np.ndarray:
    """Class probabilities (float32 numpy) of one padded batch. Call under ``torch.inference_mode``."""
    import torch

    ids = torch.from_numpy(input_ids).to(device, non_blocking=True)
    mask = torch.from_numpy(attention_mask).to(device, non_blocking=True)
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)
    return probs.cpu().numpy()


FAST_ATTENTION = "kit_eager_inplace"
FAST_ATTENTION_TYPES = ("gemma2",)  # eager-only models whose attention this function reproduces


def eager_inplace_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, softcap=None, **kwargs):
    """Gemma-2's eager attention (logit soft-capping, additive mask, fp32 softmax) with in-place steps.

    The same arithmetic as transformers' ``eager_attention_forward``, but the (rows × heads × L × L)
    score tensor is allocated once instead of six times (scale and 1/softcap fold into the query;
    tanh, ×softcap and the mask apply in place). Inference only: no dropout, no attention weights
    returned, in-place ops have no backward. Probabilities match the stock path to ~1e-7.
    """
    import torch

    if scaling is None:
        scaling = module.head_dim ** -0.5
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        b, h, n, d = key.shape
        key = key[:, :, None].expand(b, h, groups, n, d).reshape(b, h * groups, n, d)
        value = value[:, :, None].expand(b, h, groups, n, d).reshape(b, h * groups, n, d)
    q = query * (scaling / softcap) if softcap else query * scaling
    w = torch.matmul(q, key.transpose(2, 3))
    if softcap:
        w.tanh_().mul_(softcap)
    if attention_mask is not None:
        w.add_(attention_mask[:, :, :, : key.shape[-2]])
    if w.dtype == torch.float32:
        w = torch.softmax(w, dim=-1)
    else:
        w = torch.softmax(w, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(w, value).transpose(1, 2).contiguous()
    return out, None


def _register_fast_attention() -> bool:
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    except ImportError:  # pragma: no cover - older transformers
        return False
    AttentionInterface.register(FAST_ATTENTION, eager_inplace_attention)
    AttentionMaskInterface.register(FAST_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    return True


class fast_attention:
    """Context: models running Gemma-2 eager attention use :func:`eager_inplace_attention` inside it.

    The configuration is restored on exit, so a model that goes back to training gets the stock
    (differentiable) attention again.
    """

    def __init__(self, models, enabled: bool = True):
        self.models, self.enabled, self.changed = list(models), enabled, []

    def __enter__(self):
        if not self.enabled:
            return self
        seen = set()
        for m in self.models:
            cfg = getattr(m, "config", None)
            if cfg is None or id(cfg) in seen:
                continue
            seen.add(id(cfg))
            if getattr(cfg, "model_type", None) in FAST_ATTENTION_TYPES and cfg._attn_implementation in (None, "eager"):
                if not _register_fast_attention():
                    return self
                self.changed.append((cfg, cfg._attn_implementation))
                cfg._attn_implementation = FAST_ATTENTION
        return self

    def __exit__(self, *exc):
        for cfg, old in self.changed:
            cfg._attn_implementation = old
        return False


@dataclass
class _Clock:
    """Seconds and padded tokens measured so far (thread-safe)."""

    seconds: float = 0.0
    cost: float = 0.0
    tokens: int = 0
    padded: int = 0
    batches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seconds: float, padded: int, tokens: int) -> None:
        with self.lock:
            self.seconds += seconds
            self.cost += padded
            self.padded += padded
            self.tokens += tokens
            self.batches += 1

    @property
    def rate(self) -> Optional[float]:
        """Seconds per padded token (per worker), or None before any batch ran."""
        return self.seconds / self.cost if self.cost > 0 else None


def _worker(model, device, table, pad_id, multilabel, jobs, out, done, clock, deadline, bar, errors, stop):
    import torch

    try:
        if str(device).startswith("cuda:"):
            torch.cuda.set_device(torch.device(device))  # per thread: bitsandbytes kernels use the current device
        with torch.inference_mode():
            while not stop.is_set():
                if deadline is not None and time.monotonic() > deadline:
                    stop.set()
                    return
                try:
                    idx = jobs.get_nowait()
                except queue.Empty:
                    return
                t = time.perf_counter()
                b = table.batch(idx, pad_id)
                probs = forward_probs(model, b.input_ids, b.attention_mask, device, multilabel)
                out[idx] = probs
                done[idx] = True
                clock.add(time.perf_counter() - t, b.padded, b.tokens)
                if bar is not None:
                    with clock.lock:
                        bar.update(b.rows)
                        el = max(clock.seconds, 1e-9)
                        bar.set_postfix_str(f"{clock.tokens / el * len(errors['n']):,.0f} tok/s", refresh=False)
    except BaseException as exc:  # surfaced in the calling thread
        errors["exc"].append(exc)
        stop.set()


def run_batches(replicas: list, table: TokenTable, batches: list, pad_id: int, num_labels: int, *, multilabel=False,
                out=None, done=None, clock=None, deadline=None, bar=None) -> tuple:
    """Run ``batches`` (lists of row positions in ``table``) on ``replicas`` [(model, device)], in parallel.

    Fills ``out[idx]`` with probabilities and ``done[idx] = True``; stops taking batches at ``deadline``
    (time.monotonic seconds). Returns (out, done, clock).
    """
    n = len(table)
    out = np.full((n, num_labels), np.nan, dtype=np.float32) if out is None else out
    done = np.zeros(n, dtype=bool) if done is None else done
    clock = clock or _Clock()
    jobs: queue.Queue = queue.Queue()
    for b in batches:
        if len(b):
            jobs.put(b)
    stop = threading.Event()
    errors = {"exc": [], "n": [0] * len(replicas)}
    if len(replicas) == 1:
        model, device = replicas[0]
        _worker(model, device, table, pad_id, multilabel, jobs, out, done, clock, deadline, bar, errors, stop)
    else:
        threads = [
            threading.Thread(target=_worker, args=(m, d, table, pad_id, multilabel, jobs, out, done, clock, deadline, bar, errors, stop), daemon=True)
            for m, d in replicas
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors["exc"]:
        raise errors["exc"][0]
    return out, done, clock


# --------------------------------------------------------------------------- the engine


@dataclass
class EngineReport:
    decisions: list
    tokens: int = 0
    padded: int = 0
    seconds: float = 0.0
    truncated_rows: int = 0
    fallback_rows: int = 0
    tta_rows: int = 0
    max_length: int = 0

    @property
    def padding_share(self) -> float:
        return 0.0 if self.padded == 0 else 1.0 - self.tokens / self.padded


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


def _predict_rows(model, tokenizer, manifest, rows, *, tta, batch_tokens, max_batch_rows, budget_minutes, deadline,
                  replicas, workers, log, progress, report, encoded=None) -> np.ndarray:
    from .formats import swap_permutation
    from .prompting import PromptSpec

    t0 = time.monotonic()
    log = log or (lambda *a, **k: None)
    rep = report if report is not None else EngineReport(decisions=[])

    def decide(msg: str) -> None:
        rep.decisions.append(msg)
        log(msg)

    n = len(rows)
    labels = manifest.labels
    num_labels = len(labels) or int(getattr(getattr(model, "config", None), "num_labels", 2))
    kind = manifest.kind
    multilabel = kind == "multilabel"
    tta_frac = parse_tta(tta)
    if tta_frac and kind != "pairwise":
        decide(f"tta: {tta} ignored: A/B swapping applies to pairwise tasks, this one is {kind}")
        tta_frac = 0.0
    permutation = swap_permutation(labels) if kind == "pairwise" else list(range(num_labels))
    batch_tokens = int(batch_tokens or DEFAULT_BATCH_TOKENS)
    max_rows = int(max_batch_rows or DEFAULT_MAX_ROWS)
    if replicas is None:
        dev = model_device(model)
        replicas = [(model, dev)] * max(1, int(workers))
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
    max_length = int(spec.max_length)
    rep.max_length = max_length
    probs = np.full((n, num_labels), np.nan, dtype=np.float32)
    if n == 0:
        return probs

    enc = _Encoding(tokenizer, spec, "pairwise" if kind == "pairwise" else "classification", list(rows), permutation)
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

    table = TokenTable(ids)
    lengths = table.lengths.copy()
    clock = _Clock()
    done = np.zeros(n, dtype=bool)
    bar = _tqdm(total=n, desc="predict", unit="row", log=log) if progress else None
    cap = max_length
    try:
        pending = np.arange(n, dtype=np.int64)
        first = True
        while len(pending):
            batches = plan_batches(table.lengths[pending], batch_tokens, max_rows)
            batches = [pending[b] for b in batches]
            if deadline is None:
                run_batches(replicas, table, batches, pad_id, num_labels, multilabel=multilabel, out=probs, done=done, clock=clock, bar=bar)
                break
            if first:  # calibration: a sample of short, medium and long batches
                batches = order_batches(batches, table.lengths, CALIBRATION_BATCHES * len(replicas))
                chunk = batches[:CALIBRATION_BATCHES * len(replicas)]
                first = False
            else:
                chunk = batches[:max(len(replicas), len(batches) // 8)]
            run_batches(replicas, table, chunk, pad_id, num_labels, multilabel=multilabel, out=probs, done=done, clock=clock, deadline=deadline, bar=bar)
            pending = np.where(~done)[0]
            now = time.monotonic()
            if now >= deadline or not len(pending):
                break
            # project the rest of the run and degrade in steps until it fits
            new_cap, new_tta, projected = _plan_fit(table.lengths[pending], cap, tta_frac, n, clock.rate, len(replicas), batch_tokens, max_rows, (deadline - now) * SAFETY)
            if new_cap < cap:
                longer = pending[table.lengths[pending] > new_cap]
                decide(f"time budget: projected {projected / 60:.1f} min for the rest; max length {cap} → {new_cap} for the {len(longer)} longest remaining rows")
                if len(longer):
                    re = enc.encode(longer, new_cap)
                    table = _replace_rows(table, longer, [e.input_ids for e in re])
                cap = new_cap
                rep.max_length = cap
            if new_tta < tta_frac:
                decide(f"time budget: TTA share {tta_frac:.2f} → {new_tta:.2f} (projected {projected / 60:.1f} min)")
                tta_frac = new_tta
    finally:
        if bar is not None:
            bar.close()

    missing = np.where(~done)[0]
    if len(missing):
        fill = probs[done].mean(axis=0) if done.any() else np.full(num_labels, 1.0 / num_labels, dtype=np.float32)
        if not multilabel:
            fill = fill / fill.sum()
        probs[missing] = fill
        rep.fallback_rows = len(missing)
        decide(f"time budget: {len(missing)} rows could not run in time and got the mean prediction of the {int(done.sum())} rows that did; first ids: {_ids(rows, missing)}")

    # TTA: the A/B-swapped rows, mirrored back and averaged in
    if tta_frac > 0 and done.any():
        ran = np.where(done)[0]
        if tta_frac >= 1:
            chosen = ran
        else:
            uncertainty = 1.0 - probs[ran].max(axis=1)
            chosen = ran[choose_rows(uncertainty, tta_frac)]
        if deadline is not None and clock.rate is not None:
            left = (deadline - time.monotonic()) * SAFETY
            per_row = clock.rate * float(np.mean(table.lengths[chosen])) / len(replicas) if len(chosen) else 0.0
            afford = int(left / per_row) if per_row > 0 else len(chosen)
            if afford < len(chosen):
                order = np.argsort(-(1.0 - probs[chosen].max(axis=1)), kind="stable")
                decide(f"time budget: TTA on {max(afford, 0)} of {len(chosen)} chosen rows (the most uncertain) to end in time")
                chosen = np.sort(chosen[order[:max(afford, 0)]])
        if len(chosen):
            sw = enc.encode(chosen, cap, swapped=True)
            sw_table = TokenTable([e.input_ids for e in sw])
            sw_batches = plan_batches(sw_table.lengths, batch_tokens, max_rows)
            bar2 = _tqdm(total=len(chosen), desc="tta", unit="row", log=log) if progress else None
            try:
                sw_out, sw_done, _ = run_batches(replicas, sw_table, sw_batches, pad_id, num_labels, multilabel=multilabel, clock=clock, deadline=deadline, bar=bar2)
            finally:
                if bar2 is not None:
                    bar2.close()
            ok = np.where(sw_done)[0]
            mirrored = sw_out[ok][:, permutation]
            probs[chosen[ok]] = 0.5 * (probs[chosen[ok]] + mirrored)
            rep.tta_rows = len(ok)
            if len(ok) < len(chosen):
                decide(f"time budget: TTA ran on {len(ok)} of {len(chosen)} rows before the deadline; the rest keep one pass")
    rep.tokens, rep.padded, rep.seconds = clock.tokens, clock.padded, time.monotonic() - t0
    return probs


def _ids(rows, positions, k: int = 5) -> str:
    shown = ", ".join(str(rows[int(i)].id) for i in list(positions)[:k])
    return shown + (f" … (+{len(positions) - k})" if len(positions) > k else "")


def _replace_rows(table: TokenTable, positions, new_ids: list) -> TokenTable:
    """A table with the rows at ``positions`` replaced by ``new_ids``."""
    ids = [table.flat[table.offsets[i]:table.offsets[i + 1]] for i in range(len(table))]
    for p, x in zip(positions, new_ids):
        ids[int(p)] = x
    return TokenTable(ids)


def _padded_cost(lengths: np.ndarray) -> float:
    """Padded tokens of a length-sorted plan, estimated without planning it (the packer keeps padding ≈ 2%)."""
    return float(np.sum(lengths)) * 1.02


def projected_seconds(lengths, cap, tta_frac, n_total, rate, n_workers) -> float:
    """Projected seconds to run rows of ``lengths`` at max length ``cap`` plus a TTA share ``tta_frac`` of
    ``n_total`` rows, at ``rate`` seconds per padded token per worker."""
    lens = np.minimum(lengths, cap)
    main = _padded_cost(lens)
    # TTA rows: share t of all rows, at the mean length of the rows left
    tta_cost = tta_frac * n_total * float(np.mean(lens)) if len(lens) else 0.0
    return (main + tta_cost) * rate / max(1, n_workers)


def degrade_steps(cap: int, tta_frac: float) -> list:
    """[(cap, tta_fraction)] from no change to the most degraded: shorter max length for the longest rows
    (×0.75, ×0.5 of ``cap``); less TTA (half, none); shorter still (×0.375, ×0.25). Never below MIN_LENGTH."""
    floor = MIN_LENGTH
    steps = [(cap, tta_frac)]
    for m in LENGTH_STEPS[:2]:
        steps.append((max(floor, int(cap * m)), tta_frac))
    half = max(floor, int(cap * LENGTH_STEPS[1]))
    if tta_frac > 0:
        steps.append((half, tta_frac / 2))
        steps.append((half, 0.0))
    for m in LENGTH_STEPS[2:]:
        steps.append((max(floor, int(cap * m)), 0.0))
    return steps


def _plan_fit(lengths, cap, tta_frac, n_total, rate, n_workers, batch_tokens, max_rows, seconds_left) -> tuple:
    """(cap, tta_fraction, projected seconds) of the first :func:`degrade_steps` step whose projection fits.

    The last step is returned when nothing fits (the deadline then stops the run and the rest get the fallback).
    """
    if rate is None:
        return cap, tta_frac, 0.0
    steps = degrade_steps(cap, tta_frac)
    for c, t in steps:
        p = projected_seconds(lengths, c, t, n_total, rate, n_workers)
        if p <= seconds_left:
            return c, t, p
    last = steps[-1]
    return last[0], last[1], projected_seconds(lengths, last[0], last[1], n_total, rate, n_workers)


# --------------------------------------------------------------------------- from files


@dataclass
class PredictionResult:
    out_path: Path
    rows: int
    seconds: float
    decisions: list
    probabilities: np.ndarray
    ids: list = field(default_factory=list)
    label_names: list = field(default_factory=list)
    style: str = ""
    devices: list = field(default_factory=list)
    tokens: int = 0
    padding_share: float = 0.0
    truncated_rows: int = 0
    fallback_rows: int = 0
    tta_rows: int = 0
    problems: int = 0
    load_seconds: float = 0.0
    metrics: dict = field(default_factory=dict)  # when the file has labels: the task's metrics
    sample: str = ""  # the sample submission the file was compared with

    @property
    def rows_per_second(self) -> float:
        run = self.seconds - self.load_seconds
        return self.rows / run if run > 0 else float("nan")

    def to_dict(self) -> dict:
        return {
            "out_path": str(self.out_path), "rows": self.rows, "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3), "rows_per_s": round(self.rows_per_second, 3),
            "tokens": self.tokens, "padding_share": round(self.padding_share, 4), "truncated_rows": self.truncated_rows,
            "fallback_rows": self.fallback_rows, "tta_rows": self.tta_rows, "problems": self.problems,
            "devices": self.devices, "style": self.style, "decisions": self.decisions,
            "metrics": self.metrics, "sample": self.sample,
        }


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

    ds = read_dataset(data_path, manifest.task.get("format") or "auto", format_from=format_from, **_read_kwargs(manifest))
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
        raise DataError(f"{data_path}: id(s) appear more than once: {dup[:5]}; a submission needs one row per unique id")
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


def load_replicas(adapter_dir, devices: list, *, base_path=None, quantization=None, log: Optional[Callable] = None) -> tuple:
    """([(model, device)], tokenizer): one replica per distinct device; repeated CPU workers share it."""
    from .modeling import load_for_inference

    replicas, loaded, tokenizer = [], {}, None
    for d in devices:
        if d not in loaded:
            model, tokenizer, _ = load_for_inference(adapter_dir, base_path=base_path, quantization=quantization, device=d, log=log if not loaded else None)
            loaded[d] = model
        replicas.append((loaded[d], d))
    return replicas, tokenizer


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
    sample=None,
) -> PredictionResult:
    """Predict every row of ``data_path`` with the run folder ``adapter_dir``; write a validated submission.

    None means: take it from the defaults (``tta='none'``, 8,192-token batches of ≤ 64 rows, no
    budget, every GPU else the CPU) or from the manifest (format, prompt, base, quantization, id
    column, submission shape). ``sample``: the competition's sample submission to follow and
    compare with (default: the one the manifest names, when it lies beside ``data_path``). When
    ``data_path`` has labels, the task's metrics are computed, logged and written to
    ``<out>.metrics.json``.
    """
    from .manifest import Manifest, check_compatible
    from .modeling import is_merged_folder
    from .submission import compare_with_sample, write_submission

    t0 = time.monotonic()
    log = log or (lambda *a, **k: None)
    decisions: list = []

    def decide(msg: str) -> None:
        decisions.append(msg)
        log(msg)

    adapter_dir = Path(adapter_dir)
    manifest = Manifest.load(adapter_dir)
    ds = read_test_data(manifest, data_path, decide,
                        format_from=f"the adapter's manifest ({adapter_dir / 'kit_manifest.json'}, task.format)")
    ids = ds.ids
    labels = ds.label_names if ds.label_names else None
    merged = is_merged_folder(adapter_dir)
    base = None if merged else (base_path or manifest.base_model.get("path"))
    check_compatible(manifest, base, labels)  # before any weights load
    spec, sample_path = submission_style(ds, manifest, data_path, sample, decide)

    devs = parse_devices(devices)
    replicas, tokenizer = load_replicas(adapter_dir, devs, base_path=base_path, quantization=quantization, log=decide)
    loaded = {d for _, d in replicas}
    load_s = time.monotonic() - t0
    log(f"loaded {len(loaded)} replica(s) on {', '.join(devs)} in {load_s:.1f}s; {len(ds)} rows to predict")
    rep = EngineReport(decisions=decisions)
    deadline = t0 + float(budget_minutes) * 60.0 if budget_minutes else None
    probs = predict_rows(
        replicas[0][0], tokenizer, manifest, ds.rows, tta=tta or "none", batch_tokens=batch_tokens,
        max_batch_rows=max_batch_rows, deadline=deadline, replicas=replicas, log=log, progress=progress, report=rep,
    )
    write_submission(out_path, ids, probs, spec, manifest.labels, expected_ids=ids)
    if sample_path is not None:
        same = compare_with_sample(out_path, sample_path, ids_if_shared=sample is None)
        if same["ids_compared"]:
            log(f"{out_path} matches the sample {sample_path}: columns {spec.header}, the same ids")
        else:
            decide(f"{out_path} has the columns of the sample {sample_path}; ids not compared: the sample found beside "
                   f"{data_path} shares none of its ids (it belongs to another file; pass --sample to compare strictly)")
    seconds = time.monotonic() - t0
    run_s = seconds - load_s
    log(f"wrote {out_path}: {len(ids)} rows ({spec.style}) in {seconds:.1f}s ({len(ids) / run_s if run_s > 0 else float('nan'):.1f} rows/s "
        f"after {load_s:.1f}s loading; {rep.tokens:,} tokens, padding {rep.padding_share:.1%}; truncated {rep.truncated_rows}; "
        f"TTA {rep.tta_rows}; fallback {rep.fallback_rows})")
    scores = _score_labelled(ds, probs, manifest, out_path, log) if ds.has_labels else {}
    return PredictionResult(
        out_path=Path(out_path), rows=len(ids), seconds=seconds, decisions=decisions, probabilities=probs, ids=ids,
        label_names=manifest.labels, style=spec.style, devices=devs, tokens=rep.tokens, padding_share=rep.padding_share,
        truncated_rows=rep.truncated_rows, fallback_rows=rep.fallback_rows, tta_rows=rep.tta_rows,
        problems=len(ds.problems), load_seconds=load_s, metrics=scores, sample=str(sample_path or ""),
    )


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
    flat = scalar_metrics(full)
    path = Path(out_path).with_suffix(".metrics.json")
    path.write_text(json.dumps({"metric": metric, "value": flat.get(metric), "rows": len(ds.rows), **flat,
                                "data": str(ds.path)}, indent=2, default=float) + "\n", encoding="utf-8")
    log(f"{ds.path} has labels: {metric} {flat.get(metric, float('nan')):.4f} ("
        + ", ".join(f"{n} {v:.4f}" for n, v in flat.items() if n != metric) + f"); written to {path}")
    return flat


@quiet_known_warnings()  # the listed harmless library warnings only, only during the call
def merge_adapter(adapter_dir, out_dir, *, base_path=None, dtype: str = "bfloat16", log: Callable = print) -> Path:
    """Merge a LoRA/IA3 adapter into a full-precision base and save a 16-bit model with its manifest."""
    from .manifest import Manifest
    from .modeling import load_for_inference, torch_dtype

    out_dir = Path(out_dir)
    model, tokenizer, manifest = load_for_inference(adapter_dir, base_path=base_path, quantization="none", device="cpu", dtype="float32", log=log)
    merged = model.merge_and_unload()
    merged = merged.to(torch_dtype(dtype))
    merged.config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    data = manifest.to_dict()
    data["quantization"] = {"mode": "none"}
    data["training"] = dict(data.get("training") or {}, merged={"from": str(adapter_dir), "dtype": dtype, "base_quantization": manifest.quantization})
    Manifest(**data).save(out_dir)
    log(f"merged {adapter_dir} into {out_dir} ({dtype})")
    return out_dir


def throughput_note(rows: int, seconds: float) -> str:
    return f"{rows / seconds:.1f} rows/s" if seconds > 0 and not math.isnan(seconds) else "n/a"

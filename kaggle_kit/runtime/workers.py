"""Running padded batches on one or more model replicas in parallel, and the time spent on them.

One model replica per device, one worker thread each (torch releases the GIL), pulling batches from
one shared queue so each device gets work in proportion to its speed; the same code runs with
several CPU workers. Used by :mod:`runtime.infer`.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .batching import TokenTable


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


def model_device(model):
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def forward_probs(model, input_ids: np.ndarray, attention_mask: np.ndarray, device, multilabel: bool = False) -> np.ndarray:
    """Class probabilities (float32 numpy, rows × labels) of one padded batch. Call under ``torch.inference_mode``.

    A row whose logits are not all finite comes back as NaN in every column (softmax would turn an
    ``inf`` into NaN and a ``-inf`` into an exact 0.0 that looks valid): callers test with
    :func:`runtime.health.finite_rows` and decide."""
    import torch

    ids = torch.from_numpy(input_ids).to(device, non_blocking=True)
    mask = torch.from_numpy(attention_mask).to(device, non_blocking=True)
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)
    bad = ~torch.isfinite(logits).all(dim=-1)
    probs = torch.where(bad[:, None], torch.full_like(probs, float("nan")), probs)
    return probs.cpu().numpy()


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

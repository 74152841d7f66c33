"""`kit bench data`: prepare LMSYS-shaped rows with the batched Encoder vs one row at a time.

The rows are generated in memory with the length mix of the real LMSYS sample (prompt median ~100
characters, response medians ~900-1,000, tails to 17,000; a fifth of the rows multi-turn). Both
sides run the same :class:`~kaggle_kit.runtime.prompting.Encoder` (same spec, same tokenizer, same
results); the baseline makes one tokenizer call per row (``encode_one``), as a per-row
``Dataset.map`` or a loop in a notebook would.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field

from kaggle_kit.benchmarks import load_average
from kaggle_kit.benchmarks.sides import SideClock

# (median characters, lognormal sigma, cap) measured on ../shared/data/lmsys-sample/train_sample.csv
PROMPT_MIX = (90, 1.5, 10_000)
RESPONSE_MIX = (800, 1.1, 17_000)


def lmsys_like_rows(n: int, seed: int = 0) -> list:
    """``n`` :class:`Row` objects with the real LMSYS length mix (fast: slices of one corpus)."""
    from kaggle_kit.runtime.formats import Row
    from kaggle_kit.models.words import paragraph

    rng = random.Random(seed)
    corpus = paragraph(rng, 60_000)
    corpus = corpus + " " + corpus  # slices never run off the end
    half = len(corpus) // 2

    def piece(median: float, sigma: float, cap: int) -> str:
        size = int(min(cap, max(3, rng.lognormvariate(0.0, sigma) * median)))
        start = rng.randrange(0, half)
        text = corpus[start:start + size]
        while len(text) < size:  # longer than the corpus: repeat it
            text += " " + corpus[: size - len(text)]
        return text

    rows = []
    for i in range(n):
        turns = 1 if rng.random() < 0.8 else rng.randint(2, 4)
        pm, ps, pc = PROMPT_MIX
        rm, rs, rc = RESPONSE_MIX
        prompt = [piece(pm / turns, ps, pc // turns) for _ in range(turns)]
        a = [piece(rm / math.sqrt(turns), rs, rc // turns) for _ in range(turns)]
        b = [piece(rm / math.sqrt(turns), rs, rc // turns) for _ in range(turns)]
        rows.append(Row(str(1_000_000 + i), prompt, a, b, rng.randrange(3), f"bench:{i}"))
    return rows


def length_summary(rows: list) -> dict:
    import numpy as np

    out = {}
    for name in ("prompt", "response_a", "response_b"):
        chars = np.array([sum(len(t) for t in getattr(r, name)) for r in rows])
        out[name] = {"p50": int(np.percentile(chars, 50)), "p90": int(np.percentile(chars, 90)), "max": int(chars.max())}
    return out


def load_bench_tokenizer(name: str = "tiny"):
    """'tiny' (the kit's byte-level BPE, 4k vocab), 'minilm' (MiniLM's WordPiece), 'smollm2' or a folder."""
    if name == "tiny":
        from kaggle_kit.models.tiny import build_tokenizer

        return build_tokenizer()
    if name in ("minilm", "smollm2"):
        from kaggle_kit.models.named import named_model_dir

        name = named_model_dir(name)
    from kaggle_kit.runtime.modeling import load_tokenizer

    return load_tokenizer(name)


@dataclass
class _Slabs:
    """What the slabs added up to: each side's clock and the checks on what the sides encoded."""

    batched: SideClock = field(default_factory=SideClock)
    single: SideClock = field(default_factory=SideClock)
    wrapper: SideClock = field(default_factory=SideClock)
    truncated: int = 0
    longest: int = 0
    mismatched: int = 0


def run_bench(rows: int = 57_000, max_length: int = 2048, truncation: str = "per_component",
              tokenizer: str = "tiny", baseline_rows: int = 0, seed: int = 0, log=None,
              parallel: bool | None = None, wrapper: bool = False, progress_every: float = 15.0) -> dict:
    """Measure rows/s of ``Encoder.encode`` (batched) and ``encode_one`` per row on the same rows.

    ``baseline_rows`` (0 = all) times the baseline on the first rows only (it is slow); the rate is
    per row either way. Checks that both sides produce identical ids on the rows both encoded.
    ``wrapper`` also times one row at a time through the transformers tokenizer call (what the
    Encoder did before it called the Rust backend directly).
    ``log`` gets each side's rows/s and rows per CPU-second so far every ``progress_every`` seconds.
    ``parallel`` sets TOKENIZERS_PARALLELISM for this run (the Rust tokenizer then spreads a batch
    over all cores; a one-text call gains nothing from it); None leaves the environment as it is.
    """
    if parallel is not None:
        os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec

    log = log or (lambda *a: None)
    t0 = time.perf_counter()
    data = lmsys_like_rows(rows, seed)
    gen_s = time.perf_counter() - t0
    log(f"generated {rows} LMSYS-shaped rows in {gen_s:.1f}s")
    tok = load_bench_tokenizer(tokenizer)
    encoder = Encoder(tok, PromptSpec(max_length=max_length, truncation=truncation), "pairwise")
    n_base = rows if baseline_rows <= 0 else min(rows, baseline_rows)
    slow = None
    if wrapper:
        slow = Encoder(tok, encoder.spec, "pairwise")
        slow._backend = None  # every text through tokenizer.__call__
    done = _interleave(data, encoder, slow, n_base, log, progress_every)
    log(f"batched: {rows} rows in {done.batched.wall:.1f}s (CPU {done.batched.cpu:.1f}s)")
    log(f"one row at a time: {n_base} rows in {done.single.wall:.1f}s (CPU {done.single.cpu:.1f}s)")
    if slow is not None:
        log(f"one row at a time via the transformers call: {n_base} rows in {done.wrapper.wall:.1f}s (CPU {done.wrapper.cpu:.1f}s)")
    setup = {"rows": rows, "baseline_rows": n_base, "max_length": max_length, "truncation": truncation,
             "tokenizer": tokenizer, "vocab_size": len(tok)}
    return _report(setup, data, gen_s, done, with_wrapper=slow is not None)


def _interleave(data: list, encoder, slow, n_base: int, log, progress_every: float) -> _Slabs:
    """Encode ``data`` both ways (three with ``slow``, the wrapper side), slab by slab, checking that
    the sides' ids agree; logs each side's rates so far every ``progress_every`` seconds.

    The sides take turns slab by slab on the same rows, so on a shared machine they meet the same
    load; only one slab of encoded rows is held at a time."""
    rows, slab = len(data), 2048
    last = time.monotonic()
    s = _Slabs()
    for start in range(0, rows, slab):
        chunk = data[start:start + slab]
        with s.batched.turn():
            part = encoder.encode(chunk)
        s.truncated += sum(1 for e in part if e.truncated)
        s.longest = max(s.longest, max(len(e.input_ids) for e in part))
        if start >= n_base:
            continue
        base_rows = chunk[: n_base - start]
        with s.single.turn():
            single = [encoder.encode_one(r) for r in base_rows]
        s.mismatched += sum(1 for a, b in zip(part, single) if a.input_ids != b.input_ids)
        if slow is not None:
            with s.wrapper.turn():
                via_wrapper = [slow.encode_one(r) for r in base_rows]
            s.mismatched += sum(1 for a, b in zip(single, via_wrapper) if a.input_ids != b.input_ids)
        if time.monotonic() - last >= progress_every and start + slab < rows:  # each side's rates so far
            last = time.monotonic()
            done, base_done = start + len(chunk), min(n_base, start + len(chunk))
            b, o = s.batched, s.single
            log(f"  {done:,}/{rows:,} rows | batched {done / b.wall:,.0f} rows/s {done / max(b.cpu, 1e-9):,.0f} rows/CPU-s"
                + (f" | one at a time {base_done / o.wall:,.0f} rows/s {base_done / max(o.cpu, 1e-9):,.0f} rows/CPU-s" if o.wall else ""))
    return s


def _report(setup: dict, data: list, gen_s: float, s: _Slabs, with_wrapper: bool) -> dict:
    """The JSON-ready result: the setup, each side's time and rates, their ratio, and the checks."""
    rows, n_base = setup["rows"], setup["baseline_rows"]
    wrapper_result = {}
    if with_wrapper:
        wrapper_result = {
            "wrapper_rows_per_s": round(n_base / s.wrapper.wall, 1),
            "wrapper_rows_per_cpu_s": round(n_base / max(s.wrapper.cpu, 1e-9), 1),
            "speedup_vs_wrapper": round((rows / s.batched.wall) / (n_base / s.wrapper.wall), 2),
        }
    batched_rps = rows / s.batched.wall
    single_rps = n_base / s.single.wall
    return {
        **setup,
        "cpu_count": os.cpu_count(),
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "(unset)"),
        "chars": length_summary(data),
        "generate_s": round(gen_s, 2),
        "batched_s": round(s.batched.wall, 2),
        "baseline_s": round(s.single.wall, 2),
        "batched_rows_per_s": round(batched_rps, 1),
        "baseline_rows_per_s": round(single_rps, 1),
        "speedup": round(batched_rps / single_rps, 2),
        # per CPU-second of this process: steadier than wall-clock rates on a shared machine
        "batched_rows_per_cpu_s": round(rows / max(s.batched.cpu, 1e-9), 1),
        "baseline_rows_per_cpu_s": round(n_base / max(s.single.cpu, 1e-9), 1),
        "load_average": load_average(),
        "truncated_share": round(s.truncated / rows, 4),
        "longest_tokens": s.longest,
        "mismatched_rows": s.mismatched,
        "target_rows_per_s": 1000,
        "meets_target": batched_rps >= 1000,
        **wrapper_result,
    }

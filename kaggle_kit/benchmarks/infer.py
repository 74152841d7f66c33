"""`kit bench infer`: the inference engine vs the seeds' loop, same model, same rows.

The seeds' loop (seed 001's ``predict_df``): rows in dataset order, batches of 8, tokenized per
batch, padded to the batch's longest row, ``model(**batch)``. The engine
(:func:`kaggle_kit.runtime.infer.predict_rows`): tokenized once, sorted by length, token-budget
batches padded to their own longest row, no KV cache, ``inference_mode``. Both use the same
:class:`~kaggle_kit.runtime.prompting.Encoder` (so the token ids are identical) and the tiny Gemma-2
classifier in fp32 (eager attention, as Gemma-2 sequence classification requires). The engine runs
that attention with in-place steps (:func:`kaggle_kit.runtime.infer.eager_inplace_attention`, same
arithmetic); ``inplace_attention=False`` measures sorting and packing alone.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from kaggle_kit.runtime.progress import quiet_known_warnings
from kaggle_kit.benchmarks import load_average
from kaggle_kit.benchmarks.sides import SideClock, abba

BASELINE_BATCH = 8
TARGETS = {"speedup": 2.5, "engine_padding_share": 0.02, "max_abs_prob_diff": 1e-4}


def _manifest(max_length: int):
    from kaggle_kit.runtime.formats import LMSYS_LABELS
    from kaggle_kit.runtime.manifest import Manifest
    from kaggle_kit.runtime.prompting import PromptSpec

    return Manifest(
        task={"kind": "pairwise", "labels": list(LMSYS_LABELS), "metric": "log_loss", "format": "lmsys"},
        prompt=PromptSpec(max_length=max_length).to_dict(), base_model={"name": "tiny"},
        quantization={"mode": "none"}, peft={},
    )


def seeds_loop(model, tokenizer, encoder, rows, batch: int = BASELINE_BATCH, bar=None) -> tuple:
    """(probabilities, real tokens, padded tokens) the seeds' way. ``bar``: a Progress (rows)."""
    import torch

    out, real, padded = [], 0, 0
    with torch.inference_mode():
        for i in range(0, len(rows), batch):
            enc = encoder.encode(rows[i:i + batch])
            ids = [e.input_ids for e in enc]
            b = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
            real += sum(len(x) for x in ids)
            padded += b["input_ids"].numel()
            out.append(model(**b).logits.softmax(-1).float().cpu().numpy())
            if bar is not None:
                bar.update(len(ids))
    return np.concatenate(out), real, padded


@dataclass
class _Setup:
    """Both sides' input: the tiny classifier, its tokenizer, the engine's manifest, the rows, the
    shared encoder and each row's length in tokens."""

    model: object
    tok: object
    manifest: object
    data: list
    encoder: object
    lengths: object  # numpy array, tokens per row


@dataclass
class _Rounds:
    """What the rounds added up to: each side's clock, the last probabilities of each, the seeds'
    loop's token counts and the engine's last report."""

    rep: object  # the engine's EngineReport (of its last round)
    baseline: SideClock = field(default_factory=SideClock)
    engine: SideClock = field(default_factory=SideClock)
    base_probs: object = None
    base_real: int = 0
    base_padded: int = 0
    probs: object = None


@quiet_known_warnings()  # the listed harmless library warnings only, only during the bench
def run_bench(rows: int = 300, max_length: int = 1024, batch_tokens: int = None, max_batch_rows: int = None,
              seed: int = 0, threads: int = None, inplace_attention: bool = True, rounds: int = 2, log=None,
              progress: bool = True) -> dict:
    """Both sides on the same rows in ABBA rounds; ``log`` gets a progress line per side as it goes
    (rows/s and rows per CPU-second; a bar on a terminal) and a summary line after each side."""
    log = log or (lambda *a: None)
    s = _setup(rows, max_length, seed, threads, log)
    n_rounds = max(1, int(rounds))
    show = progress and log is not None
    o = _run_rounds(s, n_rounds, show, log, dict(batch_tokens=batch_tokens, max_batch_rows=max_batch_rows,
                                                 inplace_attention=inplace_attention))
    n_runs = rows * n_rounds
    b, e = o.baseline, o.engine
    log(f"seeds' loop: {n_runs / b.wall:.2f} rows/s ({n_runs / b.cpu:.2f} rows/CPU-s); "
        f"engine: {n_runs / e.wall:.2f} rows/s ({n_runs / e.cpu:.2f} rows/CPU-s)")
    return _report(s, o, n_rounds, max_length=max_length, batch_tokens=batch_tokens, inplace_attention=inplace_attention)


def _setup(rows: int, max_length: int, seed: int, threads: int, log) -> _Setup:
    """Load the tiny Gemma-2 classifier (fp32) and its tokenizer, make the rows, measure their
    lengths, and warm the model up so that neither side pays first-call costs."""
    import torch

    from kaggle_kit.benchmarks.data import lmsys_like_rows
    from kaggle_kit.models.tiny import tiny_base_dir
    from kaggle_kit.runtime.modeling import load_base, load_tokenizer
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec

    if threads:
        torch.set_num_threads(int(threads))
    base = tiny_base_dir(num_labels=3)
    tok = load_tokenizer(base)
    model = load_base(base, num_labels=3, dtype="float32", pad_token_id=tok.pad_token_id).eval()
    manifest = _manifest(max_length)
    data = lmsys_like_rows(rows, seed=seed)
    encoder = Encoder(tok, PromptSpec(max_length=max_length), "pairwise")
    lengths = np.array([len(e.input_ids) for e in encoder.encode(data)])
    log(f"{rows} rows, tokens per row: mean {lengths.mean():.0f}, min {lengths.min()}, max {lengths.max()}")
    with torch.inference_mode():  # warm-up, so neither side pays first-call costs
        model(input_ids=torch.tensor([encoder.encode(data[:1])[0].input_ids]))
    return _Setup(model=model, tok=tok, manifest=manifest, data=data, encoder=encoder, lengths=lengths)


def _run_rounds(s: _Setup, n_rounds: int, show: bool, log, engine_options: dict) -> _Rounds:
    """The seeds' loop and the engine in ABBA rounds on the same rows, each side timed (wall and CPU)
    with its rates logged after each turn. ``engine_options``: batch_tokens, max_batch_rows,
    inplace_attention for :func:`predict_rows`."""
    from kaggle_kit.runtime.infer import EngineReport, predict_rows
    from kaggle_kit.runtime.progress import Progress, cpu_rates

    rows = len(s.data)
    o = _Rounds(rep=EngineReport(decisions=[]))
    for r in range(n_rounds):
        for side in abba(r, "baseline", "engine"):
            name = "seeds' loop" if side == "baseline" else "engine"
            clock = o.baseline if side == "baseline" else o.engine
            with clock.turn(), cpu_rates():  # rows per CPU-second beside rows/s, as each side goes
                if side == "baseline":
                    bar = Progress(rows, f"round {r + 1}/{n_rounds} {name}", "row", log=log) if show else None
                    o.base_probs, o.base_real, o.base_padded = seeds_loop(s.model, s.tok, s.encoder, s.data, bar=bar)
                    if bar is not None:
                        bar.close(summary=False)
                else:
                    o.rep = EngineReport(decisions=[])
                    log(f"round {r + 1}/{n_rounds} {name}: {rows} rows") if show else None
                    o.probs = predict_rows(s.model, s.tok, s.manifest, s.data, report=o.rep, progress=show,
                                           log=log if show else None, **engine_options)
            wall, cpu = clock.last
            log(f"round {r + 1}/{n_rounds} {name}: {rows} rows in {wall:.1f}s | {rows / wall:,.2f} rows/s | "
                f"{rows / cpu if cpu > 0 else float('nan'):,.2f} rows/CPU-s")
    return o


def _report(s: _Setup, o: _Rounds, n_rounds: int, *, max_length: int, batch_tokens, inplace_attention: bool) -> dict:
    """The JSON-ready result: each side's rates, the speedup, padding shares, the largest probability
    difference between the sides, the setup, and whether the targets are met."""
    import torch

    rows = len(s.data)
    n_runs = rows * n_rounds
    base_s, base_cpu, eng_s, eng_cpu = o.baseline.wall, o.baseline.cpu, o.engine.wall, o.engine.cpu
    diff = float(np.abs(o.probs - o.base_probs).max())
    result = {
        "rows": rows,
        "max_length": max_length,
        "mean_tokens": round(float(s.lengths.mean()), 1),
        "rounds": n_rounds,
        "baseline_rows_per_s": round(n_runs / base_s, 3),
        "engine_rows_per_s": round(n_runs / eng_s, 3),
        "baseline_rows_per_cpu_s": round(n_runs / base_cpu, 3) if base_cpu > 0 else None,
        "engine_rows_per_cpu_s": round(n_runs / eng_cpu, 3) if eng_cpu > 0 else None,
        "speedup": round(base_s / eng_s, 3),
        "baseline_padding_share": round(1 - o.base_real / o.base_padded, 4),
        "engine_padding_share": round(o.rep.padding_share, 4),
        "max_abs_prob_diff": diff,
        "baseline_s": round(base_s, 2),
        "engine_s": round(eng_s, 2),
        "batch_tokens": batch_tokens or 0,
        "engine_inplace_attention": bool(inplace_attention),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": load_average(),
        "targets": TARGETS,
    }
    result["meets_targets"] = bool(
        result["speedup"] >= TARGETS["speedup"]
        and result["engine_padding_share"] <= TARGETS["engine_padding_share"]
        and diff <= TARGETS["max_abs_prob_diff"]
    )
    return result


def run_ensemble_bench(members: int = 2, rows: int = 300, max_length: int = 1024, batch_tokens: int = None,
                       max_batch_rows: int = None, seed: int = 0, threads: int = None, rounds: int = 2, log=None) -> dict:
    """``members`` tiny Gemma-2 classifiers (same tokenizer and prompt, heads perturbed per member) predicted
    independently — each :func:`predict_rows` call tokenizing and sorting on its own, then combined — vs the
    ensemble engine (:func:`kaggle_kit.runtime.ensemble.run_members`: one tokenization shared)."""
    import torch

    from kaggle_kit.benchmarks.data import lmsys_like_rows
    from kaggle_kit.runtime.ensemble import EnsembleMember, combine, run_members
    from kaggle_kit.runtime.infer import predict_rows
    from kaggle_kit.runtime.modeling import load_base, load_tokenizer
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec
    from kaggle_kit.models.tiny import tiny_base_dir

    log = log or (lambda *a: None)
    if threads:
        torch.set_num_threads(int(threads))
    members = max(2, int(members))
    base = tiny_base_dir(num_labels=3)
    tok = load_tokenizer(base)
    models = []
    for k in range(members):
        m = load_base(base, num_labels=3, dtype="float32", pad_token_id=tok.pad_token_id).eval()
        g = torch.Generator().manual_seed(seed + k)
        with torch.no_grad():  # members differ: each head moved by its own noise
            m.score.weight.add_(torch.randn(m.score.weight.shape, generator=g) * 0.05)
        models.append(m)
    manifest = _manifest(max_length)
    data = lmsys_like_rows(rows, seed=seed)
    ids = [r.id for r in data]
    weights = [1.0 / members] * members
    encoder = Encoder(tok, PromptSpec(max_length=max_length), "pairwise")
    t = time.perf_counter()
    encoder.encode(data)
    encode_s = time.perf_counter() - t
    ens = [EnsembleMember(f"m{k}", weights[k], manifest, (lambda m=m: ([(m, "cpu")], tok)), tokens_key="tiny") for k, m in enumerate(models)]
    indep_s = eng_s = 0.0
    for r in range(max(1, int(rounds))):
        for side in abba(r, "independent", "ensemble"):
            t = time.perf_counter()
            if side == "independent":
                indep = combine([predict_rows(m, tok, manifest, data, batch_tokens=batch_tokens, max_batch_rows=max_batch_rows)
                                 for m in models], weights)
                indep_s += time.perf_counter() - t
            else:
                eng, outcomes, _ = run_members(ens, data, ids, batch_tokens=batch_tokens, max_batch_rows=max_batch_rows)
                eng_s += time.perf_counter() - t
            log(f"round {r + 1}: {side} done ({time.perf_counter() - t:.1f}s)")
    n = max(1, int(rounds))
    shared = sum(1 for o in outcomes if o.get("tokens_shared_with"))
    return {
        "members": members, "rows": rows, "max_length": max_length, "rounds": n,
        "independent_s": round(indep_s / n, 3), "ensemble_s": round(eng_s / n, 3), "speedup": round(indep_s / eng_s, 3),
        "tokenizations_independent": members, "tokenizations_ensemble": members - shared,
        "encode_s_per_tokenization": round(encode_s, 3), "encode_s_saved": round(shared * encode_s, 3),
        "max_abs_prob_diff": float(np.abs(eng - indep).max()), "target_max_abs_prob_diff": 1e-6,
        "torch_threads": torch.get_num_threads(),
        "load_average": load_average(),
    }

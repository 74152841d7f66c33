"""`kit bench infer`: the inference engine vs the seeds' loop and vs the 2025 public practice, same model,
same rows, and how far each is from the machine's own matmul rate.

Three sides (:mod:`kaggle_kit.benchmarks.public_loop` holds the two baselines):

- the seeds' loop (seed 001's ``predict_df``): rows in dataset order, batches of 8, tokenized per
  batch, padded to the batch's longest row;
- the public practice of 2025: rows tokenized once, sorted by length, fixed batches of 8, each padded
  to its own longest row;
- the engine (:func:`kaggle_kit.runtime.infer.predict_rows`): tokenized once, sorted by length,
  token-budget batches padded to their own longest row, no KV cache, ``inference_mode``.

All use the same :class:`~kaggle_kit.runtime.prompting.Encoder` (so the token ids are identical) and
the same classifier in fp32: ``--model tiny`` (the tiny Gemma-2, eager attention, as Gemma-2 sequence
classification requires; the engine runs it with in-place steps,
:func:`kaggle_kit.runtime.infer.eager_inplace_attention`, same arithmetic; ``inplace_attention=False``
measures sorting and packing alone) or ``--model smollm2`` (SmolLM2-135M, a real Llama, SDPA
attention, with a freshly initialised 3-label head). Sides run in ABBA order round by round
(seeds, public, engine; then engine, public, seeds), so load drift on shared cores evens out.

The roofline (:mod:`kaggle_kit.benchmarks.roofline`): just before the rounds the process measures its
dense matmul rate at the model's hidden size (same dtype and threads); each side's useful FLOPs (the
real, unpadded tokens) per second over that rate is its share of the machine's matmul rate.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from kaggle_kit.runtime.progress import quiet_known_warnings
from kaggle_kit.benchmarks import load_average
from kaggle_kit.benchmarks.public_loop import BASELINE_BATCH, LoopRun, public_loop, seeds_loop  # noqa: F401 (re-exported)
from kaggle_kit.benchmarks.sides import SideClock, abba

SIDES = ("seeds", "public", "engine")
SIDE_NAMES = {"seeds": "seeds' loop", "public": "public practice", "engine": "engine"}
BENCH_MODELS = ("tiny", "smollm2")
TARGETS = {"speedup": 2.5, "speedup_vs_public": 1.2, "engine_padding_share": 0.02, "max_abs_prob_diff": 1e-4}


def side_order(round_index: int, sides=SIDES) -> tuple:
    """The sides' order in round ``round_index`` (from 0): as given in even rounds, reversed in odd ones
    (ABBA for any number of sides: each side's mean position is the same)."""
    return tuple(sides) if round_index % 2 == 0 else tuple(reversed(sides))


def _manifest(max_length: int, base: str = "tiny"):
    from kaggle_kit.runtime.formats import LMSYS_LABELS
    from kaggle_kit.runtime.manifest import Manifest
    from kaggle_kit.runtime.prompting import PromptSpec

    return Manifest(
        task={"kind": "pairwise", "labels": list(LMSYS_LABELS), "metric": "log_loss", "format": "lmsys"},
        prompt=PromptSpec(max_length=max_length).to_dict(), base_model={"name": base},
        quantization={"mode": "none"}, peft={},
    )


@dataclass
class _Setup:
    """Every side's input: the classifier, its tokenizer, the engine's manifest, the rows, the shared
    encoder, each row's length in tokens, the model's name and its :class:`~roofline.Arch`."""

    model: object
    tok: object
    manifest: object
    data: list
    encoder: object
    lengths: object  # numpy array, tokens per row
    name: str = "tiny"
    arch: object = None


@dataclass
class _Rounds:
    """What the rounds added up to: each side's clock, the last run of each baseline, the engine's
    last probabilities and report."""

    rep: object  # the engine's EngineReport (of its last round)
    clocks: dict = field(default_factory=lambda: {s: SideClock() for s in SIDES})
    runs: dict = field(default_factory=dict)  # 'seeds' / 'public' -> LoopRun
    probs: object = None

    @property
    def baseline(self) -> SideClock:  # the seeds' loop (name kept for callers of the two-side bench)
        return self.clocks["seeds"]

    @property
    def engine(self) -> SideClock:
        return self.clocks["engine"]


@quiet_known_warnings()  # the listed harmless library warnings only, only during the bench
def run_bench(rows: int = 300, max_length: int = 1024, batch_tokens: int = None, max_batch_rows: int = None,
              seed: int = 0, threads: int = None, inplace_attention: bool = True, rounds: int = 2, log=None,
              progress: bool = True, model: str = "tiny") -> dict:
    """The three sides on the same rows in ABBA rounds; ``log`` gets a progress line per side as it goes
    (rows/s and rows per CPU-second; a bar on a terminal) and a summary line after each side.
    ``model``: 'tiny' or 'smollm2'."""
    from kaggle_kit.benchmarks.roofline import matmul_rate

    log = log or (lambda *a: None)
    s = _setup(model, rows, max_length, seed, threads, log)
    rate = matmul_rate(s.arch.hidden)  # fp32, this process's threads, just before the rounds
    log(f"matmul rate ({rate['shape'][0]}×{rate['shape'][1]} @ {rate['shape'][1]}×{rate['shape'][2]}, "
        f"{rate['dtype']}): {rate['flops_per_s'] / 1e9:,.1f} GFLOP/s, {(rate['flops_per_cpu_s'] or 0) / 1e9:,.1f} GFLOP/CPU-s")
    n_rounds = max(1, int(rounds))
    show = progress and log is not None
    o = _run_rounds(s, n_rounds, show, log, dict(batch_tokens=batch_tokens, max_batch_rows=max_batch_rows,
                                                 inplace_attention=inplace_attention))
    n_runs = rows * n_rounds
    log("; ".join(f"{SIDE_NAMES[k]}: {n_runs / o.clocks[k].wall:.2f} rows/s ({n_runs / o.clocks[k].cpu:.2f} rows/CPU-s)"
                  for k in SIDES))
    return _report(s, o, n_rounds, rate, max_length=max_length, batch_tokens=batch_tokens,
                   max_batch_rows=max_batch_rows, inplace_attention=inplace_attention)


def load_bench_model(name: str, seed: int = 0, log=None) -> tuple:
    """(model in fp32, eval mode; tokenizer) of a bench model: 'tiny' or 'smollm2' as a 3-label
    sequence classifier (the head freshly initialised from ``seed``)."""
    import torch

    from kaggle_kit.models.named import named_model_dir
    from kaggle_kit.runtime.modeling import load_base, load_tokenizer, quiet_head_report

    if name not in BENCH_MODELS:
        raise ValueError(f"--model {name!r} is not one of {', '.join(BENCH_MODELS)}")
    base = named_model_dir(name, num_labels=3, log=log)
    tok = load_tokenizer(base)
    torch.manual_seed(seed)  # the head a fresh classifier gets
    with quiet_head_report():  # transformers' "score.weight MISSING": the head is fresh on purpose (seeded above)
        model = load_base(base, num_labels=3, dtype="float32", pad_token_id=tok.pad_token_id).eval()
    return model, tok


def _setup(name: str, rows: int, max_length: int, seed: int, threads: int, log) -> _Setup:
    """Load the classifier (fp32) and its tokenizer, make the rows, measure their lengths, and warm
    the model up so that no side pays first-call costs."""
    import torch

    from kaggle_kit.benchmarks.data import lmsys_like_rows
    from kaggle_kit.benchmarks.roofline import arch_of
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec

    if threads:
        torch.set_num_threads(int(threads))
    model, tok = load_bench_model(name, seed=seed, log=log)
    manifest = _manifest(max_length, name)
    data = lmsys_like_rows(rows, seed=seed)
    encoder = Encoder(tok, PromptSpec(max_length=max_length), "pairwise")
    lengths = np.array([len(e.input_ids) for e in encoder.encode(data)])
    log(f"{name}: {rows} rows, tokens per row: mean {lengths.mean():.0f}, min {lengths.min()}, max {lengths.max()}")
    with torch.inference_mode():  # warm-up, so no side pays first-call costs
        model(input_ids=torch.tensor([encoder.encode(data[:1])[0].input_ids]))
    return _Setup(model=model, tok=tok, manifest=manifest, data=data, encoder=encoder, lengths=lengths,
                  name=name, arch=arch_of(model.config))


def _run_side(s: _Setup, o: _Rounds, side: str, label: str, show: bool, log, engine_options: dict) -> None:
    """One turn of one side (inside its clock); baselines keep their LoopRun, the engine its report."""
    from kaggle_kit.runtime.infer import EngineReport, predict_rows
    from kaggle_kit.runtime.progress import Progress

    rows = len(s.data)
    if side == "engine":
        o.rep = EngineReport(decisions=[])
        log(f"{label}: {rows} rows") if show else None
        o.probs = predict_rows(s.model, s.tok, s.manifest, s.data, report=o.rep, progress=show,
                               log=log if show else None, **engine_options)
        return
    bar = Progress(rows, label, "row", log=log) if show else None
    loop = seeds_loop if side == "seeds" else public_loop
    o.runs[side] = loop(s.model, s.tok, s.encoder, s.data, bar=bar)
    if bar is not None:
        bar.close(summary=False)


def _run_rounds(s: _Setup, n_rounds: int, show: bool, log, engine_options: dict) -> _Rounds:
    """The three sides in ABBA rounds on the same rows, each side timed (wall and CPU) with its rates
    logged after each turn. ``engine_options``: batch_tokens, max_batch_rows, inplace_attention for
    :func:`predict_rows`."""
    from kaggle_kit.runtime.infer import EngineReport
    from kaggle_kit.runtime.progress import cpu_rates

    rows = len(s.data)
    o = _Rounds(rep=EngineReport(decisions=[]))
    for r in range(n_rounds):
        for side in side_order(r):
            label = f"round {r + 1}/{n_rounds} {SIDE_NAMES[side]}"
            clock = o.clocks[side]
            with clock.turn(), cpu_rates():  # rows per CPU-second beside rows/s, as each side goes
                _run_side(s, o, side, label, show, log, engine_options)
            wall, cpu = clock.last
            log(f"{label}: {rows} rows in {wall:.1f}s | {rows / wall:,.2f} rows/s | "
                f"{rows / cpu if cpu > 0 else float('nan'):,.2f} rows/CPU-s")
    return o


def engine_shapes(lengths, batch_tokens=None, max_batch_rows=None) -> list:
    """(rows, width) of the batches the engine's main pass runs on rows of ``lengths`` (no deadline):
    the same :func:`runtime.batching.plan_batches` call with the engine's defaults."""
    from kaggle_kit.runtime.batching import plan_batches
    from kaggle_kit.runtime.engine import DEFAULT_BATCH_TOKENS, DEFAULT_MAX_ROWS

    lengths = np.asarray(lengths)
    batches = plan_batches(lengths, int(batch_tokens or DEFAULT_BATCH_TOKENS), int(max_batch_rows or DEFAULT_MAX_ROWS))
    return [(len(b), int(lengths[b].max())) for b in batches]


def _roofline(s: _Setup, o: _Rounds, n_rounds: int, rate: dict, shapes: dict) -> dict:
    """The roofline block of the report: the matmul rate, the useful work, and each side's share."""
    from kaggle_kit.benchmarks.roofline import side_roofline, useful_flops

    useful = useful_flops(s.arch, s.lengths)
    lengths = np.tile(s.lengths, n_rounds)
    return {
        "matmul_gflop_per_s": round(rate["flops_per_s"] / 1e9, 2),
        "matmul_best_gflop_per_s": round(rate["best_flops_per_s"] / 1e9, 2),
        "matmul_gflop_per_cpu_s": round(rate["flops_per_cpu_s"] / 1e9, 2) if rate.get("flops_per_cpu_s") else None,
        "matmul_shape": rate["shape"], "dtype": rate["dtype"],
        "matrix_params": s.arch.matrix_params,
        "useful_gflop_per_pass": round(useful["total"] / 1e9, 3),
        "attention_share_of_useful": round(useful["attention"] / useful["total"], 4),
        "sides": {k: side_roofline(s.arch, lengths, o.clocks[k].wall, rate["flops_per_s"], shapes[k] * n_rounds,
                                   cpu_seconds=o.clocks[k].cpu, cpu_rate=rate.get("flops_per_cpu_s"))
                  for k in SIDES},
    }


def _report(s: _Setup, o: _Rounds, n_rounds: int, rate: dict, *, max_length: int, batch_tokens, max_batch_rows,
            inplace_attention: bool) -> dict:
    """The JSON-ready result: each side's rates, the speedups, padding shares, the largest probability
    differences, the roofline, the setup, and whether the targets are met."""
    import torch

    rows = len(s.data)
    n_runs = rows * n_rounds
    c = o.clocks
    seeds, public = o.runs["seeds"], o.runs["public"]
    shapes = {"seeds": seeds.shapes, "public": public.shapes,
              "engine": engine_shapes(s.lengths, batch_tokens, max_batch_rows)}
    diff = float(np.abs(o.probs - seeds.probs).max())
    roof = _roofline(s, o, n_rounds, rate, shapes)
    result = {
        "model": s.name,
        "rows": rows,
        "max_length": max_length,
        "mean_tokens": round(float(s.lengths.mean()), 1),
        "rounds": n_rounds,
        "baseline_rows_per_s": round(n_runs / c["seeds"].wall, 3),
        "public_rows_per_s": round(n_runs / c["public"].wall, 3),
        "engine_rows_per_s": round(n_runs / c["engine"].wall, 3),
        "baseline_rows_per_cpu_s": round(n_runs / c["seeds"].cpu, 3) if c["seeds"].cpu > 0 else None,
        "public_rows_per_cpu_s": round(n_runs / c["public"].cpu, 3) if c["public"].cpu > 0 else None,
        "engine_rows_per_cpu_s": round(n_runs / c["engine"].cpu, 3) if c["engine"].cpu > 0 else None,
        "speedup": round(c["seeds"].wall / c["engine"].wall, 3),
        "speedup_vs_seeds": round(c["seeds"].wall / c["engine"].wall, 3),
        "speedup_vs_public": round(c["public"].wall / c["engine"].wall, 3),
        "speedup_vs_public_cpu": round(c["public"].cpu / c["engine"].cpu, 3) if c["engine"].cpu > 0 else None,
        "roofline_share": roof["sides"]["engine"]["share_of_matmul_rate"],
        "roofline_share_cpu": roof["sides"]["engine"].get("share_of_matmul_rate_cpu"),
        "baseline_padding_share": round(seeds.padding_share, 4),
        "public_padding_share": round(public.padding_share, 4),
        "engine_padding_share": round(o.rep.padding_share, 4),
        "batches": {k: len(v) for k, v in shapes.items()},
        "max_abs_prob_diff": diff,
        "public_max_abs_prob_diff": float(np.abs(public.probs - seeds.probs).max()),
        "baseline_s": round(c["seeds"].wall, 4),
        "public_s": round(c["public"].wall, 4),
        "engine_s": round(c["engine"].wall, 4),
        "batch_tokens": batch_tokens or 0,
        "engine_inplace_attention": bool(inplace_attention),
        "roofline": roof,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": load_average(),
        "targets": TARGETS,
    }
    result["meets_targets"] = bool(
        result["speedup"] >= TARGETS["speedup"]
        and result["speedup_vs_public"] >= TARGETS["speedup_vs_public"]
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

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

import numpy as np

from kaggle_kit.runtime.progress import quiet_known_warnings
from kaggle_kit.benchmarks import load_average

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


@quiet_known_warnings()  # the listed harmless library warnings only, only during the bench
def run_bench(rows: int = 300, max_length: int = 1024, batch_tokens: int = None, max_batch_rows: int = None,
              seed: int = 0, threads: int = None, inplace_attention: bool = True, rounds: int = 2, log=None,
              progress: bool = True) -> dict:
    """Both sides on the same rows in ABBA rounds; ``log`` gets a progress line per side as it goes
    (rows/s and rows per CPU-second; a bar on a terminal) and a summary line after each side."""
    import torch

    from kaggle_kit.runtime.progress import Progress, cpu_rates

    from kaggle_kit.benchmarks.data import lmsys_like_rows
    from kaggle_kit.runtime.infer import EngineReport, predict_rows
    from kaggle_kit.runtime.modeling import load_base, load_tokenizer
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec
    from kaggle_kit.models.tiny import tiny_base_dir

    log = log or (lambda *a: None)
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

    # ABBA rounds: the machine's load drifts (shared cores), so each side runs in both positions
    base_s = eng_s = base_cpu = eng_cpu = 0.0
    rep = EngineReport(decisions=[])
    n_rounds = max(1, int(rounds))
    show = progress and log is not None
    for r in range(n_rounds):
        for side in (("baseline", "engine") if r % 2 == 0 else ("engine", "baseline")):
            name = "seeds' loop" if side == "baseline" else "engine"
            t, c = time.perf_counter(), time.process_time()
            with cpu_rates():  # rows per CPU-second beside rows/s, as each side goes
                if side == "baseline":
                    bar = Progress(rows, f"round {r + 1}/{n_rounds} {name}", "row", log=log) if show else None
                    base_probs, base_real, base_padded = seeds_loop(model, tok, encoder, data, bar=bar)
                    if bar is not None:
                        bar.close(summary=False)
                else:
                    rep = EngineReport(decisions=[])
                    log(f"round {r + 1}/{n_rounds} {name}: {rows} rows") if show else None
                    probs = predict_rows(model, tok, manifest, data, batch_tokens=batch_tokens, max_batch_rows=max_batch_rows,
                                         report=rep, inplace_attention=inplace_attention, progress=show, log=log if show else None)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            if side == "baseline":
                base_s, base_cpu = base_s + wall, base_cpu + cpu
            else:
                eng_s, eng_cpu = eng_s + wall, eng_cpu + cpu
            log(f"round {r + 1}/{n_rounds} {name}: {rows} rows in {wall:.1f}s | {rows / wall:,.2f} rows/s | "
                f"{rows / cpu if cpu > 0 else float('nan'):,.2f} rows/CPU-s")
    n_runs = rows * max(1, int(rounds))
    log(f"seeds' loop: {n_runs / base_s:.2f} rows/s ({n_runs / base_cpu:.2f} rows/CPU-s); "
        f"engine: {n_runs / eng_s:.2f} rows/s ({n_runs / eng_cpu:.2f} rows/CPU-s)")

    diff = float(np.abs(probs - base_probs).max())
    result = {
        "rows": rows,
        "max_length": max_length,
        "mean_tokens": round(float(lengths.mean()), 1),
        "rounds": max(1, int(rounds)),
        "baseline_rows_per_s": round(n_runs / base_s, 3),
        "engine_rows_per_s": round(n_runs / eng_s, 3),
        "baseline_rows_per_cpu_s": round(n_runs / base_cpu, 3) if base_cpu > 0 else None,
        "engine_rows_per_cpu_s": round(n_runs / eng_cpu, 3) if eng_cpu > 0 else None,
        "speedup": round(base_s / eng_s, 3),
        "baseline_padding_share": round(1 - base_real / base_padded, 4),
        "engine_padding_share": round(rep.padding_share, 4),
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
        for side in (("independent", "ensemble") if r % 2 == 0 else ("ensemble", "independent")):
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

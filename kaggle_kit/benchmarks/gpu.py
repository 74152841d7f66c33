"""`kit bench gpu`: the engine and both baselines on CUDA devices, with Gemma-2-9B- and 2B-shaped
classifiers built from config (random weights, no download; :mod:`kaggle_kit.benchmarks.gpu_model`).

For each shape and mode (fp16, and 8-bit / 4-bit through bitsandbytes) it builds one replica per
visible device, makes LMSYS-like rows (the real length mix, up to ``max_length`` 2,048 tokens; the
tiny tokenizer's ids, which any 256k vocabulary accepts), and runs, in ABBA order:

- the seeds' loop and the 2025 public practice (:mod:`kaggle_kit.benchmarks.public_loop`), each
  device in its own thread on every n-th row (the public notebooks' ``ThreadPoolExecutor`` over
  ``data.iloc[k::2]`` on 2×T4);
- the engine (:func:`kaggle_kit.runtime.infer.predict_rows` with ``replicas``: one queue, one thread
  per device).

Per side: rows/s, real tokens/s, peak memory (the largest over the devices), padding share,
non-finite rows (a float16 overflow shows here), and the hours 25,000 LMSYS test rows would take at
that rate. Beside them: the precision :func:`runtime.precision.precision_for_device` picks for the
device (the kit's rule; fp16 on a T4, bf16 from compute capability 8.0). Without a CUDA device it
returns a skip line and does nothing else.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import numpy as np

from kaggle_kit.benchmarks import load_average
from kaggle_kit.benchmarks.gpu_model import GEMMA2_SHAPES, MODES

LMSYS_TEST_ROWS = 25_000
HEADROOM_BYTES = 2 * 1024 ** 3  # activations of a 2,048-token batch, the CUDA context


def cuda_skip_reason():
    """None when a CUDA device is visible, else the reason this bench cannot run here."""
    import torch

    if not torch.cuda.is_available():
        return (f"no CUDA device: torch {torch.__version__} sees none (CUDA build: {torch.version.cuda or 'none'}); "
                f"run it where a GPU is, e.g. a Kaggle notebook on 2×T4")
    return None


@dataclass
class _Case:
    """One shape × mode on the visible devices."""

    shape: str
    mode: str
    devices: list
    replicas: list  # [(model, device)]
    build_s: float
    weights_gb: float


def _split_loop(loop, replicas, tok, encoder, rows):
    """``loop`` on every device at once, device k on rows k, k+n, k+2n …; one merged LoopRun."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from kaggle_kit.benchmarks.public_loop import LoopRun

    n = len(replicas)
    parts = [list(range(k, len(rows), n)) for k in range(n)]

    def go(k):
        model, dev = replicas[k]
        if _is_cuda(dev):
            torch.cuda.set_device(torch.device(dev))
        return loop(model, tok, encoder, [rows[i] for i in parts[k]], device=dev)

    with ThreadPoolExecutor(max_workers=n) as ex:
        runs = list(ex.map(go, range(n)))
    probs = np.full((len(rows), runs[0].probs.shape[1]), np.nan, dtype=np.float32)
    merged = LoopRun(probs=probs)
    for idx, run in zip(parts, runs):
        probs[idx] = run.probs
        merged.real += run.real
        merged.shapes += run.shapes
    return merged


def _is_cuda(device) -> bool:
    return str(device).startswith("cuda")


def _reset_peak(devices):
    import torch

    for d in devices:
        if _is_cuda(d):
            torch.cuda.reset_peak_memory_stats(torch.device(d))


def _peak_gb(devices):
    """The largest peak of allocated memory over the CUDA ``devices`` (GiB), None on the CPU."""
    import torch

    peaks = [torch.cuda.max_memory_allocated(torch.device(d)) for d in devices if _is_cuda(d)]
    return round(max(peaks) / 1024 ** 3, 2) if peaks else None


def _side(case: _Case, side: str, tok, encoder, manifest, rows, lengths) -> dict:
    """One side on ``rows``: its figures and probabilities (under key '_probs')."""
    import torch

    from kaggle_kit.benchmarks.public_loop import public_loop, seeds_loop
    from kaggle_kit.runtime.infer import EngineReport, predict_rows

    _reset_peak(case.devices)
    t = time.perf_counter()
    if side == "engine":
        rep = EngineReport(decisions=[])
        probs = predict_rows(case.replicas[0][0], tok, manifest, rows, replicas=case.replicas, report=rep)
        padding, nonfinite = rep.padding_share, len(rep.nonfinite_rows)
    else:
        run = _split_loop(seeds_loop if side == "seeds" else public_loop, case.replicas, tok, encoder, rows)
        probs, padding, nonfinite = run.probs, run.padding_share, run.nonfinite_rows
    for d in case.devices:
        if _is_cuda(d):
            torch.cuda.synchronize(torch.device(d))
    wall = time.perf_counter() - t
    rps = len(rows) / wall
    return {"rows_per_s": round(rps, 3), "tokens_per_s": round(float(lengths.sum()) / wall, 1),
            "seconds": round(wall, 2), "peak_memory_gb": _peak_gb(case.devices), "padding_share": round(padding, 4),
            "nonfinite_rows": int(nonfinite), "projected_hours_25k": round(LMSYS_TEST_ROWS / rps / 3600, 2),
            "_probs": probs}


def _build(shape: str, mode: str, devices: list, log, table=None) -> tuple:
    """(case, None) with one replica per device, or (None, reason) when the weights cannot fit.
    ``table``: shape name -> (config keys, vocabulary size); default the real Gemma-2 shapes."""
    import torch

    from kaggle_kit.benchmarks.gpu_model import build_classifier, gemma2_config, weight_bytes
    from kaggle_kit.runtime.precision import half_dtype_for

    keys, vocab = (table or {k: (v, 256_000) for k, v in GEMMA2_SHAPES.items()})[shape]
    cfg = gemma2_config(keys, vocab_size=vocab)
    need = weight_bytes(cfg, mode)
    for d in devices:
        if not _is_cuda(d):
            continue
        free, _ = torch.cuda.mem_get_info(torch.device(d))
        if need + HEADROOM_BYTES > free:
            return None, (f"{shape} {mode}: the weights need {need / 1024 ** 3:.1f} GiB + {HEADROOM_BYTES / 1024 ** 3:.0f} GiB "
                          f"headroom, {d} has {free / 1024 ** 3:.1f} GiB free")
    compute = getattr(torch, half_dtype_for(devices[0], "float16")) if _is_cuda(devices[0]) else torch.float32
    t = time.perf_counter()
    replicas = [(build_classifier(cfg, mode, d, dtype=compute), d) for d in devices]
    build_s = time.perf_counter() - t
    weights = max((torch.cuda.memory_allocated(torch.device(d)) for d in devices if _is_cuda(d)), default=0) / 1024 ** 3
    log(f"{shape} {mode}: {len(devices)} replica(s) built in {build_s:.0f}s, {weights:.1f} GiB per device")
    return _Case(shape, mode, devices, replicas, round(build_s, 1), round(weights, 2)), None


def _run_case(case: _Case, rows: list, tok, encoder, manifest, lengths, rounds: int, log) -> dict:
    """All three sides on ``case`` in ABBA rounds (the last round's figures, the sum of seconds)."""
    from kaggle_kit.benchmarks.infer import SIDES, side_order
    from kaggle_kit.runtime.infer import predict_rows

    predict_rows(case.replicas[0][0], tok, manifest, rows[:len(case.replicas)], replicas=case.replicas)  # warm-up
    out = {}
    for r in range(max(1, rounds)):
        for side in side_order(r):
            res = _side(case, side, tok, encoder, manifest, rows, lengths)
            if side in out:
                res["seconds"] = round(res["seconds"] + out[side]["seconds"], 2)
            out[side] = res
            log(f"  {case.shape} {case.mode} round {r + 1} {side}: {res['rows_per_s']:.2f} rows/s, "
                f"{res['tokens_per_s']:,.0f} tokens/s, peak {res['peak_memory_gb']} GiB, padding {res['padding_share']:.1%}, "
                f"non-finite rows {res['nonfinite_rows']}")
    probs = {k: out[k].pop("_probs") for k in SIDES}
    ok = np.isfinite(probs["engine"]).all(1) & np.isfinite(probs["public"]).all(1)
    diff = float(np.abs(probs["engine"][ok] - probs["public"][ok]).max()) if ok.any() else None
    return {"sides": out, "speedup_vs_public": round(out["public"]["seconds"] / out["engine"]["seconds"], 3),
            "speedup_vs_seeds": round(out["seeds"]["seconds"] / out["engine"]["seconds"], 3),
            "max_abs_prob_diff_vs_public": diff}


def run_gpu_bench(shapes=("2b", "9b"), modes=MODES, rows: int = 128, max_length: int = 2048, rounds: int = 1,
                  seed: int = 0, log=None, devices=None, table=None) -> dict:
    """Every shape × mode on every visible CUDA device; {'skipped': True, 'reason': …} where there is none.
    ``devices`` / ``table`` (tests): run on these devices (e.g. ['cpu']) with these shapes
    (name -> (Gemma2Config keys, vocabulary size)) instead."""
    log = log or (lambda *a: None)
    reason = None if devices else cuda_skip_reason()
    if reason:
        return {"skipped": True, "reason": reason}
    import torch

    from kaggle_kit.benchmarks.data import lmsys_like_rows
    from kaggle_kit.benchmarks.infer import _manifest
    from kaggle_kit.models.tiny import tiny_base_dir
    from kaggle_kit.runtime.modeling import load_tokenizer
    from kaggle_kit.runtime.precision import precision_for_device
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec

    devices = list(devices or [f"cuda:{i}" for i in range(torch.cuda.device_count())])
    tok = load_tokenizer(tiny_base_dir(num_labels=3))
    encoder = Encoder(tok, PromptSpec(max_length=max_length), "pairwise")
    data = lmsys_like_rows(rows, seed=seed)
    lengths = np.array([len(e.input_ids) for e in encoder.encode(data)])
    manifest = _manifest(max_length, "gemma2-shaped")
    result = {"devices": [torch.cuda.get_device_name(torch.device(d)) if _is_cuda(d) else str(d) for d in devices],
              "precision_rule": {d: precision_for_device(d) for d in devices}, "rows": rows, "max_length": max_length,
              "mean_tokens": round(float(lengths.mean()), 1), "max_tokens": int(lengths.max()), "rounds": rounds,
              "torch": torch.__version__, "cases": [], "skipped_cases": [], "load_average": load_average()}
    log(f"{len(devices)} device(s): {', '.join(result['devices'])}; rule picks {result['precision_rule']}; "
        f"{rows} rows, mean {lengths.mean():.0f} tokens, max {lengths.max()}")
    for shape in shapes:
        for mode in modes:
            case, why = _build(shape, mode, devices, log, table)
            if case is None:
                log(f"  skipped: {why}")
                result["skipped_cases"].append(why)
                continue
            res = _run_case(case, data, tok, encoder, manifest, lengths, rounds, log)
            result["cases"].append({"shape": shape, "mode": mode, "build_s": case.build_s, "weights_gb": case.weights_gb, **res})
            del case
            gc.collect()
            torch.cuda.empty_cache()
    return result

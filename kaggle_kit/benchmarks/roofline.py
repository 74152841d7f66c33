"""How far a forward pass is from the machine's own matmul rate: FLOPs from the architecture, and a
dense matmul measured in the same process, on the same device, dtype and thread count.

Forward FLOPs of a decoder classifier (PaLM, Chowdhery et al. 2022, appendix B: 2N per token for the
weight matmuls plus 4 · layers · heads · head_dim · T per token for attention's QKᵀ and AV over a
T-token context; embeddings are lookups and cost none):

- weight matmuls: 2 × (the non-embedding matrix parameters: q, k, v, o, the gated MLP's three
  matrices, and the classification head, which transformers applies at every position) per token;
- attention: 4 · layers · heads · head_dim · T² per row of T tokens (the full T × T score matrix, as
  eager and SDPA attention compute it for a padded batch; Gemma-2's 4,096-token sliding window is
  wider than any row here).

*Useful* FLOPs count each row at its real length; *executed* FLOPs count every batch at rows × its
width, i.e. what padding makes the model do. ``useful FLOPs / seconds / matmul rate`` is the share of
the machine's matmul rate a side reaches; ``useful / executed`` says how much of the gap is padding.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

DECODERS = ("gemma", "gemma2", "gemma3_text", "llama", "mistral", "qwen2", "qwen3")


@dataclass(frozen=True)
class Arch:
    """The sizes that set a decoder's forward FLOPs."""

    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    num_labels: int

    @property
    def matrix_params(self) -> int:
        """Non-embedding matrix parameters a token passes through (all layers + the head)."""
        attn = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        mlp = 3 * self.hidden * self.intermediate  # gate, up, down
        return self.layers * (attn + mlp) + self.hidden * self.num_labels

    @property
    def attention_coeff(self) -> int:
        """Attention FLOPs of a T-token row are ``attention_coeff × T²``."""
        return 4 * self.layers * self.heads * self.head_dim


def arch_of(config) -> Arch:
    """The :class:`Arch` of a transformers config of a Llama-like decoder (Gemma, Gemma-2, Llama,
    Mistral, Qwen2/3). Other architectures raise ValueError naming the model type."""
    mt = getattr(config, "model_type", "?")
    if mt not in DECODERS:
        raise ValueError(f"roofline: FLOPs are counted for decoder models ({', '.join(DECODERS)}); "
                         f"this base is model_type {mt!r}: use --model tiny or smollm2")
    heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return Arch(model_type=mt, hidden=int(config.hidden_size), intermediate=int(config.intermediate_size),
                layers=int(config.num_hidden_layers), heads=heads,
                kv_heads=int(getattr(config, "num_key_value_heads", None) or heads), head_dim=int(head_dim),
                num_labels=int(getattr(config, "num_labels", 2)))


def useful_flops(arch: Arch, lengths: Iterable[int]) -> dict:
    """Forward FLOPs of rows at their real lengths: {'matmul', 'attention', 'total'} (floats)."""
    L = np.asarray(list(lengths), dtype=np.float64)
    mm = 2.0 * arch.matrix_params * float(L.sum())
    at = float(arch.attention_coeff) * float((L * L).sum())
    return {"matmul": mm, "attention": at, "total": mm + at}


def executed_flops(arch: Arch, shapes: Sequence[tuple]) -> float:
    """Forward FLOPs of the batches as run: each (rows, width) batch counts rows × width tokens."""
    total = 0.0
    for rows, width in shapes:
        total += rows * (2.0 * arch.matrix_params * width + float(arch.attention_coeff) * width * width)
    return total


def matmul_rate(hidden: int, dtype=None, device="cpu", tokens: int = 4096, blocks: int = 5,
                block_seconds: float = 0.1) -> dict:
    """The dense matmul rate (FLOP/s) of ``(tokens × hidden) @ (hidden × hidden)`` on ``device`` in
    ``dtype`` with the current torch thread count: the median of ``blocks`` timed blocks of about
    ``block_seconds`` each (median, not best: the benches run on shared machines and time their sides
    in wall-clock seconds too), and per CPU-second of this process (steady when other processes take
    the cores; the sides' CPU-seconds compare with it). Returns {'flops_per_s', 'best_flops_per_s',
    'flops_per_cpu_s', 'shape', 'dtype'}."""
    import torch

    dtype = dtype or torch.float32
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(tokens, hidden, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(hidden, hidden, generator=g).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    flop = 2.0 * tokens * hidden * hidden
    for _ in range(3):  # warm-up
        torch.matmul(a, b)
    sync()
    rates, cpu_rates = [], []
    for _ in range(max(1, blocks)):
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            torch.matmul(a, b)
            n += 1
            if n % 4 == 0:
                sync()
                el = time.perf_counter() - t0
                if el >= block_seconds:
                    break
        rates.append(flop * n / el)
        cpu = time.process_time() - c0
        cpu_rates.append(flop * n / cpu if cpu > 0 else float("nan"))
    return {"flops_per_s": float(np.median(rates)), "best_flops_per_s": float(max(rates)),
            "flops_per_cpu_s": float(np.nanmedian(cpu_rates)) if not np.isnan(cpu_rates).all() else None,
            "shape": [tokens, hidden, hidden], "dtype": str(dtype).replace("torch.", "")}


def side_roofline(arch: Arch, lengths, seconds: float, rate: float, shapes=None, cpu_seconds: float = None,
                  cpu_rate: float = None) -> dict:
    """One side's figures: useful GFLOP/s, its share of the matmul ``rate``, and (with ``shapes``, the
    (rows, width) of its batches) the executed FLOPs and the useful share of them; with ``cpu_seconds``
    and ``cpu_rate`` (the matmul FLOPs per CPU-second) the same share per CPU-second."""
    useful = useful_flops(arch, lengths)["total"]
    out = {"useful_gflop_per_s": round(useful / seconds / 1e9, 3) if seconds > 0 else None,
           "share_of_matmul_rate": round(useful / seconds / rate, 4) if seconds > 0 and rate > 0 else None}
    if cpu_seconds and cpu_rate:
        out["share_of_matmul_rate_cpu"] = round(useful / cpu_seconds / cpu_rate, 4)
    if shapes:
        ex = executed_flops(arch, shapes)
        out["executed_gflop"] = round(ex / 1e9, 3)
        out["useful_share_of_executed"] = round(useful / ex, 4) if ex > 0 else None
        out["executed_share_of_matmul_rate"] = round(ex / seconds / rate, 4) if seconds > 0 and rate > 0 else None
    return out

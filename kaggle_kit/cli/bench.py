"""`kit bench …`: benchmarks that run a baseline and the kit side by side and print the ratio."""
from __future__ import annotations

import click

from kaggle_kit.cli import LazyGroup

BENCHES = {
    "data": ("kaggle_kit.cli.bench_data", "bench_data", "Prepare LMSYS-shaped rows: batched encoder vs one row at a time."),
    "train": ("kaggle_kit.cli.bench_train", "bench_train", "Training tokens/s: length-grouped dynamic padding vs fixed max_length padding."),
    "infer": ("kaggle_kit.cli.bench_infer", "bench_infer", "Inference rows/s: token-budget engine vs the seeds' loop and the 2025 public practice, and its share of the matmul rate."),
    "gpu": ("kaggle_kit.cli.bench_infer", "bench_gpu", "On CUDA: Gemma-2-9B/2B-shaped classifiers (fp16, 8-bit, 4-bit), engine vs both baselines; skips without a GPU."),
    "quality": ("kaggle_kit.cli.bench_quality", "bench_quality", "SmolLM2-135M LoRA on real hh-rlhf text: accuracy/log loss with 95% CIs beside a linear probe and baselines."),
}


@click.group(cls=LazyGroup, registry=BENCHES)
def bench():
    """Benchmarks that print measured figures of the kit against a baseline run side by side.

    \b
    Examples:
      kit bench data --rows 57000
      kit bench infer --rows 2000 --json
      kit bench gpu                  # on a CUDA machine; prints a skip line elsewhere
    """

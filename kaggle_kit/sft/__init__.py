"""Instruction tuning (task.kind = 'sft'): causal-LM LoRA/QLoRA training with loss on response tokens.

`kit train` dispatches here when ``cfg.task.kind == "sft"``; generation and evaluation live in the
embeddable `kaggle_kit.runtime.generation` (used by `kit generate` and the generation notebook).
"""
from __future__ import annotations

__all__ = ["run_sft", "SFTResult"]


def __getattr__(name):  # keep `import kaggle_kit.sft` free of torch
    if name in ("run_sft", "SFTResult", "resolve_base", "peft_config_causal"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)

"""One process of a data-parallel fine-tune inside the train-predict kernel.

`kaggle_kit.train.test_time` writes the run's config (TOML) and a spec (JSON: the config's path, the training
deadline as a ``time.monotonic`` value — one system-wide clock on Linux, so every process reads the same — the
run's start and where rank 0 writes its summary), then launches ``python -m torch.distributed.run --standalone
--nproc_per_node N -m kaggle_kit.train.ddp_worker SPEC``. Each rank trains through :func:`kaggle_kit.train.run_training`
with the budget callback (its stop decision is agreed over all ranks); rank 0 writes the summary the kernel reads.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def torchrun_command(nproc: int, module: str, args) -> list:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m MODULE ARGS…`` with this interpreter
    (`kit train --nproc` and the train-predict kernel launch their ranks with it)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(nproc)}",
            "-m", module, *map(str, args)]


def main(argv=None) -> int:
    from kaggle_kit.config import load_config

    from . import run_training
    from .budget_stop import budget_stop_callback, round_summary

    spec = json.loads(Path((argv or sys.argv[1:])[0]).read_text(encoding="utf-8"))
    rank = int(os.environ.get("RANK", "0"))
    log = print if rank == 0 else (lambda *a, **k: None)
    cfg = load_config(spec["config"], required=True)
    callback, record = budget_stop_callback(float(spec["deadline"]), log=log, start=float(spec["start"]))
    res = run_training(cfg, log=log, callbacks=(callback,))
    if rank == 0:
        summary = round_summary(res, record, world_size=int(os.environ.get("WORLD_SIZE", "1")))
        Path(spec["result"]).write_text(json.dumps(summary, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

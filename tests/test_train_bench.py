"""`kit bench train`: both sides train on the same examples; the kit's batching pads far less."""
from __future__ import annotations

import pytest


def test_bench_train_small(kit_cache, tiny_base):
    from kaggle_kit.benchmarks.train import run_bench

    r = run_bench(model="tiny", rows=24, max_length=1024, batch_size=4, steps=2, log=lambda m: None)
    assert r["kit"]["real_tokens"] == r["fixed"]["real_tokens"] > 0  # the same examples on both sides
    assert r["fixed"]["padded_tokens"] == 2 * 4 * 1024
    assert r["kit"]["padded_tokens"] < r["fixed"]["padded_tokens"]
    assert r["kit"]["padding_share"] < r["fixed"]["padding_share"]
    assert r["ratio"] == pytest.approx(r["kit"]["tokens_per_s"] / r["fixed"]["tokens_per_s"])
    assert r["kit"]["tokens_per_s"] > 0 and r["fixed"]["tokens_per_s"] > 0


def test_bench_train_cli_help():
    from click.testing import CliRunner

    from kaggle_kit.cli.bench_train import bench_train

    out = CliRunner().invoke(bench_train, ["--help"])
    assert out.exit_code == 0 and "fixed padding" in out.output and "Examples" in out.output

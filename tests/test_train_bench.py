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


def test_bench_infer_reports_each_side_as_it_goes(kit_cache, tiny_base, monkeypatch):
    """`kit bench infer` is never silent: a line per side and round with rows/s and rows per CPU-second."""
    import re

    from kaggle_kit.benchmarks.infer import run_bench

    monkeypatch.setenv("KIT_PROGRESS", "lines")
    lines = []
    r = run_bench(rows=12, max_length=128, rounds=2, log=lines.append)
    done = [ln for ln in lines if re.match(r"^round \d/2 (seeds' loop|engine): 12 rows in [\d.]+s \| [\d,.]+ rows/s \| [\d,.]+ rows/CPU-s$", ln)]
    assert len(done) == 4, lines  # both sides, both rounds
    assert any(ln.startswith("predict: 12/12 rows") and "rows/CPU-s" in ln for ln in lines), lines  # the engine's own progress
    assert any(ln.startswith("round 1/2 seeds' loop") and "rows/CPU-s" in ln for ln in lines), lines
    assert r["baseline_rows_per_cpu_s"] > 0 and r["engine_rows_per_cpu_s"] > 0


def test_bench_train_logs_each_sides_rates(kit_cache, tiny_base):
    from kaggle_kit.benchmarks.train import run_bench

    lines = []
    r = run_bench(model="tiny", rows=24, max_length=256, batch_size=4, steps=2, log=lines.append, progress_every=0.0)
    steps = [ln for ln in lines if ln.startswith("  step ")]
    assert steps and all("fixed" in ln and "kit" in ln for ln in steps), lines
    assert "rows/CPU-s" in steps[-1] and r["kit"]["rows_per_cpu_s"] > 0

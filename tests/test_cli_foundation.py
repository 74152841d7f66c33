"""The `kit` group: help lists every command, --version, and `kit --help` imports neither torch nor kaggle."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner

from kaggle_kit import __version__
from kaggle_kit.cli import COMMANDS, main


def test_help_lists_every_registered_command():
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0
    for name, (_, _, summary) in COMMANDS.items():
        assert name in res.output, name
        assert summary.split()[0] in res.output
    assert "Examples:" in res.output and "kit init --preset lmsys" in res.output


def test_version():
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output and "kit" in res.output


def test_foundation_commands_resolve_and_have_examples():
    group = main
    ctx = group.make_context("kit", ["--help"], resilient_parsing=True)
    for name in ("init", "config", "data", "demo", "bench"):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        assert "Example" in (cmd.help or ""), name
    bench = group.get_command(ctx, "bench")
    assert bench.get_command(ctx, "data").name == "data"


PROBE = """
import sys, json
from kaggle_kit.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "kaggle", "transformers", "peft", "bitsandbytes") if m in sys.modules)
print("\\n" + json.dumps(heavy))
"""


def test_help_imports_neither_torch_nor_kaggle():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert "torch" not in heavy and "kaggle" not in heavy, heavy
    assert heavy == [], heavy


def test_data_and_bench_help_stay_light():
    probe = PROBE.replace('main(["--help"])', 'main(["data", "inspect", "--help"])')
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_bench_data_small_run():
    res = CliRunner().invoke(main, ["bench", "data", "--rows", "300", "--max-length", "512", "--with-wrapper", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["rows"] == 300 and data["mismatched_rows"] == 0 and data["longest_tokens"] <= 512
    assert data["batched_rows_per_s"] > 0 and data["baseline_rows_per_s"] > 0
    assert abs(data["speedup"] - data["batched_rows_per_s"] / data["baseline_rows_per_s"]) < 0.05
    assert 0 < data["truncated_share"] < 1
    assert data["wrapper_rows_per_s"] > 0 and data["speedup_vs_wrapper"] > 0

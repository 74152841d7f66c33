"""`kit data inspect` / `kit data synth`: library, CLI (CliRunner) and one real subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kaggle_kit.cli import main
from kaggle_kit.data.inspect import inspect_file

REAL_COUNTS = {"winner_model_a": 16, "winner_model_b": 20, "winner_tie": 24}


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # keep the repository's kit.toml out
    return CliRunner()


def test_inspect_real_sample_characters(shared_data, tmp_path):
    r = inspect_file(shared_data / "lmsys-sample" / "train_sample.csv", max_length=1024, plot=str(tmp_path / "h.png"))
    assert r["rows"] == 60 and r["format"] == "lmsys" and r["labels"] == REAL_COUNTS
    assert r["unit"] == "characters" and r["problems"] == [] and r["skipped"] == 0
    assert r["lengths"]["response_a"]["max"] == 17129  # the longest real response, in characters
    assert set(r["truncation"]) == {"per_component", "head_tail", "turn_aware"}
    for t in r["truncation"].values():
        assert 0.5 < t["truncated_share"] < 0.9 and t["dropped_components"] == 0 and t["longest"] <= 1024
    png = Path(r["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_inspect_tokens_vs_characters(lmsys_synth):
    chars = inspect_file(lmsys_synth, max_length=512)
    toks = inspect_file(lmsys_synth, tokenizer_path="tiny", max_length=512)
    assert toks["unit"] == "tokens" and toks["tokenizer"] == "tiny"
    for comp in ("prompt", "response_a", "response_b"):
        assert 0 < toks["lengths"][comp]["p50"] < chars["lengths"][comp]["p50"]
    assert toks["truncation"]["per_component"]["truncated_share"] < chars["truncation"]["per_component"]["truncated_share"]
    longer = inspect_file(lmsys_synth, tokenizer_path="tiny", max_length=4096)
    assert longer["truncation"]["per_component"]["truncated_share"] < toks["truncation"]["per_component"]["truncated_share"]
    assert toks["labels"] == chars["labels"] and sum(toks["labels"].values()) == 240
    # head_tail keeps the endings of what it cuts; per_component keeps only beginnings
    t = toks["truncation"]
    for comp in ("response_a", "response_b"):
        assert t["head_tail"]["ending_kept_share"][comp] == 1.0
        assert t["per_component"]["ending_kept_share"][comp] < 0.1
        assert t["head_tail"]["kept_share"][comp] == t["per_component"]["kept_share"][comp]


def test_inspect_test_file_keeps_every_row(lmsys_synth_test):
    r = inspect_file(lmsys_synth_test)
    assert r["rows"] == 120 and r["labels"] == {} and not r["has_labels"]


def test_cli_inspect_json_and_table(runner, lmsys_synth, tmp_path):
    res = runner.invoke(main, ["data", "inspect", str(lmsys_synth), "--json", "--tokenizer", "tiny", "--max-length", "256"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)  # ONE JSON object
    assert data["rows"] == 240 and data["format"] == "lmsys" and data["max_length"] == 256
    assert isinstance(data["problems"], list)
    res = runner.invoke(main, ["data", "inspect", str(lmsys_synth), "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 0 and "winner_model_a" in res.output
    # characters cannot be held against a token budget: no truncation table, a pointer to --tokenizer
    assert "per_component" not in res.output and "truncation: not measured" in res.output and "--tokenizer" in res.output
    assert (tmp_path / "p.png").exists()
    res = runner.invoke(main, ["data", "inspect", str(lmsys_synth), "--tokenizer", "tiny", "--max-length", "256"])
    assert res.exit_code == 0 and "truncation at max_length 256" in res.output and "per_component" in res.output
    assert "lengths in tokens (tiny)" in res.output


def _write(path: Path, data) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize("name, content, expect", [
    ("empty.csv", "", "empty"),
    ("cols.csv", "id,prompt,response_a,winner_model_a\n1,a,b,1\n", "Found columns"),
    ("junk.bin.csv", bytes(range(256)) * 4, "missing column"),
    ("gone.csv", None, "not found"),
])
def test_cli_bad_input_is_an_error_not_a_traceback(runner, tmp_path, name, content, expect):
    path = tmp_path / name
    if content is not None:
        _write(path, content)
    res = runner.invoke(main, ["data", "inspect", str(path)])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("Error: ") and expect in res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


@pytest.mark.parametrize("header, rows, bad", [
    # LMSYS: not one-hot (two winners), no winner at all
    ("id,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie",
     ['7,"[""p""]","[""a""]","[""b""]",1,1,0', '8,"[""p""]","[""a""]","[""b""]",0,1,0', '9,"[""p""]","[""a""]","[""b""]",0,0,0'],
     ["7", "9"]),
    # WSDM: a winner that is not a label
    ("id,prompt,response_a,response_b,winner", ["1,p,a,b,model_a", "2,p,a,b,model_c", "3,p,a,b,model_b"], ["2"]),
])
def test_inspect_reports_bad_label_rows_and_exits_0(runner, tmp_path, header, rows, bad):
    """inspect is the tool users run to find such rows: they are problems in its report, not an error."""
    p = _write(tmp_path / "t.csv", header + "\n" + "\n".join(rows) + "\n")
    res = runner.invoke(main, ["data", "inspect", str(p), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["bad_label_rows"] == bad and data["skipped"] == len(bad)
    assert data["rows"] == len(rows) - len(bad)
    assert {pr["id"] for pr in data["problems"]} >= set(bad)
    res = runner.invoke(main, ["data", "inspect", str(p)])
    assert res.exit_code == 0 and "bad labels: " in res.output and "data.skip_bad_rows = true" in res.output
    assert all(f"  {i}  " in res.output for i in bad), res.output
    # training still refuses them, naming the option that exists
    from kaggle_kit.runtime.formats import DataError, read_dataset

    with pytest.raises(DataError, match="data.skip_bad_rows = true"):
        read_dataset(p)


def test_cli_undecodable_bytes_reported(runner, tmp_path):
    p = _write(tmp_path / "u.csv", b'id,prompt,response_a,response_b\n1,"[""caf\xe9""]","[""a""]","[""b""]"\n')
    res = runner.invoke(main, ["data", "inspect", str(p), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["rows"] == 1 and any("undecodable" in pr["reason"] for pr in data["problems"])


@pytest.mark.parametrize("preset, out", [("lmsys", "train.csv"), ("wsdm", "train.parquet"), ("wsdm", "w.csv")])
def test_cli_synth_then_inspect(runner, tmp_path, preset, out):
    path = tmp_path / out
    res = runner.invoke(main, ["data", "synth", "--preset", preset, "--rows", "50", "--seed", "3", "--out", str(path)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["data", "inspect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["rows"] == 50 and data["format"] == preset and sum(data["labels"].values()) == 50
    test_path = tmp_path / ("test_" + out)
    res = runner.invoke(main, ["data", "synth", "--preset", preset, "--rows", "20", "--out", str(test_path), "--test"])
    assert res.exit_code == 0
    data = json.loads(runner.invoke(main, ["data", "inspect", str(test_path), "--json"]).output)
    assert data["rows"] == 20 and data["labels"] == {} and data["format"] == preset


def test_cli_synth_rejects_lmsys_parquet(runner, tmp_path):
    res = runner.invoke(main, ["data", "synth", "--preset", "lmsys", "--rows", "5", "--out", str(tmp_path / "x.parquet")])
    assert res.exit_code == 2 and "CSV" in res.output


def test_real_subprocess_inspect_json(shared_data, tmp_path):
    kit = Path(sys.executable).with_name("kit")
    cmd = [str(kit)] if kit.exists() else [sys.executable, "-m", "kaggle_kit.cli"]
    out = subprocess.run(cmd + ["data", "inspect", str(shared_data / "lmsys-sample" / "train_sample.csv"), "--json"],
                         capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["rows"] == 60 and data["labels"] == REAL_COUNTS and data["format"] == "lmsys"


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_cli_prepare(runner, lmsys_synth, tmp_path, suffix):
    out = tmp_path / f"enc{suffix}"
    res = runner.invoke(main, ["data", "prepare", str(lmsys_synth), "--tokenizer", "tiny", "--max-length", "128",
                               "--truncation", "head_tail", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["rows"] == 240 and summary["longest"] <= 128 and summary["prompt"]["truncation"] == "head_tail"
    if suffix == ".jsonl":
        recs = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        import pandas as pd

        recs = pd.read_parquet(out).to_dict("records")
        for r in recs:
            r["label"] = json.loads(r["label"])
            r["input_ids"] = list(r["input_ids"])
    assert len(recs) == 240 and all(len(r["input_ids"]) <= 128 for r in recs)
    assert {r["label"] for r in recs} == {0, 1, 2}
    res = runner.invoke(main, ["data", "prepare", str(lmsys_synth), "--tokenizer", "tiny", "--out", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and ".jsonl or .parquet" in res.output


def test_data_commands_read_the_format_from_kit_toml(runner, tmp_path):
    """`kit data inspect/preview/prepare` without --format use data.format from kit.toml (before: always auto)."""
    rows = "id,prompt,response_a,response_b\n" + "".join(f'{i},"[""q{i}""]","[""a{i}""]","[""b{i}""]"\n' for i in range(4))
    f = _write(tmp_path / "test.csv", rows)  # JSON-list cells, no labels: auto reads it as LMSYS test data
    auto = runner.invoke(main, ["data", "inspect", str(f), "--json"])
    assert auto.exit_code == 0, auto.output
    assert json.loads(auto.output)["format"] == "lmsys"
    cfg = _write(tmp_path / "kit.toml", '[data]\nformat = "wsdm"\n')
    assert json.loads(runner.invoke(main, ["data", "inspect", str(f), "--json"]).output)["format"] == "wsdm"  # ./kit.toml
    res = runner.invoke(main, ["data", "inspect", str(f), "--json", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["format"] == "wsdm" and json.loads(res.output)["detected"] == "data.format in the config file"
    flag = runner.invoke(main, ["data", "inspect", str(f), "--json", "--config", str(cfg), "--format", "lmsys"])
    assert json.loads(flag.output)["format"] == "lmsys"  # the flag wins over the file
    assert json.loads(flag.output)["detected"] == "as given with --format"
    prep = runner.invoke(main, ["data", "prepare", str(f), "--tokenizer", "tiny", "--out", str(tmp_path / "e.jsonl"),
                                "--json", "--config", str(cfg)])
    assert prep.exit_code == 0, prep.output
    assert json.loads(prep.output)["format"] == "wsdm"

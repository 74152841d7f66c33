"""`kit demo`: every step runs and every artifact it names exists and holds what it says."""
from __future__ import annotations

import json
from pathlib import Path

from kaggle_kit.demo import STEPS, run_demo


def test_run_demo_small(tmp_path, capfd):
    from test_logging import assert_clean

    lines = []
    artifacts = run_demo(tmp_path / "demo", log=lines.append, settings={"train_rows": 40, "test_rows": 15, "max_length": 128, "train_steps": 4})
    for key in ("train_csv", "test_csv", "base_model", "train_inspect_json", "train_lengths_png", "train_encoded", "test_encoded"):
        assert Path(artifacts[key]).exists(), key
    report = json.loads(Path(artifacts["train_inspect_json"]).read_text())
    assert report["rows"] == 40 and sum(report["labels"].values()) == 40 and report["unit"] == "tokens"
    encoded = [json.loads(line) for line in Path(artifacts["test_encoded"]).read_text().splitlines()]
    assert len(encoded) == 15 and all(len(e["input_ids"]) <= 128 for e in encoded)
    assert all(e["label"] is None for e in encoded)
    assert json.loads((tmp_path / "demo" / "artifacts.json").read_text()) == artifacts
    assert sum(1 for l in lines if l.startswith("[")) == len(STEPS)
    # the whole journey: a run folder, the rendered kernel, and a submission the notebook wrote offline
    run = Path(artifacts["run_dir"])
    assert {"adapter_model.safetensors", "kit_manifest.json", "metrics.json"} <= {p.name for p in run.iterdir()}
    assert Path(artifacts["notebook"]).name == "inference.ipynb" and Path(artifacts["kernel_metadata"]).exists()
    submission = Path(artifacts["submission_csv"]).read_text().splitlines()
    assert submission[0] == "id,winner_model_a,winner_model_b,winner_tie" and len(submission) == 16
    test_ids = [line.split(",")[0] for line in Path(artifacts["test_csv"]).read_text().splitlines()[1:]]
    assert [line.split(",")[0] for line in submission[1:]] == test_ids
    # what `make demo` shows: no raw Trainer dicts, no escape fragments, none of the listed warnings
    out, err = capfd.readouterr()
    assert_clean("\n".join(lines) + out + err)
    assert any(line.strip().startswith("[train] step") for line in lines) and any("[eval]" in line for line in lines)


def test_demo_help_lists_every_step():
    from click.testing import CliRunner

    from kaggle_kit.cli import main
    from kaggle_kit.demo import STEPS

    out = CliRunner().invoke(main, ["demo", "--help"]).output
    for i, (name, _) in enumerate(STEPS, 1):
        assert f"{i}. {name}" in out, out
    assert f"Steps ({len(STEPS)})" in out

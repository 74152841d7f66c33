"""The 2025 competition shapes end to end, from a fresh project folder, through the CLI:
`kit init --preset P` → `kit data synth` (train, test + sample_submission.csv) → `kit train --model tiny`
→ `kit predict` (the sample's columns and ids; a labelled file prints and writes the metric) →
`kit render` + `kit run-local` give the same file offline. P = misconceptions (MAP 2025: top-3
Category:Misconception, MAP@3) and rules (Jigsaw 2025: probability of rule_violation, AUC)."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from kaggle_kit.cli import main

PRESETS = {
    "misconceptions": {"metric": "map@3", "columns": ["row_id", "Category:Misconception"], "rows": 144},
    "rules": {"metric": "auc", "columns": ["row_id", "rule_violation"], "rows": 96},
}
QUICK = ["--set", "quantization.mode='none'", "--set", "train.optimizer='adamw_torch'", "--set", "train.learning_rate=3e-3",
         "--set", "train.eval_steps=8", "--set", "peft.r=8", "--set", "prompt.max_length=128", "--set", "data.folds=4",
         "--set", "train.warmup_ratio=0.0"]


def _kit(*args, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _rows(path: Path) -> list:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


@pytest.fixture(scope="module", params=sorted(PRESETS))
def project(request, tmp_path_factory, kit_cache):
    """A project folder after init, synth and a short training run (cwd restored afterwards)."""
    preset = request.param
    root = tmp_path_factory.mktemp(f"project-{preset}")
    old = os.getcwd()
    os.chdir(root)
    try:
        _kit("init", "--preset", preset, "--username", "kit-demo")
        _kit("data", "synth", "--preset", preset, "--rows", PRESETS[preset]["rows"], "--out", "data/train.csv")
        _kit("data", "synth", "--preset", preset, "--rows", 24, "--seed", 1, "--out", "data/test.csv", "--test")
        _kit("data", "synth", "--preset", preset, "--rows", 24, "--seed", 2, "--out", "valid/valid.csv")
        _kit("train", "--config", "kit.toml", "--model", "tiny", "--max-steps", 16, "--output", "runs/tiny", *QUICK)
        yield preset, root
    finally:
        os.chdir(old)


def test_run_folder_records_the_competition(project):
    preset, root = project
    manifest = json.loads((root / "runs/tiny/kit_manifest.json").read_text())
    task = manifest["task"]
    assert task["id_column"] == "row_id" and task["metric"] == PRESETS[preset]["metric"]
    assert [task["submission"]["id_column"]] + task["submission"]["columns"] == PRESETS[preset]["columns"]
    metrics = json.loads((root / "runs/tiny/metrics.json").read_text())
    value = metrics["final"][PRESETS[preset]["metric"]]
    assert metrics["metric"] == PRESETS[preset]["metric"] and value > 0.7, metrics["final"]  # the tiny model learns the signal
    if preset == "misconceptions":
        assert "True_Correct:NA" in task["labels"] and task["label_join"] == ":"
        assert task["labels"] == sorted(task["labels"]) and len(task["labels"]) == 6
        assert manifest["prompt"]["text_template"].startswith("Question: {QuestionText}")
    else:
        assert task["labels"] == ["0", "1"] and task["submission"]["positive"] == "1"


def test_predict_writes_the_samples_shape_and_ids(project):
    preset, root = project
    result = _kit("predict", "--adapter", root / "runs/tiny", "--data", root / "data/test.csv", "--out", root / "sub.csv", "--no-progress")
    sub, sample, test = _rows(root / "sub.csv"), _rows(root / "data/sample_submission.csv"), _rows(root / "data/test.csv")
    assert sub[0] == sample[0] == PRESETS[preset]["columns"]
    test_ids = [r[0] for r in test[1:]]
    assert [r[0] for r in sub[1:]] == [r[0] for r in sample[1:]] == test_ids and not test_ids[0].startswith("row")
    assert "matches the sample" in result.output
    if preset == "misconceptions":
        assert all(len(r[1].split()) == 3 and all(":" in x for x in r[1].split()) for r in sub[1:])
    else:
        assert all(0.0 <= float(r[1]) <= 1.0 for r in sub[1:]) and len({r[1] for r in sub[1:]}) > 1


def test_predict_on_a_labelled_file_prints_and_writes_the_metric(project):
    preset, root = project
    metric = PRESETS[preset]["metric"]
    result = _kit("predict", "--adapter", root / "runs/tiny", "--data", root / "valid/valid.csv", "--out", root / "valid/sub.csv",
                  "--no-progress")
    assert f"{metric} " in result.output
    scored = json.loads((root / "valid/sub.metrics.json").read_text())
    assert scored["metric"] == metric and scored["rows"] == 24 and 0.0 <= scored["value"] <= 1.0


def _pinned(preset: str) -> list:
    """--set flags pinning every model instance of the preset to version 1 (rendering offline)."""
    from kaggle_kit.config.presets import PRESETS as ALL

    return [a for inst in ALL[preset]["instances"] for a in ("--set", f"instances.{inst}.version=1")]


def test_notebook_gives_the_same_file_offline(project):
    preset, root = project
    if not (root / "sub.csv").exists():
        _kit("predict", "--adapter", root / "runs/tiny", "--data", root / "data/test.csv", "--out", root / "sub.csv", "--no-progress")
    _kit("render", "inference", *_pinned(preset))
    _kit("run-local", "inference", "--inputs", "competition=data", "--inputs", "adapter=runs/tiny", "--out", "local")
    assert (root / "local/submission.csv").read_bytes() == (root / "sub.csv").read_bytes()


def _base_dir_line(notebook: Path) -> str:
    """The notebook's ``BASE_DIR = ...`` line (the one a single-adapter notebook loads its base from)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    lines = [ln for c in cells if c["cell_type"] == "code" for ln in "".join(c["source"]).splitlines()
             if ln.startswith("BASE_DIR = ")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("preset", sorted(__import__("kaggle_kit.config.presets", fromlist=["PRESETS"]).PRESETS))
def test_every_preset_kernel_mounts_every_model_it_loads(preset, tmp_path, monkeypatch):
    """`kit init --preset P` + `kit render --all`: each kernel lists a base and an adapter instance among its
    model_sources, and the notebook's BASE_DIR is the base's mount under /kaggle/input (never the training
    machine's path recorded in the adapter's manifest)."""
    from kaggle_kit.config import load_config
    from kaggle_kit.publish.handles import parse_model_instance_handle
    from kaggle_kit.publish.metadata import instance_handle

    monkeypatch.chdir(tmp_path)
    _kit("init", "--preset", preset, "--username", "kit-demo")
    sets = _pinned(preset) + ([] if load_config("kit.toml").kaggle.competition else ["--set", "kaggle.competition=some-competition"])
    result = _kit("render", "--all", *sets)
    cfg = load_config("kit.toml", [s for s in sets if s != "--set"])
    assert cfg.kernels, "the preset declares no kernel"
    for name, kernel in cfg.kernels.items():
        kinds = {cfg.instances[i].kind: i for i in kernel.instances}
        assert {"base", "adapter"} <= set(kinds), (name, kernel.instances)
        meta = json.loads((tmp_path / "kernels" / name / "kernel-metadata.json").read_text())
        handles = {k: str(instance_handle(cfg, i).with_version(1)) for k, i in kinds.items()}
        assert handles["base"] in meta["model_sources"] and handles["adapter"] in meta["model_sources"], (meta, result.output)
        mounts = parse_model_instance_handle(handles["base"], versioned=True).mount_paths()
        line = _base_dir_line(tmp_path / "kernels" / name / f"{name}.ipynb")
        assert line.startswith('BASE_DIR = kaggle_env.require_input("base", ') and json.dumps(mounts) in line, line


def test_labelled_file_with_one_class_reports_the_ranking_metric_undefined(project, tmp_path):
    """A labelled file holding one class: AUC has no value; it is said so, with the reason, never a bare nan."""
    preset, root = project
    if preset != "rules":
        pytest.skip("binary AUC task only")
    import pandas as pd

    df = pd.read_csv(root / "valid/valid.csv")
    one = df[df["rule_violation"] == df["rule_violation"].iloc[0]]
    one.to_csv(tmp_path / "one.csv", index=False)
    result = _kit("predict", "--adapter", root / "runs/tiny", "--data", tmp_path / "one.csv", "--out", tmp_path / "sub.csv",
                  "--no-progress")
    scored = json.loads((tmp_path / "sub.metrics.json").read_text())
    assert scored["value"] is None and "one class" in scored["undefined"]["auc"], scored
    assert "auc undefined (" in result.output and "nan" not in result.output.split("has labels:")[1].split("\n")[0]

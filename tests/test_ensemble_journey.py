"""The ensemble journey from the issue's "Done when": two tiny members trained with --all-folds → kit blend →
kit merge --average-folds → kit predict with one adapter of each → the rendered ensemble notebook under
kit run-local gives the same submission."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import two_member_project

PROJECT = two_member_project(('runs/a/fold-0', 'runs/b/fold-0'), '[inference]\nbatch_tokens = 4096\n\n')


def _ok(args, cwd=None):
    from kaggle_kit.cli import main

    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return r


def _probs(path: Path) -> tuple:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return [r[0] for r in rows[1:]], np.array([[float(x) for x in r[1:]] for r in rows[1:]])


@pytest.mark.slow
def test_two_all_folds_members_blend_predict_and_notebook(tmp_path, monkeypatch, lmsys_synth, lmsys_synth_test, kit_cache):
    monkeypatch.chdir(tmp_path)
    for name, seed in (("a", 1), ("b", 2)):
        _ok(["train", "--model", "tiny", "--data", str(lmsys_synth), "--output", f"runs/{name}", "--all-folds",
             "--max-steps", "2", "--max-length", "128", "--set", "data.folds=2", "--set", f"train.seed={seed}",
             "--set", "train.batch_size=8", "--set", "train.eval_batch_size=32"])
    assert all((tmp_path / "runs" / m / f"fold-{k}" / "oof.csv").is_file() for m in "ab" for k in (0, 1))
    (tmp_path / "kit.toml").write_text(PROJECT, encoding="utf-8")

    r = _ok(["blend", "--oof", "runs/a", "--oof", "runs/b", "--write-config", "kit.toml"])
    assert "blend (fitted weights)" in r.output
    from kaggle_kit.config import load_config

    ens = load_config("kit.toml", required=True).ensemble
    assert ens.members == ["runs/a", "runs/b"] and len(ens.weights) == 2

    r = _ok(["merge", "--average-folds", "runs/a", "--out", "runs/a-avg"])
    assert "fold ensemble" in r.output and "averaged adapter" in r.output
    assert json.loads((tmp_path / "runs/a-avg/kit_manifest.json").read_text())["metrics"]["rows"] == 240
    _ok(["predict", "--adapter", "runs/a-avg", "--data", str(lmsys_synth_test), "--out", "avg.csv", "--no-progress"])
    assert _probs(tmp_path / "avg.csv")[1].shape == (120, 3)

    weights = ",".join(str(w) for w in ens.weights)
    _ok(["predict", "--adapter", "runs/a/fold-0", "--adapter", "runs/b/fold-0", "--weights", weights,
         "--data", str(lmsys_synth_test), "--out", "predict/submission.csv", "--no-progress"])

    _ok(["render", "inference"])
    nb = json.loads((tmp_path / "kernels/inference/inference.ipynb").read_text())
    source = "\n".join("".join(c["source"]) for c in nb["cells"])
    assert "predict_ensemble_file(" in source and "PARTS_DIR" in source
    assert f"WEIGHTS = {json.dumps([float(w) for w in ens.weights])}" in source
    _ok(["run-local", "inference", "--inputs", f"competition={lmsys_synth_test.parent}", "--inputs", "adapter=runs/a/fold-0",
         "--inputs", "member-b=runs/b/fold-0", "--out", "local-run", "--network", "guard"])
    ids_p, p = _probs(tmp_path / "predict/submission.csv")
    ids_n, q = _probs(tmp_path / "local-run/submission.csv")
    assert ids_p == ids_n and len(ids_p) == 120
    np.testing.assert_allclose(p, q, atol=1e-6)
    assert sorted(x.name for x in (tmp_path / "predict/parts").iterdir()) == ["00-a-fold-0.npz", "01-b-fold-0.npz"]
    assert sorted(x.name for x in (tmp_path / "local-run/parts").iterdir()) == ["00-adapter.npz", "01-member-b.npz"]

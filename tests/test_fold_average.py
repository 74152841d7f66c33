"""`kit merge --average-folds` on real tiny folds: the shared LoRA start is checked (seeds), the error of
averaging A and B separately is measured, and the OOF scores use any metric `kit train` accepts (map@K)."""
from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

CLASSES = ["apple", "brick", "cloud", "delta", "ember"]


def _train(data: Path, out: Path, seed: int) -> Path:
    from kaggle_kit.cli import main

    (data.parent / "empty.toml").write_text("", encoding="utf-8")  # not the ./kit.toml of whoever runs the tests
    r = CliRunner().invoke(main, [
        "train", "--config", str(data.parent / "empty.toml"), "--model", "tiny", "--data", str(data), "--output", str(out), "--all-folds", "--max-steps", "4",
        "--max-length", "64", "--set", "data.folds=2", "--set", f"train.seed={seed}", "--set", "train.batch_size=8",
        "--set", "train.eval_batch_size=32", "--set", "task.kind=classification", "--set", "data.format=classification",
        "--set", "data.text_columns=['text']", "--set", "data.label_columns=['label']", "--set", "task.metric=map@2",
        "--set", "data.group_by_prompt=false"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def folds(tmp_path_factory, kit_cache) -> dict:
    """Two 2-fold runs of a 5-class task scored by map@2, trained from seeds 42 and 7 (a few steps each)."""
    root = tmp_path_factory.mktemp("fold-average")
    rng = random.Random(0)
    data = root / "train.csv"
    with data.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "label"])
        for i in range(100):
            y = rng.choice(CLASSES)
            w.writerow([f"r{i}", " ".join(rng.choice(["the", "a", "of", "text", "some", "word"]) for _ in range(8)) + f" {y} end", y])
    return {"root": root, 42: _train(data, root / "s42", 42), 7: _train(data, root / "s7", 7)}


def _parent(dst: Path, *fold_dirs: Path, seeds=None, metric=None) -> Path:
    for k, src in enumerate(fold_dirs):
        shutil.copytree(src, dst / f"fold-{k}")
        path = dst / f"fold-{k}" / "kit_manifest.json"
        data = json.loads(path.read_text())
        if seeds is not None:
            data["training"]["seed"] = seeds[k]
        if metric is not None:
            data["task"]["metric"] = metric
        path.write_text(json.dumps(data))
    return dst


def dense_errors(fold_dirs) -> list:
    """Relative Frobenius error of mean(B)·mean(A) against mean(BᵢAᵢ), per LoRA module, with dense matrices."""
    from safetensors.torch import load_file

    ts = [load_file(str(Path(f) / "adapter_model.safetensors")) for f in fold_dirs]
    out = []
    for key in ts[0]:
        if ".lora_A." in key:
            a = [t[key].double().numpy() for t in ts]
            b = [t[key.replace(".lora_A.", ".lora_B.")].double().numpy() for t in ts]
            exact = sum(y @ x for x, y in zip(a, b)) / len(a)
            out.append(np.linalg.norm((sum(b) / len(b)) @ (sum(a) / len(a)) - exact) / np.linalg.norm(exact))
    return out


def test_same_seed_folds_average_with_a_small_measured_error_and_a_map_at_2_score(folds, tmp_path):
    from kaggle_kit.ensemble.blend import read_oof, score
    from kaggle_kit.ensemble.merge_folds import average_folds

    logs = []
    res = average_folds(folds[42], tmp_path / "avg", log=logs.append)
    want = dense_errors([folds[42] / "fold-0", folds[42] / "fold-1"])
    approx = res.to_dict()["approximation"]
    assert approx["modules"] == len(want) == 16  # 4 layers × q, k, v, o
    assert approx["median"] == pytest.approx(float(np.median(want)), rel=1e-6) and approx["max"] == pytest.approx(max(want), rel=1e-6)
    assert 0 < approx["median"] <= approx["max"] < 0.05 and not approx["warning"]  # measured, not copies of one adapter
    assert any("median" in m and "mean(B)·mean(A)" in m for m in logs) and not any("warning" in m for m in logs)
    assert res.to_dict()["seed"] == 42
    oof = read_oof(folds[42])
    assert res.metric == "map@2" and res.rows == 100
    assert res.fold_ensemble_oof == pytest.approx(score("map@2", oof.probs, np.asarray(oof.labels), False))
    assert 0 <= res.averaged_oof <= 1
    manifest = json.loads((tmp_path / "avg" / "kit_manifest.json").read_text())
    assert manifest["training"]["approximation_error"]["median"] == approx["median"] and manifest["metrics"]["metric"] == "map@2"


def test_folds_from_different_seeds_are_refused_naming_the_seeds(folds, tmp_path):
    """Measured: averaging A and B of folds from seeds 42 and 7 is ~70% off mean(BᵢAᵢ); it used to merge silently."""
    from kaggle_kit.cli import main

    assert float(np.median(dense_errors([folds[42] / "fold-0", folds[7] / "fold-1"]))) > 0.3
    parent = _parent(tmp_path / "mixed", folds[42] / "fold-0", folds[7] / "fold-1")
    r = CliRunner().invoke(main, ["merge", "--average-folds", str(parent), "--out", str(tmp_path / "avg"), "--no-score"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    for word in ("fold-0: 42", "fold-1: 7", "train.seed", "kit predict", "[ensemble]"):
        assert word in r.output, (word, r.output)
    assert not (tmp_path / "avg").exists()
    parent = _parent(tmp_path / "unknown", folds[42] / "fold-0", folds[42] / "fold-1", seeds=[42, None])
    r = CliRunner().invoke(main, ["merge", "--average-folds", str(parent), "--out", str(tmp_path / "avg"), "--no-score"])
    assert r.exit_code == 2 and "fold-1" in r.output and "no training.seed" in r.output and not (tmp_path / "avg").exists()


def test_a_large_measured_error_warns_even_when_the_seeds_agree(folds, tmp_path):
    """The seed record says 42 for both, but fold-1 really started from seed 7: the measurement catches it."""
    from kaggle_kit.cli import main

    parent = _parent(tmp_path / "lying", folds[42] / "fold-0", folds[7] / "fold-1", seeds=[42, 42])
    r = CliRunner().invoke(main, ["merge", "--average-folds", str(parent), "--out", str(tmp_path / "avg"), "--no-score", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["approximation"]["median"] > 0.3 and "warning" in r.stderr and "kit predict" in out["approximation"]["warning"]
    r = CliRunner().invoke(main, ["merge", "--average-folds", str(folds[42]), "--out", str(tmp_path / "same"), "--no-score"])
    assert r.exit_code == 0 and "mean(B)·mean(A)" in r.stdout and "median 0." in r.stdout and "WARNING" not in r.output, r.output


@pytest.mark.parametrize("metric,why", [("rmse", "not a metric `kit train` accepts"), ("auc", "does not fit this 5-class")])
def test_a_metric_that_cannot_score_is_refused_before_anything_is_written(folds, tmp_path, metric, why):
    """It used to write the averaged adapter, then fail in the scoring."""
    from kaggle_kit.ensemble.merge_folds import average_folds
    from kaggle_kit.errors import KitError

    parent = _parent(tmp_path / "runs", folds[42] / "fold-0", folds[42] / "fold-1", metric=metric)
    with pytest.raises(KitError, match=why):
        average_folds(parent, tmp_path / "avg", log=lambda m: None)
    assert not (tmp_path / "avg").exists()
    assert average_folds(parent, tmp_path / "unscored", score=False, log=lambda m: None).metric == ""  # --no-score: no metric needed

"""`kit blend` (weights fitted on OOF predictions) and `kit merge --average-folds`."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]


def write_oof(path: Path, ids, labels, probs, fold=0, names=LABELS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "fold", "label", *names, "predicted"])
        for i, y, p in zip(ids, labels, probs):
            w.writerow([i, fold, names[y], *(f"{v:.6f}" for v in p), names[int(np.argmax(p))]])
    return path


def constructed(n=20000, w=(0.7, 0.3), seed=0):
    """Two members' probabilities and labels drawn from their w-mixture: log loss is minimal at w."""
    rng = np.random.default_rng(seed)
    p1 = rng.dirichlet([0.6] * 3, n)
    p2 = rng.dirichlet([0.6] * 3, n)
    mix = w[0] * p1 + w[1] * p2
    y = np.array([rng.choice(3, p=m / m.sum()) for m in mix])
    return [f"r{i}" for i in range(n)], y, p1, p2


def test_blend_recovers_known_weights(tmp_path):
    from kaggle_kit.ensemble.blend import blend

    ids, y, p1, p2 = constructed()
    # member A: an --all-folds parent whose two folds cover the rows; member B: one oof.csv
    half = len(ids) // 2
    write_oof(tmp_path / "a" / "fold-0" / "oof.csv", ids[:half], y[:half], p1[:half], 0)
    write_oof(tmp_path / "a" / "fold-1" / "oof.csv", ids[half:], y[half:], p1[half:], 1)
    write_oof(tmp_path / "b" / "oof.csv", ids, y, p2)
    res = blend([tmp_path / "a", tmp_path / "b" / "oof.csv"])
    assert res.rows == len(ids) and res.metric == "log_loss"
    assert res.weights == pytest.approx([0.7, 0.3], abs=0.04)
    assert sum(res.weights) == pytest.approx(1.0) and min(res.weights) >= 0
    assert res.score < min(m["score"] for m in res.members) and res.score <= res.equal_score
    assert res.members[0]["files"] == 2


def test_blend_accuracy_never_worse_than_best_member(tmp_path):
    from kaggle_kit.ensemble.blend import blend

    ids, y, p1, p2 = constructed(n=3000, w=(0.2, 0.8), seed=1)
    write_oof(tmp_path / "a.csv", ids, y, p1)
    write_oof(tmp_path / "b.csv", ids, y, p2)
    res = blend([tmp_path / "a.csv", tmp_path / "b.csv"], metric="accuracy")
    assert res.greater_is_better and res.score >= max(m["score"] for m in res.members)
    assert res.weights[1] > res.weights[0]


def test_blend_refuses_disjoint_rows_label_order_and_conflicts(tmp_path):
    from kaggle_kit.ensemble.blend import blend
    from kaggle_kit.errors import KitError

    ids, y, p1, p2 = constructed(n=50)
    a = write_oof(tmp_path / "a.csv", ids[:25], y[:25], p1[:25])
    b = write_oof(tmp_path / "b.csv", ids[25:], y[25:], p2[25:])
    with pytest.raises(KitError, match="share no rows"):
        blend([a, b])
    c = write_oof(tmp_path / "c.csv", ids, y, p2, names=[LABELS[1], LABELS[0], LABELS[2]])
    with pytest.raises(KitError, match=r"c.csv: labels .* differ"):
        blend([a, c])
    d = write_oof(tmp_path / "d.csv", ids, (y + 1) % 3, p2)
    with pytest.raises(KitError, match=r"d.csv: row r\d+ has label"):
        blend([a, d])
    write_oof(tmp_path / "p" / "fold-0" / "oof.csv", ids[:30], y[:30], p1[:30])
    write_oof(tmp_path / "p" / "fold-1" / "oof.csv", ids[20:], y[20:], p1[20:], 1)
    with pytest.raises(KitError, match="appears in both"):
        blend([tmp_path / "p", a])


def test_cli_blend_prints_side_by_side_and_writes_config(tmp_path, monkeypatch):
    from kaggle_kit.cli import main
    from kaggle_kit.config import load_config

    ids, y, p1, p2 = constructed(n=4000)
    write_oof(tmp_path / "runs" / "a" / "oof.csv", ids, y, p1)
    write_oof(tmp_path / "runs" / "b" / "oof.csv", ids, y, p2)
    monkeypatch.chdir(tmp_path)
    CliRunner().invoke(main, ["init", "--preset", "lmsys"])
    r = CliRunner().invoke(main, ["blend", "--oof", "runs/a", "--oof", "runs/b", "--write-config", "kit.toml", "--out", "blend.json"])
    assert r.exit_code == 0, r.output
    for word in ("member", "score", "weight", "equal weights", "blend (fitted weights)", "[ensemble]", "runs/a"):
        assert word in r.output
    cfg = load_config("kit.toml", required=True)
    assert cfg.ensemble.members == ["runs/a", "runs/b"] and sum(cfg.ensemble.weights) == pytest.approx(1.0, abs=1e-5)
    assert cfg.prompt.max_length == 2048  # the rest of kit.toml is untouched
    assert json.loads((tmp_path / "blend.json").read_text())["ensemble"]["members"] == ["runs/a", "runs/b"]
    r = CliRunner().invoke(main, ["blend", "--oof", "runs/a", "--oof", "runs/b", "--write-config", "kit.toml"])  # replaces, not appends
    assert r.exit_code == 0 and (tmp_path / "kit.toml").read_text().count("[ensemble]") == 1
    r = CliRunner().invoke(main, ["blend", "--oof", "runs/a", "--oof", "nowhere"])
    assert r.exit_code == 2 and "Error:" in r.output and "nowhere" in r.output


def _classes(n_rows: int, k: int, seed: int):
    """Two members over ``k`` classes: member 1 carries the signal, member 2 is noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n_rows)
    p1 = rng.dirichlet([1.0] * k, n_rows) + 1.5 * np.eye(k)[y] * rng.random((n_rows, 1))
    p2 = rng.dirichlet([1.0] * k, n_rows)
    return [f"r{i}" for i in range(n_rows)], y, p1 / p1.sum(1, keepdims=True), p2


@pytest.mark.parametrize("metric,k", [("map@1", 4), ("map@2", 5), ("map@5", 6), ("map@2", 3)])
def test_blend_scores_any_map_at_k(tmp_path, metric, k):
    """`kit train` accepts every map@K; blend refused all but map@3 (and that only above 3 classes)."""
    from kaggle_kit.ensemble.blend import blend
    from kaggle_kit.runtime import metrics as M
    from kaggle_kit.runtime.ensemble import combine

    names = [f"c{j}" for j in range(k)]
    ids, y, p1, p2 = _classes(300, k, seed=k)
    write_oof(tmp_path / "a.csv", ids, y, p1, names=names)
    write_oof(tmp_path / "b.csv", ids, y, p2, names=names)
    res = blend([tmp_path / "a.csv", tmp_path / "b.csv"], metric=metric)
    kk = M.map_k(metric)
    mine = lambda p: M.map_at_k(y.tolist(), M.top_k(np.round(p, 6), kk).tolist(), kk)  # noqa: E731 (oof.csv holds 6 digits)
    assert res.metric == metric and res.greater_is_better
    assert res.members[0]["score"] == pytest.approx(mine(p1)) and res.members[1]["score"] == pytest.approx(mine(p2))
    assert res.score == pytest.approx(mine(combine([np.round(p1, 6), np.round(p2, 6)], res.weights, "mean", False)))
    assert res.score >= max(m["score"] for m in res.members) and res.weights[0] > res.weights[1]
    if kk == 1:
        assert res.members[0]["score"] == pytest.approx(float((np.round(p1, 6).argmax(1) == y).mean()))  # MAP@1 = accuracy


def test_blend_map_at_k_from_the_members_task_metric(tmp_path):
    """With no --metric the members' task.metric (here map@2 of a 5-class run folder) is the one optimised."""
    from kaggle_kit.ensemble.blend import blend

    names = [f"c{j}" for j in range(5)]
    ids, y, p1, p2 = _classes(120, 5, seed=3)
    for name, p in (("a", p1), ("b", p2)):
        write_oof(tmp_path / name / "oof.csv", ids, y, p, names=names)
        (tmp_path / name / "kit_manifest.json").write_text(json.dumps({"task": {"kind": "classification", "metric": "map@2"}}))
    assert blend([tmp_path / "a", tmp_path / "b"]).metric == "map@2"


@pytest.mark.parametrize("metric,why", [("rmse", "not a metric `kit train` accepts"), ("map@0", "not a metric"),
                                        ("auc", "does not fit this 3-class single-label task")])
def test_cli_blend_refuses_a_bad_metric_before_writing_anything(tmp_path, monkeypatch, metric, why):
    from kaggle_kit.cli import main

    ids, y, p1, p2 = constructed(n=200)
    write_oof(tmp_path / "a.csv", ids, y, p1)
    write_oof(tmp_path / "b.csv", ids, y, p2)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["blend", "--oof", "a.csv", "--oof", "b.csv", "--metric", metric, "--out", "blend.json",
                                  "--write-config", "kit.toml"])
    assert r.exit_code == 2 and "Error:" in r.output and repr(metric) in r.output and why in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / "blend.json").exists() and not (tmp_path / "kit.toml").exists()


def test_score_refuses_a_metric_the_task_or_the_rows_cannot_give():
    from kaggle_kit.ensemble.blend import score
    from kaggle_kit.errors import KitError

    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    with pytest.raises(KitError, match="'map@2' does not fit this 3-class multi-label task; use one of log_loss"):
        score("map@2", probs, [[0, 1, 0], [1, 0, 1]], True)
    with pytest.raises(KitError, match="'auc' cannot be computed on these 2 rows: .*one class"):
        score("auc", np.array([[0.2, 0.8], [0.6, 0.4]]), [1, 1], False)
    assert score("map@2", probs, [2, 0], False) == pytest.approx((0.5 + 1.0) / 2)


# --------------------------------------------------------------------------- fold averaging


def _folds_of(adapter: Path, parent: Path, n=2) -> Path:
    for k in range(n):
        shutil.copytree(adapter, parent / f"fold-{k}")
        data = json.loads((parent / f"fold-{k}" / "kit_manifest.json").read_text())
        data["training"] = {"fold": k, "seed": 0}  # one seed: the folds of one `kit train --all-folds`
        (parent / f"fold-{k}" / "kit_manifest.json").write_text(json.dumps(data))
    return parent


def test_fold_average_of_identical_adapters_equals_the_adapter(untrained_adapter, lmsys_synth_test, tmp_path):
    from safetensors.torch import load_file

    from kaggle_kit.ensemble.merge_folds import average_folds
    from kaggle_kit.runtime.infer import predict_file

    parent = _folds_of(untrained_adapter, tmp_path / "runs")
    res = average_folds(parent, tmp_path / "avg", score=False, log=lambda m: None)
    assert res.tensors > 0 and len(res.folds) == 2
    want, got = load_file(str(untrained_adapter / "adapter_model.safetensors")), load_file(str(tmp_path / "avg" / "adapter_model.safetensors"))
    assert set(want) == set(got) and any("score" in k for k in got)  # the head is averaged too
    for k in want:
        assert got[k].dtype == want[k].dtype and (got[k] == want[k]).all(), k
    manifest = json.loads((tmp_path / "avg" / "kit_manifest.json").read_text())
    assert len(manifest["training"]["averaged_folds"]) == 2
    a = predict_file(untrained_adapter, lmsys_synth_test, tmp_path / "a.csv", log=None, progress=False)
    b = predict_file(tmp_path / "avg", lmsys_synth_test, tmp_path / "b.csv", log=None, progress=False)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_fold_average_refuses_incompatible_folds(untrained_adapter, tmp_path):
    from kaggle_kit.cli import main

    parent = _folds_of(untrained_adapter, tmp_path / "runs")
    data = json.loads((parent / "fold-1" / "kit_manifest.json").read_text())
    data["peft"]["r"] = 8
    (parent / "fold-1" / "kit_manifest.json").write_text(json.dumps(data))
    r = CliRunner().invoke(main, ["merge", "--average-folds", str(parent), "--out", str(tmp_path / "avg"), "--no-score"])
    assert r.exit_code == 2 and "fold-1" in r.output and "peft.r = 8" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["merge", "--out", str(tmp_path / "avg")])
    assert r.exit_code == 2 and "--average-folds" in r.output

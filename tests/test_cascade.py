"""Cascade inference (issue 24): selection and combination, share 1 = the full ensemble, share 0 = the first member,
the time budget shrinking the share, `kit blend --cascade` on OOF files, and the cascade inside the inference notebook
through `kit run-local`."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import first_rows, make_untrained_adapter, two_member_project

LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]


@pytest.fixture(scope="module")
def adapters(tiny_base, tmp_path_factory) -> tuple:
    d = tmp_path_factory.mktemp("cascade")
    return (make_untrained_adapter(d / "a", tiny_base, max_length=64, seed=3),
            make_untrained_adapter(d / "b", tiny_base, max_length=64, seed=4))


@pytest.fixture(scope="module")
def small_test(lmsys_synth_test, tmp_path_factory) -> Path:
    return first_rows(lmsys_synth_test, tmp_path_factory.mktemp("cascade-test") / "test.csv", 20)


def _kit(args):
    from kaggle_kit.cli import main

    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return r


def _probs(path: Path) -> tuple:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return [r[0] for r in rows[1:]], np.array([[float(x) for x in r[1:]] for r in rows[1:]])


# --------------------------------------------------------------------------- no model


def test_selection_by_margin_entropy_and_threshold():
    from kaggle_kit.runtime.cascade import CascadeSettings, select_rows, uncertainty

    p = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.5, 0.49, 0.01], [0.34, 0.33, 0.33], [0.7, 0.2, 0.1]])
    np.testing.assert_allclose(uncertainty(p, "margin"), 1 - np.array([0.85, 0.05, 0.01, 0.01, 0.5]))
    assert select_rows(p, CascadeSettings(share=0.4, by="margin")).tolist() == [2, 3]  # the two smallest margins
    assert select_rows(p, CascadeSettings(share=0.4, by="entropy")).tolist() == [1, 3]  # the two flattest rows
    assert select_rows(p, CascadeSettings(share=0.0)).tolist() == []
    assert select_rows(p, CascadeSettings(share=1.0)).tolist() == [0, 1, 2, 3, 4]
    assert select_rows(p, CascadeSettings(threshold=0.6)).tolist() == [1, 2, 3]
    q = p.copy()
    q[0] = np.nan  # a row without a finite prediction is the most uncertain
    assert 0 in select_rows(q, CascadeSettings(share=0.2)).tolist()
    from kaggle_kit.runtime.ensemble_combine import EnsembleError

    with pytest.raises(EnsembleError, match="between 0"):
        CascadeSettings(share=1.5).check()


def test_combine_stages_replace_and_mean():
    from kaggle_kit.runtime.cascade import CascadeSettings, combine_stages
    from kaggle_kit.runtime.ensemble_combine import combine

    rng = np.random.default_rng(0)
    a, b, c = (rng.dirichlet(np.ones(3), size=6) for _ in range(3))
    pos_b = np.array([1, 4])
    results = [(np.arange(6), a), (pos_b, b[pos_b]), (pos_b, c[pos_b])]  # stage 2 is a parent of two folds (b, c)
    w = [0.5, 0.25, 0.25]
    rep = combine_stages(6, results, [0, 1, 1], w, CascadeSettings(combine="replace"))
    want = a.copy()
    want[pos_b] = combine([b[pos_b], c[pos_b]], [0.5, 0.5])
    np.testing.assert_allclose(rep, want)
    mean = combine_stages(6, results, [0, 1, 1], w, CascadeSettings(combine="mean"), method="logit_mean")
    want = a.copy()
    want[pos_b] = combine([a[pos_b], b[pos_b], c[pos_b]], w, "logit_mean")
    np.testing.assert_allclose(mean, want)
    full = combine_stages(6, [(np.arange(6), x) for x in (a, b, c)], [0, 1, 1], w, CascadeSettings(combine="mean"))
    np.testing.assert_allclose(full, combine([a, b, c], w))


# --------------------------------------------------------------------------- with the engine


@pytest.mark.slow
def test_share_one_is_the_full_ensemble_and_share_zero_the_first_member(adapters, small_test, tmp_path, monkeypatch):
    from kaggle_kit.runtime.cascade import CascadeSettings
    from kaggle_kit.runtime.ensemble import predict_ensemble_file

    a, b = adapters
    common = dict(log=None, progress=False, parts_dir=tmp_path / "parts")
    full = predict_ensemble_file([a, b], small_test, tmp_path / "full.csv", weights=[0.3, 0.7], combine_method="logit_mean", **common)
    one = predict_ensemble_file([a, b], small_test, tmp_path / "one.csv", weights=[0.3, 0.7], combine_method="logit_mean",
                                cascade=CascadeSettings(share=1.0), **common)
    np.testing.assert_allclose(one.probabilities, full.probabilities, atol=1e-9)
    assert one.cascade["stages"][1]["rows"] == 20 and one.to_dict()["cascade"]["share"] == 1.0

    # share 0 through the CLI: byte for byte the first member alone
    monkeypatch.chdir(tmp_path)
    _kit(["predict", "--adapter", str(a), "--data", str(small_test), "--out", "alone.csv", "--no-progress"])
    r = _kit(["predict", "--adapter", str(a), "--adapter", str(b), "--cascade", "0", "--data", str(small_test),
              "--out", "zero.csv", "--no-progress", "--json"])
    assert (tmp_path / "zero.csv").read_bytes() == (tmp_path / "alone.csv").read_bytes()
    data = json.loads(r.stdout)
    assert [m["rows"] for m in data["members"]] == [20, 0]

    # share 0.3, replace: the 6 least sure rows of the first member hold the second member's prediction
    r = _kit(["predict", "--adapter", str(a), "--adapter", str(b), "--cascade", "0.3", "--set", 'ensemble.cascade_combine="replace"',
              "--data", str(small_test), "--out", "part.csv", "--no-progress", "--json"])
    data = json.loads(r.stdout)
    assert [m["rows"] for m in data["members"]] == [20, 6] and data["cascade"]["combine"] == "replace"
    _kit(["predict", "--adapter", str(b), "--data", str(small_test), "--out", "b.csv", "--no-progress"])
    from kaggle_kit.runtime.cascade import CascadeSettings as S, select_rows

    ids, pa = _probs(tmp_path / "alone.csv")
    _, pb = _probs(tmp_path / "b.csv")
    _, got = _probs(tmp_path / "part.csv")
    chosen = select_rows(pa, S(share=0.3))
    want = pa.copy()
    want[chosen] = pb[chosen]
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_time_budget_shrinks_the_share_and_says_so(adapters, small_test, tmp_path, monkeypatch):
    from kaggle_kit.runtime import ensemble_budget
    from kaggle_kit.runtime.cascade import CascadeSettings
    from kaggle_kit.runtime.ensemble import predict_ensemble_file

    monkeypatch.setattr(ensemble_budget, "measure_rate", lambda *a, **k: 0.05)  # 0.05 s per padded token: a slow member
    res = predict_ensemble_file(list(adapters), small_test, tmp_path / "sub.csv", log=None, progress=False, budget_minutes=1.0,
                                cascade=CascadeSettings(share=1.0))
    line = next(d for d in res.decisions if d.startswith("time budget: cascade share"))
    kept = res.cascade["stages"][1]["rows_budget"]
    assert 0 < kept < 20 and f"(20 → {kept} rows, the most uncertain kept" in line
    assert [m["rows"] for m in res.members] == [20, kept]


# --------------------------------------------------------------------------- kit blend --cascade


def _oof(folder: Path, ids, labels_true, probs):
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "oof.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "fold", "label", *LABELS, "predicted"])
        for i, y, p in zip(ids, labels_true, probs):
            w.writerow([i, 0, LABELS[y], *(f"{x:.6f}" for x in p), LABELS[int(np.argmax(p))]])
    (folder / "kit_manifest.json").write_text(json.dumps({"task": {"kind": "pairwise", "labels": LABELS, "metric": "log_loss"}}))


def test_blend_cascade_picks_the_share_and_mode_that_maximise_the_oof_metric(tmp_path, monkeypatch):
    from kaggle_kit.ensemble.cascade import fit_cascade
    from kaggle_kit.runtime.cascade import CascadeSettings, combine_stages, select_rows
    from kaggle_kit.runtime.metrics import metrics_from_probs

    rng = np.random.default_rng(1)
    n = 200
    y = rng.integers(0, 3, n)
    weak = rng.dirichlet(np.ones(3) * 2, size=n)  # a weak first member, a strong second one
    strong = np.full((n, 3), 0.1)
    strong[np.arange(n), y] = 0.8
    ids = [str(1000 + i) for i in range(n)]
    _oof(tmp_path / "weak", ids, y, weak)
    _oof(tmp_path / "strong", ids, y, strong)
    fit = fit_cascade([tmp_path / "weak", tmp_path / "strong"])
    scores = {}
    for share in fit.shares:
        for mode in ("replace", "mean"):
            s = CascadeSettings(share=share, combine=mode)
            chosen = select_rows(weak, s)
            p = combine_stages(n, [(np.arange(n), weak), (chosen, strong[chosen])], [0, 1], [0.5, 0.5], s)
            scores[(share, mode)] = metrics_from_probs(p, list(y), False, LABELS)["log_loss"]
    best = min(scores, key=scores.get)
    assert (fit.best["share"], fit.best["combine"]) == best and fit.best["share"] == 1.0 and fit.best["combine"] == "replace"
    assert fit.best["log_loss"] == pytest.approx(scores[best], abs=1e-6)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kit.toml").write_text("[ensemble]\ncombine = \"mean\"\n")
    r = _kit(["blend", "--oof", "weak", "--oof", "strong", "--cascade"])
    assert "share 0.30 replace" in r.output and "best: share" in r.output and "cascade = true" in r.output
    r = _kit(["blend", "--oof", "weak", "--oof", "strong", "--cascade", "--write-config", "kit.toml", "--json"])
    best = json.loads(r.stdout)["cascade"]["best"]  # with the blend's fitted weights
    from kaggle_kit.config import load_config

    ens = load_config("kit.toml", required=True).ensemble
    assert ens.cascade and ens.members == ["weak", "strong"] and len(ens.weights) == 2
    assert (ens.cascade_share, ens.cascade_combine, ens.cascade_by) == (best["share"], best["combine"], best["by"])
    r = _kit(["blend", "--oof", "weak", "--oof", "strong", "--cascade", "--write-config", "kit.toml"])  # rewritten, not doubled
    assert (tmp_path / "kit.toml").read_text().count("cascade = true") == 1


# --------------------------------------------------------------------------- the notebook


PROJECT = two_member_project(('runs/a', 'runs/b'), '[ensemble]\ncascade = true\ncascade_share = 0.4\ncombine = "logit_mean"\n\n')


@pytest.mark.slow
def test_cascade_runs_inside_the_notebook_through_run_local(adapters, small_test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, src in zip("ab", adapters):
        shutil.copytree(src, tmp_path / "runs" / name)
    (tmp_path / "kit.toml").write_text(PROJECT, encoding="utf-8")
    r = _kit(["predict", "--adapter", "runs/a", "--adapter", "runs/b", "--data", str(small_test), "--out", "predict/submission.csv",
              "--no-progress", "--json"])
    assert json.loads(r.stdout)["cascade"]["stages"][1]["rows"] == 8  # [ensemble] cascade = true, share 0.4 of 20 rows
    _kit(["render", "inference"])
    nb = json.loads((tmp_path / "kernels/inference/inference.ipynb").read_text())
    source = "\n".join("".join(c["source"]) for c in nb["cells"])
    assert 'cascade={"share": 0.4, "by": "margin", "threshold": 0.0, "combine": "mean"}' in source
    _kit(["run-local", "inference", "--inputs", f"competition={small_test.parent}", "--inputs", "adapter=runs/a",
          "--inputs", "member-b=runs/b", "--out", "local-run", "--network", "guard"])
    ids_p, p = _probs(tmp_path / "predict/submission.csv")
    ids_n, q = _probs(tmp_path / "local-run/submission.csv")
    assert ids_p == ids_n and len(ids_p) == 20
    np.testing.assert_allclose(p, q, atol=1e-6)
    executed = json.dumps(json.loads((tmp_path / "local-run/inference.ipynb").read_text())["cells"])
    assert "cascade stage 2: 8 of 20 rows" in executed


def test_rows_a_later_member_cannot_predict_keep_the_earlier_prediction(adapters, small_test, tmp_path):
    """Non-finite accounting: a later member whose logits are NaN leaves its rows to the earlier members (listed); a
    first member whose logits are NaN leaves the rows unpredicted (the engine's fill, counted like any ensemble)."""
    from safetensors.torch import load_file, save_file

    from kaggle_kit.runtime.cascade import CascadeSettings
    from kaggle_kit.runtime.ensemble import predict_ensemble_file
    from kaggle_kit.runtime.infer import predict_file

    a, b = adapters
    broken = tmp_path / "broken"
    shutil.copytree(b, broken)
    weights = load_file(str(broken / "adapter_model.safetensors"))
    name = next(k for k in weights if "lora_B" in k)
    weights[name] = weights[name] * float("nan")
    save_file(weights, str(broken / "adapter_model.safetensors"))
    alone = predict_file(a, small_test, tmp_path / "a.csv", log=None, progress=False).probabilities
    res = predict_ensemble_file([a, broken], small_test, tmp_path / "s.csv", log=None, progress=False, parts_dir=tmp_path / "p",
                                cascade=CascadeSettings(share=0.5))
    later = res.members[1]
    assert later["rows"] == 0 and len(later["kept_earlier_ids"]) == 10 and len(later["nonfinite_rows"]) == 10
    np.testing.assert_allclose(res.probabilities, alone, atol=1e-9)  # every row kept member a's prediction
    assert res.unpredicted_ids == [] and any("keep the earlier members' prediction" in d for d in res.decisions)
    first_broken = predict_ensemble_file([broken, a], small_test, tmp_path / "f.csv", log=None, progress=False,
                                         parts_dir=tmp_path / "p2", cascade=CascadeSettings(share=0.5), max_unpredicted_share=0.0)
    assert len(first_broken.unpredicted_ids) == 20 and first_broken.too_many_unpredicted

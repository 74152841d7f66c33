"""Ensembles: weighted combination, saved parts and reruns, member checks, the budget planner, kit predict."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import first_rows, make_untrained_adapter


@pytest.fixture(scope="module")
def second_adapter(tiny_base, tmp_path_factory) -> Path:
    return make_untrained_adapter(tmp_path_factory.mktemp("adapter-b") / "run-b", tiny_base, seed=1)


@pytest.fixture(scope="module")
def small_test(lmsys_synth_test, tmp_path_factory) -> Path:
    """The first 24 rows of the synthetic LMSYS test file."""
    return first_rows(lmsys_synth_test, tmp_path_factory.mktemp("small-test") / "test.csv", 24)


@pytest.fixture(scope="module")
def singles(untrained_adapter, second_adapter, small_test, tmp_path_factory):
    """Each member predicted alone by predict_file (its own tokenization and sorting)."""
    from kaggle_kit.runtime.infer import predict_file

    d = tmp_path_factory.mktemp("singles")
    a = predict_file(untrained_adapter, small_test, d / "a.csv", log=None, progress=False)
    b = predict_file(second_adapter, small_test, d / "b.csv", log=None, progress=False)
    return a.probabilities, b.probabilities


def test_combine_mean_and_logit_mean():
    from kaggle_kit.runtime.ensemble import EnsembleError, combine

    p1 = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    p2 = np.array([[0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    np.testing.assert_allclose(combine([p1, p2], [3, 1], "mean"), 0.75 * p1 + 0.25 * p2)
    z = 0.75 * np.log(p1) + 0.25 * np.log(p2)
    want = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(combine([p1, p2], [0.75, 0.25], "logit_mean"), want, rtol=1e-9)
    ml = combine([np.array([[0.9, 0.2]]), np.array([[0.5, 0.2]])], [0.5, 0.5], "logit_mean", multilabel=True)
    np.testing.assert_allclose(ml, [[0.75, 0.2]], rtol=1e-6)  # sigmoid(mean(logit)): logit 0.9 = ln 9, 0.5 → 0
    with pytest.raises(EnsembleError, match="geometric"):
        combine([p1], [1.0], "geometric")


def test_parse_weights_checks_count_and_sign():
    from kaggle_kit.runtime.ensemble import EnsembleError, parse_weights

    assert parse_weights("0.6,0.4", 2) == pytest.approx([0.6, 0.4])
    assert parse_weights([3, 1], 2) == pytest.approx([0.75, 0.25])
    assert parse_weights(None, 4) == pytest.approx([0.25] * 4)
    with pytest.raises(EnsembleError, match="exactly one weight per member"):
        parse_weights("0.6,0.4", 3, ["a", "b", "c"])
    with pytest.raises(EnsembleError, match="non-negative"):
        parse_weights([1, -1], 2)
    with pytest.raises(EnsembleError, match="not numbers"):
        parse_weights("a,b", 2)


def test_ensemble_equals_weighted_combination_and_shares_tokens(untrained_adapter, second_adapter, small_test, singles, tmp_path):
    from kaggle_kit.runtime.ensemble import combine, predict_ensemble_file
    from kaggle_kit.runtime.submission import normalize_probabilities

    res = predict_ensemble_file([untrained_adapter, second_adapter], small_test, tmp_path / "sub.csv", weights=[0.7, 0.3],
                                log=None, progress=False)
    want = combine(list(singles), [0.7, 0.3], "mean")
    np.testing.assert_allclose(res.probabilities, want, atol=1e-6)
    assert np.abs(singles[0] - singles[1]).max() > 1e-3  # the members really differ
    first, second = res.members
    assert "encode_seconds" in first and second["tokens_shared_with"] == first["name"]
    assert [m["weight"] for m in res.members] == pytest.approx([0.7, 0.3])
    # the submission holds the combination, every id in test order
    with (tmp_path / "sub.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24
    got = np.array([[float(r[k]) for k in ("winner_model_a", "winner_model_b", "winner_tie")] for r in rows])
    np.testing.assert_allclose(got, normalize_probabilities(want), atol=1e-8)
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["00-run.npz", "01-run-b.npz"]


def test_crash_after_member_one_then_rerun_skips_it(untrained_adapter, second_adapter, small_test, tmp_path, monkeypatch):
    from kaggle_kit.runtime.ensemble import predict_ensemble_file

    from kaggle_kit.runtime import testfile

    real, loads = testfile.load_replicas, []

    def crashing(adapter_dir, *a, **k):
        loads.append(Path(adapter_dir).name)
        if Path(adapter_dir) == Path(second_adapter):
            raise RuntimeError("simulated crash while loading member 2")
        return real(adapter_dir, *a, **k)

    monkeypatch.setattr(testfile, "load_replicas", crashing)
    members, out = [untrained_adapter, second_adapter], tmp_path / "work" / "submission.csv"
    with pytest.raises(RuntimeError, match="simulated crash"):
        predict_ensemble_file(members, small_test, out, weights="0.5,0.5", log=None, progress=False)
    assert not out.exists() and (tmp_path / "work" / "parts" / "00-run.npz").is_file()

    monkeypatch.setattr(testfile, "load_replicas", lambda d, *a, **k: (loads.append(Path(d).name), real(d, *a, **k))[1])
    loads.clear()
    log: list = []
    res = predict_ensemble_file(members, small_test, out, weights="0.5,0.5", log=log.append, progress=False)
    assert loads == ["run-b"]  # member 1 was not loaded again
    assert res.members[0]["reused"] and not res.members[1]["reused"]
    assert any("reusing its saved predictions" in m for m in log)
    clean = tmp_path / "clean" / "submission.csv"
    predict_ensemble_file(members, small_test, clean, weights="0.5,0.5", log=None, progress=False)
    assert out.read_bytes() == clean.read_bytes()

    # a part made under other settings is stale: ignored (logged) and the member runs again
    loads.clear()
    log.clear()
    predict_ensemble_file(members, small_test, out, weights="0.5,0.5", tta="all", log=log.append, progress=False)
    assert loads == ["run", "run-b"] and sum("ignoring" in m and "stale" in m for m in log) == 2


def test_members_must_agree_on_labels(untrained_adapter, second_adapter, small_test, tmp_path):
    from kaggle_kit.cli import main
    from kaggle_kit.runtime.ensemble import EnsembleError, predict_ensemble_file

    odd = tmp_path / "odd"
    shutil.copytree(second_adapter, odd)
    data = json.loads((odd / "kit_manifest.json").read_text())
    data["task"]["labels"] = ["winner_model_b", "winner_model_a", "winner_tie"]
    (odd / "kit_manifest.json").write_text(json.dumps(data))
    with pytest.raises(EnsembleError, match=r"member odd .*label order"):
        predict_ensemble_file([untrained_adapter, odd], small_test, tmp_path / "s.csv", log=None, progress=False)
    r = CliRunner().invoke(main, ["predict", "--adapter", str(untrained_adapter), "--adapter", str(odd), "--data", str(small_test),
                                  "--out", str(tmp_path / "s.csv"), "--no-progress"])
    assert r.exit_code == 2 and "Error:" in r.output and "member odd" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["predict", "--adapter", str(untrained_adapter), "--adapter", str(second_adapter),
                                  "--weights", "1,2,3", "--data", str(small_test), "--out", str(tmp_path / "s.csv")])
    assert r.exit_code == 2 and "one weight per member" in r.output


def test_planner_degrades_first_then_drops_the_lightest_member():
    from kaggle_kit.runtime.ensemble import SAFETY, MemberCost, plan_budget
    from kaggle_kit.runtime.infer import projected_seconds

    short = np.full(100, 64)  # already at the length floor: degrading cannot help
    rate = 1.0 / (64 * 1.02 * 100)  # 1 s per member
    heavy, light = MemberCost("heavy", 0.7, short, 64, rate), MemberCost("light", 0.3, short, 64, rate)
    both = plan_budget([light, heavy], 0.0, 2.5 / SAFETY)
    assert both.fits and not both.dropped and both.total == pytest.approx(2.0)
    one = plan_budget([light, heavy], 0.0, 1.5 / SAFETY)  # the budget fits only one member
    assert one.dropped == ["light"] and list(one.steps) == ["heavy"] and one.fits
    assert "dropping light" in one.decisions[0]
    # long rows: shortening them is tried before anyone is dropped
    long = np.full(100, 1000)
    a, b = MemberCost("a", 0.5, long, 1024, 1e-3), MemberCost("b", 0.5, long, 1024, 1e-3)
    full = 2 * projected_seconds(long, 1024, 0.0, 100, 1e-3, 1)
    plan = plan_budget([a, b], 0.0, 0.6 * full / SAFETY)
    assert not plan.dropped and plan.steps["a"][0] == 512 and plan.fits


def test_budgeted_ensemble_measures_and_logs(untrained_adapter, second_adapter, small_test, tmp_path):
    from kaggle_kit.runtime.ensemble import predict_ensemble_file

    res = predict_ensemble_file([untrained_adapter, second_adapter], small_test, tmp_path / "s.csv", budget_minutes=30,
                                log=None, progress=False)
    plans = [d for d in res.decisions if d.startswith("ensemble budget:")]
    assert len(plans) == 2 and "plan fits" in plans[0] and "estimated from its size" in plans[0]
    assert not any(m["dropped"] for m in res.members) and np.isfinite(res.probabilities).all()


def test_cli_predict_two_adapters_matches_library_and_reads_ensemble_config(untrained_adapter, second_adapter, small_test, singles, tmp_path, monkeypatch):
    from kaggle_kit.cli import main
    from kaggle_kit.runtime.ensemble import combine

    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["predict", "--adapter", str(untrained_adapter), "--adapter", str(second_adapter),
                                  "--weights", "0.25,0.75", "--combine", "logit_mean", "--data", str(small_test),
                                  "--out", "cli.csv", "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["combine"] == "logit_mean" and [m["weight"] for m in data["members"]] == [0.25, 0.75]
    want = combine(list(singles), [0.25, 0.75], "logit_mean")
    with (tmp_path / "cli.csv").open(newline="") as fh:
        got = np.array([[float(x) for x in row[1:]] for row in list(csv.reader(fh))[1:]])
    np.testing.assert_allclose(got, want, atol=1e-6)
    # the same members from [ensemble] in kit.toml, no --adapter: same submission, parts reused
    (tmp_path / "kit.toml").write_text(f"[ensemble]\nmembers = [{json.dumps(str(untrained_adapter))}, {json.dumps(str(second_adapter))}]\n"
                                       f"weights = [1.0, 3.0]\ncombine = \"logit_mean\"\n")
    r = CliRunner().invoke(main, ["predict", "--data", str(small_test), "--out", "cfg.csv", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "reused saved part" in r.output
    assert (tmp_path / "cfg.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()


ENSEMBLE_PROJECT = """\
[kaggle]
username = "kit-demo"
competition = "llm-classification-finetuning"
[data]
test = "/kaggle/input/llm-classification-finetuning/test.csv"
format = "lmsys"
[kernels.inference]
template = "inference"
instances = ["base", "a", "b"]
[instances.base]
model_slug = "tiny-base"
kind = "base"
version = "1"
[instances.a]
model_slug = "tiny-a"
kind = "adapter"
source = "runs/a/fold-0"
version = "1"
[instances.b]
model_slug = "tiny-b"
kind = "adapter"
source = "runs/b-avg"
version = "2"
"""


def test_render_ensemble_notebook_maps_weights_to_instances(tmp_path):
    from kaggle_kit.config import load_config
    from kaggle_kit.errors import KitError
    from kaggle_kit.notebooks.render import render_kernel

    def render(extra: str) -> str:
        (tmp_path / "kit.toml").write_text(ENSEMBLE_PROJECT + extra, encoding="utf-8")
        nb = json.loads(render_kernel(load_config(tmp_path / "kit.toml", required=True), "inference", tmp_path).notebook_path.read_text())
        return "\n".join("".join(c["source"]) for c in nb["cells"])

    # members named by the --all-folds parent of an instance's source, and by the source itself, in another order
    src = render('[ensemble]\nmembers = ["runs/b-avg", "runs/a"]\nweights = [0.25, 0.75]\ncombine = "logit_mean"\n')
    assert "WEIGHTS = [0.75, 0.25]" in src and "combine_method=\"logit_mean\"" in src
    assert '"b": kaggle_env.require_input("b", ["input/models/kit-demo/tiny-b/transformers/b/2"' in src
    assert "RESULT = predict_ensemble_file(" in src and "RESULT = predict_file(" not in src and "BASE_DIRS = [kaggle_env.require_input(\"base\"" in src
    assert "WEIGHTS = [0.5, 0.5]" in render("")  # no [ensemble]: equal weights
    with pytest.raises(KitError, match="3 weight"):
        render('[ensemble]\nmembers = ["x", "y", "z"]\nweights = [1.0, 1.0, 1.0]\n')


def test_bench_ensemble_same_predictions_one_tokenization(kit_cache):
    from kaggle_kit.benchmarks.infer import run_ensemble_bench

    r = run_ensemble_bench(members=2, rows=6, max_length=96, rounds=1)
    assert r["max_abs_prob_diff"] <= 1e-6
    assert r["tokenizations_independent"] == 2 and r["tokenizations_ensemble"] == 1


def test_all_folds_parent_is_one_member_per_fold(untrained_adapter, small_test, tmp_path, monkeypatch):
    from kaggle_kit.cli import main
    from kaggle_kit.runtime.ensemble import expand_members
    from kaggle_kit.runtime.infer import predict_file

    monkeypatch.chdir(tmp_path)  # no kit.toml: the defaults (the repository's kit.toml sets TTA)
    parent = tmp_path / "runs"
    for k in range(2):
        shutil.copytree(untrained_adapter, parent / f"fold-{k}")
    assert [(n, w) for n, _, w in expand_members([parent, untrained_adapter], [0.6, 0.4])] == [
        ("runs/fold-0", 0.3), ("runs/fold-1", 0.3), ("run", 0.4)]
    r = CliRunner().invoke(main, ["predict", "--adapter", str(parent), "--data", str(small_test), "--out", str(tmp_path / "s.csv"),
                                  "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    assert [m["name"] for m in json.loads(r.stdout)["members"]] == ["runs/fold-0", "runs/fold-1"]
    single = predict_file(untrained_adapter, small_test, tmp_path / "one.csv", log=None, progress=False)
    with (tmp_path / "s.csv").open(newline="") as fh:
        got = np.array([[float(x) for x in row[1:]] for row in list(csv.reader(fh))[1:]])
    np.testing.assert_allclose(got, single.probabilities, atol=1e-6)  # identical folds average to the adapter
    r = CliRunner().invoke(main, ["predict", "--adapter", str(tmp_path), "--data", str(small_test), "--out", str(tmp_path / "x.csv")])
    assert r.exit_code == 2 and "Error:" in r.output and "Traceback" not in r.output


# --------------------------------------------------------------------------- members that read the test file differently

def _map_member_from(src: Path, out: Path, *, text_template=None, text_columns=None, id_column=None) -> Path:
    """A copy of run folder ``src`` whose manifest reads the test file another way (template, text columns, id column)."""
    shutil.copytree(src, out)
    data = json.loads((out / "kit_manifest.json").read_text())
    if text_template is not None:
        data["prompt"]["text_template"] = text_template
        data["prompt"]["field_shares"] = {}
    if text_columns is not None:
        data["task"]["text_columns"] = list(text_columns)
    if id_column is not None:
        data["task"]["id_column"] = id_column
    (out / "kit_manifest.json").write_text(json.dumps(data))
    return out


@pytest.fixture(scope="module")
def map_members(kit_cache, tmp_path_factory) -> dict:
    """MAP-shaped (misconceptions) members that each read the test file their own way: ``preset`` (the preset's
    template, QuestionText first) and ``expl`` ("Explanation: {StudentExplanation}\\nAnswer: {MC_Answer}") trained by
    `kit train --model tiny`; ``only_expl`` and ``only_question`` (no template; text_columns StudentExplanation /
    QuestionText: the same prompt settings, other columns) and ``preset_twin`` (the preset's settings exactly) are
    copies with an edited manifest. ``test``: a 30-row test file (with its sample submission beside it)."""
    from kaggle_kit.cli import main
    from kaggle_kit.data.synth import write_synth

    root = tmp_path_factory.mktemp("map-members")
    train = write_synth("misconceptions", 60, root / "train.csv", seed=0)
    test = write_synth("misconceptions", 30, root / "test" / "test.csv", seed=1, test=True)
    assert CliRunner().invoke(main, ["init", "--preset", "misconceptions", "--path", str(root / "kit.toml")]).exit_code == 0
    runs = {}
    for name, template in (("preset", None), ("expl", "Explanation: {StudentExplanation}\nAnswer: {MC_Answer}")):
        args = ["train", "--config", str(root / "kit.toml"), "--model", "tiny", "--data", str(train), "--output", str(root / name),
                "--max-steps", "2", "--max-length", "128", "--quantization", "none", "--set", "submission.sample=",
                "--set", "train.batch_size=8", "--set", f"train.seed={len(runs) + 1}"]
        if template:
            args += ["--set", f"prompt.text_template={json.dumps(template)}"]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        runs[name] = root / name
    manifest = json.loads((runs["expl"] / "kit_manifest.json").read_text())
    assert manifest["prompt"]["text_template"].startswith("Explanation: {StudentExplanation}")
    runs["only_expl"] = _map_member_from(runs["expl"], root / "only_expl", text_template="", text_columns=["StudentExplanation"])
    runs["only_question"] = _map_member_from(runs["expl"], root / "only_question", text_template="", text_columns=["QuestionText"])
    runs["preset_twin"] = _map_member_from(runs["preset"], root / "preset_twin")
    return {"runs": runs, "test": test, "root": root}


@pytest.fixture(scope="module")
def map_alone(map_members) -> dict:
    """Each MAP member predicted alone (`kit predict`'s predict_file): name -> probabilities."""
    from kaggle_kit.runtime.infer import predict_file

    out = map_members["root"] / "alone"
    return {name: predict_file(run, map_members["test"], out / f"{name}.csv", log=None, progress=False).probabilities
            for name, run in map_members["runs"].items()}


def test_ensemble_members_read_their_own_columns_and_templates(map_members, map_alone, tmp_path):
    """Each member's part equals that member alone, whatever its template or text columns; the ensemble is the
    weighted mean of the members alone; tokens are shared only between members whose reading and encoding
    settings are identical (preset and preset_twin), never between members with other columns."""
    from kaggle_kit.runtime.ensemble import combine, load_part, predict_ensemble_file

    names = ["preset", "expl", "only_expl", "only_question", "preset_twin"]
    runs = map_members["runs"]
    assert np.abs(map_alone["only_expl"] - map_alone["only_question"]).max() > 1e-3  # other columns, other predictions
    weights = [0.3, 0.2, 0.2, 0.2, 0.1]
    res = predict_ensemble_file([runs[n] for n in names], map_members["test"], tmp_path / "sub.csv", weights=weights,
                                names=names, log=None, progress=False)
    for m in res.members:
        part, _ = load_part(m["part"], json.loads(np.load(m["part"])["meta"].item())["key"], res.ids)
        np.testing.assert_allclose(part, map_alone[m["name"]], atol=1e-6, err_msg=f"member {m['name']}'s part")
    np.testing.assert_allclose(res.probabilities, combine([map_alone[n] for n in names], weights, "mean"), atol=1e-6)
    shared = {m["name"]: m.get("tokens_shared_with") for m in res.members}
    assert shared == {"preset": None, "expl": None, "only_expl": None, "only_question": None, "preset_twin": "preset"}


def test_cli_ensemble_of_members_with_other_templates_matches_each_alone(map_members, map_alone, tmp_path, monkeypatch):
    """`kit predict` with two adapters of different templates: each saved part is that member alone."""
    from kaggle_kit.cli import main
    from kaggle_kit.runtime.ensemble import combine

    monkeypatch.chdir(tmp_path)
    runs = map_members["runs"]
    r = CliRunner().invoke(main, ["predict", "--adapter", str(runs["preset"]), "--adapter", str(runs["expl"]), "--weights", "0.5,0.5",
                                  "--data", str(map_members["test"]), "--out", "sub.csv", "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    parts = {m["name"]: np.load(m["part"])["probs"] for m in json.loads(r.stdout)["members"]}
    for name in ("preset", "expl"):
        np.testing.assert_allclose(parts[name], map_alone[name], atol=1e-6, err_msg=f"member {name}'s part")
    got = combine([parts["preset"], parts["expl"]], [0.5, 0.5], "mean")
    np.testing.assert_allclose(got, combine([map_alone["preset"], map_alone["expl"]], [0.5, 0.5], "mean"), atol=1e-6)


def test_members_that_disagree_on_the_rows_are_refused_before_loading(map_members, tmp_path, monkeypatch):
    """A member reading its ids from another column is refused by name (both members, the columns, the first
    differing id) before any weights load; so is a member whose own columns the file lacks."""
    import csv as _csv

    from kaggle_kit.cli import main
    from kaggle_kit.runtime import testfile
    from kaggle_kit.runtime.ensemble import EnsembleError, predict_ensemble_file

    def no_loading(*a, **k):
        raise AssertionError("weights were loaded before the members were checked")

    monkeypatch.setattr(testfile, "load_replicas", no_loading)
    runs = map_members["runs"]
    with map_members["test"].open(newline="", encoding="utf-8") as fh:
        rows = list(_csv.DictReader(fh))
    test = tmp_path / "test.csv"
    with test.open("w", newline="", encoding="utf-8") as fh:
        w = _csv.DictWriter(fh, fieldnames=list(rows[0]) + ["id"])
        w.writeheader()
        w.writerows({**r, "id": f"q{n}"} for n, r in enumerate(rows))
    other_ids = _map_member_from(runs["preset"], tmp_path / "other_ids", id_column="id")
    with pytest.raises(EnsembleError) as exc:
        predict_ensemble_file([runs["expl"], other_ids], test, tmp_path / "s.csv", log=None, progress=False)
    msg = str(exc.value)
    assert "expl" in msg and "other_ids" in msg and "'row_id'" in msg and "'id'" in msg and "q0" in msg, msg
    missing = _map_member_from(runs["expl"], tmp_path / "wants_hint", text_template="Hint: {Hint}\nAnswer: {MC_Answer}")
    r = CliRunner().invoke(main, ["predict", "--adapter", str(runs["preset"]), "--adapter", str(missing), "--data", str(test),
                                  "--out", str(tmp_path / "s.csv"), "--no-progress"])
    assert r.exit_code == 2 and "Error:" in r.output and "wants_hint" in r.output and "Hint" in r.output, r.output
    assert "Traceback" not in r.output

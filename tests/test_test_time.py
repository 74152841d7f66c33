"""Test-time training (issue 23): mining the test file's labelled examples, per-group ranking and AUC, the
budget split with a fake clock, the pseudo-label round, and the train-predict notebook run offline."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kaggle_kit.cli import main
from kaggle_kit.errors import DataError

EXAMPLES = {"positive_example_1": 1, "positive_example_2": 1, "negative_example_1": 0, "negative_example_2": 0}
COLUMNS = ["row_id", "body", "rule", "subreddit", "positive_example_1", "positive_example_2", "negative_example_1", "negative_example_2"]


def _write(path: Path, rows: list, columns=COLUMNS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


def _read(path: Path) -> list:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _hand_made(tmp_path: Path) -> Path:
    """Three test rows: rule A twice (a repeated example, an empty one), rule C (absent from training)."""
    rows = [
        {"row_id": "1", "body": "b1", "rule": "A", "subreddit": "s1", "positive_example_1": "buy now",
         "positive_example_2": "cheap pills", "negative_example_1": "nice day", "negative_example_2": ""},
        {"row_id": "2", "body": "b2", "rule": "A", "subreddit": "s2", "positive_example_1": " buy   now ",
         "positive_example_2": "free money", "negative_example_1": "hello all", "negative_example_2": "good point"},
        {"row_id": "3", "body": "b3", "rule": "C", "subreddit": "s3", "positive_example_1": "buy now",
         "positive_example_2": "spoiler ahead", "negative_example_1": "nice day", "negative_example_2": "great film"},
    ]
    return _write(tmp_path / "test.csv", rows)


# --------------------------------------------------------------------------- mining


def test_mining_labels_keeps_fields_dedups_and_lists_skips(tmp_path):
    from kaggle_kit.data.mine import mine_examples

    train = _write(tmp_path / "train.csv", [{"row_id": "t1", "body": "x", "rule": "A", "subreddit": "s", "positive_example_1": "p",
                                             "positive_example_2": "p", "negative_example_1": "n", "negative_example_2": "n",
                                             "rule_violation": "1"}], COLUMNS + ["rule_violation"])
    res = mine_examples(_hand_made(tmp_path), EXAMPLES, body_column="body", group_column="rule", id_column="row_id",
                        label_column="rule_violation", train_path=train)
    by_id = {r["row_id"]: r for r in res.rows}
    # 12 cells: one empty (1/negative_example_2), one duplicate by text+rule (2/positive_example_1 = 1's, whitespace aside)
    assert res.counts == {"test_rows": 3, "examples": 12, "mined": 10, "from_train": 0, "skipped_empty": 1,
                          "skipped_duplicate": 1, "rows": 10}
    assert [s["id"] for s in res.skipped] == ["1_negative_example_2", "2_positive_example_1"]
    assert "duplicate of 1_positive_example_1" in res.skipped[1]["reason"]
    # the same text under another rule is kept (3/positive_example_1, 3/negative_example_1)
    assert by_id["3_positive_example_1"]["body"] == "buy now" and by_id["3_negative_example_1"]["rule"] == "C"
    row = by_id["1_positive_example_2"]
    assert (row["body"], row["rule_violation"], row["rule"], row["subreddit"]) == ("cheap pills", "1", "A", "s1")
    assert by_id["2_negative_example_1"]["rule_violation"] == "0" and by_id["2_negative_example_1"]["subreddit"] == "s2"
    # the source column holds the next row of the same group's example, never the body itself
    assert row["positive_example_2"] == "free money" and by_id["2_positive_example_2"]["positive_example_2"] == "cheap pills"
    assert by_id["3_positive_example_2"]["positive_example_2"] == ""  # rule C has one row: nothing to fill from
    # no other row of the group with another text in that column: 1's "buy now" (2's is the same text), 2's
    # negative_example_2 (1's is empty), every cell of rule C (one row)
    assert res.empty_fills == ["1_positive_example_1", "2_negative_example_2", "3_positive_example_1", "3_positive_example_2",
                               "3_negative_example_1", "3_negative_example_2"]
    assert res.groups == {"A": 6, "C": 4} and res.unseen_groups == ["C"] and res.labels == {"1": 5, "0": 5}
    lines = "\n".join(res.summary_lines())
    assert "C: 4 (not in training)" in lines and "skipped 1 empty example(s): 1_negative_example_2" in lines


def test_mining_keep_and_include_train(tmp_path):
    from kaggle_kit.data.mine import mine_examples

    train = _write(tmp_path / "train.csv", [
        {"row_id": "t1", "body": "buy now", "rule": "A", "subreddit": "s", "positive_example_1": "p", "positive_example_2": "p",
         "negative_example_1": "n", "negative_example_2": "n", "rule_violation": "0"},
        {"row_id": "t2", "body": "", "rule": "A", "subreddit": "s", "positive_example_1": "p", "positive_example_2": "p",
         "negative_example_1": "n", "negative_example_2": "n", "rule_violation": "1"}], COLUMNS + ["rule_violation"])
    res = mine_examples(_hand_made(tmp_path), EXAMPLES, id_column="row_id", label_column="rule_violation",
                        example_fill="keep", train_path=train, include_train=True)
    ids = [r["row_id"] for r in res.rows]
    assert ids[0] == "t1" and res.counts["from_train"] == 1 and res.counts["mined"] == 9
    # the training row wins the duplicate, and the conflicting label is said
    dup = next(s for s in res.skipped if s["id"] == "1_positive_example_1")
    assert "duplicate of t1" in dup["reason"] and "labelled 0 there, 1 here" in dup["reason"]
    assert any(s["id"] == "t2" and s["reason"].startswith("empty") for s in res.skipped)
    kept = next(r for r in res.rows if r["row_id"] == "1_positive_example_2")
    assert kept["positive_example_2"] == kept["body"] == "cheap pills"


def test_missing_example_column_names_the_columns_present(tmp_path):
    from kaggle_kit.data.mine import mine_examples

    with pytest.raises(DataError) as err:
        mine_examples(_hand_made(tmp_path), {**EXAMPLES, "positive_example_3": 1}, id_column="row_id", label_column="rule_violation")
    msg = str(err.value)
    assert "'positive_example_3'" in msg and "test_time.examples" in msg and "'negative_example_2'" in msg


def test_cli_mine_examples_writes_the_rows_and_refuses_bad_columns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["init", "--preset", "rules", "--username", "kit-demo"]).exit_code == 0
    test = _hand_made(tmp_path / "data")
    out = runner.invoke(main, ["data", "mine-examples", str(test), "--out", "ttt.csv"])
    assert out.exit_code == 0, out.output
    assert "mined 10 training row(s) from 12 example cell(s) of 3 test row(s)" in out.output
    rows = _read(tmp_path / "ttt.csv")
    assert len(rows) == 10 and list(rows[0]) == COLUMNS + ["rule_violation", "source_row"] and rows[0]["source_row"] == "1"
    as_json = runner.invoke(main, ["data", "mine-examples", str(test), "--out", "ttt.csv", "--json"])
    assert json.loads(as_json.output)["counts"]["skipped_duplicate"] == 1
    bad = runner.invoke(main, ["data", "mine-examples", str(test), "--out", "ttt.csv", "--set", "test_time.body_column='text'"])
    assert bad.exit_code == 2 and bad.output.startswith("Error: ") and "no column 'text'" in bad.output and "'body'" in bad.output


# --------------------------------------------------------------------------- ranking


def test_rank_within_groups_and_grouped_auc():
    from kaggle_kit.runtime.ranking import grouped_auc, rank_within, ranked_probabilities

    scores = [0.9, 0.1, 0.5, 0.30, 0.20, 0.20, 0.7]
    groups = ["a", "a", "a", "b", "b", "b", "c"]
    r = rank_within(scores, groups)
    assert np.allclose(r, [1.0, 1 / 3, 2 / 3, 1.0, 0.5, 0.5, 1.0])  # ties share their average rank; a lone row is 1
    probs = np.column_stack([1 - np.asarray(scores), scores])
    ranked = ranked_probabilities(probs, ["0", "1"], "1", groups)
    assert np.allclose(ranked[:, 1], r) and np.allclose(ranked.sum(axis=1), 1.0)
    targets = [1, 0, 0, 0, 1, 1, 1]
    res = grouped_auc(scores, targets, groups)
    assert res["groups"] == {"a": 1.0, "b": 0.0} and res["value"] == 0.5
    assert "one class" in res["undefined"]["c"] and res["rows"] == {"a": 3, "b": 3, "c": 1}
    only = grouped_auc(scores, targets, groups, only=["b", "z"])
    assert only["value"] == 0.0 and only["undefined"] == {"z": "no row of this group"}
    # rank normalisation changes no group's AUC, and a pooled AUC is not the column average
    assert grouped_auc(r, targets, groups)["groups"] == res["groups"]


def test_rank_within_needs_every_row_grouped():
    from kaggle_kit.runtime.ranking import rank_within

    with pytest.raises(ValueError, match="3 scores but 2 group values"):
        rank_within([0.1, 0.2, 0.3], ["a", "b"])


# --------------------------------------------------------------------------- budget and pseudo labels


def test_split_budget_and_default_limit():
    from kaggle_kit.train.budget_stop import default_budget, split_budget

    plan = split_budget(100, 0.6)
    assert (plan.total_s, plan.train_end, plan.round1_end, plan.predict_s) == (6000, 3600, 3600, 2400)
    two = split_budget(100, 0.6, pseudo=True, pseudo_round_share=0.25)
    assert (two.round1_end, two.round2_s, two.train_end) == (2700, 900, 3600)
    assert default_budget("jigsaw-agile-community-rules")[0] == 648 and default_budget("")[0] == 486
    with pytest.raises(ValueError, match="train_share"):
        split_budget(10, 1.0)


def test_pseudo_label_rows_are_exactly_the_most_confident():
    from kaggle_kit.train.test_time import pseudo_label_rows

    records = [{"row_id": str(i), "body": f"b{i}", "rule": "A", "__line__": i + 2} for i in range(6)]
    probs = [[0.45, 0.55], [0.02, 0.98], [0.9, 0.1], [0.5, 0.5], [0.01, 0.99], [0.3, 0.7]]
    rows, chosen = pseudo_label_rows(records, [str(i) for i in range(6)], probs, ["0", "1"], 0.5, id_column="row_id",
                                     label_column="rule_violation", exclude=["4"])
    assert chosen == ["1", "2", "5"]  # 4 is the most confident but got a fill; 3 of 6 rows chosen, in file order
    assert [(r["row_id"], r["rule_violation"], r["body"], r["source_row"]) for r in rows] == [
        ("1_pseudo", "1", "b1", "1"), ("2_pseudo", "0", "b2", "2"), ("5_pseudo", "1", "b5", "5")]
    assert all("__line__" not in r for r in rows)


def test_render_train_predict_embeds_the_mining_and_the_trainer(tmp_path, monkeypatch):
    """`kit render train-predict` (template name with '-', source file train_predict.py) takes --set like the others."""
    from kaggle_kit.notebooks.render import embedded_sources

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["init", "--preset", "rules", "--username", "kit-demo"]).exit_code == 0
    with open("kit.toml", "a", encoding="utf-8") as fh:
        fh.write('\n[kernels.train-predict]\ntemplate = "train-predict"\ninstances = ["qwen2-5-7b-base"]\n')
    out = runner.invoke(main, ["render", "train-predict", "--set", "instances.qwen2-5-7b-base.version=1",
                               "--set", "test_time.budget_minutes=90"])
    assert out.exit_code == 0, out.output
    nb = tmp_path / "kernels" / "train-predict" / "train-predict.ipynb"
    embedded = embedded_sources(nb)
    for rel in ("data/mine.py", "train/test_time.py", "train/budget_stop.py", "runtime/ranking.py", "train/classifier.py"):
        assert embedded[f"kaggle_kit/{rel}"] == (Path(__file__).resolve().parents[1] / "kaggle_kit" / rel).read_text()
    text = nb.read_text()
    assert "run_test_time(CFG, TEST_FILE, WORK_DIR, SUBMISSION, base_path=BASE_DIR, start=KERNEL_START)" in text
    assert "notebooks_src/train_predict.py" in text and "budget_minutes = 90.0" in text
    assert "kaggle_kit/train/ddp_worker.py" in embedded  # launched with -m for test_time.nproc > 1
    out = runner.invoke(main, ["render", "train-predict", "--set", "instances.qwen2-5-7b-base.version=1", "--budget-minutes", "45"])
    assert out.exit_code == 0, out.output
    assert "budget_minutes = 45.0" in nb.read_text()


class FakeClock:
    """Each reading advances ``step`` seconds: training time is counted in readings, not in real seconds."""

    def __init__(self, step: float):
        self.t, self.step, self.calls = 1000.0, step, 0

    def __call__(self) -> float:
        self.t += self.step
        self.calls += 1
        return self.t


def _rules_project(tmp_path: Path, rows: int = 24) -> tuple:
    from kaggle_kit.config import load_config
    from kaggle_kit.data.synth import write_synth

    root = tmp_path / "project"
    root.mkdir()
    old = os.getcwd()
    os.chdir(root)
    try:
        assert CliRunner().invoke(main, ["init", "--preset", "rules", "--username", "kit-demo"]).exit_code == 0
    finally:
        os.chdir(old)
    comp = tmp_path / "comp"
    write_synth("rules", rows, comp / "test.csv", seed=1, test=True)
    sets = ["model.name='tiny'", "quantization.mode='none'", "train.optimizer='adamw_torch'", "train.learning_rate=3e-3",
            "peft.r=4", "prompt.max_length=128", "train.batch_size=8", "train.eval_batch_size=32", "data.folds=4",
            "train.warmup_ratio=0.0", f"data.train={root / 'data' / 'absent.csv'}"]
    return root, comp, load_config(root / "kit.toml", sets, required=True), sets


@pytest.mark.slow
def test_training_stops_at_its_share_and_the_submission_is_written(tmp_path):
    """Fake clock: 5 s per reading, a 1-minute budget, 60% for training: training stops long before its 200 steps,
    keeps the best checkpoint, the pseudo-label round adds exactly the chosen rows, and the submission matches the sample."""
    from kaggle_kit.train.test_time import run_test_time

    root, comp, cfg, _ = _rules_project(tmp_path)
    cfg.train.max_steps, cfg.train.eval_steps = 200, 100
    cfg.test_time.budget_minutes, cfg.test_time.train_share = 1.0, 0.6
    cfg.test_time.pseudo_label_share, cfg.test_time.pseudo_round_share = 0.25, 0.4
    lines = []
    res = run_test_time(cfg, comp / "test.csv", tmp_path / "work", tmp_path / "submission.csv", clock=FakeClock(5.0),
                        log=lines.append)
    first = res.rounds[0]
    assert first["budget_stop"]["stopped"] and 1 <= first["steps"] < 200, first
    assert first["best_step"] == first["steps"]  # the forced final evaluation saved a checkpoint
    assert (tmp_path / "work" / "run" / "adapter_model.safetensors").is_file()
    assert any("training stopped by the budget" in d for d in res.decisions)
    # the rows mined from one test row share its examples: they stay on one side of the validation split
    mined_ids = {r["row_id"]: r["source_row"] for r in _read(tmp_path / "work" / "ttt.csv")}
    val = {r["id"] for r in _read(tmp_path / "work" / "run" / "oof.csv")}
    assert val and {mined_ids[i] for i in val}.isdisjoint({mined_ids[i] for i in set(mined_ids) - val})
    # pseudo labels: exactly the chosen 6 of 24 test rows join the mined rows
    mined, second = _read(tmp_path / "work" / "ttt.csv"), _read(tmp_path / "work" / "ttt_pseudo.csv")
    assert res.pseudo["rows"] == 6 and len(res.pseudo["ids"]) == 6
    assert second[:len(mined)] == mined and [r["row_id"] for r in second[len(mined):]] == [f"{i}_pseudo" for i in res.pseudo["ids"]]
    sub, sample = _read(tmp_path / "submission.csv"), _read(comp / "sample_submission.csv")
    assert [r["row_id"] for r in sub] == [r["row_id"] for r in sample] and list(sub[0]) == ["row_id", "rule_violation"]
    saved = json.loads((tmp_path / "work" / "test_time.json").read_text())
    assert saved["budget"]["train_end"] == 36.0 and saved["decisions"] == res.decisions and saved["mining"]["rows"] == 96
    # a labelled file: the AUC per rule and its mean (submission.rank_within = "rule" in the preset) besides the pooled AUC
    from kaggle_kit.data.synth import write_synth
    from kaggle_kit.runtime.infer import predict_file
    from kaggle_kit.runtime.ranking import grouped_auc

    labelled = write_synth("rules", 32, tmp_path / "valid" / "valid.csv", seed=3)
    scored = predict_file(res.adapter, labelled, tmp_path / "valid" / "sub.csv", log=lines.append, progress=False)
    truth = {r["row_id"]: (int(r["rule_violation"]), r["rule"]) for r in _read(labelled)}
    expected = grouped_auc(scored.probabilities[:, 1], [truth[i][0] for i in scored.ids], [truth[i][1] for i in scored.ids])
    written = json.loads((tmp_path / "valid" / "sub.metrics.json").read_text())
    assert scored.metrics["auc_within_rule"] == pytest.approx(expected["value"]) and written["grouped"]["groups"] == expected["groups"]


@pytest.mark.slow
def test_train_predict_notebook_runs_offline_and_writes_the_samples_shape(tmp_path):
    """`kit render train-predict` (with --set) + `kit run-local train-predict --inputs competition=… --inputs base=…`
    on the rules preset's synthetic data with the tiny model: a submission matching the sample, ranked per rule."""
    from kaggle_kit.models.tiny import tiny_base_dir

    root, comp, _, sets = _rules_project(tmp_path)
    with (root / "kit.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[kernels.train-predict]\ntemplate = "train-predict"\ninstances = ["qwen2-5-7b-base"]\n')
    flags = [a for s in sets + ["instances.qwen2-5-7b-base.version=1", "train.max_steps=2", "test_time.budget_minutes=5"]
             for a in ("--set", s)]
    old = os.getcwd()
    os.chdir(root)
    try:
        rendered = CliRunner().invoke(main, ["render", "train-predict", *flags])
        assert rendered.exit_code == 0, rendered.output
        base = tiny_base_dir(num_labels=2)
        ran = CliRunner().invoke(main, ["run-local", "train-predict", "--inputs", f"competition={comp}", "--inputs",
                                        f"base={base}", "--out", str(tmp_path / "out"), "--network", "guard"])
    finally:
        os.chdir(old)
    assert ran.exit_code == 0, ran.output
    sub, sample = _read(tmp_path / "out" / "submission.csv"), _read(comp / "sample_submission.csv")
    assert list(sub[0]) == list(sample[0]) and [r["row_id"] for r in sub] == [r["row_id"] for r in sample]
    saved = json.loads((tmp_path / "out" / "ttt" / "test_time.json").read_text())
    assert saved["mining"]["rows"] == 96 and saved["rounds"][0]["steps"] == 2 and saved["budget"]["total_s"] == 300
    # submission.rank_within = "rule" (the preset): within each rule the values are ranks k/n
    rules = {r["row_id"]: r["rule"] for r in _read(comp / "test.csv")}
    for rule in set(rules.values()):
        vals = sorted(float(r["rule_violation"]) for r in sub if rules[r["row_id"]] == rule)
        assert vals[-1] == 1.0 and all(abs(v * len(vals) * 2 - round(v * len(vals) * 2)) < 1e-6 for v in vals)


def test_unseen_rules_score_has_a_stratified_bootstrap_interval(tmp_path):
    """`score_unseen` (the issue-23 check) gives the unseen rules' mean AUC with its n and a 95% interval that
    contains it; a perfect ranking's interval is [1, 1]; every resample keeps each rule's class counts."""
    from kaggle_kit.data.synth_rules import bootstrap_grouped_auc, score_unseen, write_unseen_rules
    from kaggle_kit.runtime.ranking import grouped_auc

    rng = np.random.default_rng(0)
    t = np.array([0, 1] * 20)
    g = ["r1"] * 20 + ["r2"] * 20
    assert bootstrap_grouped_auc(t.astype(float), t, g, only=["r1", "r2"], resamples=50) == [1.0, 1.0]
    s = t * 0.3 + rng.random(40)
    low, high = bootstrap_grouped_auc(s, t, g, only=["r1", "r2"], resamples=300)
    point = grouped_auc(s, t, g, only=["r1", "r2"])["value"]
    assert low < point < high and 0.0 <= low and high <= 1.0
    paths = write_unseen_rules(tmp_path, train_rows=12, test_rows=24, seed=0)
    labels = _read(Path(paths["labels"]))
    _write(tmp_path / "sub.csv", [{"row_id": r["row_id"], "rule_violation": r["rule_violation"]} for r in labels],
           ["row_id", "rule_violation"])
    scored = score_unseen(tmp_path / "sub.csv", paths["labels"])
    assert scored["unseen"] == 1.0 and scored["unseen_ci95"] == [1.0, 1.0] and scored["n_unseen"] == 16


def test_paired_difference_of_two_rankings():
    """The paired interval of a better ranking minus a worse one lies above 0; a ranking against itself is [0, 0]."""
    from kaggle_kit.data.synth_rules import paired_auc_difference

    rng = np.random.default_rng(1)
    t = np.array([0, 1] * 30)
    g = ["a"] * 30 + ["b"] * 30
    good, noise = t + 0.5 * rng.random(60), rng.random(60)
    better = paired_auc_difference(good, noise, t, g, only=["a", "b"], resamples=300)
    assert better["difference"] > 0.3 and better["ci95"][0] > 0
    assert paired_auc_difference(noise, noise, t, g, only=["a", "b"], resamples=50) == {"difference": 0.0, "ci95": [0.0, 0.0]}


def _agree(rank: int, world: int, port: int, out) -> None:
    import torch.distributed as dist

    from kaggle_kit.train.budget_stop import _any_rank

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        out.put((rank, _any_rank(rank == 0), _any_rank(False)))
    finally:
        dist.destroy_process_group()


def test_ranks_agree_on_the_budget_stop():
    """In a data-parallel run one rank past its deadline stops every rank (else the others hang in the next
    all-reduce); no rank past it stops none. Two gloo processes on the CPU."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_agree, args=(r, 2, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    got = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert got == [(0, True, False), (1, True, False)]


@pytest.mark.slow
def test_data_parallel_fine_tune_in_the_kernel(tmp_path):
    """test_time.nproc = 2: the fine-tune runs in two DDP processes (gloo on the CPU) launched by run_test_time,
    rank 0's summary comes back, and the submission is written from the run folder they saved."""
    from kaggle_kit.train.test_time import run_test_time

    root, comp, cfg, _ = _rules_project(tmp_path)
    cfg.train.max_steps, cfg.train.eval_steps = 4, 2
    cfg.test_time.budget_minutes, cfg.test_time.nproc = 10.0, 2
    lines = []
    res = run_test_time(cfg, comp / "test.csv", tmp_path / "work", tmp_path / "submission.csv", log=lines.append)
    first = res.rounds[0]
    assert first["world_size"] == 2 and first["steps"] == 4 and not first["budget_stop"]["stopped"], first
    assert any("fine-tune processes: 2 (test_time.nproc); data-parallel" in d for d in res.decisions)
    assert (tmp_path / "work" / "run" / "adapter_model.safetensors").is_file()
    sub, sample = _read(tmp_path / "submission.csv"), _read(comp / "sample_submission.csv")
    assert [r["row_id"] for r in sub] == [r["row_id"] for r in sample]
    with pytest.raises(Exception, match="test_time.nproc = 1"):
        run_test_time(cfg, comp / "test.csv", tmp_path / "work2", tmp_path / "s2.csv", clock=FakeClock(5.0), log=lines.append)


def test_score_unseen_names_what_it_cannot_score(tmp_path):
    """A rule with one class is listed under ``undefined`` and left out of n and the interval; a submission that lacks
    a row, or labels where no unseen rule has both classes, are errors naming the file and the ids or the reason."""
    from kaggle_kit.data.synth_rules import score_unseen, write_unseen_rules

    paths = write_unseen_rules(tmp_path, train_rows=12, test_rows=36, seed=0)
    labels = _read(Path(paths["labels"]))
    one_class = next(r["rule"] for r in labels if r["seen"] == "0")
    for r in labels:
        if r["rule"] == one_class:
            r["rule_violation"] = "1"
    cols = ["row_id", "rule", "rule_violation", "seen"]
    _write(tmp_path / "labels.csv", labels, cols)
    _write(tmp_path / "sub.csv", [{"row_id": r["row_id"], "rule_violation": r["rule_violation"]} for r in labels],
           ["row_id", "rule_violation"])
    scored = score_unseen(tmp_path / "sub.csv", tmp_path / "labels.csv")
    assert one_class in scored["undefined"] and one_class not in scored["rules"]
    assert scored["n_unseen"] == 18 and scored["unseen"] == 1.0  # 3 scorable unseen rules x 6 rows
    _write(tmp_path / "short.csv", [{"row_id": r["row_id"], "rule_violation": 0.5} for r in labels[:-1]],
           ["row_id", "rule_violation"])
    with pytest.raises(ValueError, match=f"short.csv: 1 row_id.*{labels[-1]['row_id']}"):
        score_unseen(tmp_path / "short.csv", tmp_path / "labels.csv")
    for r in labels:
        r["rule_violation"] = "1" if r["seen"] == "0" else r["rule_violation"]
    _write(tmp_path / "labels1.csv", labels, cols)
    with pytest.raises(ValueError, match="no unseen rule has both classes"):
        score_unseen(tmp_path / "sub.csv", tmp_path / "labels1.csv")


def test_a_pseudo_round_cut_short_keeps_the_first_adapter():
    """The second round trains from the base: with under half of the first round's best step it is kept out."""
    from kaggle_kit.train.test_time import second_round_falls_short

    assert "ran 1 step(s), under half of the first round's best step (100)" in second_round_falls_short({"best_step": 100}, {"steps": 1})
    assert second_round_falls_short({"best_step": 100}, {"steps": 50}) == ""
    assert second_round_falls_short({"best_step": None}, {"steps": 0}) == ""


@pytest.mark.parametrize("setting, expect", [
    ("test_time.nproc=-1", "'test_time.nproc' = -1: use 0"),
    ("test_time.budget_minutes=-3", "'test_time.budget_minutes' = -3"),
    ("test_time.train_share=1.5", "'test_time.train_share' = 1.5 must lie in (0, 1)"),
    ("test_time.pseudo_label_share=1.2", "'test_time.pseudo_label_share' = 1.2 must lie in [0, 1)"),
    ("test_time.pseudo_round_share=0", "'test_time.pseudo_round_share' = 0 must lie in (0, 1)"),
])
def test_test_time_ranges_are_refused_at_load(tmp_path, monkeypatch, setting, expect):
    """What would fail inside the kernel (or be silently replaced, as a negative budget was) is refused by `kit render`."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["init", "--preset", "rules", "--username", "kit-demo"]).exit_code == 0
    with open("kit.toml", "a", encoding="utf-8") as fh:
        fh.write('\n[kernels.train-predict]\ntemplate = "train-predict"\ninstances = ["qwen2-5-7b-base"]\n')
    out = runner.invoke(main, ["render", "train-predict", "--set", "instances.qwen2-5-7b-base.version=1", "--set", setting])
    assert out.exit_code != 0 and expect in out.output, out.output
    assert not (tmp_path / "kernels" / "train-predict").exists()

"""Any text-classification competition: metrics (golden), templates over columns, composed labels,
ids from the test file, submission shapes from a sample (fast, no model)."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from kaggle_kit.runtime import metrics as M
from kaggle_kit.runtime.formats import read_dataset
from kaggle_kit.runtime.submission import (
    SubmissionError, SubmissionSpec, compare_with_sample, default_spec, spec_from_sample, write_submission,
)


def _csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


# --------------------------------------------------------------------------- metrics (golden)


def test_map_at_3_golden_five_rows():
    """Hand-computed: hit at rank 1 → 1, rank 2 → 1/2, fewer than 3 predictions and no hit → 0,
    a repeated correct label counts once (rank 2 → 1/2), rank 3 → 1/3. Mean 2.3333/5."""
    actual = ["A", "B", "C", "D", "C"]
    predicted = [["A", "B", "C"], "A B C", ["A", "B"], ["A", "D", "D"], ["B", "A", "C"]]
    assert M.map_at_k(actual, predicted, 3) == pytest.approx((1 + 0.5 + 0 + 0.5 + 1 / 3) / 5)
    assert M.map_at_k(actual, predicted, 1) == pytest.approx(1 / 5)
    assert M.average_precision_at_k("C", [], 3) == 0.0
    assert M.average_precision_at_k("C", ["A", "B", "D", "C"], 3) == 0.0  # a hit beyond k does not count


def test_map_at_k_from_probabilities_breaks_ties_by_class_order():
    probs = np.array([
        [0.4, 0.4, 0.1, 0.1],    # tie between 0 and 1: class order → [0, 1, 2]; true 1 → 1/2
        [0.1, 0.3, 0.3, 0.3],    # three-way tie → [1, 2, 3]; true 3 → 1/3
        [0.25, 0.25, 0.25, 0.25],  # all tied → [0, 1, 2]; true 3 → 0
        [0.7, 0.1, 0.1, 0.1],    # true 0 → 1
        [0.0, 0.0, 0.2, 0.8],    # → [3, 2, 0]; true 0 → 1/3
    ])
    labels = [1, 3, 3, 0, 0]
    assert M.top_k(probs, 3).tolist() == [[0, 1, 2], [1, 2, 3], [0, 1, 2], [0, 1, 2], [3, 2, 0]]
    m = M.single_label_metrics(probs, labels, list("abcd"), extra=("map@3", "map@2"))
    assert m["map@3"] == pytest.approx((0.5 + 1 / 3 + 0 + 1 + 1 / 3) / 5)
    assert m["map@2"] == pytest.approx((0.5 + 0 + 0 + 1 + 0) / 5)


def test_auc_and_average_precision_golden():
    # positives score 0.35 and 0.8, negatives 0.1 and 0.4: 3 of 4 pairs ordered → AUC 0.75
    assert M.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # AP = (1/1 + 2/3)/2: ranks 0.8 (pos), 0.4 (neg), 0.35 (pos)
    assert M.average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx((1 + 2 / 3) / 2)
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    m = M.single_label_metrics(probs, [0, 0, 1, 1], ["0", "1"])
    assert m["auc"] == pytest.approx(0.75) and m["accuracy"] == pytest.approx(0.75)
    assert math.isnan(M.roc_auc([0.1, 0.2], [1, 1]))  # one class only: undefined, not 0.5


def test_metric_names_and_directions():
    assert M.greater_is_better("map@3") and M.greater_is_better("auc") and not M.greater_is_better("log_loss")
    assert M.map_k("map@12") == 12 and M.map_k("map@0") is None and M.map_k("mapk") is None
    with pytest.raises(ValueError):
        M.greater_is_better("rmse")


def test_config_accepts_map_at_k_and_auc_and_refuses_others():
    from kaggle_kit.config import ConfigError, load_config

    assert load_config(None, ["task.metric='map@3'"]).task.metric == "map@3"
    assert load_config(None, ["task.metric='auc'"]).task.metric == "auc"
    with pytest.raises(ConfigError, match="map@K"):
        load_config(None, ["task.metric='map@'"])


# --------------------------------------------------------------------------- labels and ids


def test_composed_label_keeps_NA_as_text(tmp_path):
    p = _csv(tmp_path / "train.csv", ["row_id", "StudentExplanation", "Category", "Misconception"], [
        [7, "because", "True_Correct", "NA"], [8, "half", "False_Misconception", "Incomplete"],
        [9, "", "True_Correct", "NA"], [10, "null", "False_Neither", "NA"],
    ])
    ds = read_dataset(p, "classification", text_columns=("StudentExplanation",), label_columns=("Category", "Misconception"),
                      label_join=":", id_column="row_id")
    assert ds.kind == "classification"
    assert ds.label_names == ["False_Misconception:Incomplete", "False_Neither:NA", "True_Correct:NA"]
    assert [ds.label_names[r.label] for r in ds.rows] == ["True_Correct:NA", "False_Misconception:Incomplete",
                                                          "True_Correct:NA", "False_Neither:NA"]
    assert ds.ids == ["7", "8", "9", "10"] and ds.rows[3].prompt == ["null"]  # 'null' is text too
    empty = [p for p in ds.problems if "empty field" in p.reason]
    assert [p.id for p in empty] == ["9"] and "StudentExplanation" in empty[0].reason


def test_composed_label_with_empty_part_is_a_bad_row(tmp_path):
    from kaggle_kit.runtime.problems import DataError

    p = _csv(tmp_path / "train.csv", ["row_id", "text", "Category", "Misconception"],
             [[1, "a", "True_Correct", "NA"], [2, "b", "False_Neither", ""]])
    with pytest.raises(DataError, match="2"):
        read_dataset(p, "classification", label_columns=("Category", "Misconception"), label_join=":", id_column="row_id",
                     label_names=["True_Correct:NA", "False_Neither:NA"])


def test_missing_id_column_is_reported_not_silent(tmp_path):
    p = _csv(tmp_path / "test.csv", ["id", "text"], [[1, "a"], [2, "b"]])
    ds = read_dataset(p, "classification", id_column="row_id")
    assert not ds.has_id_column
    assert any("no id column 'row_id'" in p.reason for p in ds.problems)
    ds = read_dataset(p, "classification")
    assert ds.has_id_column and ds.ids == ["1", "2"]


# --------------------------------------------------------------------------- submissions from a sample

LABELS = ["False_Neither:NA", "True_Correct:NA", "True_Neither:NA", "False_Misconception:WNB"]


def test_topk_style_from_sample(tmp_path):
    sample = _csv(tmp_path / "sample_submission.csv", ["row_id", "Category:Misconception"],
                  [[36696, "True_Correct:NA False_Neither:NA True_Neither:NA"], [36697, "True_Correct:NA False_Neither:NA True_Neither:NA"]])
    spec = spec_from_sample(sample, LABELS)
    assert (spec.style, spec.id_column, spec.columns, spec.k) == ("topk", "row_id", ["Category:Misconception"], 3)
    out = tmp_path / "submission.csv"
    probs = [[0.1, 0.5, 0.3, 0.1], [0.25, 0.25, 0.25, 0.25]]
    write_submission(out, ["36696", "36697"], probs, spec, LABELS)
    rows = list(csv.reader(out.open()))
    assert rows == [["row_id", "Category:Misconception"], ["36696", "True_Correct:NA True_Neither:NA False_Neither:NA"],
                    ["36697", "False_Neither:NA True_Correct:NA True_Neither:NA"]]
    assert compare_with_sample(out, sample)["rows"] == 2
    assert spec_from_sample(sample, LABELS, top_k=2).k == 2


def test_positive_probability_style_from_sample(tmp_path):
    sample = _csv(tmp_path / "sample_submission.csv", ["row_id", "rule_violation"], [[2029, 0.5], [2030, 0.5]])
    spec = spec_from_sample(sample, ["0", "1"])
    assert (spec.style, spec.columns, spec.positive) == ("positive", ["rule_violation"], "1")
    out = write_submission(tmp_path / "s.csv", ["2029", "2030"], [[0.8, 0.2], [0.3, 0.7]], spec, ["0", "1"])
    assert [r[1] for r in csv.reader(out.open())][1:] == ["0.2000000000", "0.7000000000"]
    compare_with_sample(out, sample)
    with pytest.raises(SubmissionError, match="binary"):
        spec_from_sample(sample, ["a", "b", "c"])


def test_probability_columns_follow_the_sample_order(tmp_path):
    sample = _csv(tmp_path / "sample.csv", ["id", "winner_model_b", "winner_model_a", "winner_tie"], [[1, 0.3, 0.3, 0.4]])
    spec = spec_from_sample(sample, ["winner_model_a", "winner_model_b", "winner_tie"])
    assert spec.style == "probs" and spec.columns == ["winner_model_b", "winner_model_a", "winner_tie"]
    out = write_submission(tmp_path / "s.csv", ["1"], [[0.7, 0.2, 0.1]], spec, ["winner_model_a", "winner_model_b", "winner_tie"])
    assert list(csv.reader(out.open()))[1] == ["1", "0.2000000000", "0.7000000000", "0.1000000000"]
    bad = _csv(tmp_path / "bad.csv", ["id", "x", "y"], [[1, 0.5, 0.5]])
    with pytest.raises(SubmissionError, match="not the task's labels"):
        spec_from_sample(bad, ["a", "b"])


def test_single_label_style_from_sample(tmp_path):
    sample = _csv(tmp_path / "sample.csv", ["id", "winner"], [["a1", "model_a"], ["a2", "model_a"]])
    spec = spec_from_sample(sample, ["model_a", "model_b"])
    assert spec.style == "label" and spec.columns == ["winner"]
    out = write_submission(tmp_path / "s.csv", ["a1", "a2"], [[0.3, 0.7], [0.6, 0.4]], spec, ["model_a", "model_b"])
    assert [r[1] for r in csv.reader(out.open())] == ["winner", "model_b", "model_a"]
    compare_with_sample(out, sample)


def test_compare_with_sample_catches_wrong_ids_columns_and_types(tmp_path):
    sample = _csv(tmp_path / "sample.csv", ["row_id", "rule_violation"], [[1, 0.5], [2, 0.5]])
    wrong_ids = _csv(tmp_path / "a.csv", ["row_id", "rule_violation"], [["row0", 0.1], ["row1", 0.2]])
    with pytest.raises(SubmissionError, match="ids differ"):
        compare_with_sample(wrong_ids, sample)
    wrong_col = _csv(tmp_path / "b.csv", ["id", "rule_violation"], [[1, 0.1], [2, 0.2]])
    with pytest.raises(SubmissionError, match="columns"):
        compare_with_sample(wrong_col, sample)
    wrong_type = _csv(tmp_path / "c.csv", ["row_id", "rule_violation"], [[1, "yes"], [2, 0.2]])
    with pytest.raises(SubmissionError, match="numbers"):
        compare_with_sample(wrong_type, sample)


def test_topk_validation_refuses_unknown_and_too_many_labels(tmp_path):
    spec = SubmissionSpec("topk", "row_id", ["Category:Misconception"], k=2)
    from kaggle_kit.runtime.submission import validate_table

    with pytest.raises(SubmissionError, match="holds 3 labels"):
        validate_table(spec.header, [["1", "a b c"]], ["1"], spec, ["a", "b", "c"])
    with pytest.raises(SubmissionError, match="not among"):
        validate_table(spec.header, [["1", "a z"]], ["1"], spec, ["a", "b", "c"])


def test_default_spec_follows_the_metric():
    assert default_spec("classification", "classification", LABELS, id_column="row_id", metric="map@3",
                        label_columns=["Category", "Misconception"], label_join=":").header == ["row_id", "Category:Misconception"]
    spec = default_spec("classification", "classification", ["0", "1"], id_column="row_id", metric="auc", label_columns=["rule_violation"])
    assert (spec.style, spec.header, spec.positive) == ("positive", ["row_id", "rule_violation"], "1")
    assert default_spec("lmsys", "pairwise", ["winner_model_a", "winner_model_b", "winner_tie"]).style == "lmsys"


# --------------------------------------------------------------------------- ambiguous samples: the metric decides


def _binary_sample(tmp_path, cells, name="sample_submission.csv"):
    return _csv(tmp_path / name, ["row_id", "target"], [[100 + n, c] for n, c in enumerate(cells)])


PROBS_01 = [[0.8, 0.2], [0.3, 0.7], [0.45, 0.55]]


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "micro_f1"])
@pytest.mark.parametrize("cells", [[0, 1, 0], [0, 0, 0], ["1", "0", "1"], ["0.0", "1.0", "0.0"]])
def test_zero_one_sample_with_a_hard_label_metric_writes_labels(tmp_path, metric, cells):
    """A 0/1 sample of a 0/1 task used to give the positive probability whatever the metric: an accuracy
    or F1 task then submitted 0.2, 0.7, 0.55 where Kaggle compares labels."""
    sample = _binary_sample(tmp_path, cells)
    spec = spec_from_sample(sample, ["0", "1"], metric=metric)
    assert (spec.style, spec.columns, spec.k) == ("label", ["target"], 1)
    assert metric in spec.reason and "label" in spec.reason
    out = write_submission(tmp_path / "s.csv", ["100", "101", "102"], PROBS_01, spec, ["0", "1"])
    assert [r[1] for r in csv.reader(out.open())] == ["target", "0", "1", "1"]
    compare_with_sample(out, sample)
    assert SubmissionSpec.from_dict(spec.to_dict()).reason == spec.reason  # recorded in the manifest's task.submission


@pytest.mark.parametrize("metric", ["auc", "average_precision", "log_loss"])
@pytest.mark.parametrize("cells", [[0, 1, 0], ["0.0", "1.0", "1.0"]])
def test_zero_one_sample_with_a_probability_metric_writes_the_positive_probability(tmp_path, metric, cells):
    spec = spec_from_sample(_binary_sample(tmp_path, cells), ["0", "1"], metric=metric)
    assert (spec.style, spec.positive) == ("positive", "1") and metric in spec.reason and "probability" in spec.reason
    out = write_submission(tmp_path / "s.csv", ["100", "101", "102"], PROBS_01, spec, ["0", "1"])
    assert [r[1] for r in csv.reader(out.open())][1:] == ["0.2000000000", "0.7000000000", "0.5500000000"]


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "auc", "log_loss", "map@2", ""])
def test_probability_cells_stay_a_probability_whatever_the_metric(tmp_path, metric):
    """0.5 cells cannot be labels: the sample decides, not the metric (unchanged behaviour)."""
    spec = spec_from_sample(_binary_sample(tmp_path, [0.5, 0.5, 0.5]), ["0", "1"], metric=metric)
    assert (spec.style, spec.positive, spec.reason) == ("positive", "1", "")
    spec = spec_from_sample(_binary_sample(tmp_path, [0, 1, 0]), ["neg", "pos"], metric=metric)  # numbers, not label names
    assert (spec.style, spec.positive) == ("positive", "pos")


def test_zero_one_sample_ranked_metric_and_empty_sample(tmp_path):
    spec = spec_from_sample(_binary_sample(tmp_path, [0, 1, 0]), ["0", "1"], metric="map@2")
    assert (spec.style, spec.k) == ("topk", 2) and "map@2" in spec.reason
    assert spec_from_sample(_binary_sample(tmp_path, [0, 1, 0]), ["0", "1"], metric="map@1").style == "label"
    empty = _binary_sample(tmp_path, [], name="empty.csv")  # no rows: nothing to tell labels from probabilities
    assert spec_from_sample(empty, ["no", "yes"], metric="accuracy").style == "label"
    assert spec_from_sample(empty, ["no", "yes"], metric="auc").style == "positive"


def test_zero_one_sample_without_a_metric_is_refused_not_guessed(tmp_path):
    sample = _binary_sample(tmp_path, [0, 1, 0])
    with pytest.raises(SubmissionError, match=r"sample_submission.csv: .*target.*task.metric"):
        spec_from_sample(sample, ["0", "1"])
    with pytest.raises(SubmissionError, match="task.metric = 'rmse'"):
        spec_from_sample(sample, ["0", "1"], metric="rmse")


def test_numeric_labels_of_a_multiclass_task_are_labels_not_a_refused_probability(tmp_path):
    """Same kind: ratings 1..3 in the sample were read as 'one probability per row' and refused."""
    sample = _csv(tmp_path / "sample.csv", ["id", "rating"], [[1, 2], [2, 2]])
    spec = spec_from_sample(sample, ["1", "2", "3"], metric="log_loss")
    assert spec.style == "label" and "3 classes" in spec.reason
    out = write_submission(tmp_path / "s.csv", ["1", "2"], [[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]], spec, ["1", "2", "3"])
    assert [r[1] for r in csv.reader(out.open())] == ["rating", "3", "1"]


def test_single_label_sample_of_a_map_task_writes_k_labels(tmp_path):
    sample = _csv(tmp_path / "sample.csv", ["row_id", "Category:Misconception"], [[1, LABELS[0]], [2, LABELS[1]]])
    spec = spec_from_sample(sample, LABELS, metric="map@3")
    assert (spec.style, spec.k) == ("topk", 3) and "map@3" in spec.reason
    assert spec_from_sample(sample, LABELS, metric="accuracy").style == "label"


def test_the_decision_is_recorded_at_training_and_logged_at_prediction(tmp_path):
    from types import SimpleNamespace

    from kaggle_kit.config import load_config
    from kaggle_kit.runtime.submission import resolve_submission
    from kaggle_kit.train.task import submission_spec

    sample = _binary_sample(tmp_path, [0, 1, 0])
    cfg = load_config(None, [f"submission.sample='{sample}'", "task.metric='accuracy'", "data.id_column='row_id'"])
    saved = submission_spec(cfg, SimpleNamespace(format="classification"), "classification", ["0", "1"])
    assert saved["style"] == "label" and "accuracy" in saved["reason"]  # task.submission in kit_manifest.json
    task = {"kind": "classification", "metric": "accuracy", "submission": saved}
    test = _csv(tmp_path / "test.csv", ["row_id", "text"], [[100, "a"]])
    spec, path, note = resolve_submission(task, ["0", "1"], "classification", test)  # the sample lies beside the test file
    assert spec.style == "label" and path == sample
    assert "found beside the test file" in note and "accuracy" in note and "label" in note
    spec, _, note = resolve_submission(dict(task, metric="auc"), ["0", "1"], "classification", test)
    assert spec.style == "positive" and "auc" in note

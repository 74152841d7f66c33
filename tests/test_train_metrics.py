"""Metrics (numpy) and the padding collator: fast, no model."""
from __future__ import annotations

import math

import numpy as np
import pytest

from kaggle_kit.runtime import metrics as M
from kaggle_kit.train.data import PadCollator, label_target


def test_single_label_metrics_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
    labels = [0, 1, 1, 2]
    m = M.single_label_metrics(probs, labels, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["micro_f1"] == pytest.approx(0.5)  # single-label micro-F1 = accuracy
    expected_ll = -(math.log(0.7) + math.log(0.8) + math.log(0.3) + math.log(0.1)) / 4
    assert m["log_loss"] == pytest.approx(expected_ll)
    # per class: a: tp1 fp1 fn0 -> f1 2/3; b: tp1 fp0 fn1 -> 2/3; c: tp0 fp1 fn1 -> 0
    assert m["per_class"]["a"]["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert m["per_class"]["b"] == {"support": 2, "predicted": 1, "correct": 1, "f1": pytest.approx(2 / 3)}


def test_log_loss_clips_zero_probabilities():
    assert math.isfinite(M.log_loss(np.array([[1.0, 0.0]]), [1]))
    assert M.log_loss(np.array([[1.0, 0.0]]), [1]) == pytest.approx(-math.log(1e-15), rel=1e-3)


def test_multi_label_metrics_by_hand():
    probs = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.4], [0.8, 0.8, 0.1]])
    targets = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0]])
    m = M.multi_label_metrics(probs, targets, ["x", "y", "z"])
    assert m["subset_accuracy"] == pytest.approx(1 / 3)
    # cells: tp = x2 y1 z1 = 4; fp = y1 = 1; fn = z1 = 1 -> micro 8/10
    assert m["micro_f1"] == pytest.approx(0.8)
    assert m["per_class"]["y"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 2 / 3) / 3)
    bce = -np.mean(targets * np.log(probs) + (1 - targets) * np.log(1 - probs))
    assert m["log_loss"] == pytest.approx(bce)


def test_compute_metrics_from_logits_and_confusion():
    logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    m = M.compute_metrics(logits, [0, 1, 1], label_names=["n", "p"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    cm = M.confusion_matrix([0, 1, 1], [0, 1, 0], 2)
    assert cm.tolist() == [[1, 0], [1, 1]]


def test_pad_collator_dynamic_and_fixed():
    items = [{"input_ids": [5, 6, 7], "labels": 1}, {"input_ids": [8], "labels": 0}]
    b = PadCollator(pad_token_id=0)(items)
    assert b["input_ids"].shape == (2, 8)  # rounded up to a multiple of 8
    assert b["attention_mask"].sum().item() == 4
    assert b["input_ids"][1].tolist()[:2] == [8, 0]
    fixed = PadCollator(pad_token_id=0, pad_to=32)(items)
    assert fixed["input_ids"].shape == (2, 32)
    ml = PadCollator(pad_token_id=0, multilabel=True)([{"input_ids": [1], "labels": label_target([0, 2], 3, True)}])
    assert ml["labels"].dtype.is_floating_point and ml["labels"].tolist() == [[1.0, 0.0, 1.0]]


# --------------------------------------------------------------------------- metrics undefined on the rows (issue 21)


def test_one_class_binary_rows_report_auc_undefined_with_the_reason():
    """A binary fold holding one class: ROC AUC and average precision are undefined, said so with the
    reason (never a bare NaN that reads like a diverged model); the other metrics are still computed."""
    probs = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    m = M.single_label_metrics(probs, [0, 0, 0], ["neg", "pos"])
    flat = M.scalar_metrics(m)
    assert "auc" not in flat and "average_precision" not in flat
    assert all(math.isfinite(v) for v in flat.values()), flat
    assert flat["accuracy"] == pytest.approx(2 / 3) and math.isfinite(flat["log_loss"])
    for name in ("auc", "average_precision"):
        assert "one class" in m["undefined"][name] and "neg" in m["undefined"][name] and "3 rows" in m["undefined"][name]
    both = M.single_label_metrics(probs, [0, 0, 1], ["neg", "pos"])
    assert both["undefined"] == {} and both["auc"] == pytest.approx(1.0)


def test_multilabel_columns_with_one_class_are_left_out_by_name():
    probs = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.4], [0.8, 0.8, 0.1]])
    some = M.multi_label_metrics(probs, np.array([[1, 0, 1], [0, 0, 1], [1, 0, 0]]), ["x", "y", "z"])
    assert some["column_average"]["columns"] == 2 and set(some["column_average"]["left_out"]) == {"y"}
    assert "only 0" in some["column_average"]["left_out"]["y"]
    assert some["auc"] == pytest.approx(np.mean([M.roc_auc(probs[:, 0], [1, 0, 1]), M.roc_auc(probs[:, 2], [1, 1, 0])]))
    assert "auc" not in some["undefined"]
    none = M.multi_label_metrics(probs, np.array([[1, 0, 1], [1, 0, 1], [1, 0, 1]]), ["x", "y", "z"])
    assert "auc" not in M.scalar_metrics(none) and "every label column" in none["undefined"]["auc"]
    assert all(math.isfinite(v) for v in M.scalar_metrics(none).values())


def test_no_rows_is_undefined_not_zero():
    m = M.single_label_metrics(np.zeros((0, 4)), [], list("abcd"), extra=("map@3",))
    assert M.scalar_metrics(m) == {}
    assert set(m["undefined"]) >= {"log_loss", "accuracy", "macro_f1", "map@3"}
    assert all("no rows" in why for why in m["undefined"].values())


def test_undefined_metric_of_the_rows_names_the_reason():
    assert M.undefined_reason("auc", [0, 0, 0], label_names=["neg", "pos"]) is not None
    assert M.undefined_reason("log_loss", [0, 0, 0], label_names=["neg", "pos"]) is None
    assert M.undefined_reason("auc", [0, 1, 0], label_names=["neg", "pos"]) is None


def test_eval_line_says_undefined_instead_of_nan():
    from kaggle_kit.train.loglines import metric_text

    text = metric_text({"eval_log_loss": 0.61, "eval_loss": 0.61, "eval_accuracy": 0.7},
                       "log_loss", undefined={"auc": "the 12 rows hold one class only (neg)"})
    assert text.startswith("log_loss 0.6100") and "auc undefined (the 12 rows hold one class only (neg))" in text
    assert "nan" not in text

"""Submission writers and validation: every kind of broken file is rejected with a clear message."""
from __future__ import annotations

import numpy as np
import pytest

from kaggle_kit.runtime.submission import (
    SubmissionError, validate_file, write_classification, write_lmsys, write_submission, write_wsdm,
)

IDS = ["10", "11", "12"]
HEADER = "id,winner_model_a,winner_model_b,winner_tie\n"
GOOD = [["10", "0.2", "0.5", "0.3"], ["11", "0.1", "0.1", "0.8"], ["12", "0.4", "0.4", "0.2"]]


def _write(path, header, rows):
    path.write_text(header + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_lmsys_writer_roundtrip_and_normalises(tmp_path):
    probs = np.array([[0.4, 0.2, 0.2], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    out = write_lmsys(tmp_path / "sub.csv", IDS, probs)
    validate_file(out, IDS, "lmsys")
    lines = out.read_text().splitlines()
    assert lines[0] == HEADER.strip()
    vals = np.array([[float(x) for x in line.split(",")[1:]] for line in lines[1:]])
    assert np.allclose(vals.sum(axis=1), 1.0, atol=1e-9)
    assert np.allclose(vals[0], [0.5, 0.25, 0.25])
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]  # the temporary file was renamed away


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("multilabel", [False, True])
def test_normalize_refuses_nonfinite_rows_instead_of_hiding_them(bad, multilabel, tmp_path):
    """A NaN/inf row used to become uniform (0.5 for multilabel) without a word; now the caller must decide."""
    from kaggle_kit.runtime.submission import SubmissionError, normalize_probabilities

    probs = np.array([[0.4, 0.2, 0.4], [0.2, bad, 0.5], [0.1, 0.1, 0.8]])
    with pytest.raises(SubmissionError, match=r"1 row\(s\) of probabilities hold NaN/inf \(row positions \[1\]"):
        normalize_probabilities(probs, multilabel=multilabel)
    with pytest.raises(SubmissionError, match="NaN/inf"):
        write_lmsys(tmp_path / "sub.csv", IDS, probs)
    assert not (tmp_path / "sub.csv").exists()
    with pytest.raises(SubmissionError, match="all zero"):
        normalize_probabilities(np.array([[0.0, -1.0, 0.0]]))


def test_good_file_passes(tmp_path):
    validate_file(_write(tmp_path / "s.csv", HEADER, GOOD), IDS, "lmsys")


@pytest.mark.parametrize("case,rows,header,message", [
    ("missing id", GOOD[:2], HEADER, "missing"),
    ("duplicate id", GOOD + [GOOD[0]], HEADER, "more than once"),
    ("extra id", GOOD + [["99", "0.3", "0.3", "0.4"]], HEADER, "not in the test file"),
    ("wrong order", [GOOD[1], GOOD[0], GOOD[2]], HEADER, "order"),
    ("nan", [GOOD[0], ["11", "nan", "0.5", "0.5"], GOOD[2]], HEADER, "NaN"),
    ("out of range", [GOOD[0], ["11", "1.5", "-0.5", "0.0"], GOOD[2]], HEADER, "outside [0, 1]"),
    ("sum", [GOOD[0], ["11", "0.5", "0.5", "0.5"], GOOD[2]], HEADER, "sum to 1"),
    ("not a number", [GOOD[0], ["11", "abc", "0.5", "0.5"], GOOD[2]], HEADER, "not numbers"),
    ("columns", GOOD, "id,a,b,tie\n", "columns"),
    ("cell count", [GOOD[0], ["11", "0.5", "0.5"], GOOD[2]], HEADER, "cells"),
])
def test_broken_lmsys_files_rejected(tmp_path, case, rows, header, message):
    path = _write(tmp_path / "s.csv", header, rows)
    with pytest.raises(SubmissionError) as err:
        validate_file(path, IDS, "lmsys")
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_empty_file_rejected(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("")
    with pytest.raises(SubmissionError, match="empty"):
        validate_file(path, IDS, "lmsys")


def test_wsdm_writer_and_bad_label(tmp_path):
    out = write_wsdm(tmp_path / "w.csv", IDS, np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]))
    assert out.read_text().splitlines() == ["id,winner", "10,model_a", "11,model_b", "12,model_a"]
    validate_file(out, IDS, "wsdm", ["model_a", "model_b"])
    bad = _write(tmp_path / "b.csv", "id,winner\n", [["10", "model_a"], ["11", "model_c"], ["12", "model_b"]])
    with pytest.raises(SubmissionError, match="model_c"):
        validate_file(bad, IDS, "wsdm", ["model_a", "model_b"])


def test_classification_writers(tmp_path):
    probs = np.array([[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]])
    out = write_classification(tmp_path / "c.csv", IDS, probs, ["neg", "pos"])
    validate_file(out, IDS, "probs", ["neg", "pos"])
    out2 = write_classification(tmp_path / "l.csv", IDS, probs, ["neg", "pos"], as_label=True)
    assert out2.read_text().splitlines()[1:] == ["10,pos", "11,neg", "12,neg"]


def test_writer_refuses_ids_that_do_not_match_the_test_file(tmp_path):
    with pytest.raises(SubmissionError, match="missing"):
        write_submission(tmp_path / "x.csv", IDS[:2], np.full((2, 3), 1 / 3), "lmsys", expected_ids=IDS)
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(SubmissionError, match="ids but"):
        write_lmsys(tmp_path / "y.csv", IDS, np.full((2, 3), 1 / 3))

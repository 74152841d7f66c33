"""Competition file readers: real samples, messy cells, bad labels, every format."""
from __future__ import annotations

import csv
import json

import pytest

from kaggle_kit.runtime.formats import LMSYS_LABELS, WSDM_LABELS, read_dataset, swap_permutation
from kaggle_kit.runtime.problems import DataError

LMSYS_COLS = ["id", "model_a", "model_b", "prompt", "response_a", "response_b"] + LMSYS_LABELS


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def lmsys_row(rid, prompt='["hi"]', a='["a"]', b='["b"]', label=(1, 0, 0)):
    return [rid, "m1", "m2", prompt, a, b, *label]


# --------------------------------------------------------------------------- real files


def test_real_lmsys_sample(shared_data):
    ds = read_dataset(shared_data / "lmsys-sample" / "train_sample.csv")
    assert len(ds) == 60 and ds.format == "lmsys" and ds.has_labels
    assert ds.label_counts() == {"winner_model_a": 16, "winner_model_b": 20, "winner_tie": 24}
    assert "winner_model_a" in ds.detected
    assert all(isinstance(t, str) for r in ds.rows for c in (r.prompt, r.response_a, r.response_b) for t in c)
    assert max(len(r.prompt) for r in ds.rows) > 1  # multi-turn rows keep their turns
    assert all(len(r.prompt) == len(r.response_a) == len(r.response_b) for r in ds.rows)


def test_real_lmsys_test_csv(shared_data):
    ds = read_dataset(shared_data / "lmsys-sample" / "test.csv")
    assert len(ds) == 3 and ds.format == "lmsys" and not ds.has_labels
    assert [r.id for r in ds.rows] == ["136060", "211333", "1233961"]
    assert all(r.label is None for r in ds.rows)
    assert "test data" in ds.detected


def test_real_hh_rlhf(shared_data):
    ds = read_dataset(shared_data / "hh-rlhf" / "harmless-base_test_part1.jsonl.gz")
    assert ds.format == "hh-rlhf" and len(ds) > 1000
    counts = ds.label_counts()
    assert set(counts) == set(WSDM_LABELS) and min(counts.values()) > 0.35 * len(ds)  # A/B order drawn
    r = ds.rows[0]
    assert r.prompt[0].startswith("Human:") and r.response_a != r.response_b
    again = read_dataset(shared_data / "hh-rlhf" / "harmless-base_test_part1.jsonl.gz")
    assert [x.label for x in again.rows] == [x.label for x in ds.rows]  # fixed seed


def test_real_instructions(shared_data):
    ds = read_dataset(shared_data / "instructions" / "self-instruct_seed_tasks.jsonl")
    assert ds.format == "instructions" and ds.kind == "instructions" and len(ds) >= 175
    assert all(r.response_a for r in ds.rows)


# --------------------------------------------------------------------------- messy cells


def test_null_turns_surrogates_and_non_json_cells(tmp_path):
    p = write_csv(tmp_path / "t.csv", LMSYS_COLS, [
        lmsys_row(1, prompt='["first", null]', a='["x", "y"]', b='["u", "v"]'),
        lmsys_row(2, prompt='["smile \\ud83d here"]'),
        lmsys_row(3, a="just plain text"),
        lmsys_row(4, b='["unterminated'),
    ])
    ds = read_dataset(p)
    assert len(ds) == 4
    r1, r2, r3, r4 = ds.rows
    assert r1.prompt == ["first", ""]
    assert r2.prompt == ["smile \ufffd here"]
    assert r3.response_a == ["just plain text"]
    assert r4.response_b == ['["unterminated']
    reasons = {(p.id, p.reason.split(";")[0]) for p in ds.problems}
    assert ("1", "null value read as empty text") in reasons
    assert ("2", "lone surrogate character(s) replaced with U+FFFD") in reasons
    assert ("3", "not a JSON list of turns") in reasons
    assert ("4", "not a valid JSON list of turns") in reasons


def test_undecodable_bytes_replaced_and_reported(tmp_path):
    p = tmp_path / "t.csv"
    head = ",".join(LMSYS_COLS) + "\n"
    p.write_bytes(head.encode() + b'1,m1,m2,"[""caf\xe9""]","[""a""]","[""b""]",0,1,0\n')
    ds = read_dataset(p)
    assert ds.rows[0].prompt == ["caf\ufffd"]
    assert any("undecodable bytes" in pr.reason for pr in ds.problems)


def test_empty_file_and_header_only(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_dataset(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text(",".join(LMSYS_COLS) + "\n")
    with pytest.raises(DataError, match="no data rows"):
        read_dataset(tmp_path / "h.csv")
    with pytest.raises(DataError, match="not found"):
        read_dataset(tmp_path / "missing.csv")


def test_missing_columns_message(tmp_path):
    p = write_csv(tmp_path / "t.csv", ["id", "prompt", "response_a", "winner_model_a"], [[1, '["p"]', '["a"]', 1]])
    with pytest.raises(DataError) as err:
        read_dataset(p)
    msg = str(err.value)
    assert "format 'lmsys'" in msg and "missing column(s) ['response_b']" in msg
    assert "Found columns: ['id', 'prompt', 'response_a', 'winner_model_a']" in msg
    assert "Expected: ['id', 'prompt', 'response_a', 'response_b']" in msg
    with pytest.raises(DataError, match="format 'wsdm'"):
        read_dataset(p, format="wsdm")


def test_not_one_hot_labels_reported_by_id_and_skip_counts(tmp_path):
    p = write_csv(tmp_path / "t.csv", LMSYS_COLS, [
        lmsys_row("ok1"), lmsys_row("two", label=(1, 1, 0)), lmsys_row("none", label=(0, 0, 0)),
        lmsys_row("ok2", label=(0, 0, 1)), lmsys_row("word", label=("yes", 0, 0)),
    ])
    with pytest.raises(DataError) as err:
        read_dataset(p)
    msg = str(err.value)
    assert "3 row(s) with bad labels" in msg and "two" in msg and "none" in msg and "word" in msg
    assert "skip_bad_rows" in msg
    ds = read_dataset(p, skip_bad_rows=True)
    assert [r.id for r in ds.rows] == ["ok1", "ok2"] and ds.skipped == 3
    assert {pr.id for pr in ds.problems if "one-hot" in pr.reason} == {"two", "none", "word"}
    assert ds.label_counts() == {"winner_model_a": 1, "winner_model_b": 0, "winner_tie": 1}


def test_test_rows_never_dropped(tmp_path):
    cols = ["id", "prompt", "response_a", "response_b"]
    p = write_csv(tmp_path / "test.csv", cols, [
        [1, '["a", null]', '["x"]', '["y"]'], [2, "", "", ""], [3, '["broken', "plain", '["\\udfff"]'], [4, "[]", "[]", "[]"],
    ])
    ds = read_dataset(p, skip_bad_rows=True)
    assert [r.id for r in ds.rows] == ["1", "2", "3", "4"] and ds.skipped == 0 and not ds.has_labels
    assert len(ds.problems) >= 4


# --------------------------------------------------------------------------- WSDM, classification


def _wsdm_records():
    return [
        {"id": "w1", "prompt": "Hola", "response_a": "A1", "response_b": "B1", "winner": "model_a", "language": "Spanish"},
        {"id": "w2", "prompt": "Hi", "response_a": "A2", "response_b": "B2", "winner": "model_b", "language": "English"},
        {"id": "w3", "prompt": "Привет", "response_a": None, "response_b": "B3", "winner": "model_b", "language": "Russian"},
    ]


def test_wsdm_parquet_and_csv(tmp_path):
    import pandas as pd

    pd.DataFrame(_wsdm_records()).to_parquet(tmp_path / "train.parquet", index=False)
    pd.DataFrame(_wsdm_records()).to_csv(tmp_path / "train.csv", index=False)
    for name in ("train.parquet", "train.csv"):
        ds = read_dataset(tmp_path / name)
        assert ds.format == "wsdm" and ds.label_names == WSDM_LABELS
        assert [r.label for r in ds.rows] == [0, 1, 1]
        assert ds.rows[0].prompt == ["Hola"] and ds.rows[0].meta["language"] == "Spanish"
        assert ds.rows[2].response_a == [""] and any(p.id == "w3" for p in ds.problems)
    bad = _wsdm_records() + [{"id": "w4", "prompt": "p", "response_a": "a", "response_b": "b", "winner": "tie"}]
    pd.DataFrame(bad).to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(DataError, match="w4.*'tie'|'tie'.*"):
        read_dataset(tmp_path / "bad.parquet")


def test_classification_single_and_multilabel(tmp_path):
    p = write_csv(tmp_path / "c.csv", ["id", "text", "label"], [[1, "good", "pos"], [2, "bad", "neg"], [3, "fine", "pos"]])
    ds = read_dataset(p)
    assert ds.format == "classification" and ds.kind == "classification"
    assert ds.label_names == ["neg", "pos"] and [r.label for r in ds.rows] == [1, 0, 1]
    with pytest.raises(DataError, match="'meh' is not one of the task's labels"):
        read_dataset(write_csv(tmp_path / "c2.csv", ["id", "text", "label"], [[1, "x", "meh"]]), label_names=["neg", "pos"])
    # several 0/1 columns
    p = write_csv(tmp_path / "m.csv", ["id", "title", "body", "toxic", "spam"], [[1, "t", "b", 1, 0], [2, "t", "b", 1, 1], [3, "t", "b", 0, 0]])
    ds = read_dataset(p, format="classification", text_columns=("title", "body"), label_columns=("toxic", "spam"))
    assert ds.kind == "multilabel" and ds.label_names == ["toxic", "spam"]
    assert [r.label for r in ds.rows] == [[0], [0, 1], []] and ds.rows[0].prompt == ["t", "b"]
    # a list column
    p = write_csv(tmp_path / "l.csv", ["id", "text", "label"], [[1, "x", '["a", "b"]'], [2, "y", "b"]])
    ds = read_dataset(p, multilabel=True)
    assert ds.kind == "multilabel" and ds.label_names == ["a", "b"] and [r.label for r in ds.rows] == [[0, 1], [1]]
    # bad 0/1 value
    p = write_csv(tmp_path / "m2.csv", ["id", "text", "toxic", "spam"], [[1, "t", 2, 0]])
    with pytest.raises(DataError, match="0 or 1"):
        read_dataset(p, format="classification", label_columns=("toxic", "spam"))


def test_swap_permutation_and_row_swapped():
    assert swap_permutation(LMSYS_LABELS) == [1, 0, 2]
    assert swap_permutation(WSDM_LABELS) == [1, 0]
    from kaggle_kit.runtime.formats import Row

    r = Row("1", ["p"], ["a"], ["b"], 0).swapped([1, 0, 2])
    assert (r.response_a, r.response_b, r.label) == (["b"], ["a"], 1)


def test_json_and_jsonl_instructions(tmp_path):
    recs = [{"instruction": "Add", "input": "1+1", "output": "2"}, {"instruction": "Greet", "output": None}]
    (tmp_path / "i.json").write_text(json.dumps(recs))
    (tmp_path / "i.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\nnot json\n")
    ds = read_dataset(tmp_path / "i.json")
    assert ds.format == "instructions" and ds.rows[0].prompt == ["Add", "1+1"] and ds.rows[0].response_a == ["2"]
    ds = read_dataset(tmp_path / "i.jsonl")
    assert len(ds) == 2 and any("not valid JSON" in p.reason for p in ds.problems)

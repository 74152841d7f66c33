"""Pairwise rows whose responses become the same tokens after truncation: listed by inspect,
prepare and train, with what keeps them apart; train can skip them. Inputs made here: responses
sharing a long opening and differing only at the end (or only in the middle)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kaggle_kit.cli import main
from kaggle_kit.runtime.formats import Row

OPENING = "Here is a careful walkthrough of the whole procedure step by step with the reasoning. " * 12


def _lmsys(path, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "model_a", "model_b", "prompt", "response_a", "response_b", "winner_model_a", "winner_model_b", "winner_tie"])
        for rid, a, b, label in rows:
            w.writerow([rid, "m1", "m2", json.dumps(["Is 91 prime?"]), json.dumps([a]), json.dumps([b]),
                        int(label == 0), int(label == 1), int(label == 2)])
    return path


@pytest.fixture
def pairs(tmp_path):
    return _lmsys(tmp_path / "train.csv", [
        ("same-end", OPENING + "So 91 = 7 x 13, not prime.", OPENING + "So 91 is prime.", 0),      # apart only at the end
        ("middle", "Short. " + OPENING + "end", "Short! " + OPENING + "end", 1),                    # apart near the start
        ("equal", "Identical text.", "Identical text.", 2),                                          # really the same text
        ("short", "Yes, 7 x 13.", "No idea.", 1),
    ])


def _encoder(max_length=96, truncation="per_component"):
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec
    from kaggle_kit.models.tiny import build_tokenizer

    return Encoder(build_tokenizer(), PromptSpec(max_length=max_length, truncation=truncation), "pairwise")


def test_rows_listed_with_what_keeps_them_apart(pairs):
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.identical import identical_report

    rows = read_dataset(pairs).rows
    enc = _encoder()
    report = identical_report(enc, rows, enc.encode(rows))
    assert report["ids"] == ["same-end"]  # 'equal' has equal texts: not noise from truncation; 'middle' differs early
    fix = report["rows"][0]
    assert fix["truncations"] == ["head_tail"]  # keeping the ending tells them apart at the same length
    assert fix["max_length"] and fix["max_length"] > 96
    e = _encoder(fix["max_length"]).encode_one(rows[0])
    a, b = _encoder(fix["max_length"]).pieces(e)[1:]
    assert a != b
    ht = _encoder(truncation="head_tail")
    assert identical_report(ht, rows, ht.encode(rows))["count"] == 0


def test_inspect_and_prepare_report_them(pairs, tmp_path):
    r = CliRunner().invoke(main, ["data", "inspect", str(pairs), "--tokenizer", "tiny", "--max-length", "96", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    ident = data["truncation"]["per_component"]["identical_after_truncation"]
    assert ident["count"] == 1 and ident["ids"] == ["same-end"] and "head_tail" in ident["rows"][0]["fix"]
    assert data["truncation"]["head_tail"]["identical_after_truncation"]["count"] == 0
    r = CliRunner().invoke(main, ["data", "inspect", str(pairs), "--tokenizer", "tiny", "--max-length", "96"])
    assert "same-end" in r.output and "label noise" in r.output
    r = CliRunner().invoke(main, ["data", "prepare", str(pairs), "--tokenizer", "tiny", "--max-length", "96",
                                  "--out", str(tmp_path / "enc.jsonl")])
    assert r.exit_code == 0, r.output
    assert "same-end" in r.output and "skip_identical_after_truncation" in r.output


def test_train_lists_and_skips_them(pairs):
    from kaggle_kit.train.task import identical_training_rows

    from kaggle_kit.runtime.formats import read_dataset

    rows = read_dataset(pairs).rows
    lines = []
    kept = identical_training_rows(_encoder(), rows, False, lines.append)
    assert kept == rows and any("same-end" in ln and "head_tail" in ln for ln in lines)
    lines.clear()
    kept = identical_training_rows(_encoder(), rows, True, lines.append)
    assert [r.id for r in kept] == ["middle", "equal", "short"] and any("skipped 1" in ln for ln in lines)
    assert identical_training_rows(_encoder(truncation="head_tail"), rows, True, lines.append) == rows


def test_c07_case_is_listed(tmp_path):
    from pathlib import Path

    case = Path(__file__).resolve().parents[2] / "shared/cases/c07-identical-after-truncation/train.csv"
    if not case.is_file():
        pytest.skip("../shared/cases is absent")
    r = CliRunner().invoke(main, ["data", "inspect", str(case), "--tokenizer", "tiny", "--max-length", "256", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["truncation"]["per_component"]["identical_after_truncation"]["count"] >= 1


# --------------------------------------------------------------------------- kit data preview, every kind


def test_preview_every_task_kind(tmp_path, pairs, monkeypatch):
    import csv

    from kaggle_kit.data.synth import write_synth

    monkeypatch.chdir(tmp_path)  # the repository's kit.toml (data.format = "lmsys") would name every file's format

    def run(*args):
        r = CliRunner().invoke(main, ["data", "preview", *map(str, args), "--tokenizer", "tiny"])
        assert r.exit_code == 0, r.output
        return r.output

    out = run(pairs, "--rows", 1, "--set", "prompt.max_length=64")
    assert "── row same-end · 64 of max 64 tokens" in out and "<response_b>: " in out and "TRUNCATED" in out
    mc = write_synth("misconceptions", 3, tmp_path / "mc" / "train.csv")
    out = run(mc, "--rows", 2, "--set", "prompt.text_template='Q: {QuestionText} A: {StudentExplanation}'")
    assert out.count("── row ") == 2 and "Q: " in out and "kept QuestionText" in out
    ml = tmp_path / "ml.csv"
    with ml.open("w", newline="") as fh:
        csv.writer(fh).writerows([["id", "text", "toxic", "spam"], ["m1", "", 1, 0]])
    out = run(ml, "--format", "classification", "--set", "data.label_columns=['toxic','spam']", "--set", "task.kind='multilabel'")
    assert "── row m1" in out and "empty field 'text'" in out
    ins = tmp_path / "ins.jsonl"
    ins.write_text(json.dumps({"id": "i1", "instruction": "Say hi", "input": "", "output": "hi"}) + "\n")
    out = run(ins, "--json")
    assert json.loads(out)[0]["components"] == ["instruction", "output"]

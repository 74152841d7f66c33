"""`kit init --from-competition DIR` (issue 25): a competition's own files → decisions with evidence → a
kit.toml that trains and predicts a submission shaped like the sample, with no edits and no other flags.

The folders are built here from the competitions' published column layouts (LMSYS Chatbot Arena csv,
WSDM Cup parquet, MAP 2025, Jigsaw 2025 rules, a Jigsaw-toxic-style multi-label, a single-label
accuracy layout), plus layouts the kit does not support (an essay score, a retrieval target, a
generation target) and ambiguous ones.
"""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from kaggle_kit.cli import main

WORDS = ("apple river stone cloud quick green table music north paper light seven orange silver window garden "
         "number bridge yellow planet forest candle mirror ocean engine rabbit winter summer pencil rocket").split()


def _text(rng: random.Random, lo: int = 4, hi: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _csv(path: Path, header: list, rows: list) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _kit(*args, code: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


# --------------------------------------------------------------------------- layouts


def lmsys(d: Path, n: int = 30, m: int = 6) -> None:
    """LMSYS Chatbot Arena (llm-classification-finetuning): JSON-list cells, one-hot winner columns, model_[a/b] in
    train only, sample_submission.csv = id,winner_model_a,winner_model_b,winner_tie (the competition's data page)."""
    rng = random.Random(1)
    rows = []
    for i in range(n):
        win = [0, 0, 0]
        win[i % 3] = 1
        rows.append([30192 + i, "gpt-4", "claude-2", json.dumps([_text(rng)]), json.dumps([_text(rng), _text(rng)]),
                     json.dumps([_text(rng), _text(rng)]), *win])
    _csv(d / "train.csv", ["id", "model_a", "model_b", "prompt", "response_a", "response_b", *LMSYS_COLS], rows)
    test_ids = [136060 + 7 * i for i in range(m)]
    _csv(d / "test.csv", ["id", "prompt", "response_a", "response_b"],
         [[i, json.dumps([_text(rng)]), json.dumps([_text(rng)]), json.dumps([_text(rng)])] for i in test_ids])
    _csv(d / "sample_submission.csv", ["id", *LMSYS_COLS], [[i, 0.333333, 0.333333, 0.333333] for i in test_ids])


LMSYS_COLS = ["winner_model_a", "winner_model_b", "winner_tie"]


def wsdm(d: Path, n: int = 30, m: int = 6) -> None:
    """WSDM Cup multilingual chatbot arena: parquet, string (hash) ids, winner = model_a/model_b; model_[a/b] and
    language only in train, a boolean `scored` only in test, sample_submission.csv = id,winner (the competition's
    data page, as quoted in github.com/Ekaterina-Gorodkova/Project_DL README.md)."""
    import pandas as pd

    rng = random.Random(2)
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(n + m)]
    pd.DataFrame({"id": ids[:n], "prompt": [_text(rng) for _ in range(n)], "response_a": [_text(rng) for _ in range(n)],
                  "response_b": [_text(rng) for _ in range(n)], "winner": [("model_a", "model_b")[i % 2] for i in range(n)],
                  "model_a": ["gemma"] * n, "model_b": ["qwen"] * n, "language": ["English"] * n}).to_parquet(d / "train.parquet")
    pd.DataFrame({"id": ids[n:], "prompt": [_text(rng) for _ in range(m)], "response_a": [_text(rng) for _ in range(m)],
                  "response_b": [_text(rng) for _ in range(m)], "scored": [True] * m}).to_parquet(d / "test.parquet")
    _csv(d / "sample_submission.csv", ["id", "winner"], [[i, "model_a"] for i in ids[n:]])


MAP_LABELS = [("True_Correct", "NA"), ("False_Neither", "NA"), ("False_Misconception", "Incomplete"),
              ("True_Neither", "NA"), ("False_Misconception", "WNB")]


def map2025(d: Path, n: int = 30, m: int = 6) -> None:
    """MAP 2025: Category + Misconception (literal NA) → 'Category:Misconception', MAP@3 over 3 labels."""
    rng = random.Random(3)
    rows = []
    for i in range(n):
        cat, mis = MAP_LABELS[i % len(MAP_LABELS)]
        rows.append([i, 31772 + i % 3, "What fraction of the shape is shaded? " + _text(rng, 3, 6),
                     r"\( \frac{1}{3} \)", f"{cat} because {_text(rng, 8, 20)}", cat, mis])
    header = ["row_id", "QuestionId", "QuestionText", "MC_Answer", "StudentExplanation"]
    _csv(d / "train.csv", header + ["Category", "Misconception"], rows)
    test_ids = list(range(36696, 36696 + m))
    _csv(d / "test.csv", header, [[i, 31772, "What fraction? " + _text(rng, 3, 6), r"\( \frac{1}{3} \)", _text(rng, 8, 20)]
                                  for i in test_ids])
    _csv(d / "sample_submission.csv", ["row_id", "Category:Misconception"],
         [[i, "True_Correct:NA False_Neither:NA False_Misconception:Incomplete"] for i in test_ids])


def rules(d: Path, n: int = 30, m: int = 6) -> None:
    """Jigsaw 2025 (agile community rules): rule_violation 0/1, the sample a probability."""
    rng = random.Random(4)
    cols = ["body", "rule", "subreddit", "positive_example_1", "positive_example_2", "negative_example_1", "negative_example_2"]
    mk = lambda: [_text(rng, 10, 30), "No advertising: " + _text(rng, 3, 5), rng.choice(["AskReddit", "soccer"]),  # noqa: E731
                  _text(rng), _text(rng), _text(rng), _text(rng)]
    _csv(d / "train.csv", ["row_id", *cols, "rule_violation"], [[i, *mk(), i % 2] for i in range(n)])
    test_ids = list(range(2029, 2029 + m))
    _csv(d / "test.csv", ["row_id", *cols], [[i, *mk()] for i in test_ids])
    _csv(d / "sample_submission.csv", ["row_id", "rule_violation"], [[i, 0.5] for i in test_ids])


TOXIC = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def toxic(d: Path, n: int = 30, m: int = 6) -> None:
    """Multi-label (Jigsaw toxic comments layout, no preset): six 0/1 columns, a probability per column."""
    rng = random.Random(5)
    rows = [[f"{rng.getrandbits(64):016x}", _text(rng, 6, 20), *[int(rng.random() < 0.3) for _ in TOXIC]] for _ in range(n)]
    _csv(d / "train.csv", ["id", "comment_text", *TOXIC], rows)
    test_ids = [f"{rng.getrandbits(64):016x}" for _ in range(m)]
    _csv(d / "test.csv", ["id", "comment_text"], [[i, _text(rng, 6, 20)] for i in test_ids])
    _csv(d / "sample_submission.csv", ["id", *TOXIC], [[i, *[0.5] * 6] for i in test_ids])
    # an extra file, as the toxic competition published after it closed: its label columns are no candidates
    _csv(d / "test_labels.csv", ["id", *TOXIC], [[i, *[-1] * 6] for i in test_ids])
    (d / "notes.txt").write_text("not a table\n", encoding="utf-8")


SINGLE = ["007", "010", "NA", "None", "null"]


def single(d: Path, n: int = 30, m: int = 6) -> None:
    """Single label scored by accuracy (no preset): labels read as written (leading zeros, NA/None/null)."""
    rng = random.Random(6)
    _csv(d / "train.csv", ["id", "title", "text", "label"],
         [[f"{i:05d}", _text(rng, 2, 4), _text(rng, 10, 30), SINGLE[i % len(SINGLE)]] for i in range(n)])
    test_ids = [f"{90000 + i:05d}" for i in range(m)]
    _csv(d / "test.csv", ["id", "title", "text"], [[i, _text(rng, 2, 4), _text(rng, 10, 30)] for i in test_ids])
    _csv(d / "sample_submission.csv", ["id", "label"], [[i, "NA"] for i in test_ids])


LAYOUTS = {"lmsys": lmsys, "wsdm": wsdm, "map": map2025, "rules": rules, "toxic": toxic, "single": single}


@pytest.fixture
def comp(tmp_path, monkeypatch):
    """Build a layout in tmp/comp and work in tmp (the kit.toml is written to ./kit.toml)."""
    monkeypatch.chdir(tmp_path)

    def build(name, **kw):
        d = tmp_path / "comp"
        d.mkdir(exist_ok=True)
        (LAYOUTS[name] if isinstance(name, str) else name)(d, **kw)
        return d

    return build


def _decisions(output: str) -> dict:
    """The printed table → {decision: (value, evidence)} (columns split at runs of two spaces)."""
    import re

    out = {}
    for line in output.splitlines()[1:]:
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        if len(parts) == 3:
            out[parts[0]] = (parts[1], parts[2])
    return out


# --------------------------------------------------------------------------- decisions (fast)

EXPECTED = {  # layout: decision -> (value contains, evidence contains)
    "lmsys": {"id column": ("id", "the sample holds 6 of them, in the test file's order"), "task": ("pairwise (lmsys reader), 3 classes", "JSON lists"),
              "target": ("winner_model_a + winner_model_b + winner_tie", "3 output columns"),
              "metric": ("log_loss (guessed)", "one probability per class"), "submission": ("lmsys", "winner_tie")},
    "wsdm": {"files": ("train.parquet, test.parquet", "train.parquet (30 rows)"), "task": ("pairwise (wsdm reader), 2 classes", "model_a/model_b"),
             "metric": ("accuracy (guessed)", "winner label"), "submission": ("label", "[id, winner]")},
    "map": {"id column": ("row_id", "6 unique test ids"), "target": ("Category + Misconception", "joins train columns Category + Misconception with ':'"),
            "task": ("classification, 5 classes", "'True_Correct:NA'"), "inputs": ("text_template over 3", "skipped QuestionId (numbers)"),
            "metric": ("map@3 (guessed)", "3 space-separated labels"), "submission": ("topk, top 3", "[row_id, Category:Misconception]")},
    "rules": {"task": ("classification, 2 classes", "binary 0/1 column 'rule_violation'"), "metric": ("auc (guessed)", "probabilities ('0.5')"),
              "submission": ("positive, probability of class '1'", "[row_id, rule_violation]"), "inputs": ("text_template over 7", "body (p95")},
    "toxic": {"target": ("toxic + severe_toxic + … (6 columns)", "the sample's 6 output columns are train columns"), "task": ("multilabel, 6 classes", "multi-label, 6 0/1 columns"), "metric": ("auc (guessed)", "one probability per column"),
              "submission": ("multilabel", "[id, toxic, severe_toxic"), "files": ("train.csv, test.csv, sample_submission.csv", "ignored: test_labels.csv (6 rows, no candidates of the target), notes.txt")},
    "single": {"task": ("classification, 5 classes", "'007', '010', 'NA', 'None', 'null'"), "metric": ("accuracy (guessed)", "single labels ('NA')"),
               "submission": ("label", "[id, label]")},
}


@pytest.mark.parametrize("layout", sorted(EXPECTED))
def test_dry_run_prints_each_decision_with_its_evidence_and_writes_nothing(layout, comp, tmp_path):
    d = comp(layout)
    result = _kit("init", "--from-competition", d, "--dry-run")
    got = _decisions(result.output)
    assert set(got) >= {"files", "id column", "target", "task", "inputs", "metric", "submission", "max_length", "batch", "model"}
    for name, (value, evidence) in EXPECTED[layout].items():
        assert value in got[name][0], (name, got[name])
        assert evidence in got[name][1], (name, got[name])
    assert "p95" in got["max_length"][1] and "characters" in got["max_length"][1]
    assert "Dry run: nothing written." in result.output and not (tmp_path / "kit.toml").exists()


def test_inputs_put_long_free_text_last_with_the_larger_budget(comp):
    from kaggle_kit.config import load_config

    _kit("init", "--from-competition", comp("rules"))
    cfg = load_config("kit.toml")
    fields = cfg.prompt.text_template.splitlines()
    assert fields[0] == "subreddit: {subreddit}" and fields[-1] == "body: {body}", fields
    assert cfg.prompt.field_shares == {"body": 2} and cfg.data.id_column == "row_id"
    assert cfg.train.metric_for_best == "auc" and cfg.submission.sample.endswith("comp/sample_submission.csv")


def test_label_values_are_read_as_written(comp):
    """NA / None / null and leading zeros stay the strings written: in kit.toml, and composed (MAP)."""
    from kaggle_kit.config import load_config

    _kit("init", "--from-competition", comp("single"))
    assert load_config("kit.toml").task.labels == ["007", "010", "NA", "None", "null"]
    assert '"007", "010", "NA", "None", "null"' in Path("kit.toml").read_text()
    _kit("init", "--from-competition", comp("map"), "--force")
    labels = load_config("kit.toml").task.labels
    assert "True_Correct:NA" in labels and "False_Misconception:Incomplete" in labels and len(labels) == 5


def test_flags_fill_competition_metric_and_tokens(comp):
    from kaggle_kit.config import load_config

    d = comp("rules")
    result = _kit("init", "--from-competition", d, "--competition", "jigsaw-agile-community-rules", "--metric", "average_precision",
                  "--tokenizer", "tiny")
    got = _decisions(result.output)
    assert got["metric"][0] == "average_precision" and got["metric"][1] == "given with --metric"
    assert "tokens (tiny tokenizer" in got["max_length"][1]
    cfg = load_config("kit.toml")
    assert cfg.kaggle.competition == "jigsaw-agile-community-rules"
    assert cfg.data.test == "/kaggle/input/competitions/jigsaw-agile-community-rules/test.csv"
    assert cfg.data.train == str(d / "train.csv") and cfg.task.metric == "average_precision"
    text = Path("kit.toml").read_text()
    assert "# Decided by `kit init --from-competition" in text and "#   metric: average_precision — given with --metric" in text


def test_existing_file_is_kept_and_preset_flags_are_refused(comp):
    d = comp("single")
    Path("kit.toml").write_text("# mine\n")
    result = _kit("init", "--from-competition", d, code=2)
    assert "kit.toml exists; pass --force" in result.output and Path("kit.toml").read_text() == "# mine\n"
    assert "only work with --from-competition" in _kit("init", "--dry-run", code=2).output
    assert "exclude each other" in _kit("init", "--preset", "rules", "--from-competition", d, code=2).output


# --------------------------------------------------------------------------- unsupported and ambiguous (exit 2, nothing written)


def essay(d: Path) -> None:
    """Automated essay scoring layout: score 1-6, graded by quadratic weighted kappa."""
    rng = random.Random(7)
    _csv(d / "train.csv", ["essay_id", "full_text", "score"], [[f"e{i:04x}", _text(rng, 40, 60), 1 + i % 6] for i in range(30)])
    _csv(d / "test.csv", ["essay_id", "full_text"], [[f"t{i:04x}", _text(rng, 40, 60)] for i in range(3)])
    _csv(d / "sample_submission.csv", ["essay_id", "score"], [[f"t{i:04x}", 3] for i in range(3)])


def retrieval(d: Path) -> None:
    """Eedi-style: the prediction names rows of misconception_mapping.csv (candidates in a second file)."""
    rng = random.Random(8)
    _csv(d / "misconception_mapping.csv", ["MisconceptionId", "MisconceptionName"], [[i, _text(rng, 4, 8)] for i in range(40)])
    _csv(d / "train.csv", ["QuestionId_Answer", "QuestionText", "AnswerText", "MisconceptionId"],
         [[f"{i}_A", _text(rng), _text(rng, 2, 4), i % 40] for i in range(30)])
    _csv(d / "test.csv", ["QuestionId_Answer", "QuestionText", "AnswerText"], [[f"{100 + i}_B", _text(rng), _text(rng)] for i in range(3)])
    _csv(d / "sample_submission.csv", ["QuestionId_Answer", "MisconceptionId"],
         [[f"{100 + i}_B", " ".join(str(k) for k in range(i, i + 25))] for i in range(3)])


def generation(d: Path) -> None:
    """A generation target: free-text answers to write."""
    rng = random.Random(9)
    _csv(d / "train.csv", ["id", "question", "answer"], [[i, _text(rng), "The answer is " + _text(rng, 10, 20)] for i in range(30)])
    _csv(d / "test.csv", ["id", "question"], [[100 + i, _text(rng)] for i in range(3)])
    _csv(d / "sample_submission.csv", ["id", "answer"], [[100 + i, "some text"] for i in range(3)])


@pytest.mark.parametrize("layout,named", [
    (essay, ["numeric target: 'score' holds 6 numbers from 1 to 6", "regression or quadratic weighted kappa", "--metric accuracy"]),
    (retrieval, ["retrieval/ranking target", "misconception_mapping.csv (40 rows) has the column 'MisconceptionId'"]),
    (generation, ["generation target: 'answer'", "holds free text (30 distinct values in 30 rows", "kit init --preset sft"]),
])
def test_unsupported_layouts_name_the_evidence_and_write_nothing(layout, named, comp, tmp_path):
    d = comp(layout)
    for flags in ([], ["--dry-run"]):
        result = _kit("init", "--from-competition", d, *flags, code=2)
        assert result.output.startswith("Error: ") and "Traceback" not in result.output
        for text in named:
            assert text in result.output, (text, result.output)
        assert "nothing written" in result.output and not (tmp_path / "kit.toml").exists()


def two_targets(d: Path) -> None:
    rng = random.Random(10)
    _csv(d / "train.csv", ["id", "text", "label", "topic"], [[i, _text(rng), ("a", "b")[i % 2], ("x", "y", "z")[i % 3]] for i in range(30)])
    _csv(d / "test.csv", ["id", "text"], [[100 + i, _text(rng)] for i in range(4)])
    _csv(d / "sample_submission.csv", ["id", "prediction"], [[100 + i, "a"] for i in range(4)])


def two_ids(d: Path) -> None:
    """No sample submission, and two unique id-like test columns."""
    rng = random.Random(11)
    _csv(d / "train.csv", ["id", "question_id", "text", "label"], [[i, 500 + i, _text(rng), ("a", "b", "c")[i % 3]] for i in range(30)])
    _csv(d / "test.csv", ["id", "question_id", "text"], [[100 + i, 900 + i, _text(rng)] for i in range(4)])


def test_two_possible_targets_list_the_candidates_and_target_picks_one(comp, tmp_path):
    d = comp(two_targets)
    result = _kit("init", "--from-competition", d, code=2)
    assert "the target is ambiguous" in result.output and "label ('a', 'b')" in result.output
    assert "topic ('x', 'y', 'z')" in result.output and "--target" in result.output and not (tmp_path / "kit.toml").exists()
    got = _decisions(_kit("init", "--from-competition", d, "--target", "label", "--dry-run").output)
    assert got["target"] == ("label", "given with --target") and got["metric"][0] == "accuracy (guessed)"


def test_two_possible_id_columns_list_the_candidates_and_id_picks_one(comp, tmp_path):
    d = comp(two_ids)
    result = _kit("init", "--from-competition", d, code=2)
    assert "the id column is ambiguous" in result.output and "id (4 unique values)" in result.output
    assert "question_id (4 unique values)" in result.output and "--id" in result.output and not (tmp_path / "kit.toml").exists()
    got = _decisions(_kit("init", "--from-competition", d, "--id", "question_id", "--dry-run").output)
    assert got["id column"][0] == "question_id" and got["target"][0] == "label" and "no sample" in got["submission"][1]
    result = _kit("init", "--from-competition", d, "--id", "question_id", "--inputs", "nope", code=2)
    assert "--inputs nope: ['nope'] not in both train and test" in result.output


# --------------------------------------------------------------------------- end to end: init → train → predict (tiny)


def _rows(path: Path) -> tuple:
    with open(path, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    return table[0], table[1:]


def _assert_shaped_like_the_sample(sub: Path, sample: Path, labels: list) -> None:
    """Same columns, same ids, and each cell of the shape the sample's cell has (a number, or k labels)."""
    header, rows = _rows(sub)
    s_header, s_rows = _rows(sample)
    assert header == s_header
    assert [r[0] for r in rows] == [r[0] for r in s_rows]  # the fixtures' samples list the test ids in test order
    for row, s_row in zip(rows, s_rows):
        for cell, s_cell in zip(row[1:], s_row[1:]):
            try:
                float(s_cell)
                is_number = s_cell not in labels
            except ValueError:
                is_number = False
            if is_number:
                assert 0.0 <= float(cell) <= 1.0, (cell, s_cell)
            else:
                assert len(cell.split()) == len(s_cell.split()) and set(cell.split()) <= set(labels), (cell, s_cell, labels)


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_init_train_predict_gives_the_samples_shape(layout, comp, tmp_path, monkeypatch):
    """`kit init --from-competition DIR` → `kit train --model tiny --output run` → `kit predict --adapter run
    --data DIR/test.<ext> --out sub.csv`, with no edit and no other flag: a submission shaped like the sample.
    Jigsaw rules also names its competition and runs the inference notebook (`kit render` + `kit run-local`)."""
    d = comp(layout)
    slug = ["--competition", "jigsaw-agile-community-rules"] if layout == "rules" else []
    _kit("init", "--from-competition", d, *slug)
    shown = json.loads(_kit("config", "--json").output)
    decided = _decisions(_kit("init", "--from-competition", d, "--dry-run").output)["metric"][0].split()[0]
    assert shown["task"]["metric"] == decided
    _kit("train", "--model", "tiny", "--output", "run")
    test = next(d.glob("test.*"))
    result = _kit("predict", "--adapter", "run", "--data", test, "--out", "sub.csv")
    assert "matches the sample" in result.output, result.output
    labels = json.loads((tmp_path / "run/kit_manifest.json").read_text())["task"]["labels"]
    assert labels == shown["task"]["labels"]
    _assert_shaped_like_the_sample(tmp_path / "sub.csv", d / "sample_submission.csv", labels)
    if layout == "lmsys":
        _, rows = _rows(tmp_path / "sub.csv")
        assert all(abs(sum(float(x) for x in r[1:]) - 1.0) < 1e-6 for r in rows)
    if layout == "single":
        _, rows = _rows(tmp_path / "sub.csv")
        assert {r[1] for r in rows} <= set(SINGLE)
    if slug:  # the notebook, offline, on the same folder mounted as the competition: the same file
        monkeypatch.setenv("KAGGLE_USERNAME", "kit-demo")
        _kit("render", "inference", "--set", "instances.gemma2-base.version=1", "--set", "instances.peft-lora-classifier.version=1")
        _kit("run-local", "inference", "--inputs", f"competition={d}", "--inputs", "adapter=run", "--out", "local")
        assert (tmp_path / "local/submission.csv").read_bytes() == (tmp_path / "sub.csv").read_bytes()


def test_label_sample_with_number_like_labels_accepts_text_labels(tmp_path):
    """A label-style sample whose cells look like numbers ('007') does not make label cells numbers."""
    from kaggle_kit.runtime.submission import SubmissionError, compare_with_sample

    _csv(tmp_path / "sample.csv", ["id", "label"], [["1", "007"], ["2", "007"]])
    _csv(tmp_path / "sub.csv", ["id", "label"], [["1", "None"], ["2", "007"]])
    assert compare_with_sample(tmp_path / "sub.csv", tmp_path / "sample.csv", style="label")["rows"] == 2
    assert compare_with_sample(tmp_path / "sub.csv", tmp_path / "sample.csv", style="topk")["same_order"]
    with pytest.raises(SubmissionError, match="holds numbers in the sample but id 1 has 'None'"):
        compare_with_sample(tmp_path / "sub.csv", tmp_path / "sample.csv", style="positive")  # probabilities: numbers


def test_sample_ids_in_another_order_match_by_id(tmp_path):
    """Kaggle scores by id: a sample listing the test ids in another order still matches; ids twice do not."""
    from kaggle_kit.runtime.submission import SubmissionError, compare_with_sample

    _csv(tmp_path / "sample.csv", ["id", "p"], [["b", "0.5"], ["a", "0.5"], ["c", "0.5"]])
    _csv(tmp_path / "sub.csv", ["id", "p"], [["a", "0.1"], ["b", "0.2"], ["c", "0.3"]])
    got = compare_with_sample(tmp_path / "sub.csv", tmp_path / "sample.csv", style="positive")
    assert got["ids_compared"] and not got["same_order"] and got["rows"] == 3
    _csv(tmp_path / "twice.csv", ["id", "p"], [["a", "0.1"], ["a", "0.2"], ["b", "0.3"], ["c", "0.3"]])
    with pytest.raises(SubmissionError, match="more than once: 'a'"):
        compare_with_sample(tmp_path / "twice.csv", tmp_path / "sample.csv")
    _csv(tmp_path / "other.csv", ["id", "p"], [["a", "0.1"], ["b", "0.2"], ["d", "0.3"]])
    with pytest.raises(SubmissionError, match="missing 'c', not in the sample 'd'"):
        compare_with_sample(tmp_path / "other.csv", tmp_path / "sample.csv")


def test_integer_scores_become_classes_only_when_the_metric_says_so(comp):
    d = comp(essay)
    got = _decisions(_kit("init", "--from-competition", d, "--metric", "accuracy", "--dry-run").output)
    assert got["task"][0] == "classification, 6 classes" and "'1', '2', '3', '4', '5', '6'" in got["task"][1]
    assert got["metric"] == ("accuracy", "given with --metric") and got["submission"][0] == "label"
    assert "--metric qwk: use log_loss" in _kit("init", "--from-competition", d, "--metric", "qwk", code=2).output


def test_a_binary_sample_of_zeros_and_ones_is_a_guessed_probability(comp):
    """Sample cells 0/1 could be labels or probabilities: auc, guessed, and the evidence says how to pick labels."""
    d = comp(rules)
    _csv(d / "sample_submission.csv", ["row_id", "rule_violation"], [[2029 + i, i % 2] for i in range(6)])
    got = _decisions(_kit("init", "--from-competition", d, "--dry-run").output)
    assert got["metric"][0] == "auc (guessed)" and "labels and probabilities alike" in got["metric"][1]
    assert "--metric accuracy for hard labels" in got["metric"][1] and got["submission"][0] == "positive, probability of class '1'"
    got = _decisions(_kit("init", "--from-competition", d, "--metric", "accuracy", "--dry-run").output)
    assert got["submission"][0] == "label" and "scores hard labels" in got["submission"][1]


def test_what_the_reader_repairs_in_train_is_counted_and_named_by_id(comp):
    d = comp("map")
    with open(d / "train.csv", "a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow([999, 31772, "What fraction?", r"\( \frac{1}{3} \)", "", "True_Correct", "NA"])
    got = _decisions(_kit("init", "--from-competition", d, "--dry-run").output)
    assert got["repairs"][0] == "1 in train.csv"
    assert got["repairs"][1].startswith("999: empty field 'StudentExplanation'") and "kit data inspect" in got["repairs"][1]
    assert "repairs" not in _decisions(_kit("init", "--from-competition", comp("rules"), "--dry-run").output)


def test_lmsys_rows_that_are_not_one_hot_are_refused_by_the_reader(comp, tmp_path):
    d = comp("lmsys")
    with open(d / "train.csv", "a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow([77, "a", "b", '["hi"]', '["x"]', '["y"]', 1, 1, 0])
    result = _kit("init", "--from-competition", d, code=2)
    assert "not one-hot" in result.output and "77" in result.output and not (tmp_path / "kit.toml").exists()

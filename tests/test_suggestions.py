"""Every refusal's suggested fix works when applied (issue 21, item 9).

Each test makes `kit predict`, `kit train` or `kit data inspect` refuse a wrong input, takes the fix the
`Error:` line suggests, applies it exactly as written (a `--set 'KEY=VALUE'`, a `--format NAME`, a file of the
shape the message names, another run) and checks the outcome changes: another refusal (whose own suggestion
is then followed) or success. The fault behind it: the LMSYS adapter on a MAP test file said "choose another
format with data.format … (or --set data.format=NAME)", but `kit predict` takes the format from the adapter's
manifest, so the suggested `--set` gave the identical error.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

# a suggestion as the messages write it: --set 'KEY=VALUE' (VALUE read as TOML), --set KEY=VALUE,
# set KEY = VALUE (a kit.toml line), --format NAME
SET = re.compile(r"--set '([^']+)'|--set ([\w.]+=[^\s;,)'\"]+)|\bset ([a-z_]+\.[a-z_]+) = ('[^']*'|\[[^\]]*\]|[\w.-]+)")
FORMAT = re.compile(r"--format ([a-z][\w-]*)")


def _kit(*args) -> tuple:
    """(exit code, output, the last `Error:` line or '')."""
    from kaggle_kit.cli import main

    r = CliRunner().invoke(main, [str(a) for a in args])
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert "Traceback" not in r.output, r.output
    return r.exit_code, r.output, (errors[-1] if errors else "")


def _first_set(error: str) -> str:
    m = SET.search(error)
    assert m, f"no setting suggested in: {error}"
    return m.group(1) or m.group(2) or f"{m.group(3)}={m.group(4)}"


def _rewrite_csv(src: Path, out: Path, edit) -> Path:
    """``src`` with ``edit(rows)`` applied (a list of dicts; returns the new list)."""
    with src.open(newline="", encoding="utf-8") as fh:
        rows = edit(list(csv.DictReader(fh)))
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Small MAP-shaped (misconceptions) train/test files and an LMSYS test file."""
    from kaggle_kit.data.synth import write_synth

    root = tmp_path_factory.mktemp("suggestions")
    return {"map_train": write_synth("misconceptions", 40, root / "map" / "train.csv", seed=0),
            "map_test": write_synth("misconceptions", 12, root / "map-test" / "test.csv", seed=1, test=True),
            "lmsys_test": write_synth("lmsys", 12, root / "lmsys-test" / "test.csv", seed=2, test=True),
            "root": root}


def _train_args(config: Path, data: Path, out: Path) -> list:
    return ["train", "--config", config, "--model", "tiny", "--data", data, "--output", out, "--max-steps", "1",
            "--max-length", "64", "--quantization", "none", "--set", "train.batch_size=8", "--set", "train.eval_batch_size=32"]


@pytest.fixture(scope="module")
def map_config(files) -> Path:
    config = files["root"] / "map.toml"
    assert _kit("init", "--preset", "misconceptions", "--path", config)[0] == 0
    return config


@pytest.fixture(scope="module")
def map_run(files, map_config, kit_cache) -> Path:
    """A tiny run trained on the MAP file (the preset's template, row_id ids)."""
    out = files["root"] / "runs" / "map"
    code, output, _ = _kit(*_train_args(map_config, files["map_train"], out), "--set", "submission.sample=")
    assert code == 0, output
    return out


def _predict(adapter, data, out: Path, *extra) -> tuple:
    return _kit("predict", "--adapter", adapter, "--data", data, "--out", out, "--no-progress", *extra)


def test_predict_with_an_adapter_of_another_format_says_what_helps(untrained_adapter, map_run, files, tmp_path):
    """The issue's example: the LMSYS adapter on a MAP test file. The message names the format and columns the
    run was trained on and what works (a file of that shape, a run trained on this data), no kit.toml setting."""
    code, _, error = _predict(untrained_adapter, files["map_test"], tmp_path / "s.csv")
    assert code == 2 and "trained on 'lmsys' data with the columns ['id', 'prompt', 'response_a', 'response_b']" in error, error
    assert not SET.search(error) and "data.format" not in error, error  # no setting changes what a run reads
    # what the old message suggested gives the identical refusal: it was no fix
    assert _predict(untrained_adapter, files["map_test"], tmp_path / "s.csv", "--set", "data.format=classification")[2] == error
    # the fixes it names: a file with those columns, or a run trained on this file's data
    assert _predict(untrained_adapter, files["lmsys_test"], tmp_path / "a.csv")[0] == 0
    assert _predict(map_run, files["map_test"], tmp_path / "b.csv")[0] == 0
    # the other way round: the MAP run on an LMSYS file names its columns and what the file looks like
    code, _, error = _predict(map_run, files["lmsys_test"], tmp_path / "c.csv")
    assert code == 2 and "trained on 'classification' data with the columns ['QuestionText', 'MC_Answer', 'StudentExplanation']" in error
    assert "looks like 'lmsys' data" in error and not SET.search(error), error


def test_predict_without_the_runs_id_column(untrained_adapter, files, tmp_path):
    """A test file without the run's id column: add it under that name (what the message says) and it predicts."""
    no_id = _rewrite_csv(files["lmsys_test"], tmp_path / "no-id.csv", lambda rows: [{k: v for k, v in r.items() if k != "id"} for r in rows])
    code, _, error = _predict(untrained_adapter, no_id, tmp_path / "s.csv")
    assert code == 2 and "add its id column as 'id'" in error and not SET.search(error), error
    fixed = _rewrite_csv(no_id, tmp_path / "with-id.csv", lambda rows: [{"id": str(n), **r} for n, r in enumerate(rows)])
    assert _predict(untrained_adapter, fixed, tmp_path / "s.csv")[0] == 0


def test_predict_bad_tta_and_devices_are_refused_before_loading_with_values_that_work(untrained_adapter, files, tmp_path):
    """A TTA or device value the runtime cannot use: an `Error:` naming the option (no traceback, no weights
    loaded), and the value it suggests predicts."""
    code, out, error = _predict(untrained_adapter, files["lmsys_test"], tmp_path / "s.csv", "--tta", "sometimes")
    assert code == 2 and error.startswith("Error: --tta = 'sometimes'") and "loaded" not in out, out
    tta = re.search(r"e\.g\. (uncertain:[\d.]+)", error).group(1)
    for devices in ("gpu7", "cuda:9"):
        code, out, error = _predict(untrained_adapter, files["lmsys_test"], tmp_path / "s.csv", "--devices", devices)
        assert code == 2 and error.startswith(f"Error: --devices = '{devices}'") and "loaded" not in out, out
    fix = re.findall(r"--devices ([\w:,]+)", error)[0]
    assert _predict(untrained_adapter, files["lmsys_test"], tmp_path / "s.csv", "--tta", tta, "--devices", fix)[0] == 0


def test_train_follows_each_suggestion_to_a_run(files, tmp_path):
    """`kit train` with the LMSYS preset on a MAP file: each refusal's first --set suggestion, applied as written
    (the label column placeholder filled in), changes the outcome, until the run trains."""
    config = tmp_path / "kit.toml"
    assert _kit("init", "--preset", "lmsys", "--path", config)[0] == 0
    args = _train_args(config, files["map_train"], tmp_path / "run")
    applied, errors = [], []
    for _ in range(8):
        code, output, error = _kit(*args)
        if code == 0:
            break
        assert code == 2 and error and error not in errors, f"the suggestion {applied[-1:]} changed nothing:\n{output}"
        errors.append(error)
        fix = _first_set(error).replace('"COLUMN"', '"Category"')
        applied.append(fix.split("=")[0])
        args += ["--set", fix]
    assert code == 0, "\n".join(errors)
    assert applied[:4] == ["data.format", "prompt.text_template", "data.label_columns", "task.labels"], applied


def test_inspect_follows_each_suggestion_to_a_report(files, tmp_path, monkeypatch):
    """`kit data inspect --format lmsys` on a MAP file suggests --format (the option inspect reads, not
    data.format), then the text columns; each applied, the file is inspected."""
    monkeypatch.chdir(tmp_path)  # no kit.toml: the defaults
    code, _, error = _kit("data", "inspect", files["map_train"], "--format", "lmsys", "--json")
    assert code == 2 and "data.format" not in error, error
    fmt = FORMAT.search(error).group(1)
    code, _, error2 = _kit("data", "inspect", files["map_train"], "--format", fmt, "--json")
    assert code == 2 and error2 != error and "missing column(s) ['text']" in error2, error2
    code, output, _ = _kit("data", "inspect", files["map_train"], "--format", fmt, "--set", _first_set(error2), "--json")
    assert code == 0, output


def test_inspect_missing_id_column_suggests_the_files_id_column(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    renamed = _rewrite_csv(files["lmsys_test"], tmp_path / "row-id.csv", lambda rows: [{"row_id": r.pop("id"), **r} for r in rows])
    code, _, error = _kit("data", "inspect", renamed, "--format", "lmsys")
    assert code == 2 and "--set data.id_column=row_id" in error, error
    assert _kit("data", "inspect", renamed, "--format", "lmsys", "--set", _first_set(error))[0] == 0


def test_train_on_a_file_without_a_template_column_and_with_bad_label_rows(files, map_config, tmp_path):
    """The MAP preset on a file without MC_Answer and with an empty Category cell: the template over this
    file's columns, then data.skip_bad_rows, each applied as suggested, and the run trains."""
    def edit(rows):
        rows[3]["Category"] = ""
        return [{k: v for k, v in r.items() if k != "MC_Answer"} for r in rows]

    data = _rewrite_csv(files["map_train"], tmp_path / "train.csv", edit)
    args = _train_args(map_config, data, tmp_path / "run") + ["--set", "submission.sample="]
    code, _, error = _kit(*args)
    assert code == 2 and "missing column(s) ['MC_Answer']" in error and "prompt.text_template" in error, error
    args += ["--set", _first_set(error)]
    code, _, error = _kit(*args)
    assert code == 2 and "bad labels" in error and "set data.skip_bad_rows = true" in error, error
    code, output, _ = _kit(*args, "--set", "data.skip_bad_rows=true")
    assert code == 0, output

"""One upload rule for `kit validate` and every push; adapter folders and their model card (issue 13).

The fake project (fake_kaggle.make_project) holds a real PEFT run folder with its boilerplate
README.md, a wheel folder and a kernel folder; the kaggle client is configured with KEY.
"""
from __future__ import annotations

import json

import pytest

from fake_kaggle import KEY, USER, fake_kaggle, kaggle_env, project, run_kit  # noqa: F401
from kaggle_kit.publish import uploads as up
from kaggle_kit.publish import validate as vd
from kaggle_kit.config import load_config

ADAPTER = "peft-lora-classifier"


def _report(project, *sets):
    return vd.validate_report(load_config(project / "kit.toml", list(sets)), project)


@pytest.mark.parametrize("where, name, content, expect", [
    ("wheels", "kaggle.json", '{"username": "u", "key": "k"}', "its name (kaggle.json) is that of a credential file"),
    ("wheels", "build-notes.txt", "token: {KEY}\n", "contains your Kaggle API key"),
    ("runs/adapter", "training-log.txt", "export KAGGLE_KEY={KEY}\n", "contains your Kaggle API key"),
    ("runs/adapter", "notes.md", "hf_" + "a1B2" * 9, "holds an access token"),
    ("runs/adapter", ".env", "X=1\n", "its name (.env)"),
])
def test_validate_and_every_push_apply_one_credential_rule(project, fake_kaggle, where, name, content, expect):
    """validate said nothing about the wheels folder, nor about an ordinary-named file holding the key."""
    path = project / where / name
    path.write_text(content.replace("{KEY}", KEY))
    report = _report(project)
    hits = [p for p in report.problems if name in p and expect in p]
    assert hits, report.problems
    push = ("push-dataset",) if where == "wheels" else ("push-model", "--instance", ADAPTER)
    code, out = run_kit(*push, "--dry-run")
    assert code == 2 and name in out and expect in out, out
    assert KEY not in out and fake_kaggle.requests == []
    code, out = run_kit("validate")
    assert code == 1 and name in out and KEY not in out


def test_key_deep_inside_a_large_file_is_found(tmp_path):
    """The whole file is read (weights and wheels are large), not its first megabytes."""
    big = tmp_path / "model.safetensors"
    with big.open("wb") as fh:
        fh.write(b"\0" * (up._CHUNK * 2 - 3))  # the key straddles two read chunks
        fh.write(KEY.encode())
        fh.write(b"\0" * 100)
    assert "Kaggle API key" in up.credential_reason(big, [KEY])
    assert up.credential_reason(big, ["other-key-123456"]) is None


def test_training_leftovers_are_not_scanned_as_uploads(project):
    """One selection: what push-model leaves out (checkpoints) is not an upload problem either."""
    (project / "runs" / "adapter" / "checkpoint-5" / "notes.txt").write_text(f"{KEY}\n")
    assert _report(project).problems == []


@pytest.mark.parametrize("remove, expect", [
    ("kit_manifest.json", "has no kit_manifest.json"),
    ("adapter_model.safetensors", "has no adapter weights"),
])
def test_adapter_without_manifest_or_weights_is_refused(project, fake_kaggle, remove, expect):
    (project / "runs" / "adapter" / remove).unlink()
    report = _report(project)
    assert any(expect in p for p in report.problems), report.problems
    code, out = run_kit("validate")
    assert code == 1 and expect in out
    code, out = run_kit("push-model", "--instance", ADAPTER, "--dry-run")
    assert code == 2 and expect in out and "nothing was uploaded" in out
    assert fake_kaggle.requests == []


def test_model_card_is_written_from_the_manifest(project, fake_kaggle):
    run = project / "runs" / "adapter"
    assert "More Information Needed" in (run / "README.md").read_text()  # PEFT's boilerplate
    manifest = json.loads((run / "kit_manifest.json").read_text())
    manifest["metrics"] = {"log_loss": 0.9876, "accuracy": 0.5432}
    (run / "kit_manifest.json").write_text(json.dumps(manifest))
    code, out = run_kit("push-model", "--instance", ADAPTER, "--dry-run", "--json")
    assert code == 0, out
    result = json.loads(out)
    card = (project / ".kit" / "stage" / "model" / ADAPTER / "instance" / "README.md").read_text()
    assert "More Information Needed" not in card
    assert card == result["metadata"]["model-metadata.json"]["description"]
    for expect in ("`tiny`", "Gemma2ForSequenceClassification", "`winner_model_a`", "`winner_tie`", "log_loss",
                   "0.9876", "accuracy", "transformers", manifest["versions"]["transformers"], "peft"):
        assert expect in card, expect
    assert "README.md" in " ".join(result["files"])


def test_config_base_differing_from_the_manifest_is_a_warning_naming_both(project, fake_kaggle):
    report = _report(project, "model.name=google/gemma-2-9b-it")
    assert report.problems == []
    assert any("'google/gemma-2-9b-it'" in w and "'tiny'" in w for w in report.warnings), report.warnings
    code, out = run_kit("validate", "--set", "model.name=google/gemma-2-9b-it")
    assert code == 0 and "Warning:" in out and "google/gemma-2-9b-it" in out
    code, out = run_kit("push-model", "--instance", ADAPTER, "--dry-run", "--json", "--set", "model.name=google/gemma-2-9b-it")
    result = json.loads(out)
    assert code == 0 and any("google/gemma-2-9b-it" in n and "'tiny'" in n for n in result["notes"])
    card = result["metadata"]["model-metadata.json"]["description"]
    assert "`tiny`" in card and "gemma-2-9b-it" not in card  # the card names the base the adapter was trained on
    overview = result["metadata"]["model-instance-metadata.json"]["overview"]
    assert "`tiny`" in overview

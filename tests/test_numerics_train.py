"""Training numerics (issue 11): fp32 heads on 16-bit bases, the non-finite stop, one precision rule per device,
settings recorded as applied, --all-folds with a holdout refused."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from kaggle_kit.config import load_config
from kaggle_kit.errors import KitError

FAST = ["prompt.max_length=64", "train.batch_size=8", "train.eval_batch_size=32", "train.logging_steps=1",
        "train.warmup_ratio=0.0", "data.folds=4"]


def q(v) -> str:
    return json.dumps(str(v))


def cfg_for(tmp_path: Path, data: Path, out: Path, *sets: str):
    return load_config(str(tmp_path / "absent.toml"), [f"data.train={q(data)}", f"train.output={q(out)}", *FAST, *sets])


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory, kit_cache) -> Path:
    from kaggle_kit.data.synth import write_synth

    return write_synth("lmsys", 48, tmp_path_factory.mktemp("num-train") / "train.csv", seed=4)


def _head_watch():
    """A TrainerCallback recording the head copy (modules_to_save) before the first and after the last step."""
    from transformers import TrainerCallback

    class HeadWatch(TrainerCallback):
        before = after = None
        dtypes: set = set()

        def _head(self, model):
            return {n: p.detach().float().clone() for n, p in model.named_parameters() if "modules_to_save" in n}

        def on_train_begin(self, args, state, control, model=None, **kw):
            self.before = self._head(model)

        def on_step_end(self, args, state, control, model=None, **kw):
            self.dtypes |= {str(p.dtype) for n, p in model.named_parameters() if p.requires_grad}
            self.after = self._head(model)

    return HeadWatch()


# --------------------------------------------------------------------------- fp32 head on 16-bit bases


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_head_trains_in_fp32_on_a_half_precision_base(tmp_path, tiny_base, small_csv, monkeypatch, dtype):
    """Old main: a float16 head is NaN after the first AdamW step (log_loss nan, uniform predictions); in
    bfloat16 most of the head does not move at lr 2e-5. Now the head (and every trainable tensor) is float32."""
    from kaggle_kit.train import classifier, run_training

    watch = _head_watch()
    monkeypatch.setattr(classifier, "_EXTRA_CALLBACKS", [watch])
    cfg = cfg_for(tmp_path, small_csv, tmp_path / "run", f"model.dtype={q(dtype)}", "train.max_steps=3",
                  "train.eval_steps=3", "train.learning_rate=2e-5")
    result = run_training(cfg, log=lambda m: None)
    assert watch.dtypes == {"torch.float32"}
    assert watch.before and set(watch.before) == set(watch.after)
    for name, w0 in watch.before.items():
        w1 = watch.after[name]
        assert bool(np.isfinite(w1.numpy()).all()), name
        moved = float((w1 != w0).float().mean())
        assert moved > 0.95, f"{name}: only {moved:.0%} of the head moved"
    final = result.metrics["final"]
    assert np.isfinite(final["log_loss"]) and np.isfinite(result.metrics["train"]["loss"])
    assert all(np.isfinite(h["eval_loss"]) for h in result.metrics["history"] if "eval_loss" in h)
    from safetensors.torch import load_file

    saved = load_file(str(result.output_dir / "adapter_model.safetensors"))
    head = [v for k, v in saved.items() if "score" in k]
    assert head and all(bool(v.float().isfinite().all()) for v in head)
    assert not np.allclose(np.loadtxt(result.output_dir / "oof.csv", delimiter=",", skiprows=1, usecols=(3, 4, 5)), 1 / 3, atol=1e-4)


# --------------------------------------------------------------------------- the non-finite stop


def _poison_callback(at_step: int):
    import torch
    from transformers import TrainerCallback

    class Poison(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step == at_step:
                with torch.no_grad():
                    for n, p in model.named_parameters():
                        if "modules_to_save" in n and n.endswith("weight"):
                            p.view(-1)[0] = float("nan")

    return Poison()


@pytest.mark.parametrize("at_step,steps,eval_steps,what", [
    (1, 4, 4, "the training loss is nan"),  # the next step's loss is NaN
    (2, 2, 2, "the evaluation gave"),  # the last step's evaluation is NaN
])
def test_nonfinite_loss_or_metric_stops_training_and_publishes_nothing(tmp_path, tiny_base, small_csv, monkeypatch,
                                                                        at_step, steps, eval_steps, what):
    from kaggle_kit.train import classifier, run_training
    from kaggle_kit.train.numerics import NonFiniteTraining

    monkeypatch.setattr(classifier, "_EXTRA_CALLBACKS", [_poison_callback(at_step)])
    out = tmp_path / "run"
    cfg = cfg_for(tmp_path, small_csv, out, f"train.max_steps={steps}", f"train.eval_steps={eval_steps}",
                  "train.learning_rate=1e-3")
    with pytest.raises(NonFiniteTraining) as err:
        run_training(cfg, log=lambda m: None)
    msg = str(err.value)
    step = at_step + 1 if "loss is" in what else at_step
    assert f"training stopped at step {step}" in msg and what in msg
    assert "learning rate" in msg and "train.learning_rate = 0.001" in msg
    assert str(out) + ".partial" in msg
    assert not out.exists() and (tmp_path / "run.partial").is_dir()
    assert isinstance(err.value, KitError)  # `kit train` prints it as an Error: line, exit 2


def test_guard_names_float16_as_the_likely_cause():
    from kaggle_kit.train.numerics import describe

    msg = describe("the training loss is nan", 7, {"dtype": "float16", "precision": "fp16", "learning_rate": 2e-5,
                                                  "quantization": "none", "partial": "runs/x.partial"})
    assert "step 7" in msg and "float16" in msg and "65,504" in msg and "runs/x.partial" in msg


# --------------------------------------------------------------------------- one precision rule per device


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend CUDA is there with the given compute capability per device index."""
    import torch

    caps: dict = {}
    asked: list = []

    def capability(device=None):
        index = torch.device(device).index if device is not None else 0
        asked.append(index)
        return caps[index or 0]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # what a T4 answers
    return caps, asked


def test_precision_follows_the_compute_capability_of_the_target_device(fake_gpu):
    from kaggle_kit.runtime.modeling import _compute_dtype_for
    from kaggle_kit.runtime.precision import half_dtype_for, precision_for_device, resolve_precision
    from kaggle_kit.train.numerics import choose_precision

    caps, asked = fake_gpu
    caps.update({0: (7, 5), 1: (8, 0), 2: (9, 0), 3: (6, 0)})  # T4, A100, H100, P100
    assert [precision_for_device(f"cuda:{i}") for i in range(4)] == ["fp16", "bf16", "bf16", "fp16"]
    assert asked == [0, 1, 2, 3]  # the device asked about, not the current one
    assert precision_for_device("cpu") == "fp32"
    # inference / generation dtypes: bf16 asked on a T4 computes in fp16; as asked on the CPU
    assert half_dtype_for("cuda:0") == "float16" and half_dtype_for("cuda:1") == "bfloat16"
    assert half_dtype_for("cuda:0", "bfloat16") == "float16" and half_dtype_for("cuda:1", "bfloat16") == "bfloat16"
    assert half_dtype_for("cpu") == "float32"
    assert _compute_dtype_for("cuda:0", "bfloat16") == "float16" and _compute_dtype_for("cuda:1", "bfloat16") == "bfloat16"
    assert _compute_dtype_for("cuda:0", None) == "float16" and _compute_dtype_for("cpu", "bfloat16") == "bfloat16"
    # training: auto follows the device; bf16 on a T4 is refused, not emulated
    assert choose_precision("auto", "cuda:0") == "fp16" and choose_precision("auto", "cuda:1") == "bf16"
    assert choose_precision("auto", "cpu") == "fp32"
    with pytest.raises(KitError, match="compute capability 7.5"):
        choose_precision("bf16", "cuda:0")
    with pytest.raises(ValueError, match="needs a GPU"):
        resolve_precision("fp16", "cpu")


def test_generation_and_training_use_the_same_rule(fake_gpu, monkeypatch):
    """generation.load_for_generation and train/sft precision go through runtime.precision (no is_bf16_supported)."""
    import inspect

    from kaggle_kit.runtime import generation, modeling
    from kaggle_kit.train import classifier, plan, runfolder, sft

    for mod in (generation, modeling, classifier, plan, runfolder, sft):
        assert "is_bf16_supported" not in inspect.getsource(mod), mod.__name__
    caps, _ = fake_gpu
    caps.update({0: (7, 5)})
    monkeypatch.setenv("LOCAL_RANK", "0")
    cfg = load_config("/nonexistent/kit.toml", ["task.kind='sft'"])
    assert sft._precision(cfg) == "fp16"
    caps.update({0: (8, 6)})
    assert sft._precision(cfg) == "bf16"


# --------------------------------------------------------------------------- settings as applied


def _classification_csv(path: Path, n: int = 48) -> Path:
    words = ["alpha", "beta", "gamma"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "label"])
        for i in range(n):
            w.writerow([f"r{i}", f"some text about {words[i % 3]} number {i}", words[i % 3]])
    return path


def test_manifest_records_swap_augment_only_where_applied(tmp_path, tiny_base):
    from kaggle_kit.train import run_training

    data = _classification_csv(tmp_path / "train.csv")
    lines: list = []
    cfg = cfg_for(tmp_path, data, tmp_path / "run", "data.format='classification'", "task.kind='classification'",
                  "data.text_columns=['text']", "data.label_columns=['label']", "train.swap_augment=true",
                  "train.max_steps=1", "train.eval_steps=1")
    result = run_training(cfg, log=lines.append)
    manifest = json.loads((result.output_dir / "kit_manifest.json").read_text())
    assert manifest["training"]["swap_augment"] is False
    assert any("swap_augment ignored" in line for line in lines)


def test_all_folds_with_a_holdout_fraction_is_refused(tmp_path, small_csv):
    from click.testing import CliRunner

    from kaggle_kit.cli import main

    r = CliRunner().invoke(main, ["train", "--all-folds", "--data", str(small_csv), "--model", "tiny",
                                  "--output", str(tmp_path / "runs"), "--set", "data.val_fraction=0.2",
                                  "--config", str(tmp_path / "none.toml")])
    assert r.exit_code == 2, r.output
    assert "Error:" in r.output and "val_fraction" in r.output and "identical" in r.output
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- metrics undefined on a fold (issue 21)


def _binary_csv(path: Path, n: int = 40, positives=(5, 22)) -> Path:
    """Binary classification rows with only ``len(positives)`` 'pos' rows: some of 4 folds hold no 'pos' row."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "label"])
        for i in range(n):
            label = "pos" if i in positives else "neg"
            w.writerow([f"r{i}", f"row {i} says {'great' if label == 'pos' else 'plain'} things", label])
    return path


BINARY = ["data.format='classification'", "task.kind='classification'", "data.text_columns=['text']",
          "data.label_columns=['label']", "task.labels=['neg', 'pos']"]


@pytest.fixture(scope="module")
def binary_csv(tmp_path_factory, kit_cache) -> Path:
    return _binary_csv(tmp_path_factory.mktemp("one-class") / "train.csv")


def _one_class_fold(tmp_path: Path, data: Path) -> int:
    """A fold whose validation rows are all 'neg' (found with the checks that run before weights load)."""
    from kaggle_kit.train.plan import plan_run

    for fold in range(4):
        plan = plan_run(cfg_for(tmp_path, data, tmp_path / "probe", *BINARY), fold)
        if {plan.dataset.rows[i].label for i in plan.val_idx} == {0}:
            return fold
    raise AssertionError("no one-class fold in the fixture data")


def test_one_class_fold_with_log_loss_trains_to_the_end(tmp_path, binary_csv):
    """Old main: exit 2, "the evaluation gave eval_auc = nan … Likely cause: a learning rate too high", on a
    fold that simply holds one class while the task metric is log loss. Now it trains to the end and says
    why AUC is undefined (log line, metrics.json), with no NaN anywhere."""
    from kaggle_kit.train import run_training

    fold = _one_class_fold(tmp_path, binary_csv)
    lines: list = []
    cfg = cfg_for(tmp_path, binary_csv, tmp_path / "run", *BINARY, "train.max_steps=2", "train.eval_steps=1")
    result = run_training(cfg, fold=fold, log=lines.append)
    final = result.metrics["final"]
    assert result.metrics["global_step"] == 2 and "auc" not in final and "average_precision" not in final
    assert "one class" in final["undefined"]["auc"] and "neg" in final["undefined"]["auc"]
    saved = json.loads((result.output_dir / "metrics.json").read_text())
    assert saved["final"]["undefined"] == final["undefined"]
    evals = [ln for ln in lines if ln.startswith("[eval]")]
    assert len(evals) == 2 and all("auc undefined (" in ln and "nan" not in ln for ln in evals), evals
    manifest = json.loads((result.output_dir / "kit_manifest.json").read_text())
    assert all(np.isfinite(v) for v in manifest["metrics"].values() if isinstance(v, float))
    # what training computed in, and who chose it (the CPU: fp32 by the rule)
    assert manifest["training"]["numerics"] == {
        "device": "cpu", "compute_capability": None, "precision": "fp32", "precision_by": "rule",
        "base_dtype": "float32", "base_dtype_by": "rule", "compute_dtype": None, "compute_dtype_by": None}


@pytest.fixture
def no_weights(monkeypatch):
    import kaggle_kit.runtime.modeling as modeling

    def boom(*a, **k):
        raise AssertionError("weights were loaded before the metric was checked")

    monkeypatch.setattr(modeling, "load_base", boom)


@pytest.mark.parametrize("metric", ["auc", "average_precision"])
def test_a_selection_metric_undefined_on_the_fold_is_refused_before_weights_load(tmp_path, binary_csv, no_weights, metric):
    from kaggle_kit.train import run_training

    fold = _one_class_fold(tmp_path, binary_csv)
    cfg = cfg_for(tmp_path, binary_csv, tmp_path / "run", *BINARY, f"task.metric='{metric}'", "train.max_steps=1")
    with pytest.raises(KitError) as err:
        run_training(cfg, fold=fold, log=lambda m: None)
    msg = str(err.value)
    assert f"fold {fold}" in msg and metric in msg and "one class" in msg and "neg" in msg, msg
    assert "train.metric_for_best" in msg and "data.folds" in msg, msg  # the fixes
    assert not (tmp_path / "run.partial").exists()
    # the same metric on a fold that holds both classes passes the checks
    from kaggle_kit.train.plan import plan_run

    accepted = []
    for f in range(4):
        try:
            accepted.append(plan_run(cfg, f))
        except KitError as exc:
            assert "one class" in str(exc)
    assert accepted and all({p.dataset.rows[i].label for i in p.val_idx} == {0, 1} and p.metric == metric for p in accepted)


@pytest.mark.parametrize("at_step,steps,eval_steps,what", [
    (1, 3, 3, "the training loss is nan"),
    (2, 2, 2, "the evaluation gave eval_loss = nan"),
])
def test_a_nonfinite_loss_on_a_one_class_fold_still_stops_naming_the_loss(tmp_path, binary_csv, monkeypatch,
                                                                          at_step, steps, eval_steps, what):
    from kaggle_kit.train import classifier, run_training
    from kaggle_kit.train.numerics import NonFiniteTraining

    fold = _one_class_fold(tmp_path, binary_csv)
    monkeypatch.setattr(classifier, "_EXTRA_CALLBACKS", [_poison_callback(at_step)])
    cfg = cfg_for(tmp_path, binary_csv, tmp_path / "run", *BINARY, f"train.max_steps={steps}",
                  f"train.eval_steps={eval_steps}")
    with pytest.raises(NonFiniteTraining) as err:
        run_training(cfg, fold=fold, log=lambda m: None)
    msg = str(err.value)
    assert what in msg and "auc" not in msg and "average_precision" not in msg, msg


def test_guard_watches_the_loss_and_the_selection_metric_only():
    from kaggle_kit.train.numerics import NonFiniteTraining, nonfinite_guard

    guard = nonfinite_guard({"metric": "log_loss", "learning_rate": 2e-4, "partial": "runs/x.partial"})

    class State:
        global_step = 4

    guard.on_evaluate(None, State(), None, metrics={"eval_loss": 0.6, "eval_log_loss": 0.6, "eval_auc": float("nan"),
                                                    "eval_accuracy": 0.5})
    with pytest.raises(NonFiniteTraining, match=r"eval_loss = nan\. Likely") as err:
        guard.on_evaluate(None, State(), None, metrics={"eval_loss": float("nan"), "eval_log_loss": 0.6, "eval_auc": float("nan")})
    assert "eval_auc" not in str(err.value)
    auc_guard = nonfinite_guard({"metric": "auc", "partial": "p"})
    with pytest.raises(NonFiniteTraining, match="eval_auc = nan"):
        auc_guard.on_evaluate(None, State(), None, metrics={"eval_loss": 0.6, "eval_auc": float("nan")})


# --------------------------------------------------------------------------- one precision rule for training (issue 21)


class _Loaded(Exception):
    """Raised by a stand-in loader once it has seen what the recipe would load."""


def _capture(monkeypatch, module, name: str) -> dict:
    seen: dict = {}

    def loader(*args, **kwargs):
        seen.update(kwargs, args=args)
        raise _Loaded()

    monkeypatch.setattr(module, name, loader)
    return seen


def _training_arguments_flags(monkeypatch) -> dict:
    """TrainingArguments replaced by a recorder (the real one would set up the simulated CUDA device)."""
    import transformers

    seen: dict = {}

    class Recorder:
        def __init__(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(transformers, "TrainingArguments", Recorder)
    return seen


@pytest.mark.parametrize("mode", ["none", "4bit", "8bit"])
def test_classifier_on_a_t4_loads_and_computes_in_fp16(tmp_path, small_csv, fake_gpu, monkeypatch, mode):
    """Old main, on a T4 (compute capability 7.5): the 4-bit compute dtype stayed bfloat16 (the default) and the
    base loaded in bfloat16 (or, unquantized, in the checkpoint's dtype) while precision chose fp16."""
    import torch

    import kaggle_kit.runtime.modeling as modeling
    from kaggle_kit.runtime.modeling import load_tokenizer, quantization_config
    from kaggle_kit.train import classifier
    from kaggle_kit.train.numerics import training_numerics
    from kaggle_kit.train.plan import plan_run

    caps, _ = fake_gpu
    caps.update({0: (7, 5)})
    monkeypatch.setenv("LOCAL_RANK", "0")
    cfg = cfg_for(tmp_path, small_csv, tmp_path / "run", f"quantization.mode='{mode}'")
    plan = plan_run(cfg)
    seen = _capture(monkeypatch, modeling, "load_base")
    lines: list = []
    with pytest.raises(_Loaded):
        classifier.setup_model(cfg, plan, load_tokenizer(plan.base_path), lines.append)
    assert seen["dtype"] == "float16", seen
    if mode == "4bit":
        assert quantization_config(seen["quantization"]).bnb_4bit_compute_dtype == torch.float16
    if mode != "none":
        assert seen["quantization"]["compute_dtype"] == "float16"
    assert any("precision fp16 (rule: cuda:0 has compute capability 7.5" in ln for ln in lines), lines
    flags = _training_arguments_flags(monkeypatch)
    classifier.training_arguments(cfg, plan, 32, training_numerics(cfg).precision)
    assert flags["fp16"] is True and flags["bf16"] is False


def test_explicit_dtypes_on_a_t4_are_kept_and_logged_as_the_users_choice(tmp_path, small_csv, fake_gpu, monkeypatch):
    import torch

    import kaggle_kit.runtime.modeling as modeling
    from kaggle_kit.runtime.modeling import load_tokenizer, quantization_config
    from kaggle_kit.train import classifier
    from kaggle_kit.train.numerics import training_numerics
    from kaggle_kit.train.plan import plan_run

    caps, _ = fake_gpu
    caps.update({0: (7, 5)})
    cfg = cfg_for(tmp_path, small_csv, tmp_path / "run", "quantization.mode='4bit'", "quantization.compute_dtype='bfloat16'",
                  "model.dtype='float32'")
    plan = plan_run(cfg)
    seen = _capture(monkeypatch, modeling, "load_base")
    lines: list = []
    with pytest.raises(_Loaded):
        classifier.setup_model(cfg, plan, load_tokenizer(plan.base_path), lines.append)
    assert seen["dtype"] == "float32" and quantization_config(seen["quantization"]).bnb_4bit_compute_dtype == torch.bfloat16
    text = "\n".join(lines)
    assert "quantization.compute_dtype = 'bfloat16' (your setting" in text and "emulated" in text, text
    assert "model.dtype = 'float32' (your setting" in text, text
    rec = training_numerics(cfg).record()
    assert rec == {"device": "cuda:0", "compute_capability": "7.5", "precision": "fp16", "precision_by": "rule",
                   "base_dtype": "float32", "base_dtype_by": "user", "compute_dtype": "bfloat16", "compute_dtype_by": "user"}
    caps.update({0: (8, 0)})  # an A100: the rule picks bf16 everywhere
    rec = training_numerics(cfg_for(tmp_path, small_csv, tmp_path / "run", "quantization.mode='4bit'")).record()
    assert (rec["precision"], rec["base_dtype"], rec["compute_dtype"]) == ("bf16", "bfloat16", "bfloat16")


@pytest.mark.parametrize("mode", ["none", "4bit"])
def test_sft_on_a_t4_loads_and_computes_in_fp16(tmp_path, fake_gpu, monkeypatch, mode):
    import torch

    import kaggle_kit.runtime.generation as generation
    from kaggle_kit.runtime.modeling import quantization_config
    from kaggle_kit.train import sft

    caps, _ = fake_gpu
    caps.update({0: (7, 5)})
    cfg = load_config("/nonexistent/kit.toml", ["task.kind='sft'", f"quantization.mode='{mode}'"])
    seen = _capture(monkeypatch, generation, "load_causal")
    lines: list = []
    with pytest.raises(_Loaded):
        sft.setup_model(cfg, tmp_path / "base", lines.append)
    assert seen["dtype"] == "float16", seen
    if mode == "4bit":
        assert quantization_config(seen["args"][1]).bnb_4bit_compute_dtype == torch.float16
    assert any("precision fp16 (rule" in ln for ln in lines), lines
    flags = _training_arguments_flags(monkeypatch)
    sft.training_arguments(cfg, tmp_path / "ck", True, sft._precision(cfg))
    assert flags["fp16"] is True and flags["bf16"] is False


@pytest.mark.parametrize("mode", ["4bit", "8bit"])
def test_prediction_of_a_quantized_run_on_a_t4_computes_in_fp16(tmp_path, fake_gpu, monkeypatch, mode):
    """The same rule at prediction time: a run trained on an A100 (compute dtype bfloat16 recorded) predicts on
    a T4 in float16. Old main applied it to 4-bit only: an 8-bit base loaded in the recorded bfloat16."""
    from types import SimpleNamespace

    import kaggle_kit.runtime.modeling as modeling
    from kaggle_kit.runtime.manifest import CompatibilityError, Manifest

    caps, _ = fake_gpu
    caps.update({0: (7, 5)})
    quant = {"mode": mode, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"}
    manifest = Manifest(task={"kind": "pairwise", "labels": ["a", "b"]}, prompt={}, base_model={}, quantization=quant, peft={})
    plan = modeling.LoadPlan(tmp_path, manifest, False, tmp_path, dict(quant), None, tmp_path)
    seen = _capture(monkeypatch, modeling, "load_base")
    with pytest.raises(CompatibilityError):  # the stand-in loader stops there
        modeling.load_planned(plan, "cuda:0", tokenizer=SimpleNamespace(pad_token_id=0))
    assert seen["quantization"]["compute_dtype"] == "float16" and seen["dtype"] in (None, "float16"), seen

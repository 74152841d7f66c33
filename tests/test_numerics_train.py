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

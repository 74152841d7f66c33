"""What a competitor reads: one clean line per event, bars only on a terminal, no library noise.

The training-log test runs `kit train` in a fresh process (as a user does) and reads everything it
prints: stdout and stderr together.
"""
from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from kaggle_kit.runtime.progress import Progress, cpu_rates, duration, quiet_known_warnings, style

# what must never reach a user (issue 16): raw Trainer dicts, tqdm escape fragments, the listed warnings
RAW_DICT = re.compile(r"\{'(loss|eval_loss|train_runtime|grad_norm|learning_rate|epoch)'")
FRAGMENTS = ("\x1b[", "\r", "[A")
NOISE = ("gemm_4bit_forward", "is_gradient_checkpointing", "IProgress", "TqdmWarning", "Writing model shards")

TRAIN_LINE = re.compile(
    r"^\[train\] step \d+/\d+ epoch \d+\.\d\d \| loss \d+\.\d{4}( grad_norm \S+)?( lr \S+)? \| "
    r"([\d,]+ tokens/s )?[\d,.]+ samples/s \| elapsed \d+:\d\d( ETA \d+:\d\d)?$"
)
EVAL_LINE = re.compile(
    r"^\[eval\]  step \d+/\d+ epoch \d+\.\d\d \| \w+ \d+\.\d{4}( \w+ \d+\.\d{4})+ \| "
    r"[\d,.]+ rows/s [\d,]+ tokens/s \| elapsed \d+:\d\d( ETA \d+:\d\d)?$"
)


def assert_clean(text: str) -> None:
    assert not RAW_DICT.search(text), f"a raw Trainer dict was printed:\n{text}"
    for frag in FRAGMENTS:
        assert frag not in text, f"escape fragment {frag!r} in:\n{text!r}"
    for noise in NOISE:
        assert noise not in text, f"third-party noise {noise!r} in:\n{text}"


# --------------------------------------------------------------------------- progress


def test_style_bar_only_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("KIT_PROGRESS", raising=False)
    assert style(Tty()) == "bar"
    assert style(io.StringIO()) == "lines"  # notebooks, CI, pipes
    monkeypatch.setenv("KIT_PROGRESS", "lines")
    assert style(Tty()) == "lines"


def test_progress_plain_lines_have_count_rate_and_eta(monkeypatch):
    monkeypatch.setenv("KIT_PROGRESS", "lines")
    lines = []
    with cpu_rates():
        bar = Progress(10, "predict", "row", log=lines.append, interval=0.0)
    for _ in range(4):
        bar.update(2)
    bar.set_postfix_str("900 tok/s")
    bar.close()
    assert len(lines) == 5  # one per update (interval 0), the last one on close
    assert re.match(r"^predict: 2/10 rows \(20%\) \| [\d,.]+ rows/s \| [\d,.-]+ rows/CPU-s \| elapsed 0:\d\d, ETA \d+:\d\d$", lines[0]), lines[0]
    assert lines[-1].startswith("predict: 8/10 rows (80%)") and "900 tok/s" in lines[-1]
    assert_clean("\n".join(lines))


def test_progress_lines_are_throttled(monkeypatch):
    monkeypatch.setenv("KIT_PROGRESS", "lines")
    lines = []
    with Progress(1000, "generate", "row", log=lines.append, interval=3600) as bar:
        for _ in range(1000):
            bar.update(1)
    assert lines == [lines[-1]] and lines[0].startswith("generate: 1,000/1,000 rows (100%)")


def test_progress_bar_on_a_terminal_goes_to_the_stream(monkeypatch):
    monkeypatch.setenv("KIT_PROGRESS", "bar")
    stream, lines = io.StringIO(), []
    with Progress(5, "tta", "row", log=lines.append, stream=stream) as bar:
        bar.update(5)
    assert "tta" in stream.getvalue() and lines and lines[-1].startswith("tta: 5/5 rows")


def test_duration():
    assert duration(42) == "0:42" and duration(3723) == "1:02:03" and duration(None) == "?"


def test_known_warnings_hidden_only_inside_the_block():
    log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with quiet_known_warnings():
                warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
                warnings.warn("something else is deprecated", FutureWarning)
                log.warning("Failed to load CPU gemm_4bit_forward from kernels-community: no module")
                log.warning("a real bitsandbytes problem")
            inside = [str(w.message) for w in seen]
            warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
            log.warning("Failed to load CPU gemm_4bit_forward from kernels-community: no module")
        assert inside == ["something else is deprecated"]  # unknown warnings still show
        assert "is_gradient_checkpointing" in str(seen[-1].message)  # nothing silenced for good
        text = stream.getvalue()
        assert "a real bitsandbytes problem" in text
        assert text.count("gemm_4bit_forward") == 1  # only the one logged after the block
    finally:
        logging.getLogger().removeHandler(handler)


# --------------------------------------------------------------------------- the training log


def test_metric_text_names_each_metric_once():
    from kaggle_kit.train.loglines import metric_text

    text = metric_text({"eval_loss": 1.1, "eval_accuracy": 0.6, "eval_log_loss": 1.1, "eval_runtime": 2.0,
                        "eval_samples_per_second": 30.0, "epoch": 1.0}, "accuracy")
    assert text == "accuracy 0.6000 val_loss 1.1000 log_loss 1.1000"


@pytest.fixture(scope="module")
def train_log(tmp_path_factory, tiny_base, lmsys_synth):
    """`kit train` in a fresh process, stdout and stderr as one text (no terminal: plain lines)."""
    tmp = tmp_path_factory.mktemp("train-log")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("KIT_PROGRESS", None)
    cmd = [str(Path(sys.executable).parent / "kit"), "train", "--model", str(tiny_base), "--data", str(lmsys_synth),
           "--output", str(tmp / "run"), "--max-steps", "4", "--max-length", "64",
           "--set", "train.eval_steps=2", "--set", "train.logging_steps=1", "--set", "train.batch_size=8",
           "--set", "train.eval_batch_size=32", "--set", "train.warmup_ratio=0.0", "--set", "train.metric_for_best='accuracy'"]
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr, tmp / "run"


def test_training_log_line_shape(train_log):
    text, run = train_log
    lines = text.splitlines()
    train = [ln for ln in lines if ln.startswith("[train] step")]
    evals = [ln for ln in lines if ln.startswith("[eval]")]
    assert len(train) == 4, text  # logging_steps=1, 4 steps
    for ln in train:
        assert TRAIN_LINE.match(ln), ln
    assert len(evals) == 2, text  # eval_steps=2
    for ln in evals:
        assert EVAL_LINE.match(ln), ln
        names = [w for w in ln.split(" | ")[1].split()[::2]]
        assert names[0] == "accuracy" and len(names) == len(set(names)), ln  # the task metric first, each once
        assert {"val_loss", "log_loss", "macro_f1"} <= set(names), ln
    final = [ln for ln in lines if ln.startswith("[final]")]
    assert len(final) == 1 and "oof.csv" in final[0] and (run / "oof.csv").is_file()
    done = next(ln for ln in lines if ln.startswith("done:"))
    names = done.split(" | ")[1].split()[::2]
    assert names[0] == "accuracy" and len(names) == len(set(names)), done  # the metric once, first


def test_training_log_has_no_raw_dicts_fragments_or_noise(train_log):
    assert_clean(train_log[0])


def test_checker_catches_what_it_must():
    """The checks above can fail: each forbidden thing is caught."""
    for bad in ("{'loss': '1.068', 'grad_norm': 3.1}", "[eval] x\x1b[A", "  0%|  | 0/15 [00:00<?, ?it/s]\r",
                "FutureWarning: `is_gradient_checkpointing` is deprecated",
                "Failed to load CPU gemm_4bit_forward from kernels-community"):
        with pytest.raises(AssertionError):
            assert_clean(bad)
    assert not TRAIN_LINE.match("[train] step 1/4 epoch 0.25 | {'loss': 1.0}")


def test_run_folder_plots_open(train_log):
    """curves.png, calibration.png (log loss is the task metric) and the confusion matrix are real PNGs."""
    _, run = train_log
    for name in ("curves.png", "calibration.png", "confusion_matrix.png"):
        data = (run / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


# --------------------------------------------------------------------------- the first line, the heartbeat, the baselines


def test_training_log_says_what_to_expect_and_names_the_baselines(train_log):
    """Before step 1 a line says when lines come; the baselines are fitted before weights load and the done
    line compares the model with them on the task metric."""
    text, run = train_log
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("[train] starting:"))
    assert "a line after step 1, then every step" in lines[start] and "at least every 60 s" in lines[start]
    assert start < next(i for i, ln in enumerate(lines) if ln.startswith("[train] step"))
    base = next(i for i, ln in enumerate(lines) if ln.startswith("baselines on the"))
    assert base < next(i for i, ln in enumerate(lines) if ln.startswith("base:")), "baselines come before weights load"
    assert "TF-IDF+LR" in lines[base] and "prior" in lines[base]
    done = next(ln for ln in lines if ln.startswith("done:"))
    assert " | baselines (log_loss): TF-IDF+LR " in done and ", prior " in done, done
    import json

    record = json.loads((run / "metrics.json").read_text())["baselines"]
    assert record["metric"] == "log_loss" and {"prior", "tfidf_lr", "model"} <= set(record)
    assert record["n_val"] == json.loads((run / "metrics.json").read_text())["rows"]["val"]


class _State:
    global_step, max_steps, is_world_process_zero, epoch, num_input_tokens_seen = 0, 40, True, 0.0, 0


class _Args:
    logging_steps, logging_first_step = 10, True


def test_heartbeat_lines_while_a_step_is_slow(monkeypatch):
    """A silent run prints a heartbeat (steps done, time per step, ETA) at least every `heartbeat_s`."""
    import time

    from kaggle_kit.train.loglines import HEARTBEAT_S, LogLines

    assert HEARTBEAT_S <= 60
    monkeypatch.setenv("KIT_PROGRESS", "lines")
    lines: list = []
    cb = LogLines(lines.append)
    cb.heartbeat_s = 0.2
    state = _State()
    cb.on_train_begin(_Args(), state, None)
    assert lines[0].startswith("[train] starting: 40 steps to step 40; a line after step 1, then every 10 steps")
    time.sleep(0.5)
    assert any(ln.startswith("[train] heartbeat: step 0/40 | step 1 running") for ln in lines), lines
    state.global_step = 3
    n = len(lines)
    time.sleep(0.5)
    beats = [ln for ln in lines[n:] if ln.startswith("[train] heartbeat:")]
    assert beats and re.match(r"^\[train\] heartbeat: step 3/40 \| [\d.]+ s/step \| elapsed \d+:\d\d ETA \d+:\d\d$", beats[-1]), beats
    cb.on_train_end(_Args(), state, None)
    n = len(lines)
    time.sleep(0.5)
    assert len(lines) == n, "no heartbeat after training ends"


def test_no_heartbeat_while_lines_keep_coming(monkeypatch):
    from kaggle_kit.train.loglines import LogLines

    import time

    monkeypatch.setenv("KIT_PROGRESS", "lines")
    lines: list = []
    cb = LogLines(lines.append)
    cb.heartbeat_s = 0.5
    cb.on_train_begin(_Args(), _State(), None)
    for _ in range(8):
        time.sleep(0.1)
        cb.say("[train] step …")
    cb.stop_heartbeat()
    assert not [ln for ln in lines if "heartbeat" in ln], lines

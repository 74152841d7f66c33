"""No silent wrong predictions (issue 11): non-finite logits, the float32 re-run, honest fills and budgets.

The engine is driven with a fake classifier whose logits are known exactly (rows chosen by their token
ids come out NaN always, or inf only in float16) and with the real tiny Gemma-2 adapters, poisoned
with inf/NaN in the head and elsewhere. Budget runs use a virtual clock (each forward pass advances it
by padded tokens × a fixed rate), so the degrade steps and the deadline are deterministic.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

SHARED_CASE = Path(__file__).resolve().parents[1].parent / "shared" / "cases" / "c12-nonfinite-logits" / "poison_head.py"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def short_adapter(tiny_base, tmp_path_factory) -> Path:
    """An untrained LoRA adapter at max_length 64 (fast, also in float16 on the CPU)."""
    from conftest import make_untrained_adapter

    return make_untrained_adapter(tmp_path_factory.mktemp("short") / "run", tiny_base, max_length=64)


@pytest.fixture(scope="module")
def small_test(tmp_path_factory) -> Path:
    from kaggle_kit.data.synth import write_synth

    return write_synth("lmsys", 12, tmp_path_factory.mktemp("numerics") / "test.csv", seed=7, test=True)


@pytest.fixture(scope="module")
def rows(small_test):
    from kaggle_kit.runtime.formats import read_dataset

    return read_dataset(small_test).rows


@pytest.fixture(scope="module")
def loaded32(short_adapter):
    from kaggle_kit.runtime.modeling import load_for_inference

    return load_for_inference(short_adapter, device="cpu")


def _keys(tok, manifest, rows, swapped=False, max_length=None):
    """The fake model's row key (sum of token id × position, so an A/B swap changes it) of each row's encoding."""
    from dataclasses import replace

    from kaggle_kit.runtime.formats import swap_permutation
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec

    spec = PromptSpec.from_dict(manifest.prompt)
    if max_length:
        spec = replace(spec, max_length=max_length)
    perm = swap_permutation(manifest.labels)
    rows = [r.swapped(perm) for r in rows] if swapped else list(rows)
    return [int(sum(t * (j + 1) for j, t in enumerate(e.input_ids))) for e in Encoder(tok, spec, "pairwise").encode(rows)]


def fake_classifier(dtype="float32", always_nan=(), inf_in_half=(), clock=None, rate=1e-3):
    """A torch module with the interface the engine uses: logits from the row key (see :func:`_keys`);
    rows whose key is in ``always_nan`` give NaN, rows in ``inf_in_half`` give +inf while the module's
    weight is 16-bit; each forward advances ``clock`` by padded tokens × ``rate``."""
    import torch

    class Fake(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3, dtype=getattr(torch, dtype)))
            self.config = SimpleNamespace(num_labels=3, pad_token_id=None, use_cache=False, model_type="fake",
                                          _attn_implementation="eager")
            self.calls = []

        def forward(self, input_ids=None, attention_mask=None):
            if clock is not None:
                clock.now += input_ids.numel() * rate
            pos = torch.arange(1, input_ids.shape[1] + 1, dtype=input_ids.dtype)
            keys = (input_ids * attention_mask * pos).sum(dim=1)
            self.calls.append((self.w.dtype, keys.tolist(), int(attention_mask.sum(dim=1).max())))
            base = torch.stack([keys % 7, keys % 5, keys % 3], dim=1).float() / 3.0
            logits = base * self.w.float()
            for r, k in enumerate(keys.tolist()):
                if k in always_nan:
                    logits[r, 0] = float("nan")
                if k in inf_in_half and self.w.dtype in (torch.float16, torch.bfloat16):
                    logits[r, 1] = float("inf")
            return SimpleNamespace(logits=logits.to(self.w.dtype))

    return Fake()


def _softmax(keys):
    x = np.stack([np.array(keys) % 7, np.array(keys) % 5, np.array(keys) % 3], axis=1).astype(np.float64) / 3.0
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class VirtualClock:
    """Replaces ``time`` in the engine modules: time advances only when the (fake) model runs."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def perf_counter(self):
        return self.now

    def time(self):
        return self.now


@pytest.fixture
def virtual_clock(monkeypatch):
    from kaggle_kit.runtime import engine, workers

    clock = VirtualClock()
    monkeypatch.setattr(engine, "time", clock)
    monkeypatch.setattr(workers, "time", clock)
    return clock


# --------------------------------------------------------------------------- the engine with a fake model


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_nonfinite_rows_rerun_in_fp32_then_filled_with_mean_of_finite_rows(loaded32, rows, dtype):
    from kaggle_kit.runtime.infer import EngineReport, predict_rows

    _, tok, manifest = loaded32
    keys = _keys(tok, manifest, rows)
    ids = [r.id for r in rows]
    nan_rows, half_rows = [1, 6], [3, 4, 9]
    model = fake_classifier(dtype, always_nan={keys[i] for i in nan_rows}, inf_in_half={keys[i] for i in half_rows})
    rep = EngineReport(decisions=[])
    probs = predict_rows(model, tok, manifest, rows, report=rep)

    expected = _softmax(keys)
    assert np.isfinite(probs).all()
    if dtype == "float16":  # the half rows come back finite from the float32 re-run
        assert rep.nonfinite_rows == [ids[i] for i in sorted(nan_rows + half_rows)]
        assert rep.rerun_rows == rep.nonfinite_rows
        predicted = [i for i in range(len(rows)) if i not in nan_rows]
        np.testing.assert_allclose(probs[half_rows], expected[half_rows], atol=1e-3)
        assert model.w.dtype.__str__() == "torch.float16"  # cast back after the re-run
        assert any("re-ran 5 non-finite rows in float32" in d and "3 now finite, 2 still not" in d for d in rep.decisions)
    else:  # already float32: no pointless re-run, the rows are filled
        assert rep.nonfinite_rows == [ids[i] for i in sorted(nan_rows)]
        assert rep.rerun_rows == []
        assert any("not re-run: the model already computes in float32" in d for d in rep.decisions)
        predicted = [i for i in range(len(rows)) if i not in nan_rows]
    assert rep.filled_rows == [ids[i] for i in nan_rows]
    assert rep.predicted_rows == len(predicted)
    # the fill is the mean of the rows really predicted (not uniform, not NaN)
    fill = probs[predicted].astype(np.float64).mean(axis=0)
    fill /= fill.sum()
    np.testing.assert_allclose(probs[nan_rows], np.tile(fill, (len(nan_rows), 1)), atol=1e-6)
    np.testing.assert_allclose(rep.fill, fill, atol=1e-6)
    assert not np.allclose(fill, 1 / 3, atol=1e-3)
    assert any(f"{len(nan_rows)} rows have no finite prediction" in d and ids[1] in d for d in rep.decisions)


def test_forward_probs_marks_minus_inf_rows_as_nonfinite():
    """softmax([-inf, 1, 2]) is finite ([0, .27, .73]) but wrong: the whole row must come back NaN."""
    import torch

    from kaggle_kit.runtime.infer import forward_probs

    class M(torch.nn.Module):
        def forward(self, input_ids=None, attention_mask=None):
            logits = torch.tensor([[float("-inf"), 1.0, 2.0], [0.0, 1.0, 2.0], [float("inf"), 0.0, 0.0]])
            return SimpleNamespace(logits=logits)

    ids = np.zeros((3, 2), dtype=np.int64)
    p = forward_probs(M(), ids, np.ones_like(ids), "cpu")
    assert np.isnan(p[0]).all() and np.isnan(p[2]).all() and np.isfinite(p[1]).all()


def test_tta_keeps_the_finite_pass_when_the_other_is_not(loaded32, rows):
    from kaggle_kit.runtime.formats import swap_permutation
    from kaggle_kit.runtime.infer import EngineReport, predict_rows

    _, tok, manifest = loaded32
    keys, sw_keys = _keys(tok, manifest, rows), _keys(tok, manifest, rows, swapped=True)
    ids = [r.id for r in rows]
    bad_swap, bad_first = [0, 5], [2]  # the swapped pass NaN / the first pass NaN
    model = fake_classifier("float32", always_nan={sw_keys[i] for i in bad_swap} | {keys[i] for i in bad_first})
    rep = EngineReport(decisions=[])
    probs = predict_rows(model, tok, manifest, rows, tta="all", report=rep)

    perm = swap_permutation(manifest.labels)
    first, mirrored = _softmax(keys), _softmax(sw_keys)[:, perm]
    both = [i for i in range(len(rows)) if i not in bad_swap + bad_first]
    np.testing.assert_allclose(probs[bad_swap], first[bad_swap], atol=1e-6)  # old main: NaN → uniform
    np.testing.assert_allclose(probs[bad_first], mirrored[bad_first], atol=1e-6)
    np.testing.assert_allclose(probs[both], 0.5 * (first[both] + mirrored[both]), atol=1e-6)
    assert rep.tta_rows == len(both) and rep.tta_single_pass == 3
    assert rep.filled_rows == [] and rep.nonfinite_rows == [ids[2]]
    assert any("kept their one finite pass" in d for d in rep.decisions)


# --------------------------------------------------------------------------- time budget (virtual clock)


def _at_length(manifest, max_length: int):
    """A copy of ``manifest`` whose prompt max_length is ``max_length`` (room for budget cuts above 64)."""
    import copy

    m = copy.deepcopy(manifest)
    m.prompt["max_length"] = max_length
    return m


def _clocked(model, clock, rate):
    """The real model behind a wrapper that advances the virtual clock by padded tokens × rate."""
    import torch

    class Clocked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model
            self.config = model.config
            self.lengths = []

        def forward(self, input_ids=None, attention_mask=None):
            clock.now += input_ids.numel() * rate
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    return Clocked()


def test_budget_degrades_then_fills_cut_rows_with_mean_of_predicted_rows(loaded32, rows, virtual_clock):
    """A budget that fits only part of the run: a degrade step happens, some rows are predicted before the
    deadline, the rest get the mean of the predicted rows — finite ones only (one predicted row is NaN)."""
    from kaggle_kit.runtime.infer import EngineReport, predict_rows

    _, tok, manifest = loaded32
    manifest = _at_length(manifest, 256)
    keys = _keys(tok, manifest, rows)
    nan_row = 0
    rate = 1e-3
    model = fake_classifier("float32", always_nan={keys[nan_row]}, clock=virtual_clock, rate=rate)
    full = EngineReport(decisions=[])
    t = virtual_clock.now
    predict_rows(model, tok, manifest, rows, batch_tokens=128, max_batch_rows=2, report=full)
    full_seconds = virtual_clock.now - t
    rep = EngineReport(decisions=[])
    probs = predict_rows(model, tok, manifest, rows, batch_tokens=128, max_batch_rows=2,
                         budget_minutes=full_seconds * 0.45 / 60, report=rep)

    ids = [r.id for r in rows]
    assert any("time budget" in d and "max length 256 →" in d for d in rep.decisions), rep.decisions  # a degrade step
    assert 0 < rep.fallback_rows < len(rows) - 1  # rows predicted before the deadline, rows cut by it
    cut = [ids.index(i) for i in rep.fallback_ids]
    assert nan_row not in cut  # it ran (and came out NaN) before the deadline
    predicted = [i for i in range(len(rows)) if i not in cut and i != nan_row]
    assert rep.predicted_rows == len(predicted) > 0 and rep.filled_rows == [ids[nan_row]]
    fill = probs[predicted].astype(np.float64).mean(axis=0)
    fill /= fill.sum()
    np.testing.assert_allclose(probs[cut], np.tile(fill, (len(cut), 1)), atol=1e-6)
    assert np.isfinite(probs).all() and not np.allclose(fill, 1 / 3, atol=1e-3)
    assert any("could not run in time and got the mean prediction of the" in d for d in rep.decisions)


def test_swapped_pass_uses_the_length_cap_of_its_rows_first_pass(loaded32, rows, virtual_clock, monkeypatch):
    """After a budget cut of max_length, rows that already ran at full length get their swapped (TTA) pass
    at full length too, so the two averaged passes saw the same text."""
    from kaggle_kit.runtime import engine

    _, tok, manifest = loaded32
    manifest = _at_length(manifest, 256)
    seen = []  # (positions, max_length, swapped)
    encode = engine._Encoding.encode

    def spy(self, positions, max_length, swapped=False):
        seen.append((list(positions), int(max_length), swapped))
        return encode(self, positions, max_length, swapped)

    monkeypatch.setattr(engine._Encoding, "encode", spy)
    model = fake_classifier("float32", clock=virtual_clock, rate=1e-3)
    rep = engine.EngineReport(decisions=[])
    t = virtual_clock.now
    engine.predict_rows(model, tok, manifest, rows, batch_tokens=128, max_batch_rows=2)
    one_pass = virtual_clock.now - t
    seen.clear()
    probs = engine.predict_rows(model, tok, manifest, rows, tta="all", batch_tokens=128, max_batch_rows=2,
                               budget_minutes=one_pass * 1.7 / 60, report=rep)
    assert any("max length 256 →" in d for d in rep.decisions), rep.decisions
    cap = {}
    for positions, length, swapped in seen:
        if not swapped:
            cap.update({p: length for p in positions})
    swapped_caps = {p: length for positions, length, swapped in seen if swapped for p in positions}
    assert swapped_caps, "no TTA pass ran"
    assert swapped_caps == {p: cap[p] for p in swapped_caps}
    assert len(set(swapped_caps.values())) == 2  # both full-length and shortened rows had a swapped pass
    assert np.isfinite(probs).all()


# --------------------------------------------------------------------------- real poisoned adapters


def _poison(adapter: Path, dst: Path, key_part: str, value: float) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, dst)
    path = dst / "adapter_model.safetensors"
    state = load_file(str(path))
    key = next(k for k in state if key_part in k)
    w = state[key].clone()
    w.view(-1)[0] = value
    state[key] = w
    save_file(state, str(path), metadata={"format": "pt"})
    return dst


def _cli_predict(adapter, data, out, tmp_path, *extra):
    from click.testing import CliRunner

    from kaggle_kit.cli import main

    r = CliRunner().invoke(main, ["predict", "--adapter", str(adapter), "--data", str(data), "--out", str(out), "--no-progress",
                                  "--json", "--config", str(tmp_path / "none.toml"), *extra])
    text = r.output
    payload = json.loads(text[text.index("{\n"):text.rindex("}") + 1])
    return r, payload


@pytest.mark.parametrize("where,value", [("score.weight", float("inf")), ("score.weight", float("nan")),
                                         ("lora_A", float("inf")), ("lora_B", float("nan"))])
def test_poisoned_adapter_reports_rows_by_id_and_exits_nonzero(short_adapter, small_test, rows, tmp_path, where, value):
    from kaggle_kit.runtime.submission import validate_file

    bad = _poison(short_adapter, tmp_path / "bad", where, value)
    out = tmp_path / "sub.csv"
    r, payload = _cli_predict(bad, small_test, out, tmp_path)
    ids = [x.id for x in rows]
    assert r.exit_code == 1, r.output
    validate_file(out, ids, "lmsys")  # the submission is still written, every id once
    assert payload["nonfinite_rows"] == ids and payload["filled_rows"] == ids
    assert payload["rerun_rows"] == []  # float32 on the CPU already
    assert payload["predicted_rows"] == 0 and payload["rows_per_s"] == 0 and payload["too_many_unpredicted"] is True
    assert payload["fill"] == pytest.approx([1 / 3] * 3)
    assert "Error:" in r.output and "could not be predicted" in r.output and "no row was predicted" in r.output


def test_shared_case_c12_poisoned_head(short_adapter, small_test, tmp_path):
    """The shared fault case: poison_head.py puts one inf into the trained head."""
    if not SHARED_CASE.is_file():
        pytest.skip("../shared/cases/c12-nonfinite-logits is absent")
    bad = tmp_path / "run"
    shutil.copytree(short_adapter, bad)
    subprocess.run([sys.executable, str(SHARED_CASE), str(bad / "adapter_model.safetensors")], check=True, capture_output=True)
    r, payload = _cli_predict(bad, small_test, tmp_path / "sub.csv", tmp_path)
    assert r.exit_code == 1 and len(payload["nonfinite_rows"]) == 12 and len(payload["filled_rows"]) == 12
    # allowing every row to be unpredicted: the same report, exit 0
    r, payload = _cli_predict(bad, small_test, tmp_path / "sub2.csv", tmp_path, "--max-unpredicted-share", "1")
    assert r.exit_code == 0 and len(payload["filled_rows"]) == 12


def test_float16_overflow_is_rerun_in_float32_on_a_real_model(short_adapter, rows, loaded32):
    """A float16 model whose LoRA output overflows 65,504: every row is inf in float16, the float32
    re-run predicts them all (close to the float32 model's own predictions), and the model is cast back."""
    import torch

    from kaggle_kit.runtime.infer import EngineReport, predict_rows
    from kaggle_kit.runtime.modeling import load_for_inference

    model, tok, manifest = load_for_inference(short_adapter, device="cpu", dtype="float16")
    head = [p for n, p in model.named_parameters() if "modules_to_save" in n]
    assert head and all(p.dtype == torch.float32 for p in head)  # the head stays float32 on a float16 base
    m32 = loaded32[0]
    with torch.no_grad():
        for (n, p), (n32, p32) in zip(model.named_parameters(), m32.named_parameters()):
            if "lora_B" in n and "v_proj" in n:
                p.fill_(3e4)
                p32.data = torch.full_like(p32, 3e4)
    sub = rows[:6]
    rep = EngineReport(decisions=[])
    probs = predict_rows(model, tok, manifest, sub, report=rep)
    ref = predict_rows(m32, tok, manifest, sub)
    ids = [r.id for r in sub]
    assert rep.nonfinite_rows == ids and rep.rerun_rows == ids and rep.filled_rows == []
    np.testing.assert_allclose(probs, ref, atol=2e-3)
    assert {p.dtype for n, p in model.named_parameters() if "lora" not in n and "modules_to_save" not in n} == {torch.float16}


def test_tiny_budget_counts_no_predicted_rows_and_fails_the_cli(short_adapter, small_test, tmp_path):
    """A budget that ends before the first batch: every row gets a uniform fill, said so; rows/s counts
    predicted rows only (0, not the thousands a division by all rows gave), and the command exits 1."""
    r, payload = _cli_predict(short_adapter, small_test, tmp_path / "sub.csv", tmp_path, "--budget-minutes", "0.00001")
    assert r.exit_code == 1
    assert payload["predicted_rows"] == 0 and payload["fallback_rows"] == 12 and payload["rows_per_s"] == 0
    assert any("no row was predicted" in d for d in payload["decisions"])

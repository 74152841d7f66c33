"""The inference engine: order, TTA symmetry, workers, time budget, compatibility checks, kit predict."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kaggle_kit.runtime.batching import TokenTable, padding_share, plan_batches


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def loaded(untrained_adapter):
    from kaggle_kit.runtime.modeling import load_for_inference

    model, tok, manifest = load_for_inference(untrained_adapter, device="cpu")
    return model, tok, manifest


@pytest.fixture(scope="module")
def test_rows(lmsys_synth_test):
    from kaggle_kit.runtime.formats import read_dataset

    return read_dataset(lmsys_synth_test).rows


def _manual(model, tok, manifest, rows):
    """Each row alone (no padding at all), the plainest possible reference."""
    import torch

    from kaggle_kit.runtime.prompting import Encoder, PromptSpec

    enc = Encoder(tok, PromptSpec.from_dict(manifest.prompt), "pairwise")
    out = []
    with torch.inference_mode():
        for e in enc.encode(rows):
            out.append(model(input_ids=torch.tensor([e.input_ids])).logits.float().softmax(-1)[0].numpy())
    return np.array(out)


# --------------------------------------------------------------------------- batching


def test_plan_batches_covers_each_row_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = np.clip((rng.lognormal(0, 0.9, 500) * 300).astype(int), 5, 3000)
    batches = plan_batches(lengths, 4096, 32)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    for b in batches:
        assert len(b) <= 32
        assert len(b) == 1 or len(b) * lengths[b].max() <= 4096
    assert padding_share(batches, lengths) < 0.03
    naive = [np.arange(i, min(i + 8, 500)) for i in range(0, 500, 8)]
    assert padding_share(naive, lengths) > 0.2  # the dataset-order way wastes far more


def test_token_table_batch_pads_right_only_to_longest():
    ids = [[5, 6, 7], [8], [9, 10, 11, 12, 13], []]
    table = TokenTable(ids)
    b = table.batch(np.array([2, 0, 1]), pad_id=0)
    assert b.input_ids.tolist() == [[9, 10, 11, 12, 13], [5, 6, 7, 0, 0], [8, 0, 0, 0, 0]]
    assert b.attention_mask.tolist() == [[1] * 5, [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]
    assert b.padded == 15 and b.tokens == 9


def test_order_restored_after_sorting(loaded, test_rows):
    from kaggle_kit.runtime.infer import predict_rows

    model, tok, manifest = loaded
    rows = test_rows[:16]
    got = predict_rows(model, tok, manifest, rows, batch_tokens=1024, max_batch_rows=4)
    want = _manual(model, tok, manifest, rows)
    assert got.shape == (16, 3)
    np.testing.assert_allclose(got, want, atol=2e-5)
    # and it is not the same prediction everywhere (so the comparison can fail)
    assert np.abs(want - want.mean(axis=0)).max() > 1e-3


def test_inplace_attention_matches_stock_and_is_restored(loaded, test_rows):
    from kaggle_kit.runtime.infer import predict_rows

    model, tok, manifest = loaded
    rows = test_rows[:12]
    fast = predict_rows(model, tok, manifest, rows, inplace_attention=True)
    stock = predict_rows(model, tok, manifest, rows, inplace_attention=False)
    np.testing.assert_allclose(fast, stock, atol=1e-5)
    assert model.config._attn_implementation == "eager"


# --------------------------------------------------------------------------- TTA


def test_tta_is_symmetric_under_swapping(loaded, test_rows):
    """With TTA, predicting the A/B-swapped rows gives the mirrored probabilities of the originals."""
    from kaggle_kit.runtime.formats import swap_permutation
    from kaggle_kit.runtime.infer import predict_rows

    model, tok, manifest = loaded
    perm = swap_permutation(manifest.labels)
    assert perm == [1, 0, 2]
    rows = test_rows[:20]
    swapped = [r.swapped(perm) for r in rows]
    p = predict_rows(model, tok, manifest, rows, tta="all")
    q = predict_rows(model, tok, manifest, swapped, tta="all")
    np.testing.assert_allclose(q[:, perm], p, atol=2e-5)
    # without TTA the untrained model is not symmetric, so the test above can fail
    p0 = predict_rows(model, tok, manifest, rows, tta="none")
    q0 = predict_rows(model, tok, manifest, swapped, tta="none")
    assert np.abs(q0[:, perm] - p0).max() > 1e-4
    # TTA = average of the pass and the mirrored swapped pass
    np.testing.assert_allclose(p, 0.5 * (p0 + q0[:, perm]), atol=2e-5)


def test_tta_uncertain_share_only_changes_that_share(loaded, test_rows):
    from kaggle_kit.runtime.infer import EngineReport, predict_rows

    model, tok, manifest = loaded
    rows = test_rows[:20]
    p0 = predict_rows(model, tok, manifest, rows, tta="none")
    rep = EngineReport(decisions=[])
    p = predict_rows(model, tok, manifest, rows, tta="uncertain:0.25", report=rep)
    changed = np.where(np.abs(p - p0).max(axis=1) > 1e-7)[0]
    assert rep.tta_rows == 5 and len(changed) == 5
    uncertainty = 1 - p0.max(axis=1)
    assert set(changed) == set(np.argsort(-uncertainty)[:5])


def test_parse_tta_rejects_bad_values():
    from kaggle_kit.runtime.infer import parse_tta

    assert parse_tta("none") == 0 and parse_tta("all") == 1 and parse_tta("uncertain:0.3") == 0.3
    for bad in ("some", "uncertain:1.5", "uncertain:x"):
        with pytest.raises(ValueError, match="uncertain:FRACTION"):
            parse_tta(bad)


# --------------------------------------------------------------------------- workers


def test_two_workers_equal_one_worker(loaded, test_rows):
    from kaggle_kit.runtime.infer import predict_rows

    model, tok, manifest = loaded
    rows = test_rows[:40]
    one = predict_rows(model, tok, manifest, rows, batch_tokens=2048, workers=1)
    two = predict_rows(model, tok, manifest, rows, batch_tokens=2048, replicas=[(model, "cpu"), (model, "cpu")])
    np.testing.assert_allclose(two, one, atol=1e-6)


# --------------------------------------------------------------------------- time budget


def test_plan_fit_degrades_length_then_tta():
    from kaggle_kit.runtime.infer import _plan_fit

    lengths = np.full(100, 1000)
    # 1e-4 s per padded token: the full plan costs 10 s, with TTA 20 s
    cap, tta, proj = _plan_fit(lengths, 1000, 1.0, 100, 1e-4, 1, 8192, 64, 100.0)
    assert (cap, tta) == (1000, 1.0)
    cap, tta, proj = _plan_fit(lengths, 1000, 1.0, 100, 1e-4, 1, 8192, 64, 16.0)
    assert cap == 750 and tta == 1.0 and proj <= 16.0
    cap, tta, proj = _plan_fit(lengths, 1000, 1.0, 100, 1e-4, 1, 8192, 64, 8.0)
    assert cap == 500 and tta == 0.5 and proj <= 8.0
    cap, tta, proj = _plan_fit(lengths, 1000, 1.0, 100, 1e-4, 1, 8192, 64, 3.0)
    assert cap == 250 and tta == 0.0


def test_tiny_budget_still_writes_every_row(untrained_adapter, lmsys_synth_test, tmp_path):
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.infer import predict_file
    from kaggle_kit.runtime.submission import validate_file

    logs = []
    res = predict_file(untrained_adapter, lmsys_synth_test, tmp_path / "sub.csv", tta="all", budget_minutes=0.001,
                       log=logs.append, progress=False)
    ids = read_dataset(lmsys_synth_test).ids
    validate_file(res.out_path, ids, "lmsys")
    assert res.rows == len(ids) == 120
    assert res.fallback_rows > 0
    assert any("time budget" in d for d in res.decisions)
    assert np.isfinite(res.probabilities).all()
    # honest figures: nothing ran before the deadline, so nothing was predicted and the run is not trusted
    assert res.predicted_rows == 120 - res.fallback_rows and res.rows_per_second == res.predicted_rows / (res.seconds - res.load_seconds)
    if res.predicted_rows == 0:
        assert any("uniform prediction (no row was predicted" in d for d in res.decisions)
    assert res.too_many_unpredicted and any(d.startswith("error:") for d in res.decisions)


# (the degrade-then-fill budget run is tested deterministically, on a virtual clock, in
# tests/test_numerics_infer.py::test_budget_degrades_then_fills_cut_rows_with_mean_of_predicted_rows)


# --------------------------------------------------------------------------- compatibility


def _copy_adapter(src: Path, dst: Path, **edits) -> Path:
    shutil.copytree(src, dst)
    data = json.loads((dst / "kit_manifest.json").read_text())
    for key, value in edits.items():
        section, field = key.split("__")
        data[section][field] = value
    (dst / "kit_manifest.json").write_text(json.dumps(data))
    return dst


def test_mismatched_base_fails_before_weights_load(untrained_adapter, tiny_base, lmsys_synth_test, tmp_path, monkeypatch):
    from kaggle_kit.runtime import modeling
    from kaggle_kit.runtime.infer import predict_file
    from kaggle_kit.runtime.manifest import CompatibilityError

    def no_weights(*a, **k):
        raise AssertionError("weights loaded before the compatibility check")

    monkeypatch.setattr(modeling, "load_base", no_weights)
    other = tmp_path / "other-base"
    shutil.copytree(tiny_base, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["model_type"] = "llama"
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CompatibilityError, match="'llama' model but the adapter was trained on a 'gemma2'"):
        predict_file(untrained_adapter, lmsys_synth_test, tmp_path / "s.csv", base_path=other, progress=False, log=None)
    cfg["model_type"] = "gemma2"
    cfg["hidden_size"] = 128
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CompatibilityError, match="hidden_size"):
        predict_file(untrained_adapter, lmsys_synth_test, tmp_path / "s.csv", base_path=other, progress=False, log=None)
    assert not (tmp_path / "s.csv").exists()


def test_bad_tta_fails_before_weights_load(untrained_adapter, lmsys_synth_test, tmp_path, monkeypatch):
    """A TTA value the engine would refuse fails before the test file is read or any weights load (it used to
    fail after loading, at the engine)."""
    from kaggle_kit.runtime import infer

    def no_loading(*a, **k):
        raise AssertionError("weights loaded before the TTA value was checked")

    monkeypatch.setattr(infer, "load_replicas", no_loading)
    with pytest.raises(ValueError, match="tta 'sometimes' is not one of"):
        infer.predict_file(untrained_adapter, lmsys_synth_test, tmp_path / "s.csv", tta="sometimes", progress=False, log=None)
    assert not (tmp_path / "s.csv").exists()


def test_label_mismatch_is_a_clear_error(untrained_adapter, tiny_base):
    from kaggle_kit.runtime.manifest import CompatibilityError, Manifest, check_compatible

    m = Manifest.load(untrained_adapter)
    assert check_compatible(m, tiny_base, list(m.labels)) == []
    with pytest.raises(CompatibilityError, match="trained for labels"):
        check_compatible(m, tiny_base, ["model_a", "model_b"])


def test_version_differences_warn_or_fail(untrained_adapter):
    from kaggle_kit.runtime.manifest import Manifest, check_versions

    m = Manifest.load(untrained_adapter)
    m.versions = {"transformers": "5.23.0", "peft": "0.21.2", "torch": "2.13.0"}
    warns, errors = check_versions(m, {"transformers": "5.23.1", "peft": "0.21.2", "torch": "2.13.0"})
    assert errors == [] and len(warns) == 1 and "5.23.0" in warns[0] and "5.23.1" in warns[0]
    warns, errors = check_versions(m, {"transformers": "5.23.0", "peft": "0.19.0", "torch": "2.13.0"})
    assert len(errors) == 1 and "peft 0.19.0 is older than peft 0.21.2" in errors[0]
    _, errors = check_versions(m, {"transformers": "4.46.3", "peft": "0.22.0", "torch": "2.13.0"})
    assert len(errors) == 1 and "4.46.3" in errors[0] and "5.23.0" in errors[0]
    assert check_versions(m, dict(m.versions)) == ([], [])


def test_version_warning_is_logged_by_predict(untrained_adapter, lmsys_synth_test, tmp_path):
    from kaggle_kit.runtime.infer import predict_file

    run = _copy_adapter(untrained_adapter, tmp_path / "run", versions__tokenizers="0.0.1")
    logs = []
    res = predict_file(run, lmsys_synth_test, tmp_path / "s.csv", progress=False, log=logs.append)
    assert any("tokenizers 0.0.1" in d for d in res.decisions)
    assert res.rows == 120


# --------------------------------------------------------------------------- files and CLI


def test_predict_file_two_cpu_workers_match_one(untrained_adapter, lmsys_synth_test, tmp_path):
    from kaggle_kit.runtime.infer import predict_file

    a = predict_file(untrained_adapter, lmsys_synth_test, tmp_path / "a.csv", devices="cpu", progress=False, log=None)
    b = predict_file(untrained_adapter, lmsys_synth_test, tmp_path / "b.csv", devices="cpu,cpu", progress=False, log=None)
    assert b.devices == ["cpu", "cpu"]
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
    assert a.padding_share < 0.1


def test_empty_and_malformed_rows_still_predicted(untrained_adapter, tmp_path):
    from kaggle_kit.runtime.infer import predict_file
    from kaggle_kit.runtime.submission import validate_file

    long = json.dumps(["word " * 3000])
    data = tmp_path / "test.csv"
    data.write_text(
        "id,prompt,response_a,response_b\n"
        '1,"[""hi""]","[""a""]","[""b""]"\n'
        '2,"[]","[""""]","[null]"\n'
        "3,not json,[broken,\n"
        f'4,"{long.replace(chr(34), chr(34) * 2)}","[""x""]","[""y""]"\n'
    )
    res = predict_file(untrained_adapter, data, tmp_path / "s.csv", progress=False, log=None)
    validate_file(res.out_path, ["1", "2", "3", "4"], "lmsys")
    text = " ".join(res.decisions)
    assert "truncated" in text and "no text" in text and "repaired" in text


def test_cli_predict_real_sample(untrained_adapter, shared_data, tmp_path):
    from click.testing import CliRunner

    from kaggle_kit.cli import main
    from kaggle_kit.runtime.submission import validate_file

    test_csv = shared_data / "lmsys-sample" / "test.csv"
    if not test_csv.exists():
        pytest.skip("lmsys-sample/test.csv absent")
    out = tmp_path / "submission.csv"
    r = CliRunner().invoke(main, ["predict", "--adapter", str(untrained_adapter), "--data", str(test_csv), "--out", str(out),
                                  "--tta", "all", "--no-progress", "--json", "--config", str(tmp_path / "none.toml")])
    assert r.exit_code == 0, r.output
    validate_file(out, ["136060", "211333", "1233961"], "lmsys")


def test_cli_predict_compatibility_error_is_friendly(untrained_adapter, lmsys_synth_test, tmp_path):
    from click.testing import CliRunner

    from kaggle_kit.cli import main

    run = _copy_adapter(untrained_adapter, tmp_path / "run", base_model__model_type="llama", base_model__config_sha256="0" * 64)
    r = CliRunner().invoke(main, ["predict", "--adapter", str(run), "--data", str(lmsys_synth_test), "--out", str(tmp_path / "s.csv"),
                                  "--config", str(tmp_path / "none.toml")])
    assert r.exit_code == 2
    assert "Error:" in r.output and "llama" in r.output and "Traceback" not in r.output


def test_merge_then_predict_from_merged_folder(untrained_adapter, lmsys_synth_test, loaded, tmp_path):
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.infer import merge_adapter, predict_file, predict_rows
    from kaggle_kit.runtime.manifest import Manifest

    merged = merge_adapter(untrained_adapter, tmp_path / "merged", dtype="bfloat16", log=lambda *a: None)
    assert not (merged / "adapter_config.json").exists()
    assert Manifest.load(merged).training["merged"]["dtype"] == "bfloat16"
    res = predict_file(merged, lmsys_synth_test, tmp_path / "s.csv", progress=False, log=None)
    model, tok, manifest = loaded
    ref = predict_rows(model, tok, manifest, read_dataset(lmsys_synth_test).rows)
    assert np.abs(res.probabilities - ref).max() < 0.05  # 16-bit weights: close, not identical


@pytest.mark.parametrize("adapter_format, test_format", [("lmsys", "wsdm"), ("wsdm", "lmsys")])
def test_test_file_of_another_format_is_refused_before_weights_load(untrained_adapter, tmp_path, monkeypatch,
                                                                     adapter_format, test_format):
    """A WSDM parquet given to an LMSYS adapter (and the reverse): refused up front, both formats named."""
    from kaggle_kit.runtime import modeling
    from kaggle_kit.runtime.infer import predict_file
    from kaggle_kit.runtime.problems import DataError
    from kaggle_kit.data.synth import write_synth

    def no_weights(*a, **k):
        raise AssertionError("weights loaded before the format check")

    for loader in ("load_for_inference", "plan_load", "load_planned"):  # nothing loads, not even the checks of loading
        monkeypatch.setattr(modeling, loader, no_weights)
    run = untrained_adapter if adapter_format == "lmsys" else _copy_adapter(
        untrained_adapter, tmp_path / "run", task__format="wsdm", task__labels=["model_a", "model_b"])
    suffix = ".parquet" if test_format == "wsdm" else ".csv"
    test = write_synth(test_format, 12, tmp_path / f"test{suffix}", seed=4, test=True)
    with pytest.raises(DataError) as exc:
        predict_file(run, test, tmp_path / "s.csv", log=lambda *a: None, progress=False)
    msg = str(exc.value)
    assert f"'{test_format}' file" in msg and f"format '{adapter_format}'" in msg and "kit_manifest.json" in msg, msg
    assert not (tmp_path / "s.csv").exists()


def test_cli_predict_prints_one_wrote_line(untrained_adapter, lmsys_synth_test, tmp_path):
    from click.testing import CliRunner

    from kaggle_kit.cli import main

    r = CliRunner().invoke(main, ["predict", "--adapter", str(untrained_adapter), "--data", str(lmsys_synth_test),
                                  "--out", str(tmp_path / "s.csv"), "--config", str(tmp_path / "none.toml")])
    assert r.exit_code == 0, r.output
    text = r.output  # click 8.2+: stdout and stderr together
    wrote = [ln for ln in text.splitlines() if "wrote" in ln]
    assert len(wrote) == 1 and "rows/s" in wrote[0] and "0 cut by the deadline" in wrote[0] and "0 non-finite filled" in wrote[0], text
    assert "predict: 120/120 rows (100%)" in text and "\r" not in text and "\x1b[" not in text

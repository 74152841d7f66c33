"""`kit bench infer` against the 2025 public practice and the machine's matmul rate; `kit bench gpu`."""
import json

import numpy as np
import pytest


def _tiny(max_length=128, rows=13, seed=3):
    from kaggle_kit.benchmarks.data import lmsys_like_rows
    from kaggle_kit.benchmarks.infer import load_bench_model
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec

    model, tok = load_bench_model("tiny")
    encoder = Encoder(tok, PromptSpec(max_length=max_length), "pairwise")
    return model, tok, encoder, lmsys_like_rows(rows, seed=seed)


def test_public_loop_equals_seeds_and_counts_its_own_padding(kit_cache, tiny_base):
    """Sorted, fixed batches of 8, each padded to its own longest row: the seeds' probabilities (1e-5),
    back in the rows' order, and a padding share computed from the batches it ran."""
    from kaggle_kit.benchmarks.public_loop import public_loop, seeds_loop

    model, tok, encoder, rows = _tiny(max_length=1024)
    seeds = seeds_loop(model, tok, encoder, rows)
    public = public_loop(model, tok, encoder, rows)
    assert public.probs.shape == seeds.probs.shape == (13, 3)
    assert float(np.abs(public.probs - seeds.probs).max()) <= 1e-5
    lengths = np.array([len(e.input_ids) for e in encoder.encode(rows)])
    order = np.argsort(-lengths, kind="stable")
    # by hand: longest first, 8 + 5 rows, each batch as wide as its longest row
    want = [(8, int(lengths[order[:8]].max())), (5, int(lengths[order[8:]].max()))]
    assert public.shapes == want
    assert public.real == seeds.real == int(lengths.sum())
    assert public.padding_share == pytest.approx(1 - lengths.sum() / sum(r * w for r, w in want))
    seeds_want = [(8, int(lengths[:8].max())), (5, int(lengths[8:].max()))]
    assert seeds.shapes == seeds_want and seeds.padding_share > public.padding_share > 0


def test_roofline_flops_match_a_hand_count_for_the_tiny_config(kit_cache, tiny_base):
    """hidden 64, MLP 128, 4 layers, 4 heads / 2 KV heads of 16, 3 labels."""
    import torch

    from kaggle_kit.benchmarks.roofline import arch_of, executed_flops, useful_flops

    model, *_ = _tiny()
    arch = arch_of(model.config)
    q, k, v, o = 64 * 4 * 16, 64 * 2 * 16, 64 * 2 * 16, 4 * 16 * 64
    mlp = 64 * 128 + 64 * 128 + 128 * 64
    hand = 4 * (q + k + v + o + mlp) + 64 * 3
    assert hand == 147_648 and arch.matrix_params == hand
    assert arch.matrix_params == sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    f = useful_flops(arch, [10, 20])
    assert f["matmul"] == 2 * hand * 30
    assert f["attention"] == 4 * 4 * 4 * 16 * (10 ** 2 + 20 ** 2)  # QKᵀ and AV over each row's T×T
    assert f["total"] == f["matmul"] + f["attention"]
    # executed: one batch of 2 rows padded to 20 does the work of two 20-token rows
    assert executed_flops(arch, [(2, 20)]) == useful_flops(arch, [20, 20])["total"]


def test_roofline_refuses_an_encoder(kit_cache):
    from types import SimpleNamespace

    from kaggle_kit.benchmarks.roofline import arch_of

    with pytest.raises(ValueError, match="model_type 'bert'"):
        arch_of(SimpleNamespace(model_type="bert"))


def test_matmul_rate_and_abba_order():
    import torch

    from kaggle_kit.benchmarks.infer import side_order
    from kaggle_kit.benchmarks.roofline import matmul_rate

    r = matmul_rate(32, tokens=256, blocks=2, block_seconds=0.02)
    assert r["shape"] == [256, 32, 32] and r["dtype"] == "float32"
    assert 0 < r["flops_per_s"] <= r["best_flops_per_s"] and r["flops_per_cpu_s"] > 0
    assert matmul_rate(32, dtype=torch.float64, tokens=64, blocks=1, block_seconds=0.01)["dtype"] == "float64"
    assert side_order(0) == ("seeds", "public", "engine") and side_order(1) == ("engine", "public", "seeds")


def test_bench_infer_reports_both_baselines_ratios_and_roofline(kit_cache, tiny_base):
    """The JSON has the public practice beside the seeds' loop, both ratios and the roofline share; the
    engine's batches the roofline counts are the ones it ran."""
    from kaggle_kit.benchmarks.infer import run_bench

    r = run_bench(rows=12, max_length=512, rounds=1, progress=False)
    for key in ("speedup_vs_seeds", "speedup_vs_public", "roofline_share", "public_rows_per_s", "public_rows_per_cpu_s",
                "public_padding_share", "public_max_abs_prob_diff", "speedup", "baseline_rows_per_s", "engine_rows_per_s"):
        assert r[key] is not None, key
    assert r["speedup_vs_seeds"] == pytest.approx(r["baseline_s"] / r["engine_s"], rel=0.01)
    assert r["speedup_vs_public"] == pytest.approx(r["public_s"] / r["engine_s"], rel=0.01)
    assert r["public_max_abs_prob_diff"] <= 1e-5 and r["max_abs_prob_diff"] <= 1e-4
    assert r["public_padding_share"] < r["baseline_padding_share"]
    roof = r["roofline"]
    assert roof["matrix_params"] == 147_648 and roof["matmul_gflop_per_s"] > 0
    eng = roof["sides"]["engine"]
    assert r["roofline_share"] == eng["share_of_matmul_rate"] > 0
    assert r["roofline_share_cpu"] == eng["share_of_matmul_rate_cpu"] > 0 and roof["matmul_gflop_per_cpu_s"] > 0
    # executed vs useful FLOPs of the engine's planned batches == its reported padding (linear part)
    assert 1 - eng["useful_share_of_executed"] >= 0
    assert r["model"] == "tiny" and r["batches"]["public"] == 2 and r["batches"]["seeds"] == 2


def test_engine_shapes_are_the_batches_the_engine_runs(kit_cache, tiny_base):
    from kaggle_kit.benchmarks.infer import _manifest, engine_shapes
    from kaggle_kit.runtime.infer import EngineReport, predict_rows

    model, tok, encoder, rows = _tiny(rows=20)
    rep = EngineReport(decisions=[])
    predict_rows(model, tok, _manifest(128), rows, report=rep, batch_tokens=512)
    lengths = [len(e.input_ids) for e in encoder.encode(rows)]
    shapes = engine_shapes(lengths, batch_tokens=512)
    assert sum(r * w for r, w in shapes) == rep.padded and sum(lengths) == rep.tokens and len(shapes) > 1


def test_bench_infer_cli_prints_both_baselines(kit_cache, tiny_base):
    from click.testing import CliRunner

    from kaggle_kit.cli.bench_infer import bench_infer

    out = CliRunner().invoke(bench_infer, ["--rows", "8", "--max-length", "64", "--rounds", "1"])
    assert out.exit_code == 0, out.output
    for text in ("seeds' loop", "public practice", "speedup vs public", "of this process's matmul rate", "roofline:"):
        assert text in out.output, (text, out.output)


def test_bench_gpu_skips_cleanly_without_cuda():
    import torch
    from click.testing import CliRunner

    from kaggle_kit.cli.bench_infer import bench_gpu

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: the bench would run")
    out = CliRunner().invoke(bench_gpu, [])
    assert out.exit_code == 0 and out.output.startswith("kit bench gpu: skipped: no CUDA device"), out.output
    out = CliRunner().invoke(bench_gpu, ["--json"])
    assert out.exit_code == 0 and json.loads(out.output)["skipped"] is True
    out = CliRunner().invoke(bench_gpu, ["--modes", "3bit"])
    assert out.exit_code == 2 and "3bit" in out.output


@pytest.mark.slow
def test_gpu_bench_flow_runs_on_cpu_devices(kit_cache, tiny_base):
    """The GPU bench's whole flow (build from config on the device, 4-bit through bitsandbytes, three
    sides on two replicas) on a small Gemma-2 shape with devices=['cpu', 'cpu']."""
    pytest.importorskip("bitsandbytes")
    from kaggle_kit.benchmarks.gpu import run_gpu_bench

    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16)
    r = run_gpu_bench(shapes=["t"], modes=["4bit"], rows=5, max_length=96, devices=["cpu", "cpu"], table={"t": (shape, 4096)})
    (case,) = r["cases"]
    assert case["mode"] == "4bit" and set(case["sides"]) == {"seeds", "public", "engine"}
    for side in case["sides"].values():
        assert side["rows_per_s"] > 0 and side["nonfinite_rows"] == 0 and side["projected_hours_25k"] > 0
    assert case["max_abs_prob_diff_vs_public"] <= 1e-4 and r["precision_rule"] == {"cpu": "fp32"}


def test_gpu_model_is_built_from_config_and_quantized(kit_cache):
    """No tensor left on meta; 4-bit linears are bitsandbytes' and the weights count is the config's."""
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb
    import torch

    from kaggle_kit.benchmarks.gpu_model import GEMMA2_SHAPES, build_classifier, gemma2_config, weight_bytes

    cfg = gemma2_config(dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16), vocab_size=300)
    m = build_classifier(cfg, "4bit", "cpu", dtype=torch.float32)
    assert isinstance(m.model.layers[0].mlp.down_proj, bnb.nn.Linear4bit)
    with torch.inference_mode():
        p = m(input_ids=torch.tensor([[5, 6, 7]])).logits.softmax(-1)
    assert p.shape == (1, 3) and torch.isfinite(p).all()
    nine = gemma2_config(GEMMA2_SHAPES["9b"])
    assert 15.5e9 < weight_bytes(nine, "fp16") < 19e9 and weight_bytes(nine, "4bit") < 7e9

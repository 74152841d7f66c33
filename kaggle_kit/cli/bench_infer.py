"""`kit bench infer`: the inference engine vs the seeds' batch-of-8 loop and the 2025 public practice;
`kit bench gpu`: the same on CUDA devices with Gemma-2-shaped classifiers."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import echo_json, friendly_errors


@click.command("infer")
@click.option("--model", default="tiny", show_default=True, type=click.Choice(["tiny", "smollm2"]),
              help="'tiny' (Gemma-2 from config, eager attention) or 'smollm2' (SmolLM2-135M, a real Llama; fp32 on the CPU).")
@click.option("--rows", default=300, show_default=True, help="Synthetic rows with the real LMSYS length mix.")
@click.option("--max-length", default=1024, show_default=True, help="Prompt max_length (tokens).")
@click.option("--batch-tokens", type=int, default=None, help="Engine token budget per batch (default: the engine's).")
@click.option("--max-batch-rows", type=int, default=None, help="Engine row cap per batch.")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@click.option("--stock-attention", is_flag=True, help="Engine with transformers' stock eager attention (measures sorting/packing alone).")
@click.option("--rounds", default=2, show_default=True, help="ABBA rounds (each side runs first once per pair), so load drift on shared cores evens out.")
@click.option("--ensemble", "ensemble", type=int, default=0, help="Compare N members predicted independently with the ensemble engine (shared tokenization) instead.")
@click.option("--seed", default=0, show_default=True)
@click.option("--cascade", "cascade", type=click.FloatRange(0, 1), is_flag=False, flag_value=0.3, default=None,
              help="Cascade vs full ensemble of the --adapter members on --data (labelled): time ratio and metric of each; "
                   "the value is the share of rows for the later members (bare --cascade: 0.3).")
@click.option("--adapter", "adapters", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="--cascade: a member run folder (repeat; the first predicts every row). Default: [ensemble] members in kit.toml.")
@click.option("--data", "data", default=None, type=click.Path(exists=True, dir_okay=False),
              help="--cascade: a labelled file in the members' format. Default: [data] train in kit.toml.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def bench_infer(model, rows, max_length, batch_tokens, max_batch_rows, threads, stock_attention, rounds, ensemble, seed, cascade,
                adapters, data, as_json):
    """Run the seeds' loop (dataset order, batch 8, tokenized per batch), the 2025 public practice (sorted
    by length, fixed batches of 8, each padded to its longest row) and the engine on the same rows.

    Same classifier in fp32 on every side; prints rows/s of each, the speedups, the padding share of
    each, the largest differences between their probabilities and the roofline: the useful FLOPs per
    second of each side as a share of the dense matmul rate this process measures just before.

    \b
    Examples:
      kit bench infer
      kit bench infer --rows 2000 --json
      kit bench infer --model smollm2 --rows 200 --json
      kit bench infer --stock-attention     # sorting + packing only
      kit bench infer --ensemble 2          # two members: independent runs vs the ensemble engine
      kit bench infer --cascade 0.3 --adapter runs/student --adapter runs/teacher/fold-0 --data valid.csv --json
    """
    from kaggle_kit.benchmarks.infer import run_bench, run_ensemble_bench

    log = (lambda *a: None) if as_json else (lambda m: click.echo(m, err=True))
    if cascade is not None:
        return _bench_cascade(cascade, adapters, data, rounds, batch_tokens, max_batch_rows, threads, as_json, log)
    if ensemble:
        r = run_ensemble_bench(members=ensemble, rows=rows, max_length=max_length, batch_tokens=batch_tokens,
                               max_batch_rows=max_batch_rows, seed=seed, threads=threads, rounds=rounds, log=log)
        if as_json:
            echo_json(r)
            return
        click.echo(f"{r['members']} members x {r['rows']} rows (max_length {r['max_length']}), threads {r['torch_threads']}, load {r['load_average']}")
        click.echo(f"  independent   {r['independent_s']:>8.2f} s   tokenizations {r['tokenizations_independent']}")
        click.echo(f"  ensemble      {r['ensemble_s']:>8.2f} s   tokenizations {r['tokenizations_ensemble']}"
                   f"   (saves ~{r['encode_s_saved']:.2f} s of {r['encode_s_per_tokenization']:.2f} s each)")
        click.echo(f"  speedup       {r['speedup']:>8.2f}x")
        click.echo(f"  max |dp|      {r['max_abs_prob_diff']:.2e} (target <= {r['target_max_abs_prob_diff']:.0e})")
        return
    r = run_bench(rows=rows, max_length=max_length, batch_tokens=batch_tokens, max_batch_rows=max_batch_rows,
                  seed=seed, threads=threads, inplace_attention=not stock_attention, rounds=rounds, log=log, model=model)
    if as_json:
        echo_json(r)
        return
    _print_bench(r)


def _print_bench(r: dict) -> None:
    """The three sides, the ratios, padding and the roofline, one line each."""
    roof = r["roofline"]
    click.echo(f"{r['model']}: {r['rows']} rows (mean {r['mean_tokens']} tokens, max_length {r['max_length']}), "
               f"{r['rounds']} ABBA rounds  threads: {r['torch_threads']}  load average: {r['load_average']}")
    sides = roof["sides"]
    for key, name, batches in (("baseline", "seeds' loop", "seeds"), ("public", "public practice", "public"),
                               ("engine", "engine", "engine")):
        share = sides[batches]["share_of_matmul_rate"]
        extra = (f"   ({'in-place' if r['engine_inplace_attention'] else 'stock'} eager attention on Gemma-2)"
                 if key == "engine" and r["model"] == "tiny" else "")
        click.echo(f"  {name:<16}{r[key + '_rows_per_s']:>8.2f} rows/s {r[key + '_rows_per_cpu_s']:>8.2f} rows/CPU-s   "
                   f"padding {r[key + '_padding_share']:>5.1%}   {r['batches'][batches]:>4} batches   "
                   f"{share:.1%} of matmul rate{extra}")
    t = r["targets"]
    click.echo(f"  speedup vs seeds'  {r['speedup_vs_seeds']:>6.2f}x (target >= {t['speedup']})")
    click.echo(f"  speedup vs public  {r['speedup_vs_public']:>6.2f}x (per CPU-second {r['speedup_vs_public_cpu']:.2f}x; "
               f"target >= {t['speedup_vs_public']})")
    click.echo(f"  roofline: the engine does {sides['engine']['useful_gflop_per_s']:,.2f} useful GFLOP/s = "
               f"{r['roofline_share']:.1%} of this process's matmul rate ({roof['matmul_gflop_per_s']:,.1f} GFLOP/s, "
               f"{roof['dtype']}, {r['torch_threads']} threads; per CPU-second {r['roofline_share_cpu'] or float('nan'):.1%}); "
               f"attention is {roof['attention_share_of_useful']:.0%} "
               f"of the useful FLOPs, padding {1 - sides['engine']['useful_share_of_executed']:.1%} of those executed")
    click.echo(f"  max |Δp|     {r['max_abs_prob_diff']:.2e} engine vs seeds', {r['public_max_abs_prob_diff']:.2e} "
               f"public vs seeds' (target <= {t['max_abs_prob_diff']})")
    click.echo(f"  targets: {'met' if r['meets_targets'] else 'NOT met'}")


def _bench_cascade(share, adapters, data, rounds, batch_tokens, max_batch_rows, threads, as_json, log) -> None:
    """`kit bench infer --cascade`: kaggle_kit.benchmarks.cascade, members and data from the options or kit.toml."""
    from kaggle_kit.benchmarks.cascade import run_cascade_bench
    from kaggle_kit.config import load_config
    from kaggle_kit.errors import KitError

    cfg = load_config(None) if not (adapters and data) else None
    adapters = list(adapters) or list(cfg.ensemble.members)
    data = data or (cfg.data.train if cfg is not None else None)
    if len(adapters) < 2 or not data:
        raise KitError("kit bench infer --cascade needs two or more members (--adapter, repeated, or [ensemble] members) and a "
                       "labelled --data file (or [data] train)")
    r = run_cascade_bench(adapters, data, share=share, rounds=rounds, batch_tokens=batch_tokens, max_batch_rows=max_batch_rows,
                          threads=threads, log=log)
    if as_json:
        echo_json(r)
        return
    click.echo(f"cascade (share {share}, {r['cascade']['combine']}) vs full ensemble: {r['rows']} rows, {r['rounds']} ABBA rounds, "
               f"threads {r['torch_threads']}, load {r['load_average']}")
    click.echo(f"  full ensemble {r['full_s']:>8.2f} s   {r.get('metric') or ''} {r.get('full_metric', '')}")
    click.echo(f"  cascade       {r['cascade_s']:>8.2f} s   {r.get('metric') or ''} {r.get('cascade_metric', '')}   rows per member {r['member_rows']}")
    click.echo(f"  time ratio    {r['time_ratio']:>8.3f}   ({r['time_saved_share']:.1%} saved)")


@click.command("gpu")
@click.option("--shapes", default="2b,9b", show_default=True, help="Gemma-2 shapes to build from config (comma-separated: 2b, 9b).")
@click.option("--modes", default="fp16,8bit,4bit", show_default=True, help="Weights: fp16, 8bit, 4bit (bitsandbytes), comma-separated.")
@click.option("--rows", default=128, show_default=True, help="Synthetic rows with the real LMSYS length mix.")
@click.option("--max-length", default=2048, show_default=True, help="Prompt max_length (tokens).")
@click.option("--rounds", default=1, show_default=True, help="ABBA rounds of the three sides.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def bench_gpu(shapes, modes, rows, max_length, rounds, seed, as_json):
    """On every visible CUDA device: Gemma-2-9B- and 2B-shaped classifiers with random weights (built from
    config, no download; fp16, 8-bit, 4-bit), the engine beside the seeds' loop and the public practice.

    Prints rows/s, tokens/s, peak memory, padding, non-finite rows, the precision the kit's rule picks for
    the device and the hours 25,000 LMSYS rows would take. Without a CUDA device it prints one skip line
    and exits 0.

    \b
    Examples:
      kit bench gpu
      kit bench gpu --shapes 9b --modes 4bit,8bit --rows 256 --json
    """
    from kaggle_kit.benchmarks.gpu import MODES, run_gpu_bench
    from kaggle_kit.benchmarks.gpu_model import GEMMA2_SHAPES
    from kaggle_kit.errors import KitError

    shape_list = [s.strip() for s in shapes.split(",") if s.strip()]
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [s for s in shape_list if s not in GEMMA2_SHAPES] + [m for m in mode_list if m not in MODES]
    if bad or not shape_list or not mode_list:
        raise KitError(f"--shapes/--modes: {', '.join(bad) or 'nothing'} is not one of shapes {', '.join(GEMMA2_SHAPES)} / "
                       f"modes {', '.join(MODES)}; e.g. --shapes 2b,9b --modes fp16,8bit,4bit")
    log = (lambda *a: None) if as_json else (lambda m: click.echo(m, err=True))
    r = run_gpu_bench(shapes=shape_list, modes=mode_list, rows=rows, max_length=max_length, rounds=rounds, seed=seed, log=log)
    if as_json:
        echo_json(r)
        return
    if r.get("skipped"):
        click.echo(f"kit bench gpu: skipped: {r['reason']}")
        return
    click.echo(f"{', '.join(r['devices'])}: {r['rows']} rows (mean {r['mean_tokens']} tokens, max {r['max_tokens']}), "
               f"rule picks {r['precision_rule']}, load average {r['load_average']}")
    click.echo(f"  {'shape':<5} {'mode':<5} {'side':<8} {'rows/s':>8} {'tokens/s':>10} {'peak GiB':>9} {'padding':>8} "
               f"{'non-finite':>10} {'h/25k rows':>10}")
    for c in r["cases"]:
        for side in ("seeds", "public", "engine"):
            s = c["sides"][side]
            click.echo(f"  {c['shape']:<5} {c['mode']:<5} {side:<8} {s['rows_per_s']:>8.2f} {s['tokens_per_s']:>10,.0f} "
                       f"{s['peak_memory_gb']:>9.2f} {s['padding_share']:>8.1%} {s['nonfinite_rows']:>10} {s['projected_hours_25k']:>10.2f}")
        click.echo(f"  {c['shape']:<5} {c['mode']:<5} engine {c['speedup_vs_public']:.2f}x the public practice, "
                   f"{c['speedup_vs_seeds']:.2f}x the seeds' loop; max |Δp| vs public {c['max_abs_prob_diff_vs_public']}")
    for why in r["skipped_cases"]:
        click.echo(f"  skipped: {why}")

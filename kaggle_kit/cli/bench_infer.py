"""`kit bench infer`: the inference engine vs the seeds' batch-of-8 loop."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import echo_json, friendly_errors


@click.command("infer")
@click.option("--rows", default=300, show_default=True, help="Synthetic rows with the real LMSYS length mix.")
@click.option("--max-length", default=1024, show_default=True, help="Prompt max_length (tokens).")
@click.option("--batch-tokens", type=int, default=None, help="Engine token budget per batch (default: the engine's).")
@click.option("--max-batch-rows", type=int, default=None, help="Engine row cap per batch.")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@click.option("--stock-attention", is_flag=True, help="Engine with transformers' stock eager attention (measures sorting/packing alone).")
@click.option("--rounds", default=2, show_default=True, help="ABBA rounds (each side runs first once per pair), so load drift on shared cores evens out.")
@click.option("--ensemble", "ensemble", type=int, default=0, help="Compare N members predicted independently with the ensemble engine (shared tokenization) instead.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def bench_infer(rows, max_length, batch_tokens, max_batch_rows, threads, stock_attention, rounds, ensemble, seed, as_json):
    """Run the seeds' loop (dataset order, batch 8, tokenized per batch) and the engine on the same rows.

    Same tiny Gemma-2 classifier in fp32; prints rows/s of each, the speedup, the padding share of
    each and the largest difference between their probabilities.

    \b
    Examples:
      kit bench infer
      kit bench infer --rows 2000 --json
      kit bench infer --stock-attention     # sorting + packing only
      kit bench infer --ensemble 2          # two members: independent runs vs the ensemble engine
    """
    from kaggle_kit.benchmarks.infer import run_bench, run_ensemble_bench

    log = (lambda *a: None) if as_json else (lambda m: click.echo(m, err=True))
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
                  seed=seed, threads=threads, inplace_attention=not stock_attention, rounds=rounds, log=log)
    if as_json:
        echo_json(r)
        return
    click.echo(f"rows: {r['rows']} (mean {r['mean_tokens']} tokens, max_length {r['max_length']})  "
               f"threads: {r['torch_threads']}  load average: {r['load_average']}")
    click.echo(f"  seeds' loop  {r['baseline_rows_per_s']:>8.2f} rows/s {r['baseline_rows_per_cpu_s']:>8.2f} rows/CPU-s   "
               f"padding {r['baseline_padding_share']:.1%}")
    click.echo(f"  engine       {r['engine_rows_per_s']:>8.2f} rows/s {r['engine_rows_per_cpu_s']:>8.2f} rows/CPU-s   "
               f"padding {r['engine_padding_share']:.1%}"
               f"   ({'in-place' if r['engine_inplace_attention'] else 'stock'} eager attention)")
    click.echo(f"  speedup      {r['speedup']:>8.2f}x (target >= {r['targets']['speedup']})")
    click.echo(f"  max |Δp|     {r['max_abs_prob_diff']:.2e} (target <= {r['targets']['max_abs_prob_diff']})")
    click.echo(f"  targets: {'met' if r['meets_targets'] else 'NOT met'}")

"""`kit bench train`: training tokens/s, length-grouped dynamic padding vs fixed max_length padding."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import echo_json, friendly_errors


@click.command("train")
@click.option("--model", default="tiny", show_default=True, help="'tiny' (Gemma-2, eager attention), 'smollm2', 'minilm' or a local base folder.")
@click.option("--rows", default=96, show_default=True, help="Synthetic LMSYS rows (each side trains on the same examples once).")
@click.option("--max-length", default=1024, show_default=True, help="Tokens per example (the baseline pads every batch to it).")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--steps", default=0, show_default=True, help="Optimizer steps per side (0 = one pass over the rows).")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def bench_train(model, rows, max_length, batch_size, steps, seed, as_json):
    """Train the same LoRA model on the same examples with the kit's batching and with fixed padding; print tokens/s and the ratio.

    Kit: length-grouped sampling + padding to each batch's longest example. Baseline (the seeds'
    notebooks): random order + padding to max_length. Tokens/s counts real (non-padding) tokens.

    \b
    Examples:
      kit bench train
      kit bench train --rows 160 --max-length 2048 --json
      kit bench train --model minilm --max-length 512
    """
    from kaggle_kit.benchmarks.train import run_bench

    log = (lambda *a: None) if as_json else (lambda m: click.echo(m, err=True))
    r = run_bench(model=model, rows=rows, max_length=max_length, batch_size=batch_size, steps=steps, seed=seed, log=log)
    if as_json:
        echo_json(r)
        return
    click.echo(f"model: {r['model']}  examples: {r['examples']}  batch: {r['batch_size']}  max_length: {r['max_length']}  "
               f"mean tokens/example: {r['mean_tokens']:.0f}  threads: {r['threads']}")
    for name, key in (("fixed padding to max_length", "fixed"), ("kit: length-grouped dynamic", "kit")):
        s = r[key]
        per_cpu = f"{s['rows_per_cpu_s']:,.2f} rows/CPU-s, " if s.get("rows_per_cpu_s") else ""
        click.echo(f"  {name:<30} {s['tokens_per_s']:>9,.0f} tokens/s  ({per_cpu}{s['seconds']} s, {s['steps']} steps, "
                   f"padding {s['padding_share']:.1%})")
    click.echo(f"  ratio                          {r['ratio']:>9.2f}x  (target >= {r['target_ratio']}: "
               f"{'met' if r['meets_target'] else 'NOT met'})")

"""`kit bench data`: batched Encoder vs one row at a time on LMSYS-shaped rows."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import echo_json, friendly_errors


@click.command("data")
@click.option("--rows", default=57_000, show_default=True, help="Rows to prepare (LMSYS train has ~57,000).")
@click.option("--max-length", default=2048, show_default=True, help="Token budget per example, special tokens included.")
@click.option("--truncation", type=click.Choice(["per_component", "head_tail", "turn_aware"]), default="per_component", show_default=True)
@click.option("--tokenizer", default="tiny", show_default=True, help="'tiny' (byte-level BPE, 4k vocab), 'minilm' (WordPiece) or a tokenizer folder.")
@click.option("--baseline-rows", default=0, show_default=True, help="Time the one-row-at-a-time baseline on the first N rows only (0 = all).")
@click.option("--seed", default=0, show_default=True)
@click.option("--parallel/--no-parallel", default=None,
              help="Let the Rust tokenizer use every core for a batch (sets TOKENIZERS_PARALLELISM); default: as the environment says.")
@click.option("--with-wrapper", is_flag=True, help="Also time one row at a time through the transformers tokenizer call.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def bench_data(rows, max_length, truncation, tokenizer, baseline_rows, seed, parallel, with_wrapper, as_json):
    """Prepare LMSYS-shaped rows with the batched Encoder and one row at a time; print rows/s and the ratio.

    Rows carry the real LMSYS length mix (response medians ~900 characters, tails to 17,000). Both
    sides produce the same token ids (checked).

    \b
    Examples:
      kit bench data                      # 57,000 rows, max_length 2048, per_component
      kit bench data --rows 5000 --json
      kit bench data --tokenizer minilm --baseline-rows 5000
    """
    from kaggle_kit.benchmarks.data import run_bench

    log = (lambda *a: None) if as_json else (lambda m: click.echo(m, err=True))
    result = run_bench(rows=rows, max_length=max_length, truncation=truncation, tokenizer=tokenizer,
                       baseline_rows=baseline_rows, seed=seed, log=log, parallel=parallel, wrapper=with_wrapper)
    if as_json:
        echo_json(result)
        return
    click.echo(f"rows: {result['rows']}  max_length: {max_length}  truncation: {truncation}  "
               f"tokenizer: {tokenizer} (vocab {result['vocab_size']})  cpus: {result['cpu_count']}  "
               f"TOKENIZERS_PARALLELISM={result['tokenizers_parallelism']}")
    click.echo(f"  batched Encoder.encode     {result['batched_rows_per_s']:>10,.0f} rows/s  ({result['batched_s']} s)")
    click.echo(f"  one row at a time          {result['baseline_rows_per_s']:>10,.0f} rows/s  ({result['baseline_s']} s for {result['baseline_rows']} rows)")
    click.echo(f"  ratio                      {result['speedup']:>10.2f}x")
    if "wrapper_rows_per_s" in result:
        click.echo(f"  one row at a time via the transformers call {result['wrapper_rows_per_s']:,.0f} rows/s "
                   f"({result['wrapper_rows_per_cpu_s']:,.0f} per CPU-second); ratio {result['speedup_vs_wrapper']:.2f}x")
    click.echo(f"  per CPU-second: batched {result['batched_rows_per_cpu_s']:,.0f} rows, one at a time "
               f"{result['baseline_rows_per_cpu_s']:,.0f} rows (load average {result['load_average']})")
    click.echo(f"  truncated rows: {result['truncated_share']:.1%}   longest: {result['longest_tokens']} tokens   "
               f"mismatched rows: {result['mismatched_rows']}")
    load = result.get("load_average")
    click.echo(f"  target >= {result['target_rows_per_s']} rows/s (wall-clock): {'met' if result['meets_target'] else 'NOT met'}"
               + (f"  [load average {load[0]} on {result['cpu_count']} cores while measuring]" if load else ""))

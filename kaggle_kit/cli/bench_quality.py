"""`kit bench quality`: SmolLM2-135M + LoRA on real hh-rlhf pairs beside three baselines on the same rows."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import echo_json, friendly_errors


@click.command("quality")
@click.option("--data", "data", default=None, type=click.Path(dir_okay=False),
              help="hh-rlhf JSONL(.gz) (chosen/rejected). Default: ../shared/data/hh-rlhf/harmless-base_test_part1.jsonl.gz")
@click.option("--model", default="smollm2", show_default=True, help="Named model or base folder ('smollm2', 'tiny', a folder).")
@click.option("--max-length", default=96, show_default=True, help="Tokens per example.")
@click.option("--steps", default=60, show_default=True, help="Optimizer steps (batch --batch-size).")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--learning-rate", default=2e-4, show_default=True)
@click.option("--val-fraction", default=0.2, show_default=True, help="Held-out share (the kit's fixed split, seed --seed).")
@click.option("--seed", default=0, show_default=True)
@click.option("--output", default=None, type=click.Path(file_okay=False), help="Keep the run folder here (default: a temporary folder).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout (the training log goes to stderr).")
@friendly_errors
def bench_quality(data, model, max_length, steps, batch_size, learning_rate, val_fraction, seed, output, as_json):
    """Fine-tune SmolLM2-135M-Instruct with LoRA on hh-rlhf pairs; print accuracy and log loss (95% CI, n rows)
    on the held-out rows beside the class prior, "the shorter response wins" and the untrained model.

    Defaults take about 10-15 minutes on 2 CPU cores (README: Real bases). Nothing is tuned on the
    held-out rows.

    \b
    Examples:
      kit bench quality
      kit bench quality --json --steps 60 --max-length 96
      kit bench quality --data /data/hh-rlhf/harmless-base_train.jsonl.gz --steps 400
    """
    from kaggle_kit.benchmarks.quality import run_quality

    import contextlib
    import sys

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its log dicts: stdout stays pure JSON
        r = run_quality(data, output, model=model, max_length=max_length, steps=steps, batch_size=batch_size,
                        learning_rate=learning_rate, val_fraction=val_fraction, seed=seed, log=log)
    if as_json:
        echo_json(r)
        return
    sp = r["split"]
    click.echo(f"model {r['model']} | {sp['train_rows']} train / {sp['test_rows']} held-out rows of {r['data']} | "
               f"max_length {r['setup']['max_length']}, {r['setup']['steps']} steps, {r['seconds']} s")
    for name, f in r["figures"].items():
        a, ll = f["accuracy"], f["log_loss"]
        click.echo(f"  {name:<13} accuracy {a['mean']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]  "
                   f"log loss {ll['mean']:.3f} [{ll['ci95'][0]:.3f}, {ll['ci95'][1]:.3f}]  n={a['n']}")

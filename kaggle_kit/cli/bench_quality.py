"""`kit bench quality`: SmolLM2-135M + LoRA on real hh-rlhf text beside a linear probe and baselines on the same rows."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import echo_json, friendly_errors


@click.command("quality")
@click.option("--task", type=click.Choice(["hh-rlhf", "cue"]), default="hh-rlhf", show_default=True,
              help="hh-rlhf: which response was chosen (pairs). cue: a cue word inserted in each human turn; the label is the cue.")
@click.option("--data", "data", default=None, type=click.Path(dir_okay=False),
              help="hh-rlhf JSONL(.gz) (chosen/rejected). Default: ../shared/data/hh-rlhf/harmless-base_test_part1.jsonl.gz")
@click.option("--model", default="smollm2", show_default=True, help="Named model or base folder ('smollm2', 'minilm', 'tiny', a folder).")
@click.option("--max-length", default=96, show_default=True, help="Tokens per example.")
@click.option("--steps", default=60, show_default=True, help="Optimizer steps (batch --batch-size).")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--learning-rate", default=2e-4, show_default=True, help="The adapter's peak learning rate.")
@click.option("--head-learning-rate", default=0.0, show_default=True, help="The head's peak learning rate; 0 = the kit's default.")
@click.option("--eval-every", default=0, show_default=True, help="Steps between held-out evaluations (0 = a quarter of --steps).")
@click.option("--rows", default=600, show_default=True, help="cue task: rows built from the human turns.")
@click.option("--cues", default="apple,banana", show_default=True, help="cue task: the cue words (the labels), comma-separated.")
@click.option("--val-fraction", default=0.2, show_default=True, help="Held-out share (the kit's fixed split, seed --seed).")
@click.option("--seed", default=0, show_default=True)
@click.option("--head", type=click.Choice(["seq_cls", "label_tokens", "both"]), default="seq_cls", show_default=True,
              help="task.head to measure: the new linear head, the LM head's own label tokens (zero-shot = before step 1), or both "
                   "on the same rows.")
@click.option("--output", default=None, type=click.Path(file_okay=False), help="Keep the run folder here (default: a temporary folder).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout (the training log goes to stderr).")
@friendly_errors
def bench_quality(task, data, model, max_length, steps, batch_size, learning_rate, head_learning_rate, eval_every, rows, cues,
                  val_fraction, seed, head, output, as_json):
    """Fine-tune SmolLM2-135M-Instruct with LoRA on real hh-rlhf text; print accuracy and log loss (95% CI, n
    rows) on the held-out rows beside a linear probe on the frozen base's pooled features, TF-IDF + logistic
    regression, the class prior and the untrained model (hh-rlhf: also "the shorter response wins"), and the
    step at which the fine-tune first reached the probe's accuracy.

    Defaults took 8 minutes on 2 CPU cores (--task cue: under 2; README: Quality on real data). Nothing is
    tuned on the held-out rows.

    \b
    Examples:
      kit bench quality
      kit bench quality --task cue --json
      kit bench quality --head both --json      # seq-cls and label-token heads, zero-shot and trained
      kit bench quality --json --steps 60 --max-length 96
      kit bench quality --data /data/hh-rlhf/harmless-base_train.jsonl.gz --steps 400
    """
    from kaggle_kit.benchmarks.quality import Setup, run_quality
    from kaggle_kit.errors import KitError

    import contextlib
    import sys

    words = tuple(w.strip() for w in cues.split(",") if w.strip())
    if task == "cue" and (len(words) < 2 or len(set(words)) != len(words)):
        raise KitError(f"--cues {cues!r}: give two or more different words, e.g. --cues apple,banana")
    setup = Setup(task=task, model=model, max_length=max_length, steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                  head_learning_rate=head_learning_rate, val_fraction=val_fraction, seed=seed, eval_every=eval_every,
                  rows=rows, cues=words, head=head)
    log = lambda m: click.echo(m, err=True)  # noqa: E731
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its log dicts: stdout stays pure JSON
        r = run_quality(data, output, setup, log=log)
    if as_json:
        echo_json(r)
        return
    sp, st = r["split"], r["setup"]
    click.echo(f"{r['task']} | model {r['model']} | {sp['train_rows']} train / {sp['test_rows']} held-out rows of {r['data']} | "
               f"max_length {st['max_length']}, {st['steps']} steps, head lr {st['head_learning_rate']:.1e}, {r['seconds']} s")
    for name, f in r["figures"].items():
        a, ll = f["accuracy"], f["log_loss"]
        click.echo(f"  {name:<13} accuracy {a['mean']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]  "
                   f"log loss {ll['mean']:.3f} [{ll['ci95'][0]:.3f}, {ll['ci95'][1]:.3f}]  n={a['n']}")
    reached = r["steps_to_probe"]
    if reached == 0:
        when = "already matched before step 1 (the frozen features separate nothing the untrained model does not)"
    else:
        when = f"reached at step {reached}" if reached is not None else f"not reached in {st['steps']} steps"
    click.echo(f"  held-out accuracy by step: {r['accuracy_by_step']}; the probe's accuracy {when}")

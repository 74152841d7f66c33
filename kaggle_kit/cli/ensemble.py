"""`kit blend`: thin wrapper over kaggle_kit.ensemble.blend."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import echo_json, friendly_errors


@click.command("blend")
@click.option("--oof", "sources", multiple=True, required=True,
              help="A member: an oof.csv, a run folder, or an --all-folds parent (its fold-*/oof.csv). Repeat for each member.")
@click.option("--metric", default=None, help="Metric to optimise, any that `kit train` accepts (log_loss, accuracy, macro_f1, "
              "micro_f1, auc, average_precision, map@K for any K …; default: the first member's task.metric, else log_loss).")
@click.option("--combine", "combine_method", type=click.Choice(["mean", "logit_mean"]), default="mean", show_default=True,
              help="How member probabilities combine (use the same in [ensemble] combine).")
@click.option("--write-config", "write_config", default=None, type=click.Path(dir_okay=False),
              help="Write the fitted [ensemble] table (members, weights, combine) into this kit.toml, replacing its [ensemble].")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False), help="Also write the result as JSON to this file.")
@click.option("--cascade", is_flag=True, help="Also choose the cascade (share of rows for the later members, replace or mean, "
              "margin or entropy) that maximises the metric with the fitted weights; --write-config adds the [ensemble] cascade keys. "
              "The members run in the order given: the first on every row.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly_errors
def blend(sources, metric, combine_method, write_config, out, cascade, as_json):
    """Fit non-negative ensemble weights (summing to 1) on out-of-fold predictions.

    The weights optimise the task metric of the combined predictions on the rows every member covers
    (scipy.optimize); each member's score and the blend's are printed side by side, with the [ensemble]
    table for kit.toml. Members must share the label order and at least one row.

    \b
    Examples:
      kit blend --oof runs/gemma --oof runs/qwen                     # two --all-folds parents
      kit blend --oof runs/a/oof.csv --oof runs/b --metric accuracy
      kit blend --oof runs/gemma --oof runs/qwen --write-config kit.toml
      kit blend --oof runs/small --oof runs/big --cascade --write-config kit.toml
    """
    import json
    from pathlib import Path

    from kaggle_kit.ensemble.blend import blend as fit, ensemble_table, write_ensemble_table

    result = fit(list(sources), metric=metric, combine_method=combine_method)
    chain = None
    if cascade:
        from kaggle_kit.ensemble.cascade import fit_cascade, write_cascade_keys

        chain = fit_cascade(list(sources), metric=result.metric, combine_method=combine_method, weights=result.weights)
    summary = {**result.to_dict(), **({"cascade": chain.to_dict()} if chain else {})}
    if out:
        Path(out).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if write_config:
        write_ensemble_table(write_config, result)
        if chain:
            write_cascade_keys(write_config, chain)
    if as_json:
        echo_json(summary)
        return
    arrow = "higher is better" if result.greater_is_better else "lower is better"
    click.echo(f"{result.metric} ({arrow}) on the {result.rows} rows every member covers; combine {result.combine}")
    click.echo(f"  {'member':<28} {'rows':>7} {'score':>10} {'weight':>8}")
    for m in result.members:
        click.echo(f"  {m['name'][:28]:<28} {m['rows']:>7} {m['score']:>10.5f} {m['weight']:>8.4f}")
    click.echo(f"  {'equal weights':<28} {result.rows:>7} {result.equal_score:>10.5f}")
    click.echo(f"  {'blend (fitted weights)':<28} {result.rows:>7} {result.score:>10.5f} {sum(result.weights):>8.4f}")
    click.echo("")
    click.echo(ensemble_table(result).rstrip())
    if chain:
        from kaggle_kit.ensemble.cascade import cascade_lines, cascade_report

        click.echo("\n" + cascade_report(chain))
        click.echo(cascade_lines(chain).rstrip())
    if write_config:
        click.echo(f"\nwrote the [ensemble] table into {write_config}")

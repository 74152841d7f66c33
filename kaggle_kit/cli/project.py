"""`kit init` and `kit config`: write and show the project configuration (kit.toml)."""
from __future__ import annotations

from pathlib import Path

import click

from kaggle_kit.cli.options import config_options, echo_json, friendly_errors, load

PRESET_NAMES = ["lmsys", "wsdm", "misconceptions", "rules", "classification", "sft"]


@click.command("init")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default=None,
              help="Competition preset the file starts from (default: lmsys).")
@click.option("--from-competition", "competition_dir", type=click.Path(file_okay=False), default=None,
              help="Decide every setting from a competition's own files in DIR (train.*, test.*, sample_submission.csv) "
                   "and print each decision with its evidence.")
@click.option("--competition", "slug", default="", help="With --from-competition: the competition slug "
              "([kaggle] competition and the notebook's /kaggle/input/competitions/SLUG/ test path).")
@click.option("--dry-run", is_flag=True, help="With --from-competition: print the decisions, write nothing.")
@click.option("--id", "id_column", default="", help="With --from-competition: the id column (when two are possible).")
@click.option("--target", default="", help="With --from-competition: the target column(s), comma-separated.")
@click.option("--inputs", default="", help="With --from-competition: the input columns, comma-separated, in prompt order.")
@click.option("--metric", default="", help="With --from-competition: the metric (else guessed from the sample's shape).")
@click.option("--tokenizer", default="", help="With --from-competition: measure lengths in this tokenizer's tokens "
              "('tiny', 'smollm2', 'minilm' or a folder); default: characters.")
@click.option("--path", "path", type=click.Path(dir_okay=False), default="kit.toml", show_default=True, help="Where to write it.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--username", default="", help="Kaggle user name to write (default: left empty and read from "
              "KAGGLE_USERNAME or the kaggle credentials when needed).")
@friendly_errors
def init(preset, competition_dir, slug, dry_run, id_column, target, inputs, metric, tokenizer, path, force, username):
    """Write a commented kit.toml for a preset, or decided from a competition's files: every setting
    with its help text and allowed values.

    \b
    Examples:
      kit init --preset lmsys                 # LMSYS Chatbot Arena (3-class log loss)
      kit init --preset wsdm --path wsdm.toml
      kit init --preset misconceptions         # MAP 2025: Category:Misconception, MAP@3, top-3 submission
      kit init --preset rules                  # Jigsaw 2025: rule_violation probability, AUC
      kit init --preset classification --force --username alice
      kit init --from-competition data/ --dry-run          # the decisions and their evidence only
      kit init --from-competition data/ --competition llm-classification-finetuning
      kit init --from-competition data/ --target label --metric macro_f1 --tokenizer smollm2
    """
    from kaggle_kit.errors import KitError

    flags = {"--competition": slug, "--dry-run": dry_run, "--id": id_column, "--target": target, "--inputs": inputs,
             "--metric": metric, "--tokenizer": tokenizer}
    if competition_dir is None:
        used = [k for k, v in flags.items() if v]
        if used:
            raise KitError(f"{', '.join(used)} only work with --from-competition DIR")
        _init_preset(preset or "lmsys", path, force, username)
        return
    if preset:
        raise KitError("--preset and --from-competition exclude each other: the competition's files decide the settings")
    from kaggle_kit.data.decide import Options
    from kaggle_kit.data.from_competition import format_decisions, plan_competition, write_competition_config

    split = lambda s: tuple(c.strip() for c in s.split(",") if c.strip())  # noqa: E731
    if not dry_run and Path(path).exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it (or --dry-run to see the decisions)")
    opts = Options(id=id_column, target=split(target), inputs=split(inputs), metric=metric, tokenizer=tokenizer,
                   competition=slug)
    plan = plan_competition(competition_dir, opts)
    click.echo(format_decisions(plan))
    if dry_run:
        click.echo("Dry run: nothing written.")
        return
    out = write_competition_config(plan, path, force=force, username=username)
    click.echo(f"Wrote {out}. Next: `kit config --config {out}`; `kit train --config {out}`.")


def _init_preset(preset, path, force, username):
    from kaggle_kit.config import init_config, kaggle_username_from_environment

    out = init_config(path, preset=preset, force=force, username=username)
    click.echo(f"Wrote {out} (preset {preset}).")
    if not username:
        found = kaggle_username_from_environment()
        where = f"currently '{found}'" if found else "none found yet: set KAGGLE_USERNAME or kaggle.username"
        click.echo(f"kaggle.username is empty: read from the environment / kaggle credentials ({where}).")
    click.echo(f"Next: `kit config --config {out}` shows the merged values; `kit data inspect FILE` checks your data.")


@click.command("config")
@config_options
@click.option("--preset", type=click.Choice(PRESET_NAMES), default=None, help="Start from a preset below kit.toml.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
@friendly_errors
def config_cmd(config_path, overrides, preset, as_json):
    """Show the merged configuration: defaults < preset < kit.toml < --set flags.

    \b
    Examples:
      kit config                                   # ./kit.toml merged with the defaults, as TOML
      kit config --json --set train.max_steps=50
      kit config --config other.toml --set prompt.truncation=head_tail
    """
    cfg = load(config_path, overrides, required=config_path is not None, preset=preset)
    if as_json:
        data = cfg.to_dict()
        data["_source"] = getattr(cfg, "_source", None)
        echo_json(data)
        return
    from kaggle_kit.config import render_toml

    source = getattr(cfg, "_source", None)
    click.echo(f"# merged from: defaults{f' < preset {preset}' if preset else ''}"
               f"{f' < {source}' if source else ''}{' < --set' if overrides else ''}")
    click.echo(render_toml(cfg, preset))

"""`kit init` and `kit config`: write and show the project configuration (kit.toml)."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import config_options, echo_json, friendly_errors, load

PRESET_NAMES = ["lmsys", "wsdm", "misconceptions", "rules", "classification", "sft"]


@click.command("init")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="lmsys", show_default=True,
              help="Competition preset the file starts from.")
@click.option("--path", "path", type=click.Path(dir_okay=False), default="kit.toml", show_default=True, help="Where to write it.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--username", default="", help="Kaggle user name to write (default: left empty and read from "
              "KAGGLE_USERNAME or the kaggle credentials when needed).")
@friendly_errors
def init(preset, path, force, username):
    """Write a commented kit.toml for a preset: every setting with its help text and allowed values.

    \b
    Examples:
      kit init --preset lmsys                 # LMSYS Chatbot Arena (3-class log loss)
      kit init --preset wsdm --path wsdm.toml
      kit init --preset misconceptions         # MAP 2025: Category:Misconception, MAP@3, top-3 submission
      kit init --preset rules                  # Jigsaw 2025: rule_violation probability, AUC
      kit init --preset classification --force --username alice
    """
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

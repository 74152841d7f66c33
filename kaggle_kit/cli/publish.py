"""`kit validate`, `kit push-dataset`, `kit push-model`, `kit push-kernel`, `kit status`,
`kit output`, `kit fetch-base`: thin wrappers over `kaggle_kit.publish.push` (which imports the kaggle
client only when a command talks to Kaggle; none of these import torch)."""
from __future__ import annotations

import json
import sys

import click

from kaggle_kit.cli.options import config_options, echo_json, friendly_errors, load


def _show(result, as_json: bool) -> None:
    if as_json:
        echo_json(result.to_dict())
        return
    verb = {"dry-run": "Dry run (nothing uploaded)", "staged": "Staged (not pushed)", "create": "Created",
            "version": "New version of", "push": "Pushed"}.get(result.action, result.action)
    click.echo(f"{verb}: {result.kind} {result.ref}" + (f" (version {result.version})" if result.version else ""))
    click.echo(f"Staged folder: {result.staged}")
    click.echo("Files:")
    for f in result.files:
        click.echo(f"  {f}")
    if result.action in ("dry-run", "staged"):
        for name, meta in result.metadata.items():
            click.echo(f"{name}:")
            click.echo(json.dumps(meta, indent=2, ensure_ascii=False))
    if result.url:
        click.echo(f"URL: {result.url}")
    for note in result.notes:
        click.echo(f"Note: {note}")


def _warn(msg: str) -> None:
    click.echo(f"Warning: {msg}", err=True)


@click.command()
@config_options
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print {problems: [...], warnings: [...]} as JSON.")
@friendly_errors
def validate(config_path, overrides, folders, as_json):
    """Check every Kaggle metadata field, notebook and upload folder before anything uploads.

    Builds the wheel-dataset, model, model-instance and kernel metadata from kit.toml and checks
    them as Kaggle would: slugs, id = slug of title, kernel titles and slugs of 5-50 characters (a
    longer default is shortened, with a warning), sources (no page-type prefix, integer
    versions), machine_shape from Kaggle's list (new names: kaggle.extra_machine_shapes), booleans
    (strings are read as the kaggle client reads them, with a warning), the notebook (nbformat,
    kernelspec, language), adapter folders (kit_manifest.json, weights), internet off for
    competition kernels, and the one upload rule over every folder a push would send (credential
    file names, any file holding your Kaggle key). Extra FOLDERS holding metadata JSON are checked
    too; without a kit.toml only they are checked. Lists every problem and warning at once; exits
    1 when there is a problem, 0 with warnings only. Every push (and its --dry-run) runs the same
    checks for what it pushes and refuses on the same problems.

    \b
    Examples:
      kit validate
      kit validate kernels/inference wheels
      kit validate --json
      kit validate --set 'kaggle.extra_machine_shapes=["NvidiaB200"]'
    """
    from pathlib import Path

    from kaggle_kit.publish.validate import Report, validate_report

    cfg = load(config_path, overrides, required=config_path is not None)
    if folders and getattr(cfg, "_source", None) is None:
        from kaggle_kit.publish.credentials import configured_secrets
        from kaggle_kit.publish.validate import check_folder

        report, secrets = Report(), configured_secrets()
        for folder in folders:
            report.problems += check_folder(Path(folder), secrets, report.warnings, cfg.kaggle.extra_machine_shapes)
    else:
        report = validate_report(cfg, ".", folders)
        if getattr(cfg, "_source", None) is None:  # an empty folder: say so among the problems
            report.problems.insert(0, "kit.toml: not found in this folder (the checks used the defaults); run "
                                      "`kit init --preset lmsys` (or another preset) here, or pass --config")
    if as_json:
        echo_json(report.to_dict())
    else:
        for w in report.warnings:
            click.echo(f"Warning: {w}")
        if report.problems:
            click.echo(f"{len(report.problems)} problem(s):")
            for p in report.problems:
                click.echo(f"  - {p}")
        else:
            what = "the folders" if folders and getattr(cfg, "_source", None) is None else "metadata, sources and upload folders"
            click.echo(f"OK: {what} are ready for Kaggle" + (f" ({len(report.warnings)} warning(s) above)." if report.warnings else "."))
    sys.exit(1 if report.problems else 0)


@click.command("push-dataset")
@config_options
@click.argument("folder", required=False, type=click.Path(file_okay=False))
@click.option("--version-notes", "-m", default="", help="Notes of the new version (when the dataset exists).")
@click.option("--dry-run", is_flag=True, help="Run the checks of `kit validate` for this push (exit 2 on a problem), "
              "stage and show the folder and metadata; upload nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly_errors
def push_dataset(config_path, overrides, folder, version_notes, dry_run, as_json):
    """Create a Kaggle dataset from FOLDER (default: the wheel set, wheels.out), or a new version
    when it exists. Private by default.

    \b
    Example:
      kit push-dataset --dry-run
      kit push-dataset wheels -m "add sentencepiece"
    """
    from kaggle_kit.publish.push import push_dataset as _push

    cfg = load(config_path, overrides)
    _show(_push(cfg, folder, ".", version_notes=version_notes, dry_run=dry_run), as_json)


@click.command("push-model")
@config_options
@click.option("--instance", "instance", required=True, help="Instance name from kit.toml [instances.NAME].")
@click.option("--version-notes", "-m", default="", help="Notes of the new instance version.")
@click.option("--dry-run", is_flag=True, help="Run the checks of `kit validate` for this push (exit 2 on a problem), "
              "stage and show the folder and metadata; upload nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly_errors
def push_model(config_path, overrides, instance, version_notes, dry_run, as_json):
    """Publish an adapter run folder (kind = "adapter", train.output) or a base-model snapshot
    (kind = "base", model.path) as a Kaggle model instance: creates the model and the instance
    when missing, else a new instance version. Sub-folders are uploaded as archives.

    \b
    Example:
      kit push-model --instance peft-lora-classifier --dry-run
      kit push-model --instance peft-lora-classifier -m "fold 0, 2 epochs"
    """
    from kaggle_kit.publish.push import push_model as _push

    cfg = load(config_path, overrides)
    _show(_push(cfg, instance, ".", version_notes=version_notes, dry_run=dry_run), as_json)


@click.command("push-kernel")
@config_options
@click.argument("name")
@click.option("--accelerator", default=None, help="Override kernels.NAME.accelerator (machine_shape), e.g. NvidiaTeslaT4.")
@click.option("--no-run", is_flag=True, help="Render, check and stage, but do not push (Kaggle runs every pushed version).")
@click.option("--dry-run", is_flag=True, help="Run the checks of `kit validate` for this push (exit 2 on a problem), "
              "stage and show the folder and metadata; upload nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly_errors
def push_kernel(config_path, overrides, name, accelerator, no_run, dry_run, as_json):
    """Render kernels/NAME/ if needed, then push it to Kaggle, which runs it.

    The kernel-metadata.json sent is rebuilt from kit.toml, with 'latest' model versions
    resolved from Kaggle.

    \b
    Example:
      kit push-kernel inference --dry-run
      kit push-kernel inference --accelerator NvidiaTeslaT4
    """
    from kaggle_kit.notebooks import render
    from kaggle_kit.publish.push import push_kernel as _push

    cfg = load(config_path, overrides)
    result = _push(cfg, name, ".", accelerator=accelerator, dry_run=dry_run, no_run=no_run, render=render.render_if_needed)
    _show(result, as_json)


@click.command()
@config_options
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@friendly_errors
def status(config_path, overrides, name, as_json):
    """Show the run status of pushed kernel NAME (queued, running, complete, error).

    \b
    Example:
      kit status inference
    """
    from kaggle_kit.publish.push import kernel_status

    cfg = load(config_path, overrides)
    info = kernel_status(cfg, name, api=_lazy_api())
    if as_json:
        echo_json(info)
    else:
        click.echo(f"{info['kernel']}: {info['status']}" + (f" ({info['failure_message']})" if info["failure_message"] else ""))
    sys.exit(1 if info["status"] == "error" else 0)


@click.command()
@config_options
@click.argument("name")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Folder for the files (default outputs/NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly_errors
def output(config_path, overrides, name, out, as_json):
    """Download the output (submission.csv and other files) and the log of kernel NAME.

    \b
    Example:
      kit output inference --out outputs/inference
    """
    from kaggle_kit.publish.push import kernel_output

    cfg = load(config_path, overrides)
    info = kernel_output(cfg, name, out=out, root=".", api=_lazy_api())
    if as_json:
        echo_json(info)
        return
    click.echo(f"{info['kernel']}: {len(info['files'])} file(s) in {info['folder']}")
    for f in info["files"]:
        click.echo(f"  {f}")
    if not info["submission"]:
        click.echo("Note: no submission.csv in the output (has the run finished? see `kit status`).")


@click.command("fetch-base")
@config_options
@click.option("--instance", default=None, help="Base instance from kit.toml (default: the first with kind = \"base\").")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly_errors
def fetch_base(config_path, overrides, instance, revision, as_json):
    """Download the base model (model.name) from the Hugging Face hub into the folder the base
    instance publishes (model.path or instances.NAME.source): safetensors, config, tokenizer.

    \b
    Example:
      kit fetch-base --instance gemma2-base --set model.path=models/gemma2-base
    """
    from kaggle_kit.publish.push import fetch_base as _fetch

    cfg = load(config_path, overrides)
    info = _fetch(cfg, instance, ".", revision=revision)
    if as_json:
        echo_json(info)
        return
    click.echo(f"{info['repo']} -> {info['folder']} ({len(info['files'])} files; weights: {', '.join(info['weights'])})")


def _lazy_api():
    from kaggle_kit.publish.push import open_api

    return open_api(warn=_warn)

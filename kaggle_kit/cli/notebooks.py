"""`kit render` and `kit run-local`: thin wrappers over kaggle_kit.notebooks.render and kaggle_kit.notebooks.run_local."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from kaggle_kit.cli.options import config_options, echo_json, friendly_errors, load


def _root(config_path) -> Path:
    return Path(config_path).resolve().parent if config_path else Path(".")


@click.command()
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Render every kernel in kit.toml.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when a rendered file is stale or was edited by hand.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--budget-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="train-predict: the kernel's one time budget, training + prediction (sets test_time.budget_minutes; "
                   "default: the competition's notebook limit less 10%).")
@config_options
@friendly_errors
def render(name, all_, check, as_json, budget_minutes, config_path, overrides):
    """Render kernels/NAME/NAME.ipynb and kernels/NAME/kernel-metadata.json from notebooks_src/ and kit.toml.

    The notebook embeds the kaggle-kit runtime verbatim, installs the wheel set offline, checks library
    versions against the adapter's manifest and writes /kaggle/working/submission.csv.

    \b
    Examples:
      kit render inference
      kit render --all --check      # CI: fail when kernels/ is stale or hand-edited
      kit render train-predict --budget-minutes 600 --set test_time.nproc=2
    """
    from kaggle_kit.errors import KitError
    from kaggle_kit.notebooks.render import render_all, render_kernel

    if bool(name) == bool(all_):
        raise KitError("name one kernel (e.g. `kit render inference`) or pass --all")
    if budget_minutes is not None:
        overrides = (*overrides, f"test_time.budget_minutes={budget_minutes}")
    cfg = load(config_path, overrides)
    root = _root(config_path)
    results = render_all(cfg, root, check=check) if all_ else [render_kernel(cfg, name, root, check=check)]
    if as_json:
        echo_json([r.to_dict() for r in results])
    stale = [p for r in results for p in r.stale_files]
    for r in results:
        if as_json:
            break
        if check:
            state = "STALE" if r.stale_files else "up to date"
            click.echo(f"{r.name}: {state} ({r.folder})")
            for p in r.stale_files:
                click.echo(f"  differs from a fresh render: {p}")
        else:
            state = "written" if r.changed else "unchanged"
            click.echo(f"{r.name}: {state}: {r.notebook_path}, {r.metadata_path} ({len(r.embedded)} modules embedded)")
        for note in r.notes:
            click.echo(f"  note: {note}")
    if check and stale:
        click.echo("Rendered files are stale or were edited by hand; run `kit render --all` and commit the result.", err=True)
        sys.exit(1)


def _parse_inputs(values) -> dict:
    from kaggle_kit.errors import KitError

    out = {}
    for value in values:
        role, sep, path = value.partition("=")
        if not sep or not role.strip() or not path.strip():
            raise KitError(f"--inputs {value!r}: expected ROLE=DIR, e.g. --inputs adapter=runs/tiny")
        out[role.strip()] = path.strip()
    return out


@click.command("run-local")
@click.argument("name")
@click.option("--inputs", "inputs", multiple=True, metavar="ROLE=DIR",
              help="Map a notebook input to a local folder (repeatable): competition, adapter, base, wheels.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (/kaggle/working): submission.csv and the executed notebook. Default: local-runs/NAME.")
@click.option("--network", type=click.Choice(["auto", "netns", "guard"]), default="auto", show_default=True,
              help="How the network is cut: a new network namespace, or a socket guard in the kernel.")
@click.option("--timeout", type=float, default=None, help="Seconds allowed per cell (default: no limit).")
@click.option("--keep-root", is_flag=True, help="Keep the temporary Kaggle-like root for inspection.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly_errors
def run_local(name, inputs, out_dir, network, timeout, keep_root, as_json):
    """Execute kernels/NAME/NAME.ipynb here, offline, as Kaggle would run it.

    Inputs are mapped into a temporary /kaggle-like root (KIT_KAGGLE_ROOT); the base model defaults to
    the adapter manifest's base_model.path and a missing wheel set installs nothing. Prints the time
    per cell; a failing cell exits non-zero with its source and traceback.

    \b
    Example:
      kit run-local inference --inputs competition=data/ --inputs adapter=runs/tiny --out out/
    """
    from kaggle_kit.notebooks.run_local import run_notebook

    path = Path(name)
    if path.suffix != ".ipynb":
        path = Path("kernels") / name / f"{name}.ipynb"
    out = Path(out_dir) if out_dir else Path("local-runs") / path.stem
    log = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    result = run_notebook(path, _parse_inputs(inputs), out, log=log, network=network, timeout=timeout, keep_root=keep_root)
    if as_json:
        echo_json(result.to_dict())
        return
    total = sum(c.seconds for c in result.cell_times)
    click.echo(f"cells: {len(result.cell_times)} in {total:.1f}s (slowest: " + ", ".join(
        f"cell {c.index} {c.seconds:.1f}s" for c in sorted(result.cell_times, key=lambda c: -c.seconds)[:3]) + ")")
    click.echo(f"executed notebook: {result.notebook_path}")
    click.echo(f"submission: {result.submission_path or '(none written)'}")

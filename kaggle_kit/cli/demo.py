"""`kit demo`: the local journey on synthetic data, printing where every artifact is."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import friendly_errors


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False), default="demo-run", show_default=True, help="Folder for every artifact.")
@click.option("--rows", type=click.IntRange(10), default=None, help="Training rows to synthesize (default 600).")
@friendly_errors
def demo(workdir, rows):
    """Run the whole local journey on the embedded default: no credentials, no GPU, no network.

    Synthesizes LMSYS-format train/test files, inspects them (JSON report + length histogram),
    builds the tiny base model and encodes the model inputs; prints where every artifact is.

    \b
    Examples:
      kit demo --workdir demo-run
      make demo
    """
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from kaggle_kit.demo import run_demo

    settings = {"train_rows": rows} if rows else None
    artifacts = run_demo(workdir, log=click.echo, settings=settings)
    click.echo("")
    click.echo(f"Done: {len(artifacts)} artifacts under {workdir} (listed in {workdir}/artifacts.json)")

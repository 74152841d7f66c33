"""`kit demo`: the local journey on synthetic data, printing where every artifact is."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import friendly_errors


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False), default="demo-run", show_default=True, help="Folder for every artifact.")
@click.option("--rows", type=click.IntRange(10), default=None, help="Training rows to synthesize (default 600).")
@friendly_errors
def demo(workdir, rows):
    # the help text is built from kaggle_kit.demo.STEPS below (one line per step, never out of date)
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from kaggle_kit.demo import run_demo

    settings = {"train_rows": rows} if rows else None
    artifacts = run_demo(workdir, log=click.echo, settings=settings)
    click.echo("")
    click.echo(f"Done: {len(artifacts)} artifacts under {workdir} (listed in {workdir}/artifacts.json)")


def _help() -> str:
    """The command's help: every step of :data:`kaggle_kit.demo.STEPS`, in order (stdlib-only import)."""
    from kaggle_kit.demo import STEPS

    steps = "\n".join(f"  {i}. {name}" for i, (name, _) in enumerate(STEPS, 1))
    return (
        "Run the whole local journey on the embedded default: no credentials, no GPU, no network.\n\n"
        f"Steps ({len(STEPS)}), each printing where its artifacts are:\n\n\b\n{steps}\n\n"
        "Time depends on the CPU and on what else runs on it (see the README for measured figures).\n\n"
        "\b\nExamples:\n  kit demo --workdir demo-run\n  make demo"
    )


demo.help = _help()

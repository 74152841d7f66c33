"""The `kit` command: a click group whose commands load lazily.

`kit --help` imports only click and this file: each command's module (and with it torch,
transformers or the kaggle client) is imported when that command runs. To add a command, add a
line to COMMANDS: name -> (module, attribute, one-line summary).
"""
from __future__ import annotations

import importlib

import click

from kaggle_kit import __version__

COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module, attribute, summary shown by `kit --help`)
    "init": ("kaggle_kit.cli.project", "init", "Write a commented kit.toml for a preset."),
    "config": ("kaggle_kit.cli.project", "config_cmd", "Show the merged configuration (defaults < kit.toml < --set)."),
    "data": ("kaggle_kit.cli.data", "data", "Inspect, synthesize and prepare competition data."),
    "demo": ("kaggle_kit.cli.demo", "demo", "Run the whole local journey on synthetic data (no credentials, no GPU)."),
    "bench": ("kaggle_kit.cli.bench", "bench", "Benchmarks that print measured ratios against a baseline."),
    "train": ("kaggle_kit.cli.train", "train", "Fine-tune a QLoRA/LoRA/IA3 classifier; writes a self-describing run folder."),
    "predict": ("kaggle_kit.cli.predict", "predict", "Batched prediction from a run folder to a validated submission."),
    "generate": ("kaggle_kit.cli.generate", "generate", "Batched generation from an SFT adapter, with exact-match/F1/ROUGE-L evaluation."),
    "merge": ("kaggle_kit.cli.predict", "merge", "Merge an adapter into its base (16-bit), or average fold adapters into one."),
    "blend": ("kaggle_kit.cli.ensemble", "blend", "Fit ensemble weights on out-of-fold predictions (writes [ensemble])."),
    "render": ("kaggle_kit.cli.notebooks", "render", "Render kernels/<name>/ (notebook + kernel-metadata.json) from notebooks_src/."),
    "run-local": ("kaggle_kit.cli.notebooks", "run_local", "Execute a rendered notebook locally with the network cut."),
    "build-wheels": ("kaggle_kit.cli.wheels", "build_wheels", "Build the offline wheel dataset for a target Kaggle image."),
    "validate": ("kaggle_kit.cli.publish", "validate", "Check every Kaggle metadata file and source before anything uploads."),
    "push-dataset": ("kaggle_kit.cli.publish", "push_dataset", "Create or version a Kaggle dataset (the wheel set by default)."),
    "push-model": ("kaggle_kit.cli.publish", "push_model", "Publish an adapter or base folder as a Kaggle model instance."),
    "push-kernel": ("kaggle_kit.cli.publish", "push_kernel", "Render if stale, then push a kernel to Kaggle."),
    "status": ("kaggle_kit.cli.publish", "status", "Show a pushed kernel's run status."),
    "output": ("kaggle_kit.cli.publish", "output", "Download a kernel's submission and log."),
    "fetch-base": ("kaggle_kit.cli.publish", "fetch_base", "Download the base model snapshot for a base-model instance."),
}

EPILOG = """\b
Examples:
  kit init --preset lmsys              # write kit.toml for LMSYS Chatbot Arena
  kit data inspect train.csv --json    # rows, labels, token lengths, problems
  kit train --model tiny --data train.csv --output runs/tiny
  kit build-wheels --check             # offline wheel set for Kaggle's image
  kit push-model --instance peft-lora-classifier --dry-run
  kit push-kernel inference
"""


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when run. ``registry``: name -> (module, attr, summary)."""

    def __init__(self, *args, registry: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.registry = COMMANDS if registry is None else registry

    def list_commands(self, ctx):
        return sorted(self.registry)

    def get_command(self, ctx, name):
        if name not in self.registry:
            return None
        module, attr, _ = self.registry[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, self.registry[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kit")
def main():
    """kaggle-kit: fine-tune LLM classifiers and ship them to Kaggle as offline notebooks.

    Configuration comes from ./kit.toml (see `kit init`); commands that take it accept
    `--set section.key=value` overrides.
    """


if __name__ == "__main__":  # pragma: no cover
    main()

"""`kit train`: fine-tune a QLoRA / LoRA / IA3 sequence classifier into a self-describing run folder.

`python -m kaggle_kit.cli.train …` = `kit train …`; the entry torchrun / accelerate launch use for DDP
(`kit train --nproc N` re-runs itself that way):

    torchrun --nproc_per_node 2 -m kaggle_kit.cli.train --config kit.toml
"""
from __future__ import annotations

import os
import sys

import click

from kaggle_kit.cli.options import config_options, friendly_errors, load


def _quick_overrides(model, data, output, max_steps, quantization, peft, max_length) -> list:
    sets = []
    if model:
        if model in ("tiny", "smollm2", "minilm"):
            sets += [f"model.name='{model}'", "model.path=''"]
        elif os.path.exists(os.path.expanduser(model)):
            sets += [f"model.path={_q(model)}", f"model.name={_q(model)}"]
        else:
            sets += [f"model.name={_q(model)}", "model.path=''"]
    if data:
        sets.append(f"data.train={_q(data)}")
    if output:
        sets.append(f"train.output={_q(output)}")
    if max_steps is not None:
        sets.append(f"train.max_steps={int(max_steps)}")
    if quantization:
        sets.append(f"quantization.mode={_q(quantization)}")
    if peft:
        sets.append(f"peft.method={_q(peft)}")
    if max_length:
        sets.append(f"prompt.max_length={int(max_length)}")
    return sets


def _q(s: str) -> str:
    import json

    return json.dumps(str(s))


def _torchrun(nproc: int) -> None:
    """Re-run this very command under torchrun with ``nproc`` processes (minus --nproc)."""
    import subprocess

    argv = list(sys.argv[1:])
    if argv and argv[0] == "train":  # launched as `kit train …`
        argv = argv[1:]
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    from kaggle_kit.train.ddp_worker import torchrun_command

    cmd = torchrun_command(nproc, "kaggle_kit.cli.train", out)
    click.echo("running: " + " ".join(cmd), err=True)
    sys.exit(subprocess.call(cmd))


@click.command()
@config_options
@click.option("--fold", type=int, default=None, help="Fold to hold out for validation (default: data.fold).")
@click.option("--all-folds", is_flag=True, help="Train every fold in turn, each into <output>/fold-K.")
@click.option("--output", default=None, help="Run folder (default: train.output).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint in <output>.partial.")
@click.option("--model", default=None, help="Quick form: 'tiny', 'smollm2', 'minilm', a local model folder, or a hub id (sets model.name/path).")
@click.option("--data", default=None, help="Quick form: training file (sets data.train).")
@click.option("--max-steps", type=int, default=None, help="Stop after N optimizer steps (sets train.max_steps).")
@click.option("--max-length", type=int, default=None, help="Tokens per example (sets prompt.max_length).")
@click.option("--quantization", type=click.Choice(["none", "4bit", "8bit"]), default=None, help="Base weights (sets quantization.mode).")
@click.option("--peft", "peft_method", type=click.Choice(["lora", "ia3"]), default=None, help="Adapter type (sets peft.method).")
@click.option("--nproc", type=int, default=None, help="Data-parallel processes: re-runs this command under torchrun (DDP; gloo on CPUs).")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON.")
@friendly_errors
def train(config_path, overrides, fold, all_folds, output, resume, model, data, max_steps, max_length, quantization,
          peft_method, nproc, as_json):
    """Fine-tune a sequence classifier (QLoRA / LoRA / IA3) and write a run folder.

    The run folder holds adapter_config.json, adapter_model.safetensors, the tokenizer,
    kit_manifest.json (everything a predictor needs), metrics.json, oof.csv and plots.
    Settings come from kit.toml (`kit init`) and --set; a quick form needs no config.

    \b
    Examples:
      kit train --model tiny --data train.csv --output runs/tiny --max-steps 40
      kit train --model tiny --data train.csv --output runs/q --quantization 4bit
      kit train --model smollm2 --data train.csv --output runs/smol --max-length 96 --max-steps 20
      kit train --set train.max_steps=200 --fold 1
      kit train --all-folds --output runs/gemma2
      kit train --resume                     # continue an interrupted run
      kit train --nproc 2 --model tiny --data train.csv --output runs/ddp
      torchrun --nproc_per_node 2 -m kaggle_kit.cli.train --config kit.toml
    """
    if nproc and nproc > 1 and "RANK" not in os.environ:
        _torchrun(nproc)
        return
    from kaggle_kit.errors import KitError

    # quick form (--model/--data/... without --config): the data decides the task kind
    quick = any(v is not None for v in (model, data, quantization, peft_method)) and config_path is None
    cfg = load(config_path, list(overrides) + _quick_overrides(model, data, output, max_steps, quantization, peft_method, max_length))
    if all_folds and fold is not None:
        raise KitError("--fold and --all-folds exclude each other; pick one")
    if all_folds and cfg.data.val_fraction > 0:
        raise KitError(f"--all-folds trains one run per fold, but data.val_fraction = {cfg.data.val_fraction} replaces the folds "
                       f"with one holdout split, so all {cfg.data.folds} runs would be identical; set data.val_fraction = 0 "
                       f"(--set data.val_fraction=0) or drop --all-folds")
    from kaggle_kit.train import run_training

    log = lambda msg: click.echo(msg, err=as_json)  # noqa: E731  (stdout stays pure JSON with --json)
    results = []
    if all_folds:
        base_out = cfg.train.output
        for k in range(cfg.data.folds):
            cfg.train.output = os.path.join(base_out, f"fold-{k}")
            results.append(run_training(cfg, fold=k, resume=resume, log=log, allow_kind_from_data=quick))
    else:
        results.append(run_training(cfg, fold=fold, resume=resume, log=log, allow_kind_from_data=quick))
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if as_json:
        from kaggle_kit.cli.options import echo_json
        from kaggle_kit.runtime.metrics import scalar_metrics

        echo_json([{"output": str(r.output_dir), "fold": r.fold, "best_step": r.best_step,
                    **scalar_metrics(r.metrics["final"])} for r in results])
    elif len(results) > 1:
        metric = results[0].metrics["metric"]
        vals = [r.metrics["final"][metric] for r in results]
        click.echo(f"all folds: {metric} " + ", ".join(f"{v:.4f}" for v in vals) + f" | mean {sum(vals) / len(vals):.4f}")


if __name__ == "__main__":
    train(prog_name="kit train")

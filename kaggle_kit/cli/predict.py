"""`kit predict` and `kit merge`: thin wrappers over kaggle_kit.runtime.infer."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import config_options, echo_json, friendly_errors, load


def _kit_errors(fn):
    """Compatibility problems of the runtime (a ValueError subclass) become KitErrors (no traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from kaggle_kit.errors import KitError
        from kaggle_kit.runtime.manifest import CompatibilityError

        try:
            return fn(*args, **kwargs)
        except (CompatibilityError, FileNotFoundError) as exc:
            raise KitError(str(exc)) from None

    return wrapper


@click.command("predict")
@click.option("--adapter", "adapter", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Run folder from `kit train` (or a folder from `kit merge`); repeat it for an ensemble. Default: [ensemble] members.")
@click.option("--weights", default=None, help="Ensemble: one weight per --adapter, e.g. 0.6,0.4 (normalised). Default: [ensemble] weights, else equal.")
@click.option("--combine", type=click.Choice(["mean", "logit_mean"]), default=None, help="Ensemble: how member probabilities combine. Default: [ensemble] combine.")
@click.option("--parts", default=None, type=click.Path(file_okay=False), help="Ensemble: folder for each member's saved predictions (a rerun skips finished members). Default: parts/ beside --out.")
@click.option("--data", "data", required=True, type=click.Path(exists=True, dir_okay=False), help="Test file (the format recorded in the manifest).")
@click.option("--out", "out", default="submission.csv", show_default=True, type=click.Path(dir_okay=False), help="Submission CSV to write (atomically).")
@click.option("--base", "base", default=None, type=click.Path(exists=True, file_okay=False), help="Base model folder (default: the one in kit_manifest.json).")
@click.option("--budget-minutes", type=click.FloatRange(0, min_open=True), default=None, help="Finish within this many minutes; degrades in steps (shorter max length, less TTA).")
@click.option("--tta", default=None, help="A/B-swap TTA: none, all, or uncertain:FRACTION (e.g. uncertain:0.3).")
@click.option("--batch-tokens", type=click.IntRange(1), default=None, help="Token budget per batch (rows × longest row). Default 8192.")
@click.option("--max-batch-rows", type=click.IntRange(1), default=None, help="Row cap per batch. Default 64.")
@click.option("--devices", default=None, help="Comma list, one model replica each: cpu,cpu or cuda:0,cuda:1 (default: every GPU, else cpu).")
@click.option("--quantization", type=click.Choice(["none", "4bit", "8bit"]), default=None, help="Override the quantization the adapter was trained with.")
@click.option("--sample", default=None, type=click.Path(exists=True, dir_okay=False),
              help="The competition's sample_submission.csv: decides the shape and is compared with the written file "
                   "(default: the sample the run's manifest names, when it lies beside --data).")
@click.option("--max-unpredicted-share", type=click.FloatRange(0, 1), default=None, help="Exit 1 (after writing the submission) when more than this share of rows got the fill instead of a prediction (non-finite logits, time budget). Default: inference.max_unpredicted_share (0.01).")
@click.option("--logits", is_flag=True, help="Write teacher values (log-probabilities per class, keyed by id) to --out (.parquet or .csv) "
              "instead of a submission; an --all-folds parent predicts its training rows out of fold. For [distill] teacher.")
@click.option("--cascade", "cascade", type=click.FloatRange(0, 1), default=None,
              help="Cascade: the first --adapter predicts every row, each later one only this share of the most uncertain "
                   "rows (0 = the first alone, 1 = the full ensemble). Default: [ensemble] cascade_share when cascade = true.")
@click.option("--zero-shot", "zero_shot", is_flag=True,
              help="Score a base model with no adapter through the label-token head (task, prompt and task.label_tokens from "
                   "kit.toml and --set): the baseline every fine-tune should beat. Needs --model (or model.name / model.path).")
@click.option("--model", "model_name", default=None, help="--zero-shot: the base, a named model (smollm2, tiny) or a folder. Default: model.name.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (figures and decisions) on stdout.")
@config_options
@friendly_errors
@_kit_errors
def predict(adapter, weights, combine, parts, data, out, base, budget_minutes, tta, batch_tokens, max_batch_rows, devices, quantization, sample,
            max_unpredicted_share, logits, cascade, zero_shot, model_name, no_progress, as_json, config_path, overrides):
    """Predict every row of a test file with a run folder and write a validated submission.

    Rows are tokenized once, sorted by length and packed into token-budget batches; every test id
    gets a row, in the test file's order, even when the time budget runs out. Rows whose logits are
    not finite (inf/NaN, e.g. a float16 overflow) are re-run once in float32; rows still without a
    prediction, and rows the budget cut, get the mean of the predicted rows — counted and listed by id
    in the log and in --json (nonfinite_rows, rerun_rows, filled_rows, fallback_ids). When more than
    --max-unpredicted-share of the rows got that fill, the command exits 1 after writing the file.
    Options left out come from [inference] in kit.toml, else the defaults.

    \b
    Examples:
      kit predict --adapter runs/tiny --data test.csv --out submission.csv
      kit predict --adapter runs/gemma --data test.csv --tta uncertain:0.3 --budget-minutes 240 --devices cuda:0,cuda:1
      kit predict --adapter runs/map --data data/test.csv --sample data/sample_submission.csv
      kit predict --adapter runs/map --data data/valid.csv --out valid.csv   # labelled: prints the metric, writes valid.metrics.json
      kit predict --adapter runs/gemma/fold-0 --adapter runs/qwen/fold-0 --weights 0.6,0.4 --data test.csv
      kit predict --adapter runs/gemma --data test.csv     # an --all-folds parent: its folds, averaged
      kit predict --data test.csv                          # the members and weights of [ensemble] in kit.toml
      kit predict --adapter runs/teacher --data train.csv --logits --out teacher.parquet   # OOF teacher logits
      kit predict --adapter runs/student --adapter runs/teacher/fold-0 --cascade 0.3 --data test.csv
      kit predict --zero-shot --model smollm2 --data valid.csv --out zs.csv   # no adapter: the label-token baseline
    """
    from kaggle_kit.runtime.infer import predict_file

    full = load(config_path, overrides)
    cfg = full.inference
    log = (lambda m: click.echo(m, err=True))
    from kaggle_kit.models.named import named_base_for

    _check_options(tta or cfg.tta or None, devices or (cfg.devices or None), "--tta" if tta else "inference.tta",
                   "--devices" if devices else "inference.devices")
    if zero_shot or model_name:
        return _zero_shot(full, adapter, model_name, data, out, tta, batch_tokens, max_batch_rows, devices, quantization, sample,
                          max_unpredicted_share, no_progress, as_json, log)
    members, weights = _members(adapter, weights, full.ensemble)
    if logits:
        return _predict_logits(members, weights, data, out, base, tta, batch_tokens, max_batch_rows, devices, quantization,
                               no_progress, as_json, cfg, log)
    cascade_settings = _cascade(cascade, full.ensemble, len(members))
    if len(members) > 1 or _is_parent(members[0]):
        return _predict_ensemble(members, weights, combine or full.ensemble.combine, parts or full.ensemble.parts or None,
                                 data, out, base, budget_minutes, tta, batch_tokens, max_batch_rows, devices, quantization,
                                 no_progress, as_json, cfg, log, sample,
                                 max_unpredicted_share if max_unpredicted_share is not None else cfg.max_unpredicted_share,
                                 cascade_settings)
    base = base or named_base_for(members[0], log)
    result = predict_file(
        members[0], data, out, base_path=base,
        tta=tta or cfg.tta or None,
        budget_minutes=budget_minutes if budget_minutes is not None else (cfg.budget_minutes or None),
        batch_tokens=batch_tokens or cfg.batch_tokens or None,
        max_batch_rows=max_batch_rows or cfg.max_batch_rows or None,
        devices=devices or (cfg.devices or None),
        quantization=quantization or cfg.quantization or None,
        log=log, progress=not no_progress, sample=sample,
        max_unpredicted_share=max_unpredicted_share if max_unpredicted_share is not None else cfg.max_unpredicted_share,
    )
    if as_json:
        echo_json(result.to_dict())
    _exit_if_unpredicted(result)
    if as_json:
        return
    # the runtime's one "wrote …" line (rows, rate, padding, truncation, TTA, fallback, fills) went to the log
    if result.sample:
        click.echo(f"checked against the sample {result.sample} (the log says what was compared)")
    if result.metrics:
        metric = next(iter(k for k in result.metrics if k == (result.manifest.task.get("metric", "") or "")), None) or "log_loss"
        click.echo(f"{metric} {result.metrics.get(metric, float('nan')):.4f} on {data} (all: "
                   + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()) + ")")


def _zero_shot(full, adapter, model_name, data, out, tta, batch_tokens, max_batch_rows, devices, quantization, sample,
               max_unpredicted_share, no_progress, as_json, log) -> None:
    """`kit predict --zero-shot --model NAME`: the base with no adapter, label-token head (train.label_tokens)."""
    from kaggle_kit.errors import KitError
    from kaggle_kit.train.label_tokens import zero_shot_predict

    if adapter:
        raise KitError("--zero-shot scores a base with no adapter: drop --adapter (or drop --zero-shot to use the run folder)")
    if model_name is not None and not model_name:
        raise KitError("--model is empty; name a base (smollm2, tiny or a folder)")
    if model_name:
        full.model.name, full.model.path = model_name, ""
    if not (full.model.name or full.model.path):
        raise KitError("--zero-shot needs a base: --model smollm2 (or model.name / model.path in kit.toml)")
    cfg = full.inference
    result = zero_shot_predict(
        full, data, out, log=log, progress=not no_progress, tta=tta or cfg.tta or None,
        batch_tokens=batch_tokens or cfg.batch_tokens or None, max_batch_rows=max_batch_rows or cfg.max_batch_rows or None,
        devices=devices or (cfg.devices or None), quantization=quantization or None, sample=sample,
        max_unpredicted_share=max_unpredicted_share if max_unpredicted_share is not None else cfg.max_unpredicted_share)
    if as_json:
        echo_json(result.to_dict())
    _exit_if_unpredicted(result)
    if result.metrics and not as_json:
        metric = full.task.metric if full.task.metric in result.metrics else "log_loss"
        click.echo(f"zero-shot {metric} {result.metrics.get(metric, float('nan')):.4f} on {data} (all: "
                   + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()) + ")")


def _check_options(tta, devices, tta_from: str, devices_from: str) -> None:
    """KitError naming the option for a TTA or device list the runtime would refuse — before any weights load."""
    from kaggle_kit.errors import KitError
    from kaggle_kit.runtime.engine import parse_tta
    from kaggle_kit.runtime.workers import parse_devices

    if tta is not None:
        try:
            parse_tta(tta)
        except ValueError as exc:
            raise KitError(f"{tta_from} = {tta!r}: {exc}") from None
    if devices is None:
        return
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    here = ",".join(f"cuda:{i}" for i in range(gpus)) or "cpu"
    try:
        wanted = parse_devices(devices)
    except ValueError as exc:
        raise KitError(f"{devices_from} = {devices!r}: {exc}; this machine has {gpus} GPU(s): e.g. --devices {here}") from None
    index = {d: (d.partition(":")[2] or "0") for d in wanted if d.startswith("cuda")}
    missing = [d for d, n in index.items() if not n.isdigit() or int(n) >= gpus]
    if missing:
        raise KitError(f"{devices_from} = {devices!r}: {', '.join(missing)} is not on this machine ({gpus} CUDA GPU(s)); "
                       f"use --devices {here}, or leave --devices out (every GPU, else the CPU)")


def _exit_if_unpredicted(result) -> None:
    """Exit 1 (the submission is written) when more than max_unpredicted_share of the rows got the fill."""
    if result.too_many_unpredicted:
        click.echo(f"Error: {result.unpredicted_rows} of {result.rows} rows ({result.unpredicted_share:.1%}) could not be predicted "
                   f"(limit {result.to_dict()['max_unpredicted_share']:.1%}, --max-unpredicted-share); {result.out_path} was "
                   f"written, but do not submit it before fixing the cause logged above", err=True)
        raise SystemExit(1)


def _is_parent(path) -> bool:
    from pathlib import Path

    return not (Path(path) / "kit_manifest.json").is_file() and any(Path(path).glob("fold-*/kit_manifest.json"))


def _members(adapters, weights, ens) -> tuple:
    """(member folders, weights) from --adapter/--weights, else [ensemble] in kit.toml."""
    from kaggle_kit.errors import KitError

    adapters = list(adapters)
    if not adapters:
        adapters = list(ens.members)
        if not adapters:
            raise KitError("no adapter: pass --adapter RUN (repeatable for an ensemble) or set [ensemble] members in kit.toml")
        return adapters, weights or (list(ens.weights) or None)
    if weights is None and ens.weights and [str(a) for a in ens.members] == adapters:
        weights = list(ens.weights)  # the same members as kit.toml: its (e.g. `kit blend`-fitted) weights
    if weights is not None and len(adapters) == 1:
        raise KitError("--weights needs several --adapter members (one weight each)")
    return adapters, weights


def _named_bases(members, log) -> list:
    """Candidate base folders for members whose recorded base is not here but is a named one (smollm2,
    minilm, tiny, materialised on this machine), beside the recorded folders that are here; each member
    then takes the candidate its manifest accepts (runtime.ensemble.pick_base)."""
    from pathlib import Path

    from kaggle_kit.models.named import named_base_for
    from kaggle_kit.runtime.manifest import Manifest

    folders = [f for m in members for f in ([m] if (Path(m) / "kit_manifest.json").is_file() else sorted(Path(m).glob("fold-*")))]
    named = [b for b in dict.fromkeys(named_base_for(f, log) for f in folders) if b]
    if not named:
        return []
    here = [p for f in folders if (p := (Manifest.load(f).base_model or {}).get("path")) and Path(p).is_dir()]
    return list(dict.fromkeys(named + here))


def _predict_logits(members, weights, data, out, base, tta, batch_tokens, max_batch_rows, devices, quantization, no_progress,
                    as_json, cfg, log):
    """`kit predict --logits`: teacher values for every row of --data (runtime.teacher_oof)."""
    from kaggle_kit.runtime.teacher_oof import predict_logits_file

    result = predict_logits_file(members, data, out, weights=weights, base_path=base, bases=() if base else _named_bases(members, log),
                                 tta=tta or cfg.tta or None, batch_tokens=batch_tokens or cfg.batch_tokens or None,
                                 max_batch_rows=max_batch_rows or cfg.max_batch_rows or None, devices=devices or (cfg.devices or None),
                                 quantization=quantization or cfg.quantization or None, log=log, progress=not no_progress)
    if as_json:
        return echo_json(result.to_dict())
    click.echo(f"wrote {result.out_path}: {result.written} of {result.rows} rows ({result.oof_rows} out of fold, "
               f"{len(result.not_oof_ids)} from every fold, {len(result.unpredicted_ids)} left out)"
               + (" | " + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()) if result.metrics else ""))


def _cascade(share, ens, n_members: int):
    """The cascade settings (runtime.cascade.CascadeSettings) from --cascade or [ensemble] cascade*, else None."""
    if share is None and not ens.cascade:
        return None
    from kaggle_kit.errors import KitError
    from kaggle_kit.runtime.cascade import CascadeSettings

    if n_members < 2:
        raise KitError("--cascade needs at least two --adapter members: the first predicts every row, the later ones the uncertain share")
    return CascadeSettings(share=ens.cascade_share if share is None else share, by=ens.cascade_by,
                           threshold=ens.cascade_threshold, combine=ens.cascade_combine)


def _predict_ensemble(members, weights, combine, parts, data, out, base, budget_minutes, tta, batch_tokens, max_batch_rows,
                      devices, quantization, no_progress, as_json, cfg, log, sample=None, max_unpredicted_share=None, cascade=None):
    from kaggle_kit.runtime.ensemble import predict_ensemble_file

    result = predict_ensemble_file(
        members, data, out, weights=weights, combine_method=combine, base_path=base, parts_dir=parts,
        bases=() if base else _named_bases(members, log),
        tta=tta or cfg.tta or None,
        budget_minutes=budget_minutes if budget_minutes is not None else (cfg.budget_minutes or None),
        batch_tokens=batch_tokens or cfg.batch_tokens or None, max_batch_rows=max_batch_rows or cfg.max_batch_rows or None,
        devices=devices or (cfg.devices or None), quantization=quantization or cfg.quantization or None,
        log=log, progress=not no_progress, sample=sample, max_unpredicted_share=max_unpredicted_share, cascade=cascade,
    )
    if as_json:
        echo_json(result.to_dict())
    _exit_if_unpredicted(result)
    if as_json:
        return
    for m in result.members:
        if "stage" in m:  # a cascade: the rows each member predicted
            click.echo(f"  {m['name']:<24} weight {m['weight']:.3f}  stage {m['stage'] + 1}: {m.get('rows', 0)} of {result.rows} rows, "
                       f"{m.get('seconds', 0):.1f}s, kept earlier {len(m.get('kept_earlier_ids', []))}")
            continue
        state = "reused saved part" if m["reused"] else ("dropped (time budget)" if m["dropped"] else
                                                          f"{m.get('seconds', 0):.1f}s, fallback {m.get('fallback_rows', 0)}, TTA {m.get('tta_rows', 0)}")
        click.echo(f"  {m['name']:<24} weight {m['weight']:.3f}  {state}")
    # the runtime's one "wrote …" line (members, combine, parts folder) went to the log


@click.command("merge")
@click.option("--adapter", "adapter", default=None, type=click.Path(exists=True, file_okay=False), help="Run folder from `kit train` to merge into its base.")
@click.option("--average-folds", "average_folds", default=None, type=click.Path(exists=True, file_okay=False),
              help="Parent of `kit train --all-folds`: average its fold adapters (LoRA + head) into one adapter.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder for the merged model / averaged adapter.")
@click.option("--base", "base", default=None, type=click.Path(exists=True, file_okay=False), help="Full-precision base folder (default: the one in the manifest).")
@click.option("--dtype", type=click.Choice(["bfloat16", "float16"]), default="bfloat16", show_default=True, help="16-bit type to save (Gemma-2 overflows in float16 more easily).")
@click.option("--no-score", is_flag=True, help="--average-folds: skip the OOF scores (no model is loaded).")
@click.option("--json", "as_json", is_flag=True, help="--average-folds: print the result as JSON.")
@friendly_errors
@_kit_errors
def merge(adapter, average_folds, out, base, dtype, no_score, as_json):
    """Merge an adapter into a full-precision base (16-bit model + manifest), or average fold adapters.

    The base always loads unquantized here: merging into a 4-bit base requantizes and moves the
    logits (see the stack notes). `kit predict --adapter OUT` then loads the merged folder directly.

    --average-folds averages every adapter tensor (LoRA A/B, the classification head) of compatible folds
    (same base, targets, rank and train.seed; else an error naming the difference) into one adapter that
    predicts at the cost of one model, prints how far mean(B)·mean(A) is from the folds' mean update
    mean(BᵢAᵢ) (median and max over modules; a warning when large), and its OOF score beside the fold
    ensemble's, in the folds' task.metric (any metric `kit train` accepts, map@K included).

    \b
    Examples:
      kit merge --adapter runs/tiny --out runs/tiny-merged
      kit merge --adapter runs/gemma --base /models/gemma-2-9b --out merged --dtype float16
      kit merge --average-folds runs/gemma --out runs/gemma-avg
    """
    from kaggle_kit.errors import KitError

    if bool(adapter) == bool(average_folds):
        raise KitError("pass either --adapter RUN (merge into the base) or --average-folds PARENT (average fold adapters)")
    log = lambda m: click.echo(m, err=True)  # noqa: E731
    if average_folds:
        from kaggle_kit.ensemble.merge_folds import average_folds as average

        result = average(average_folds, out, score=not no_score, log=log, base_path=base)
        if as_json:
            echo_json(result.to_dict())
            return
        click.echo(f"averaged adapter written to {out} ({len(result.folds)} folds, {result.tensors} tensors)")
        from kaggle_kit.ensemble.merge_folds import approximation_line

        click.echo(approximation_line(result.approximation) + (" — WARNING: see above" if result.approximation.get("warning") else ""))
        if result.averaged_oof is not None:
            click.echo(f"OOF {result.metric} ({result.rows} rows): fold ensemble {result.fold_ensemble_oof:.5f} | averaged adapter {result.averaged_oof:.5f}")
        return
    from kaggle_kit.runtime.infer import merge_adapter

    merge_adapter(adapter, out, base_path=base, dtype=dtype, log=log)
    click.echo(f"merged model written to {out}")

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
@click.option("--adapter", "adapter", required=True, type=click.Path(exists=True, file_okay=False), help="Run folder from `kit train` (or a folder from `kit merge`).")
@click.option("--data", "data", required=True, type=click.Path(exists=True, dir_okay=False), help="Test file (the format recorded in the manifest).")
@click.option("--out", "out", default="submission.csv", show_default=True, type=click.Path(dir_okay=False), help="Submission CSV to write (atomically).")
@click.option("--base", "base", default=None, type=click.Path(exists=True, file_okay=False), help="Base model folder (default: the one in kit_manifest.json).")
@click.option("--budget-minutes", type=float, default=None, help="Finish within this many minutes; degrades in steps (shorter max length, less TTA).")
@click.option("--tta", default=None, help="A/B-swap TTA: none, all, or uncertain:FRACTION (e.g. uncertain:0.3).")
@click.option("--batch-tokens", type=int, default=None, help="Token budget per batch (rows × longest row). Default 8192.")
@click.option("--max-batch-rows", type=int, default=None, help="Row cap per batch. Default 64.")
@click.option("--devices", default=None, help="Comma list, one model replica each: cpu,cpu or cuda:0,cuda:1 (default: every GPU, else cpu).")
@click.option("--quantization", type=click.Choice(["none", "4bit", "8bit"]), default=None, help="Override the quantization the adapter was trained with.")
@click.option("--max-unpredicted-share", type=float, default=None, help="Exit 1 (after writing the submission) when more than this share of rows got the fill instead of a prediction (non-finite logits, time budget). Default: inference.max_unpredicted_share (0.01).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (figures and decisions) on stdout.")
@config_options
@friendly_errors
@_kit_errors
def predict(adapter, data, out, base, budget_minutes, tta, batch_tokens, max_batch_rows, devices, quantization, max_unpredicted_share,
            no_progress, as_json, config_path, overrides):
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
    """
    from kaggle_kit.runtime.infer import predict_file

    cfg = load(config_path, overrides).inference
    log = (lambda m: click.echo(m, err=True))
    result = predict_file(
        adapter, data, out, base_path=base,
        tta=tta or cfg.tta or None,
        budget_minutes=budget_minutes if budget_minutes is not None else (cfg.budget_minutes or None),
        batch_tokens=batch_tokens or cfg.batch_tokens or None,
        max_batch_rows=max_batch_rows or cfg.max_batch_rows or None,
        devices=devices or (cfg.devices or None),
        quantization=quantization or cfg.quantization or None,
        log=log, progress=not no_progress,
        max_unpredicted_share=max_unpredicted_share if max_unpredicted_share is not None else cfg.max_unpredicted_share,
    )
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(f"wrote {result.out_path}: {result.rows} rows ({result.style}) in {result.seconds:.1f}s: "
                   f"{result.predicted_rows} predicted ({result.rows_per_second:.1f} predicted rows/s after {result.load_seconds:.1f}s loading), "
                   f"{result.fallback_rows} cut by the time budget, {len(result.filled_rows)} non-finite filled "
                   f"({len(result.rerun_rows)} re-run in float32); padding {result.padding_share:.1%}; "
                   f"truncated {result.truncated_rows}; TTA {result.tta_rows}")
    if result.too_many_unpredicted:
        click.echo(f"Error: {result.unpredicted_rows} of {result.rows} rows ({result.unpredicted_share:.1%}) could not be predicted "
                   f"(limit {result.to_dict()['max_unpredicted_share']:.1%}, --max-unpredicted-share); {result.out_path} was "
                   f"written, but do not submit it before fixing the cause logged above", err=True)
        raise SystemExit(1)


@click.command("merge")
@click.option("--adapter", "adapter", required=True, type=click.Path(exists=True, file_okay=False), help="Run folder from `kit train`.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder for the merged model.")
@click.option("--base", "base", default=None, type=click.Path(exists=True, file_okay=False), help="Full-precision base folder (default: the one in the manifest).")
@click.option("--dtype", type=click.Choice(["bfloat16", "float16"]), default="bfloat16", show_default=True, help="16-bit type to save (Gemma-2 overflows in float16 more easily).")
@friendly_errors
@_kit_errors
def merge(adapter, out, base, dtype):
    """Merge an adapter into a full-precision base and save a 16-bit model with its manifest.

    The base always loads unquantized here: merging into a 4-bit base requantizes and moves the
    logits (see the stack notes). `kit predict --adapter OUT` then loads the merged folder directly.

    \b
    Examples:
      kit merge --adapter runs/tiny --out runs/tiny-merged
      kit merge --adapter runs/gemma --base /models/gemma-2-9b --out merged --dtype float16
    """
    from kaggle_kit.runtime.infer import merge_adapter

    merge_adapter(adapter, out, base_path=base, dtype=dtype, log=lambda m: click.echo(m, err=True))
    click.echo(f"merged model written to {out}")

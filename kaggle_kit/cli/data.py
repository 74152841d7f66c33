"""`kit data …`: inspect and synthesize competition data."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import config_options, echo_json, friendly_errors, load

FORMAT_CHOICES = ["auto", "lmsys", "wsdm", "hh-rlhf", "classification", "instructions"]


@click.group("data")
def data():
    """Inspect, synthesize and prepare competition data.

    \b
    Examples:
      kit data inspect train.csv --tokenizer tiny --max-length 2048
      kit data synth --preset lmsys --rows 2000 --out data/train.csv
      kit data prepare data/train.csv --tokenizer tiny --out encoded/train.jsonl
    """


@data.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default=None,
              help="File format (default: data.format in kit.toml, else auto: detected from the columns, saying why).")
@click.option("--tokenizer", default=None, metavar="PATH|tiny|minilm|smollm2",
              help="Measure in tokens of this tokenizer (a model folder, 'tiny', 'minilm' or 'smollm2'); default: characters.")
@click.option("--max-length", type=int, default=None, help="Token budget per example (default: prompt.max_length).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write a length histogram PNG here.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (rows, format, labels, problems, lengths, truncation).")
@config_options
@friendly_errors
def inspect(file, fmt, tokenizer, max_length, plot, as_json, config_path, overrides):
    """Rows, label balance, token lengths per component, truncation at max_length, problem rows.

    Every row-level problem is reported, rows with bad labels included (exit 0): inspect is where
    you find them; `kit train` refuses them unless data.skip_bad_rows = true.

    Reports, for each truncation strategy (per_component, head_tail, turn_aware), the share of rows
    shortened at max_length and how much of each component survives.

    \b
    Examples:
      kit data inspect train.csv
      kit data inspect train.csv --tokenizer tiny --max-length 2048 --plot lengths.png
      kit data inspect test.csv --json
      kit data inspect corpus.csv --format classification --set data.text_columns='["title","body"]'
    """
    from kaggle_kit.data.inspect import format_report, inspect_file

    from kaggle_kit.data.spec import read_kwargs

    cfg = load(config_path, overrides, required=config_path is not None)
    kw = read_kwargs(cfg)
    kw.pop("skip_bad_rows")  # inspect reads every row and reports the bad-label ones
    report = inspect_file(
        file,
        format=fmt or cfg.data.format,
        format_source="as given with --format" if fmt else "data.format in the config file",
        tokenizer_path=tokenizer,
        max_length=max_length or cfg.prompt.max_length,
        shares=cfg.prompt.shares,
        head_fraction=cfg.prompt.head_fraction,
        template=cfg.prompt.template,
        plot=plot,
        text_template=cfg.prompt.text_template,
        field_shares=dict(cfg.prompt.field_shares),
        progress=not as_json,
        **kw,
    )
    if as_json:
        echo_json(report)
    else:
        click.echo(format_report(report))


@data.command("synth")
@click.option("--preset", type=click.Choice(["lmsys", "wsdm", "misconceptions", "rules"]), default="lmsys", show_default=True,
              help="Competition shape: lmsys, wsdm, misconceptions (MAP 2025) or rules (Jigsaw 2025).")
@click.option("--rows", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Output file: .csv (both) or .parquet (wsdm).")
@click.option("--test", is_flag=True, help="Write test data: no label columns (misconceptions/rules: also sample_submission.csv beside it).")
@friendly_errors
def synth(preset, rows, seed, out, test):
    """Write a synthetic data set in the competition's own file format.

    Chat-like text with the real length mix (response medians ~900 characters, tails to 17,000)
    and a signal a tiny model can learn: a class keyword inside response B.

    \b
    Examples:
      kit data synth --preset lmsys --rows 2000 --seed 0 --out data/train.csv
      kit data synth --preset lmsys --rows 500 --seed 1 --out data/test.csv --test
      kit data synth --preset wsdm --rows 1000 --out data/train.parquet
      kit data synth --preset misconceptions --rows 400 --out data/train.csv
      kit data synth --preset rules --rows 100 --seed 1 --out data/test.csv --test   # + data/sample_submission.csv
    """
    from kaggle_kit.errors import KitError
    from kaggle_kit.data.synth import write_synth

    if out.endswith(".parquet") and preset != "wsdm":
        raise KitError(f"{preset} data is CSV; use --out FILE.csv (parquet is the WSDM format)")
    if not (out.endswith(".csv") or out.endswith(".parquet")):
        raise KitError(f"--out {out}: use a .csv{' or .parquet' if preset == 'wsdm' else ''} file name")
    path = write_synth(preset, rows, out, seed=seed, test=test)
    click.echo(f"Wrote {rows} {'test' if test else 'training'} rows ({preset}) to {path}")
    if test and preset in ("misconceptions", "rules"):
        click.echo(f"Wrote the sample submission to {path.parent / 'sample_submission.csv'}")


@data.command("prepare")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--tokenizer", required=True, metavar="PATH|tiny|minilm|smollm2", help="Tokenizer of the model (a model folder, 'tiny', 'minilm' or 'smollm2').")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Output .jsonl or .parquet (id, label, input_ids, lengths, kept).")
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default=None,
              help="File format (default: data.format in kit.toml, else auto).")
@click.option("--max-length", type=int, default=None, help="Token budget per example (default: prompt.max_length).")
@click.option("--truncation", type=click.Choice(["per_component", "head_tail", "turn_aware"]), default=None,
              help="Truncation strategy (default: prompt.truncation).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@config_options
@friendly_errors
def prepare(file, tokenizer, out, fmt, max_length, truncation, as_json, config_path, overrides):
    """Encode a data file into model inputs with the same Encoder training and the notebook use.

    \b
    Examples:
      kit data prepare train.csv --tokenizer tiny --out encoded/train.jsonl
      kit data prepare train.csv --tokenizer models/gemma-2-9b-it --max-length 2048 --out train.parquet
    """
    from kaggle_kit.data.spec import read_kwargs
    from kaggle_kit.data.prepare import prepare_file

    cfg = load(config_path, overrides, required=config_path is not None)
    summary = prepare_file(
        file, tokenizer, out, max_length=max_length or cfg.prompt.max_length,
        truncation=truncation or cfg.prompt.truncation, shares=cfg.prompt.shares,
        head_fraction=cfg.prompt.head_fraction, template=cfg.prompt.template, format=fmt or cfg.data.format,
        read_kwargs=read_kwargs(cfg), text_template=cfg.prompt.text_template, field_shares=dict(cfg.prompt.field_shares),
    )
    if as_json:
        echo_json(summary)
        return
    if summary["identical_after_truncation"]["count"]:
        from kaggle_kit.runtime.identical import summary_line

        click.echo(summary_line(summary["identical_after_truncation"]), err=True)
    click.echo(f"Wrote {summary['rows']} encoded rows ({summary['format']}) to {summary['out']}: "
               f"{summary['truncated_share']:.1%} truncated at {summary['prompt']['max_length']} tokens "
               f"({summary['prompt']['truncation']}), longest {summary['longest']}, "
               f"{summary['rows_per_s'] or 0:,.0f} rows/s")


@data.command("preview")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--rows", "n_rows", type=click.IntRange(1), default=3, show_default=True, help="Rows to show (from the top).")
@click.option("--tokenizer", default=None, metavar="PATH|tiny|minilm",
              help="Tokenizer of the model (a model folder, 'tiny' or 'minilm'); default: characters.")
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default=None,
              help="File format (default: data.format in kit.toml, else auto).")
@click.option("--max-length", type=int, default=None, help="Token budget per example (default: prompt.max_length).")
@click.option("--truncation", type=click.Choice(["per_component", "head_tail", "turn_aware"]), default=None,
              help="Truncation strategy (default: prompt.truncation).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON (id, tokens, text, kept per component).")
@config_options
@friendly_errors
def preview(file, n_rows, tokenizer, fmt, max_length, truncation, as_json, config_path, overrides):
    """Print the exact text the model sees for a few rows: after truncation, with the token count.

    Works for every task kind (pairwise, classification with a text_template, multi-label,
    instructions); the text is the decoded token ids, special tokens included.

    \b
    Examples:
      kit data preview data/train.csv --tokenizer tiny --rows 2
      kit data preview data/train.csv --set prompt.max_length=128 --truncation head_tail
      kit init --preset misconceptions && kit data preview data/train.csv --tokenizer tiny
    """
    from kaggle_kit.data.spec import read_kwargs
    from kaggle_kit.data.prepare import preview_file

    cfg = load(config_path, overrides, required=config_path is not None)
    rows = preview_file(file, tokenizer, cfg, n_rows=n_rows, format=fmt or cfg.data.format, max_length=max_length, truncation=truncation,
                        read_kwargs=read_kwargs(cfg))
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        cut = ", ".join(f"{n} {k}/{t}" for n, k, t in zip(r["components"], r["kept"], r["lengths"]))
        click.echo(f"── row {r['id']} · {r['tokens']} of max {r['max_length']} {r['unit']} · kept {cut}"
                   + (" · TRUNCATED" if r["truncated"] else ""))
        click.echo(r["text"])
        for p in r["problems"]:
            click.echo(f"   problem: {p}")
        click.echo("")


@data.command("mine-examples")
@click.argument("test", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="CSV file the mined training rows are written to.")
@click.option("--include-train/--no-include-train", default=None,
              help="Also take the training file's rows (data.train); default: test_time.include_train.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts, groups and skipped examples as one JSON object.")
@config_options
@friendly_errors
def mine_examples(test, out, include_train, as_json, config_path, overrides):
    """Turn the labelled example columns of a test file into training rows ([test_time] in kit.toml).

    Each column of test_time.examples gives one row per test row: the row's other fields kept, the
    example's text in test_time.body_column, the configured label; deduplicated by text and
    test_time.group_column; empty and duplicate examples are skipped and listed by id. The
    train-predict notebook runs the same mining inside the kernel.

    \b
    Examples:
      kit init --preset rules && kit data mine-examples data/test.csv --out ttt.csv
      kit data mine-examples test.csv --out ttt.csv --include-train --json
    """
    from kaggle_kit.data.mine import mine_from_config, write_mined

    cfg = load(config_path, overrides, required=config_path is not None)
    result = mine_from_config(cfg, test, include_train=include_train)
    path = write_mined(result, out)
    if as_json:
        echo_json({**result.to_dict(), "out": str(path)})
        return
    for line in result.summary_lines():
        click.echo(line)
    click.echo(f"Wrote {len(result.rows)} rows to {path}")

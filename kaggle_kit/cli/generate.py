"""`kit generate`: batched generation from an SFT run folder, with exact-match / token-F1 / ROUGE-L evaluation."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import echo_json, friendly_errors


@click.command()
@click.option("--adapter", required=True, type=click.Path(exists=True, file_okay=False), help="SFT run folder written by `kit train` (task.kind = 'sft').")
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Instruction file (JSON/JSONL: instruction, input, optional output).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Answers file: .csv, .jsonl or .json (columns id, answer).")
@click.option("--max-new-tokens", type=int, default=None, help="Most new tokens per answer (default: the adapter manifest's).")
@click.option("--batch-size", type=int, default=None, help="Rows per generation batch (default: the adapter manifest's).")
@click.option("--limit", type=int, default=None, help="Only the first N rows (read a few answers before paying for the whole file).")
@click.option("--base", "base_path", type=click.Path(exists=True, file_okay=False), default=None, help="Base model folder (default: the path in the manifest).")
@click.option("--quantization", type=click.Choice(["none", "4bit", "8bit"]), default=None, help="Override the base quantization recorded in the manifest.")
@click.option("--device", default=None, help="Device, e.g. cuda:0 or cpu (default: the first GPU, else the CPU).")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), default=None, help="metrics.json path (default: beside --out).")
@click.option("--side-by-side", "side_path", type=click.Path(dir_okay=False), default=None, help="Side-by-side CSV path (default: side_by_side.csv beside --out).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly_errors
def generate(adapter, data_path, out_path, max_new_tokens, batch_size, limit, base_path, quantization, device,
             metrics_path, side_path, no_progress, as_json):
    """Generate an answer for every row of an instruction file with an SFT adapter.

    Prompts, stop strings, the base model and its quantization come from the adapter's
    kit_manifest.json. Prompts are sorted by length, left-padded and batched; answers keep the
    file's order. When the file has reference outputs, metrics.json (exact match, token F1,
    ROUGE-L) and side_by_side.csv (instruction, reference, answer) are written beside --out.

    \b
    Example:
      kit generate --adapter runs/sft --data data/val.jsonl --out out/answers.csv --max-new-tokens 128
    """
    from kaggle_kit.errors import KitError
    from kaggle_kit.runtime.generation import generate_file

    from kaggle_kit.models.named import named_base_for

    def log(line: str) -> None:  # stderr; with --json only the warnings (stdout stays pure JSON)
        if not as_json or line.startswith("warning"):
            click.echo(line, err=True)

    base_path = base_path or named_base_for(adapter, log, causal=True)
    try:
        result = generate_file(
            adapter, data_path, out_path, max_new_tokens=max_new_tokens, batch_size=batch_size, log=log,
            progress=not no_progress, limit=limit, base_path=base_path, device=device, quantization=quantization,
            metrics_path=metrics_path, side_by_side_path=side_path,
        )
    except (ValueError, FileNotFoundError) as exc:
        raise KitError(str(exc)) from None
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(f"answers: {result.out_path} ({result.rows} rows, {result.empty_answers} empty, {result.seconds:.1f} s, "
               f"{result.new_tokens_per_second:.1f} generated tokens/s)")
    if result.metrics:
        m = result.metrics
        click.echo(f"exact match {m['exact_match']:.4f}  token F1 {m['token_f1']:.4f}  ROUGE-L {m['rouge_l']:.4f}  ({m['rows']} rows with a reference)")
        click.echo(f"metrics: {result.metrics_path}\nside by side: {result.side_by_side_path}")

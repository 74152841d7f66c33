"""`kit data inspect`: what a competition file holds and what truncation will do to it.

:func:`inspect_file` reads a file with :func:`kaggle_kit.runtime.formats.read_dataset`, measures
each component's length (tokens of the real tokenizer through the same
:class:`~kaggle_kit.runtime.prompting.Encoder` that training and the notebook use; characters when
no tokenizer is given), and reports, for each truncation strategy, the share of rows shortened at
``max_length`` and what each strategy keeps. It returns a plain dict (JSON-ready) and optionally
writes a length histogram PNG.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from kaggle_kit.errors import KitError

PERCENTILES = (50, 90, 99)
COMPONENT_NAMES = {
    "pairwise": ["prompt", "response_a", "response_b"],
    "instructions": ["instruction", "output"],
    "classification": ["text"],
    "multilabel": ["text"],
}


class CharTokenizer:
    """A stand-in tokenizer counting characters (one id per character, no special tokens)."""

    is_fast = False
    name_or_path = "characters"

    def __call__(self, text, add_special_tokens: bool = False):
        if isinstance(text, str):
            return {"input_ids": [ord(c) for c in text]}
        return {"input_ids": [[ord(c) for c in t] for t in text]}

    def __len__(self) -> int:
        return 0x110000


def component_names(encoder) -> list:
    """Names of an encoder's components: the template's fields, else the task kind's parts."""
    return encoder.fields or COMPONENT_NAMES[encoder.kind]


def load_inspect_tokenizer(spec):
    """None → characters; 'tiny' → the kit's tiny BPE; 'minilm' / 'smollm2' → that model's; a folder → its tokenizer;
    an object with ``__call__`` → itself."""
    if spec is None or spec == "chars":
        return CharTokenizer(), "characters"
    if not isinstance(spec, (str, Path)):
        return spec, getattr(spec, "name_or_path", type(spec).__name__) or "tokenizer"
    spec = str(spec)
    if spec == "tiny":
        from kaggle_kit.models.tiny import build_tokenizer

        return build_tokenizer(), "tiny"
    if spec in ("minilm", "smollm2"):
        from kaggle_kit.models.named import named_model_dir

        spec_path = named_model_dir(spec)
    else:
        spec_path = spec
        if not Path(spec_path).is_dir():
            raise KitError(f"--tokenizer {spec}: no such folder; pass a local model/tokenizer folder, or 'tiny', 'minilm', 'smollm2'")
    from kaggle_kit.runtime.modeling import load_tokenizer

    try:
        return load_tokenizer(spec_path), spec
    except Exception as exc:  # transformers raises OSError/ValueError/... for broken folders
        raise KitError(f"--tokenizer {spec}: cannot load a tokenizer from {spec_path} ({type(exc).__name__}: {exc})") from None


def _percentiles(values) -> dict:
    import numpy as np

    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {f"p{p}": 0 for p in PERCENTILES} | {"max": 0, "mean": 0.0}
    out = {f"p{p}": int(round(float(np.percentile(arr, p)))) for p in PERCENTILES}
    out["max"] = int(arr.max())
    out["mean"] = round(float(arr.mean()), 1)
    return out


@dataclass
class _Measured:
    """What :func:`_measure` counted, row by row, for every truncation strategy."""

    lengths: Any  # (rows, components): each component's full length
    kept: dict  # strategy -> (rows, components): what the strategy kept of each component
    totals: dict  # strategy -> (rows,): the encoded example's length
    ending: dict  # strategy -> (rows, components): whether the component's last tokens survived
    identical: dict  # strategy -> encoded rows (pairwise data only, for identical_report)


def inspect_file(
    path,
    format: str = "auto",
    tokenizer_path=None,
    max_length: int = 1024,
    *,
    shares=(1, 1, 1),
    head_fraction: float = 0.5,
    template: str = "kit-v1",
    plot: Optional[str] = None,
    label_names: Optional[list] = None,
    text_columns: tuple = (),
    label_columns: tuple = (),
    id_column: str = "id",
    multilabel: bool = False,
    seed: int = 42,
    chunk: int = 1024,
    progress: bool = False,
    label_join: str = "",
    text_template: str = "",
    field_shares: Optional[dict] = None,
    format_source: str = "as given with --format",
) -> dict:
    """Inspect a data file; returns a JSON-ready dict.

    ``format_source``: where a named (not auto-detected) ``format`` came from, for ``detected``.

    Keys: ``path``, ``rows``, ``format``, ``detected``, ``kind``, ``has_labels``, ``labels`` (class
    name → count), ``skipped``, ``problems`` (list of ``{id, reason, source}``), ``problem_counts``,
    ``unit`` ('tokens' or 'characters'), ``tokenizer``, ``max_length``, ``overhead`` (markers and
    special tokens), ``lengths`` (per component and ``total``: p50/p90/p99/max/mean), ``turns``,
    ``truncation`` (per strategy: ``truncated_share``, per-component ``cut_share`` and
    ``kept_share``, ``dropped_components``, ``identical_after_truncation``: pairwise rows whose
    kept A and B tokens are equal although their texts differ, with what keeps each apart),
    ``plot`` (the PNG written, or None).

    Rows with bad labels never stop the inspection (it is the tool that finds them): they are
    listed among ``problems``, their ids in ``bad_label_rows``, counted in ``skipped`` and left out
    of the label and length statistics; `kit train` refuses such a file unless
    ``data.skip_bad_rows = true``.

    Raises :class:`DataError` for unusable files (the CLI prints it as ``Error: …``).
    """
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.prompting import TRUNCATIONS

    ds = read_dataset(
        path, format, label_names=label_names, text_columns=tuple(text_columns), label_columns=tuple(label_columns),
        id_column=id_column, skip_bad_rows=True, multilabel=multilabel, seed=seed, label_join=label_join,
        format_option="--format",  # `kit data inspect` names the format with --format (data.format is kit train's)
    )
    tok, tok_name = load_inspect_tokenizer(tokenizer_path)
    unit = "characters" if isinstance(tok, CharTokenizer) else "tokens"
    encoders = _build_encoders(tok, ds.kind, max_length, shares=shares, head_fraction=head_fraction, template=template,
                               text_template=text_template, field_shares=field_shares)
    first = encoders[TRUNCATIONS[0]]
    names = component_names(first)
    overhead = int(max_length) - first.budget
    measured = _measure(ds.rows, encoders, ds.kind, chunk, progress)
    full_total = measured.lengths.sum(axis=1) + overhead
    report = _report(path, ds, unit, tok_name, max_length, overhead, names, measured, full_total, encoders)
    report["detected"] = report["detected"] or format_source
    if plot:
        report["plot"] = str(write_length_plot(plot, measured.lengths, names, full_total, int(max_length), unit, Path(path).name, tok_name))
    return report


def _build_encoders(tok, kind: str, max_length: int, *, shares, head_fraction: float, template: str,
                    text_template: str, field_shares: Optional[dict]) -> dict:
    """One :class:`Encoder` per truncation strategy (strategy -> encoder), all with the same spec otherwise.

    A ``max_length`` the encoder refuses becomes a :class:`KitError` naming ``--max-length``."""
    from kaggle_kit.runtime.problems import DataError
    from kaggle_kit.runtime.prompting import TRUNCATIONS, Encoder, PromptSpec

    n_comp = len(COMPONENT_NAMES[kind])
    comp_shares = list(shares)[:n_comp] if len(shares) >= n_comp else [1] * n_comp
    encoders = {}
    for strategy in TRUNCATIONS:
        spec = PromptSpec(template=template, max_length=int(max_length), truncation=strategy, shares=comp_shares, head_fraction=head_fraction,
                          text_template=text_template if kind in ("classification", "multilabel") else "",
                          field_shares=dict(field_shares or {}))
        try:
            encoders[strategy] = Encoder(tok, spec, kind)
        except DataError:
            raise
        except ValueError as exc:
            raise KitError(f"--max-length {max_length}: {exc}") from None
    return encoders


def _chunk_starts(n: int, chunk: int, progress: bool):
    """The first row of every chunk; behind a tqdm bar when ``progress`` and the file is long."""
    starts = range(0, n, chunk)
    if progress and n > 4 * chunk:
        try:
            from tqdm import tqdm

            starts = tqdm(starts, desc="tokenizing", unit="chunk", leave=False)
        except ImportError:  # pragma: no cover
            pass
    return starts


def _measure(rows: list, encoders: dict, kind: str, chunk: int, progress: bool) -> _Measured:
    """Tokenize the rows once, chunk by chunk, and assemble them under every strategy: full and kept
    lengths per component, encoded lengths, and whether each component's ending survived."""
    import numpy as np

    from kaggle_kit.runtime.prompting import TRUNCATIONS

    first = encoders[TRUNCATIONS[0]]
    n, n_comp = len(rows), len(component_names(first))
    m = _Measured(
        lengths=np.zeros((n, n_comp), dtype=np.int64),
        kept={s: np.zeros((n, n_comp), dtype=np.int64) for s in TRUNCATIONS},
        totals={s: np.zeros(n, dtype=np.int64) for s in TRUNCATIONS},
        # whether a component's last token survived (its ending / conclusion), per strategy
        ending={s: np.zeros((n, n_comp), dtype=bool) for s in TRUNCATIONS},
        identical={s: [] for s in TRUNCATIONS},  # encoded rows, only for pairwise data
    )
    lead = len(first.prefix)
    marker_lens = [len(mk) for mk in first.markers]
    for start in _chunk_starts(n, chunk, progress):
        turn_ids = first.tokenize(rows[start:start + chunk])
        lasts = [[_tail(turns, first.separator) for turns in t] for t in turn_ids]
        for s, enc in encoders.items():
            for k, t in enumerate(turn_ids):
                e = enc.assemble(t)
                if kind == "pairwise":
                    m.identical[s].append(e)
                if s == TRUNCATIONS[0]:
                    m.lengths[start + k] = e.lengths
                m.kept[s][start + k] = e.kept
                m.totals[s][start + k] = len(e.input_ids)
                pos = lead
                for c, (mk, size) in enumerate(zip(marker_lens, e.kept)):
                    pos += mk + size
                    tail = lasts[k][c]
                    m.ending[s][start + k, c] = 0 < len(tail) <= size and e.input_ids[pos - len(tail):pos] == tail
    return m


def _truncation_stats(m: _Measured, names: list, encoders: dict, rows: list, kind: str) -> dict:
    """Per strategy: the share of rows and of each component cut, what was kept, endings kept,
    components dropped whole, the longest example, and pairwise rows made identical."""
    from kaggle_kit.runtime.identical import identical_report
    from kaggle_kit.runtime.prompting import TRUNCATIONS

    lengths, n = m.lengths, len(rows)
    truncation = {}
    nonempty = lengths > 0
    for s in TRUNCATIONS:
        kept = m.kept[s]
        cut = kept < lengths
        truncated = cut.any(axis=1)
        sums = lengths.sum(axis=0)
        truncation[s] = {
            "truncated_share": round(float(truncated.mean()) if n else 0.0, 4),
            "truncated_rows": int(truncated.sum()),
            "cut_share": {name: round(float(cut[:, i].mean()) if n else 0.0, 4) for i, name in enumerate(names)},
            "kept_share": {name: round(float(kept[:, i].sum() / sums[i]) if sums[i] else 1.0, 4) for i, name in enumerate(names)},
            # among rows where the component was cut: the share whose last token (its ending) survived
            "ending_kept_share": {
                name: round(float(m.ending[s][cut[:, i], i].mean()) if cut[:, i].any() else 1.0, 4) for i, name in enumerate(names)
            },
            # non-empty components that kept nothing (the strategies promise 0 while budget remains)
            "dropped_components": int(((kept == 0) & nonempty).sum()),
            "longest": int(m.totals[s].max()) if n else 0,
            "identical_after_truncation": identical_report(encoders[s], rows, m.identical[s], shown=10)
            if kind == "pairwise" else {"count": 0, "ids": [], "rows": []},
        }
    return truncation


def _report(path, ds, unit: str, tok_name: str, max_length: int, overhead: int, names: list, m: _Measured,
            full_total, encoders: dict) -> dict:
    """The JSON-ready dict :func:`inspect_file` returns (``plot`` still None)."""
    import numpy as np

    n = len(ds.rows)
    kept_ids = {str(r.id) for r in ds.rows}
    bad_label_rows = list(dict.fromkeys(str(p.id) for p in ds.problems if ds.skipped and str(p.id) not in kept_ids))
    length_stats = {name: _percentiles(m.lengths[:, i]) for i, name in enumerate(names)}
    length_stats["total"] = _percentiles(full_total)
    turns = np.array([len(r.prompt) for r in ds.rows]) if n else np.zeros(0)
    return {
        "path": str(path),
        "rows": n,
        "format": ds.format,
        "detected": ds.detected,
        "kind": ds.kind,
        "has_labels": ds.has_labels,
        "labels": ds.label_counts() if ds.has_labels else {},
        "skipped": ds.skipped,
        "bad_label_rows": bad_label_rows,
        "problems": [p.to_dict() for p in ds.problems],
        "problem_counts": dict(Counter(_reason_kind(p.reason) for p in ds.problems)),
        "unit": unit,
        "tokenizer": tok_name,
        "max_length": int(max_length),
        "overhead": overhead,
        "components": names,
        "lengths": length_stats,
        "turns": {"max": int(turns.max()) if n else 0, "multi_turn_share": round(float((turns > 1).mean()) if n else 0.0, 4)},
        "truncation": _truncation_stats(m, names, encoders, ds.rows, ds.kind),
        "plot": None,
    }


def _tail(turns: list, separator: list, k: int = 4) -> list:
    """The last ``k`` token ids of a component (its turns joined by ``separator``)."""
    out: list = []
    for i, t in enumerate(reversed(turns)):
        if i:
            out = list(separator) + out
        out = list(t[-k:]) + out
        if len(out) >= k:
            break
    return out[-k:]


def _reason_kind(reason: str) -> str:
    """A problem's reason without the row's values (for counting): text before the first ':' or '('."""
    for sep in (":", "(", ";"):
        reason = reason.split(sep, 1)[0]
    return reason.strip()


def write_length_plot(out, lengths, names, totals, max_length: int, unit: str, title: str, tokenizer: str = "") -> Path:
    """Histogram PNG: per-component lengths and whole-example lengths (log-spaced bins).

    Components are drawn as outlines in distinct colours and line styles (response A and B overlap
    almost exactly on real data; filled bars would merge into one colour). The x range spans the
    data, not 1..max. The ``max_length`` line is drawn only when lengths are in tokens: a character
    count says nothing about a token budget.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))

    def log_bins(values, extra=()):
        """40 log-spaced bins over the data's own range (no empty decades on the left)."""
        pos = [int(v) for v in values if v > 0] + [int(v) for v in extra]
        lo, hi = (max(1, min(pos)), max(2, max(pos))) if pos else (1, 2)
        return np.logspace(np.log10(lo / 1.1), np.log10(hi * 1.1), 40)

    comp_bins = log_bins(lengths.ravel() if lengths.size else [])
    total_bins = log_bins(totals, [max_length] if unit == "tokens" else [])
    styles = [("tab:blue", "-"), ("tab:orange", "--"), ("tab:green", ":"), ("tab:red", "-.")]
    for i, name in enumerate(names):
        color, ls = styles[i % len(styles)]
        axes[0].hist(np.clip(lengths[:, i], comp_bins[0], None), bins=comp_bins, histtype="step", linewidth=1.8,
                     color=color, linestyle=ls, label=name)
    counted = f"{unit} ({tokenizer} tokenizer)" if unit == "tokens" and tokenizer else unit
    for ax, bins in ((axes[0], comp_bins), (axes[1], total_bins)):
        ax.set_xscale("log")
        ax.set_xlim(bins[0], bins[-1])
        ax.set_ylabel("rows")
    axes[0].set_xlabel(f"{unit} per component (log scale)")
    axes[0].legend(fontsize=8)
    axes[0].set_title("Component lengths", fontsize=10)
    axes[1].hist(np.clip(totals, total_bins[0], None), bins=total_bins, color="grey")
    axes[1].set_xlabel(f"{unit} per example, with markers (log scale)")
    if unit == "tokens":
        axes[1].axvline(max_length, color="red", linestyle="--", label=f"max_length {max_length}")
        share = float((totals > max_length).mean()) if totals.size else 0.0
        axes[1].set_title(f"Whole examples: {share:.1%} over max_length {max_length}", fontsize=10)
        axes[1].legend(fontsize=8)
    else:
        axes[1].set_title("Whole examples (no max_length line: pass --tokenizer)", fontsize=10)
    fig.suptitle(f"{title}: lengths in {counted}")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def format_report(report: dict, max_problems: int = 10) -> str:
    """The human-readable table `kit data inspect` prints."""
    lines = [
        f"file:     {report['path']}",
        f"format:   {report['format']}  ({report['detected']})",
        f"rows:     {report['rows']}   skipped: {report['skipped']}   problems: {len(report['problems'])}",
    ]
    if report.get("bad_label_rows"):
        n_bad = len(report["bad_label_rows"])
        lines.append(f"bad labels: {n_bad} row(s), left out of the counts below and listed under problems; "
                     "`kit train` refuses them unless data.skip_bad_rows = true")
    if report["labels"]:
        total = sum(report["labels"].values()) or 1
        lines.append("labels:   " + "   ".join(f"{k} {v} ({v / total:.1%})" for k, v in report["labels"].items()))
    else:
        lines.append("labels:   none (test data)" if report["kind"] != "instructions" else "labels:   none (instructions)")
    lines.append("")
    lines.append(f"lengths in {report['unit']}" + (f" ({report['tokenizer']})" if report["unit"] == "tokens" else "") + ":")
    lines.append(f"  {'component':<14}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>9}")
    for name, st in report["lengths"].items():
        lines.append(f"  {name:<14}{st['p50']:>8}{st['p90']:>8}{st['p99']:>8}{st['max']:>9}")
    lines.append("")
    if report["unit"] != "tokens":  # max_length counts tokens; a character count cannot be held against it
        lines.append(f"truncation: not measured (lengths are in characters; max_length {report['max_length']} counts tokens). "
                     "Pass --tokenizer (the base model folder, or tiny) to see what each strategy cuts.")
    else:
        lines.append(f"truncation at max_length {report['max_length']} ({report['overhead']} {report['unit']} of markers/specials):")
    for s, t in (report["truncation"].items() if report["unit"] == "tokens" else ()):
        cuts = ", ".join(f"{k} cut {v:.0%} kept {t['kept_share'][k]:.0%} ending kept {t['ending_kept_share'][k]:.0%}"
                         for k, v in t["cut_share"].items())
        lines.append(f"  {s:<14} {t['truncated_share']:>6.1%} of rows   {cuts}")
    for s, t in report["truncation"].items():
        ident = t.get("identical_after_truncation") or {}
        if ident.get("count"):
            lines.append(f"  {s}: {ident['count']} row(s) whose A and B keep the same tokens although their texts differ "
                         f"(label noise): {', '.join(map(str, ident['ids'][:5]))}{' …' if ident['count'] > 5 else ''}")
            for r in ident["rows"][:3]:
                lines.append(f"    {r['id']}: {r['fix']}")
    if report["problems"]:
        lines.append("")
        lines.append("problems: " + ", ".join(f"{k} ×{v}" for k, v in report["problem_counts"].items()))
        for p in report["problems"][:max_problems]:
            lines.append(f"  {p['id']}  {p['source']}: {p['reason']}")
        if len(report["problems"]) > max_problems:
            lines.append(f"  … and {len(report['problems']) - max_problems} more (--json lists all)")
    if report.get("plot"):
        lines.append("")
        lines.append(f"plot:     {report['plot']}")
    return "\n".join(lines)

"""The decisions of `kit init --from-competition DIR`, each with its evidence: the id column, the target
(and what the kit cannot do with it), the task, the metric and the submission shape.

Every decision reads :class:`kaggle_kit.data.competition.Table` profiles; what the kit cannot do yet
(numeric scores graded as regression or QWK, retrieval of candidates from a second file, generation)
and what the files leave open (two id columns, two targets) stop with a :class:`KitError` that names
the evidence and the flag that decides (``--id``, ``--target``, ``--inputs``, ``--metric``).
The input columns and the sizes are decided in :mod:`kaggle_kit.data.decide_inputs`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from kaggle_kit.data.competition import Column, CompetitionFiles, Table, read_columns
from kaggle_kit.errors import KitError

PAIRWISE = ["prompt", "response_a", "response_b"]
LMSYS = ["winner_model_a", "winner_model_b", "winner_tie"]
JOINS = (":", "|", "+", "/", "_", "-", " ", ",")  # how a sample column's name may join train columns
_ID_NAME = re.compile(r"(^id$|_id$|Id$|ID$|^id_)")
PROBABILITY_METRICS = ("auc", "average_precision", "log_loss")


@dataclass
class Decision:
    name: str
    value: str
    evidence: str
    guessed: bool = False


@dataclass
class Options:
    """What the user decided instead (flags of `kit init --from-competition`)."""

    id: str = ""
    target: tuple = ()
    inputs: tuple = ()
    metric: str = ""
    tokenizer: str = ""
    competition: str = ""


@dataclass
class Target:
    columns: list
    join: str = ""
    evidence: str = ""


@dataclass
class Task:
    kind: str  # pairwise | classification | multilabel
    format: str  # lmsys | wsdm | classification
    labels: list = field(default_factory=list)
    evidence: str = ""


def _ambiguous(what: str, candidates: list, flag: str, why: str) -> KitError:
    listed = "; ".join(candidates)
    return KitError(f"{what} is ambiguous: {why}. Candidates: {listed}. Pick one with {flag} (nothing written)")


# --------------------------------------------------------------------------- id


def decide_id(test: Table, sample: Optional[Table], opts: Options) -> Decision:
    """The id column: in test and the sample, unique in test; without a sample, a unique id-like test column."""
    if opts.id:
        if opts.id not in test.columns or (sample is not None and opts.id not in sample.columns):
            where = "test" if opts.id not in test.columns else "the sample submission"
            raise KitError(f"--id {opts.id}: no such column in {where} (test: {test.names}"
                           f"{f'; sample: {sample.names}' if sample is not None else ''})")
        name, why = opts.id, "given with --id"
    elif sample is not None:
        shared = [c for c in sample.names if c in test.columns]
        if not shared:
            raise KitError(f"{sample.path.name} shares no column with {test.path.name} (sample: {sample.names}; test: "
                           f"{test.names[:12]}): the kit writes the test file's ids under the sample's id column")
        unique = [c for c in shared if test.columns[c].unique]
        if len(unique) > 1:
            raise _ambiguous("the id column", [f"{c} (in test and sample, unique in test)" for c in unique], "--id",
                             f"{len(unique)} columns of the sample are unique columns of the test file")
        name = (unique or shared)[0]
        why = f"the sample's column {name!r} is a test column"
    else:
        unique = [c for c in test.names if test.columns[c].unique and _ID_NAME.search(c)]
        if len(unique) != 1:
            if not unique:
                raise KitError(f"{test.path.name}: no sample submission and no unique id-like column among {test.names[:12]}; "
                               f"name it with --id COLUMN")
            raise _ambiguous("the id column", [f"{c} ({len(test.columns[c].distinct)} unique values)" for c in unique], "--id",
                             "no sample submission names it, and several test columns hold one unique value per row")
        name, why = unique[0], "no sample submission: the only unique id-like test column"
    col = test.columns[name]
    if not col.unique:
        dup = next(v for v in col.distinct if col.values.count(v) > 1) if col.distinct else ""
        raise KitError(f"{test.path.name}: id column {name!r} is not unique ({len(col.distinct)} distinct of {len(col.values)} "
                       f"rows{f', e.g. {dup!r} repeats' if dup else ''}); pick the id column with --id")
    return Decision("id column", name, f"{why}; {len(col.values)} unique test ids" + _match_ids(col, sample, name))


def _match_ids(col: Column, sample: Optional[Table], name: str) -> str:
    """How the sample's ids compare with the test's: matched by id, never assumed ordered."""
    if sample is None:
        return ""
    ids = sample.columns[name].values
    if not ids:
        return "; the sample has no rows (ids taken from test)"
    test_ids = set(col.values)
    missing = [i for i in ids if i not in test_ids]
    if missing:
        return f"; {len(missing)} sample id(s) not in test (e.g. {missing[0]!r}): ids are matched, not assumed"
    order = "in the test file's order" if ids == col.values[: len(ids)] else "in another order than the test file's"
    return f"; the sample holds {len(ids)} of them, {order}"


# --------------------------------------------------------------------------- retrieval (unsupported)


def check_retrieval(files: CompetitionFiles, sample: Optional[Table], id_names: set) -> dict:
    """KitError when a prediction names rows of a second file (candidates): retrieval / ranking.
    Returns {extra file name: 'read' | 'unreadable'} for the files decision."""
    seen = {}
    outputs = [c for c in (sample.names[1:] if sample is not None else []) if c not in id_names]
    tokens = {t for c in outputs for v in sample.columns[c].distinct for t in v.split()} if outputs else set()
    for path in files.extras:
        extra, why = read_columns(path)
        seen[path.name] = f"not read: {why}" if extra is None else f"{len(extra)} rows, no candidates of the target"
        if extra is None:
            continue
        keys = [c for c in extra.columns.values() if c.unique and len(c.distinct) >= 10]  # a table of candidates, by key
        for out in outputs:
            named = any(c.name == out for c in keys)
            cand = next((c for c in keys if tokens and tokens <= set(c.distinct)), None)
            if named or cand is not None:
                col = out if named else cand.name
                raise KitError(
                    f"retrieval/ranking target: the sample's column {out!r} names rows of a second file — {path.name} "
                    f"({len(extra)} rows) has the column {col!r}{' and every value the sample shows' if cand is not None else ''}. "
                    f"The kit predicts classes known from train (labels, composed labels, 0/1 columns, pairwise winners), "
                    f"not candidates retrieved from another file; nothing written")
    return seen


# --------------------------------------------------------------------------- target


def decide_target(train: Table, test: Table, sample: Optional[Table], id_name: str, opts: Options) -> Target:
    """The train column(s) the sample's prediction comes from."""
    train_only = [c for c in train.names if c not in test.columns and c != id_name]
    outputs = [c for c in sample.names if c != id_name] if sample is not None else []
    if opts.target:
        missing = [c for c in opts.target if c not in train.columns]
        if missing:
            raise KitError(f"--target {','.join(opts.target)}: {missing} not in {train.path.name} (columns: {train.names[:16]})")
        name = outputs[0] if len(outputs) == 1 else ""
        join = next((j for j in JOINS if name == j.join(opts.target)), ":") if len(opts.target) > 1 else ""
        return Target(list(opts.target), join, "given with --target")
    in_test = [c for c in outputs if c in test.columns]
    if in_test:
        raise KitError(f"{sample.path.name}: column(s) {in_test} are test columns besides the id {id_name!r}; the kit "
                       f"writes the id and predictions only (pick the id with --id)")
    if len(outputs) > 1:
        missing = [c for c in outputs if c not in train.columns]
        if missing:
            raise KitError(f"{sample.path.name}: output columns {missing} are not in {train.path.name} (columns: "
                           f"{train.names[:16]}); name the train column(s) with --target")
        return Target(outputs, "", f"the sample's {len(outputs)} output columns are train columns")
    if len(outputs) == 1:
        out = outputs[0]
        if out in train.columns:
            return Target([out], "", f"the sample's output column {out!r} is a train column missing from test")
        composed = _composed(out, train)
        if composed:
            return composed
    return _only_candidate(train_only, outputs, train, sample)


def _composed(name: str, train: Table) -> Optional[Target]:
    """The sample column's name joins train columns (e.g. 'Category:Misconception' → Category + Misconception)."""
    for j in JOINS:
        parts = name.split(j)
        if len(parts) > 1 and all(p in train.columns for p in parts):
            return Target(parts, j, f"the sample's column {name!r} joins train columns {' + '.join(parts)} with {j!r}")
    return None


def _only_candidate(train_only: list, outputs: list, train: Table, sample: Optional[Table]) -> Target:
    why = (f"the sample's column {outputs[0]!r} is not a train column and joins none" if outputs
           else "no sample submission names it")
    if len(train_only) == 1:
        return Target(train_only, "", f"{why}; {train_only[0]!r} is the only train column missing from test")
    if not train_only:
        raise KitError(f"{train.path.name}: {why}, and every train column is also a test column: no target to learn; "
                       f"name it with --target COLUMN")
    cands = [f"{c} ({train.columns[c].few(3)})" for c in train_only]
    raise _ambiguous("the target", cands, "--target COLUMN (several: --target A,B)",
                     f"{why}, and {len(train_only)} train columns are missing from test")


def check_supported(target: Target, train: Table, sample: Optional[Table], opts: Options) -> None:
    """KitError for targets the kit cannot train yet: generation (free text) and numeric scores."""
    if len(target.columns) != 1:
        return
    col = train.columns[target.columns[0]]
    if col.free_text:
        raise KitError(
            f"generation target: {col.name!r} in {train.path.name} holds free text ({len(col.distinct)} distinct values in "
            f"{len(col.values)} rows, mean {col.mean_chars:.0f} characters, e.g. {col.distinct[0][:60]!r}). `kit init "
            f"--from-competition` sets up classification (labels, composed labels, 0/1 columns, pairwise winners); "
            f"for instruction tuning start from `kit init --preset sft`; nothing written")
    if col.numeric and len(col.distinct) > 2 and not (col.integer and _class_metric(opts.metric)):
        lo, hi = min(float(v) for v in col.distinct), max(float(v) for v in col.distinct)
        cells = "; the sample's cells are numbers" if sample is not None and any(
            c.numeric for n, c in sample.columns.items() if n != sample.names[0]) else ""
        raise KitError(
            f"numeric target: {col.name!r} holds {len(col.distinct)} numbers from {lo:g} to {hi:g}"
            f"{' (integers: an ordered score)' if col.integer else ''}{cells} — a score graded as regression or "
            f"quadratic weighted kappa (e.g. essay scores), which the kit does not train yet. It supports classes scored "
            f"by log_loss, accuracy, F1, map@K or AUC"
            f"{'; if these integers are unordered classes, pass --metric accuracy (or log_loss, macro_f1)' if col.integer else ''}"
            f"; nothing written")


def _class_metric(metric: str) -> bool:
    return metric in ("log_loss", "accuracy", "macro_f1", "micro_f1") or bool(re.match(r"^map@[1-9][0-9]*$", metric or ""))


# --------------------------------------------------------------------------- task


def decide_task(target: Target, train: Table, test: Table) -> Task:
    """Pairwise (LMSYS one-hot columns, WSDM winner), composed, multi-label or single-label classification."""
    cols = target.columns
    pairwise = all(c in train.columns and c in test.columns for c in PAIRWISE)
    lists = pairwise and train.columns["prompt"].json_lists >= 0.5
    if sorted(cols) == sorted(LMSYS) and pairwise:
        return Task("pairwise", "lmsys", list(LMSYS), "pairwise, 3 classes — one-hot columns winner_model_a/b/tie, "
                    f"prompt/response_a/response_b in train and test{' holding JSON lists' if lists else ''} (the lmsys reader)")
    if cols == ["winner"] and pairwise:
        values = set(train.columns["winner"].distinct)
        if values <= {"model_a", "model_b"}:
            return Task("pairwise", "wsdm", ["model_a", "model_b"], "pairwise, 2 classes — 'winner' holds model_a/model_b "
                        "beside prompt/response_a/response_b (the wsdm reader)")
    if len(cols) > 1 and target.join:
        return Task("classification", "classification", [], f"one class per row composed from {' + '.join(cols)} "
                    f"joined by {target.join!r}, values as written")
    if len(cols) > 1:
        bad = [c for c in cols if not train.columns[c].binary]
        if bad:
            raise KitError(f"{train.path.name}: target columns {bad} are not 0/1 ({train.columns[bad[0]].few(3)}); several "
                           f"target columns must be 0/1 (multi-label) or compose one class (a sample column named A:B)")
        rows = [sum(int(float(train.columns[c].values[i] or 0)) for c in cols) for i in range(len(train))]
        if all(r == 1 for r in rows):
            raise KitError(f"{train.path.name}: {cols} are one-hot (exactly one 1 per row): one class per row spread over "
                           f"columns, which the kit reads only for LMSYS pairwise data (prompt/response_a/response_b); "
                           f"nothing written")
        multi = sum(1 for r in rows if r > 1)
        return Task("multilabel", "classification", list(cols), f"multi-label, {len(cols)} 0/1 columns ({multi} rows with "
                    f"several 1s, {sum(1 for r in rows if r == 0)} with none)")
    col = train.columns[cols[0]]
    what = "binary 0/1 column" if col.binary else f"single label column, {len(col.distinct)} classes"
    return Task("classification", "classification", [], f"{what} {col.name!r} ({col.few(4)}), values as written")


# --------------------------------------------------------------------------- metric and submission


def check_metric(metric: str) -> None:
    """A --metric the kit computes (checked before the files are read)."""
    if metric and not (_class_metric(metric) or metric in ("auc", "average_precision", "subset_accuracy")):
        raise KitError(f"--metric {metric}: use log_loss, accuracy, macro_f1, micro_f1, subset_accuracy, auc, "
                       f"average_precision or map@K (e.g. map@3)")


def decide_metric(task: Task, labels: list, sample: Optional[Table], id_name: str, opts: Options) -> Decision:
    """The default metric from the sample's shape (overridable with --metric, else marked guessed)."""
    if opts.metric:
        return Decision("metric", opts.metric, "given with --metric")
    metric, why = _metric_from_shape(task, labels, sample, id_name)
    return Decision("metric", metric, why, guessed=True)


def _metric_from_shape(task: Task, labels: list, sample: Optional[Table], id_name: str) -> tuple:
    outs = [c for c in sample.names if c != id_name] if sample is not None else []
    src = "the sample" if sample is not None else "no sample; by the target"
    if task.format == "lmsys":
        return "log_loss", f"{src}: one probability per class (winner_model_a/b/tie)"
    if task.format == "wsdm":
        return "accuracy", f"{src}: one winner label per row"
    if task.kind == "multilabel":
        return "auc", f"{src}: one probability per column ({len(outs or labels)} columns)"
    if sample is None or not sample.records:
        if len(labels) == 2:
            return "auc", f"{'the sample has no rows' if sample is not None else src}: a binary target, its probability"
        return "log_loss", f"{'the sample has no rows' if sample is not None else src}: probabilities of {len(labels)} classes"
    cells = sample.columns[outs[0]]
    k = max(len(v.split()) for v in cells.values)
    if k > 1:
        unknown = sorted({t for v in cells.distinct for t in v.split()} - set(labels))
        extra = f" (sample labels not in train: {unknown[:3]})" if unknown else " (every one a train label)"
        return f"map@{k}", f"the sample's values hold {k} space-separated labels{extra}"
    if cells.numeric and len(labels) == 2:
        if set(cells.distinct) <= set(labels):
            return "auc", (f"the sample's cells ({cells.few(2)}) are 0/1, labels and probabilities alike; a binary target: "
                           f"its probability (--metric accuracy for hard labels)")
        return "auc", f"the sample's cells are probabilities ({cells.few(2)}) of a binary target"
    if cells.numeric and not set(cells.distinct) <= set(labels):
        raise KitError(f"{sample.path.name}: the sample holds one number per row ({cells.few(2)}) but the target has "
                       f"{len(labels)} classes; a probability per row fits a binary target only; nothing written")
    return "accuracy", f"the sample's cells are single labels ({cells.few(3)})"


def decide_submission(sample_path, labels: list, task: Task, metric: str, id_name: str, target: Target) -> Decision:
    """The shape `kit predict` will write: decided by the runtime itself from the sample (or the default)."""
    from kaggle_kit.runtime.submission import default_spec, spec_from_sample

    if sample_path is not None:
        spec = spec_from_sample(sample_path, labels, metric=metric, multilabel=task.kind == "multilabel")
        src = f"from {sample_path.name}"
    else:
        spec = default_spec(task.format, task.kind, labels, id_column=id_name, metric=metric,
                            label_columns=target.columns, label_join=target.join)
        src = "no sample: the default for the task and metric"
    if spec.id_column != id_name:
        raise KitError(f"{sample_path}: its first column {spec.id_column!r} is the id column Kaggle reads, but the id decided "
                       f"is {id_name!r}; the sample's first column must be the test file's id column")
    detail = {"topk": f", top {spec.k}", "positive": f", probability of class {spec.positive!r}"}.get(spec.style, "")
    cols = spec.columns if len(spec.columns) <= 4 else spec.columns[:3] + ["…"]
    return Decision("submission", f"{spec.style}{detail}", f"{src}: columns [{', '.join([spec.id_column] + cols)}]"
                    + (f"; {spec.reason}" if spec.reason else ""))

"""`plan_run`: the classifier recipe's checks, all before any weights load.

Data file, labels, task kind, metric, submission shape, base model folder, fold index / holdout
split and the checkpoint to resume from: every one that can fail on bad input fails here, with a
`KitError` naming the setting and the fix, and the result is a :class:`Plan` the recipe
(`kaggle_kit.train.classifier`) follows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from kaggle_kit.errors import KitError

from kaggle_kit.runtime import metrics as M

from .runfolder import CHECKPOINTS, partial_of


@dataclass
class Plan:
    """Everything decided before weights load."""

    dataset: object
    kind: str
    labels: list
    multilabel: bool
    base_path: Path
    base_name: str
    base_config: object
    fold: Optional[int]
    n_folds: int
    train_idx: list
    val_idx: list
    metric: str
    output: Path
    partial: Path
    resume_from: Optional[str]
    submission: dict = field(default_factory=dict)


def resolve_base(cfg, num_labels: int, log: Optional[Callable] = None) -> tuple:
    """(path or hub id, display name) of the base; a named model (tiny, smollm2, minilm) is materialised on first use."""
    name = cfg.model.name
    if cfg.model.path:
        return Path(cfg.model.path).expanduser(), name or cfg.model.path
    from kaggle_kit.models.named import is_named, named_model_dir

    if is_named(name):
        return named_model_dir(name, num_labels=num_labels, log=log), name
    if name and (Path(name).expanduser().exists() or name.startswith((".", "/", "~"))):
        return Path(name).expanduser(), name
    if not name:
        raise KitError("model.name and model.path are both empty; set model.path to a local folder or model.name to a hub id (or 'tiny', 'smollm2', 'minilm')")
    return name, name


def _check_base_files(base: Path, where: str) -> None:
    """A local base folder has config.json, weights and tokenizer files."""
    if not base.exists():
        raise KitError(f"{where} = {str(base)!r}: no such folder. Point it at a local model snapshot "
                       f"(a folder with config.json, weights and tokenizer), or use --model tiny")
    if not base.is_dir():
        raise KitError(f"{where} = {str(base)!r} is a file; it must be a model folder with config.json")
    if not (base / "config.json").is_file():
        raise KitError(f"{where} = {str(base)!r} has no config.json: not a transformers model folder "
                       f"(files: {sorted(p.name for p in base.iterdir())[:8]})")
    weights = [p for p in base.iterdir() if p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json")]
    if not weights:
        raise KitError(f"{where} = {str(base)!r} has no weights (*.safetensors or pytorch_model.bin)")
    tok_files = {"tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model", "spiece.model", "vocab.json"}
    if not any((base / f).exists() for f in tok_files):
        raise KitError(f"{where} = {str(base)!r} has no tokenizer files ({', '.join(sorted(tok_files))})")


def check_base(base, num_labels: int, where: str = "model.path", max_length: int = 0, freeze_layers: int = 0):
    """Refuse a base folder that cannot become a sequence classifier (architecture, ``max_length``
    beyond its position limit, ``freeze_layers`` beyond its layers); returns its config. Loads no weights."""
    from transformers import AutoConfig

    if isinstance(base, Path):
        _check_base_files(base, where)
    try:
        config = AutoConfig.from_pretrained(str(base))
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad base
        raise KitError(f"{where} = {str(base)!r}: cannot read the model config ({type(exc).__name__}: {exc})") from None
    from kaggle_kit.runtime.basecheck import BaseCheckError, check_base_config

    try:
        check_base_config(base, config.to_dict(), max_length=max_length, freeze_layers=freeze_layers, where=where)
    except BaseCheckError as exc:
        raise KitError(str(exc)) from None
    archs = getattr(config, "architectures", None) or []
    has_head = any(a.endswith("ForSequenceClassification") for a in archs)
    if has_head and getattr(config, "num_labels", num_labels) != num_labels:
        raise KitError(f"{where} = {str(base)!r} already has a {config.num_labels}-class head but the task has "
                       f"{num_labels} labels; use the plain (causal-LM or encoder) base snapshot instead")
    return config


def _group_keys(rows, by_prompt: bool):
    if not by_prompt:
        return None
    from kaggle_kit.train.splits import prompt_groups

    return prompt_groups(rows)


def _strat_keys(rows, multilabel: bool) -> list:
    if multilabel:
        return [",".join(map(str, sorted(r.label))) for r in rows]
    return [int(r.label) for r in rows]


def metric_names(multilabel: bool, num_labels: int = 3) -> tuple:
    """Metrics a task of this shape reports (map@K: any K ≥ 1 for single-label tasks; auc and
    average_precision for binary and multi-label tasks)."""
    if multilabel:
        return ("log_loss", "subset_accuracy", "accuracy", "macro_f1", "micro_f1", "auc", "average_precision")
    names = ("log_loss", "accuracy", "macro_f1", "micro_f1", "map@K")
    return names + (("auc", "average_precision") if num_labels == 2 else ())


def metric_ok(name: str, multilabel: bool, num_labels: int) -> bool:
    names = metric_names(multilabel, num_labels)
    return name in names or ("map@K" in names and M.map_k(name) is not None)


def plan_run(cfg, fold: Optional[int] = None, resume: bool = False, allow_kind_from_data: bool = False) -> Plan:
    """Read and check everything that can be wrong before weights load."""
    ds, kind, labels = _read_data(cfg, allow_kind_from_data)
    multilabel = kind == "multilabel"
    metric = _check_metric(cfg, multilabel, labels)
    from .task import submission_spec

    submission = submission_spec(cfg, ds, kind, labels)
    # base model
    base, base_name = resolve_base(cfg, len(labels))
    base_config = check_base(base, len(labels), "model.path" if cfg.model.path else "model.name",
                             max_length=cfg.prompt.max_length, freeze_layers=int(cfg.peft.freeze_layers or 0))
    fold, train_idx, val_idx = _split(cfg, ds.rows, multilabel, fold)
    _check_metric_defined(cfg, ds.rows, val_idx, labels, multilabel, metric, fold)
    output = Path(cfg.train.output).expanduser()
    partial = partial_of(output)
    resume_from = _resume_from(partial) if resume else None
    return Plan(ds, kind, labels, multilabel, base, base_name, base_config,
                fold, cfg.data.folds, train_idx, val_idx, metric, output, partial, resume_from, submission)


def _read_data(cfg, allow_kind_from_data: bool) -> tuple:
    """(dataset, kind, label names) of ``data.train``, checked against ``[task]``."""
    from kaggle_kit.runtime.formats import read_dataset

    if not cfg.data.train:
        raise KitError("data.train is empty: set it in kit.toml ([data] train = \"train.csv\") or pass --data FILE")
    if not Path(cfg.data.train).exists():
        raise KitError(f"data.train = {cfg.data.train!r}: file not found")
    kind_cfg = cfg.task.kind
    if kind_cfg == "sft":
        raise KitError("task.kind = 'sft' trains a causal LM: call kaggle_kit.train.sft.run_sft (kit train does so itself)")
    from kaggle_kit.data.spec import read_kwargs

    ds = read_dataset(cfg.data.train, cfg.data.format, **read_kwargs(cfg, label_names=list(cfg.task.labels) or None, require_labels=True))
    if ds.kind == "instructions":
        raise KitError(f"{cfg.data.train}: instruction data (format {ds.format}) has no class labels; `kit train` trains classifiers")
    kind = ds.kind
    if kind != kind_cfg and not allow_kind_from_data:
        compatible = {kind_cfg, kind} == {"classification", "multilabel"}
        if not compatible:
            raise KitError(f"task.kind = {kind_cfg!r} but {cfg.data.train} is {kind!r} data (format {ds.format}); "
                           f"set task.kind = {kind!r} (or data.format to the file's format)")
    labels = list(ds.label_names)
    if cfg.task.labels and ds.format == "classification":
        unknown = [n for n in ds.label_names if n not in cfg.task.labels]
        if unknown:
            raise KitError(f"{cfg.data.train}: labels {unknown} are not in task.labels = {list(cfg.task.labels)}; add them or fix the data")
        labels = list(cfg.task.labels)
    if len(labels) < 2:
        raise KitError(f"{cfg.data.train}: found {len(labels)} label(s) {labels}; a classifier needs at least 2")
    if not ds.rows:
        raise KitError(f"{cfg.data.train}: no labelled rows left to train on")
    return ds, kind, labels


def _check_metric(cfg, multilabel: bool, labels: list) -> str:
    """The metric that picks the best checkpoint (``train.metric_for_best``, else ``task.metric``)."""
    metric = cfg.train.metric_for_best or cfg.task.metric
    if not metric_ok(metric, multilabel, len(labels)):
        raise KitError(f"train.metric_for_best / task.metric = {metric!r} does not fit this {len(labels)}-class "
                       f"{'multi-label' if multilabel else 'single-label'} task; use one of {metric_names(multilabel, len(labels))}")
    return metric


def _check_metric_defined(cfg, rows: list, val_idx: list, labels: list, multilabel: bool, metric: str, fold) -> None:
    """Refuse a selection metric the validation rows cannot define (ROC AUC of a fold holding one class):
    every checkpoint would be compared on nothing. Other undefined metrics are only reported."""
    import numpy as np

    if multilabel:
        targets = np.zeros((len(val_idx), len(labels)), dtype=np.int64)
        for n, i in enumerate(val_idx):
            targets[n, list(rows[i].label)] = 1
    else:
        targets = [int(rows[i].label) for i in val_idx]
    why = M.undefined_reason(metric, targets, labels, multilabel)
    if why is None:
        return
    setting = "train.metric_for_best" if cfg.train.metric_for_best else "task.metric"
    where = (f"fold {fold} (data.folds = {cfg.data.folds}, data.fold)" if fold is not None
             else f"the holdout split (data.val_fraction = {cfg.data.val_fraction})")
    if multilabel:
        counts = ", ".join(f"{n}: {sum(1 for r in rows if j in r.label)}" for j, n in enumerate(labels))
    else:
        counts = ", ".join(f"{n}: {sum(1 for r in rows if r.label == j)}" for j, n in enumerate(labels))
    raise KitError(
        f"{setting} = {metric!r} is undefined on the {len(val_idx)} validation rows of {where} of {cfg.data.train}: {why}; "
        f"training would pick checkpoints by a number it cannot compute. The file holds {counts} rows. Fix: pick "
        f"checkpoints by a metric these rows define (train.metric_for_best = 'log_loss'), use another fold or fewer "
        f"folds (data.folds) or a larger data.val_fraction so the validation rows hold both classes, or add rows of "
        f"the missing class")


def _split(cfg, rows: list, multilabel: bool, fold: Optional[int]) -> tuple:
    """(fold or None, training row indices, validation row indices): a holdout split
    (``data.val_fraction``) or fold ``fold`` (default ``data.fold``) of ``data.folds``."""
    from kaggle_kit.train.splits import fold_indices, split_indices

    n_folds = cfg.data.folds
    groups = _group_keys(rows, cfg.data.group_by_prompt)
    if cfg.data.group_column:  # e.g. the rows mined from one test row (kaggle_kit.data.mine) stay on one side
        from kaggle_kit.runtime.ranking import group_values

        groups = group_values(cfg.data.train, [r.id for r in rows], cfg.data.group_column, cfg.data.id_column, "data.group_column")
    strat = _strat_keys(rows, multilabel)
    if cfg.data.val_fraction > 0:
        if not cfg.data.val_fraction < 1:
            raise KitError(f"data.val_fraction = {cfg.data.val_fraction} must be below 1")
        try:
            parts = split_indices(strat, groups, [1 - cfg.data.val_fraction, cfg.data.val_fraction], cfg.data.seed)
        except ValueError as exc:
            raise KitError(f"data.val_fraction = {cfg.data.val_fraction}: {exc}") from None
        train_idx, val_idx = [int(i) for i in parts[0]], [int(i) for i in parts[1]]
        fold = None
    else:
        fold = cfg.data.fold if fold is None else fold
        if not 0 <= fold < n_folds:
            raise KitError(f"fold {fold} is out of range: data.folds = {n_folds}, so use 0..{n_folds - 1}")
        try:
            train_idx, val_idx = fold_indices(strat, groups, n_folds, fold, cfg.data.seed)
        except ValueError as exc:
            raise KitError(f"{cfg.data.train}: cannot make {n_folds} folds (data.folds): {exc}") from None
        train_idx, val_idx = [int(i) for i in train_idx], [int(i) for i in val_idx]
    if not train_idx or not val_idx:
        raise KitError(f"{cfg.data.train}: the split left {len(train_idx)} training and {len(val_idx)} validation rows; "
                       f"use more data or fewer folds")
    return fold, train_idx, val_idx


def _resume_from(partial: Path) -> str:
    """The last checkpoint under ``<output>.partial/checkpoints`` (``--resume``)."""
    from transformers.trainer_utils import get_last_checkpoint

    ck = partial / CHECKPOINTS
    resume_from = get_last_checkpoint(str(ck)) if ck.is_dir() else None
    if resume_from is None:
        raise KitError(f"--resume: no checkpoint under {ck}; the run saved none yet (checkpoints are written at each "
                       f"evaluation, train.eval_steps). Run again without --resume")
    return resume_from

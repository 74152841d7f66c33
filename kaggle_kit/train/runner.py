"""`run_training`: one fold of fine-tuning from a KitConfig to a self-describing run folder.

Order of work: every check that can fail on bad input (data file, labels, task kind, base model
folder, fold index, metric) runs before any weights load. Then the tokenizer, the examples (through
`runtime.prompting.Encoder`, the same code inference uses), the base (`runtime.modeling.load_base`),
the adapter, the Trainer. The run writes into ``<output>.partial/`` (checkpoints under
``checkpoints/``, so ``resume=True`` continues there) and renames it to ``<output>`` at the end: a
killed run never leaves a folder that looks complete.

The finished folder holds: adapter_config.json, adapter_model.safetensors, the tokenizer files,
kit_manifest.json, metrics.json, oof.csv, confusion_matrix.png (single-label), curves.png,
calibration.png (probability-scored metrics such as log loss).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from kaggle_kit.errors import KitError

from kaggle_kit.runtime import metrics as M

PARTIAL_SUFFIX = ".partial"
CHECKPOINTS = "checkpoints"
# test hook: extra TrainerCallbacks (e.g. one that interrupts a run to test --resume)
_EXTRA_CALLBACKS: list = []
# test hook: extra TrainingArguments (e.g. eval_on_start)
_EXTRA_ARGS: dict = {}
# benchmark hook: callables (logits, labels) called at every evaluation (`kit bench quality` keeps the
# untrained model's per-row predictions from eval_on_start)
_EVAL_HOOKS: list = []


@dataclass
class TrainResult:
    output_dir: Path
    metrics: dict
    fold: Optional[int] = None
    log_history: list = field(default_factory=list)
    best_step: Optional[int] = None


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


# --------------------------------------------------------------------------- helpers


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _splits():
    from kaggle_kit.train import splits
    return splits.fold_indices, splits.split_indices


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


def check_base(base, num_labels: int, where: str = "model.path", max_length: int = 0, freeze_layers: int = 0):
    """Refuse a base folder that cannot become a sequence classifier (architecture, ``max_length``
    beyond its position limit, ``freeze_layers`` beyond its layers); returns its config. Loads no weights."""
    from transformers import AutoConfig

    if isinstance(base, Path):
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
    from kaggle_kit.runtime.formats import read_dataset

    if not cfg.data.train:
        raise KitError("data.train is empty: set it in kit.toml ([data] train = \"train.csv\") or pass --data FILE")
    if not Path(cfg.data.train).exists():
        raise KitError(f"data.train = {cfg.data.train!r}: file not found")
    kind_cfg = cfg.task.kind
    if kind_cfg == "sft":
        raise KitError("task.kind = 'sft' trains a causal LM: call kaggle_kit.sft.run_sft (kit train does so itself)")
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
    multilabel = kind == "multilabel"
    if not ds.rows:
        raise KitError(f"{cfg.data.train}: no labelled rows left to train on")
    # metric
    metric = cfg.train.metric_for_best or cfg.task.metric
    if not metric_ok(metric, multilabel, len(labels)):
        raise KitError(f"train.metric_for_best / task.metric = {metric!r} does not fit this {len(labels)}-class "
                       f"{'multi-label' if multilabel else 'single-label'} task; use one of {metric_names(multilabel, len(labels))}")
    from .task import submission_spec

    submission = submission_spec(cfg, ds, kind, labels)
    # base model
    base, base_name = resolve_base(cfg, len(labels))
    base_config = check_base(base, len(labels), "model.path" if cfg.model.path else "model.name",
                             max_length=cfg.prompt.max_length, freeze_layers=int(cfg.peft.freeze_layers or 0))
    # split
    n_folds = cfg.data.folds
    rows = ds.rows
    groups = _group_keys(rows, cfg.data.group_by_prompt)
    strat = _strat_keys(rows, multilabel)
    fold_indices, split_indices = _splits()
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
    output = Path(cfg.train.output).expanduser()
    partial = output.with_name(output.name + PARTIAL_SUFFIX)
    resume_from = None
    if resume:
        from transformers.trainer_utils import get_last_checkpoint

        ck = partial / CHECKPOINTS
        resume_from = get_last_checkpoint(str(ck)) if ck.is_dir() else None
        if resume_from is None:
            raise KitError(f"--resume: no checkpoint under {ck}; the run saved none yet (checkpoints are written at each "
                           f"evaluation, train.eval_steps). Run again without --resume")
    return Plan(ds, kind, labels, multilabel, base if isinstance(base, Path) else base, base_name, base_config,
                fold, n_folds, train_idx, val_idx, metric, output, partial, resume_from, submission)




def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


# --------------------------------------------------------------------------- trainer pieces


def _make_trainer_class():
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from .numerics import guarded_trainer

    class KitTrainer(guarded_trainer(Trainer)):
        """Trainer whose length-grouped sampler uses the precomputed lengths of EncodedDataset, and whose
        micro-batch losses go to the non-finite guard (train/numerics.py)."""

        def _get_train_sampler(self, train_dataset=None):
            ds = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy == "group_by_length" and hasattr(ds, "lengths"):
                import torch

                g = torch.Generator()
                g.manual_seed(self.args.data_seed if self.args.data_seed is not None else self.args.seed)
                return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                            lengths=ds.lengths, generator=g)
            return super()._get_train_sampler(train_dataset)

        def _get_eval_sampler(self, eval_dataset):
            # predictions must come back in dataset order (the Trainer would length-group them too);
            # the validation set is already sorted by length, so batches are tight anyway
            if eval_dataset is None:
                return None
            if self.args.world_size <= 1:
                import torch

                return torch.utils.data.SequentialSampler(eval_dataset)
            return None

    return KitTrainer


# --------------------------------------------------------------------------- main entry


def train_section_args(cfg) -> dict:
    """TrainingArguments fields that come straight from `[train]` (shared with the SFT trainer)."""
    warmup = cfg.train.warmup_steps if cfg.train.warmup_steps > 0 else float(cfg.train.warmup_ratio)
    return dict(
        per_device_train_batch_size=cfg.train.batch_size,
        per_device_eval_batch_size=cfg.train.eval_batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum,
        learning_rate=cfg.train.learning_rate,
        lr_scheduler_type=cfg.train.scheduler,
        warmup_steps=warmup,
        weight_decay=cfg.train.weight_decay,
        max_grad_norm=cfg.train.max_grad_norm,
        num_train_epochs=cfg.train.epochs,
        optim=cfg.train.optimizer,
        report_to=list(cfg.train.report_to) or "none",
        seed=cfg.train.seed,
        train_sampling_strategy="group_by_length" if cfg.train.group_by_length else "random",
        remove_unused_columns=False,
        disable_tqdm=True,  # the kit's own lines and bars (train/loglines.py) replace the Trainer's
        logging_nan_inf_filter=False,  # log a NaN/inf loss as it is (train/numerics.py stops the run on it)
    )


def run_training(cfg, fold: Optional[int] = None, resume: bool = False, log: Callable = print,
                 allow_kind_from_data: bool = False) -> TrainResult:
    """Train one fold (``fold`` or ``cfg.data.fold``) and write the run folder ``cfg.train.output``.

    ``task.kind = "sft"`` (instruction tuning of a causal LM) goes to :func:`kaggle_kit.sft.run_sft`."""
    if cfg.task.kind == "sft":
        from kaggle_kit.sft import run_sft

        return run_sft(cfg, log=log, fold=fold, resume=resume)
    from kaggle_kit.runtime.progress import quiet_known_warnings

    with quiet_known_warnings():  # only the listed harmless library warnings, only during this run
        plan = plan_run(cfg, fold, resume, allow_kind_from_data)
        return _train(cfg, plan, resume, log)


def _train(cfg, plan: Plan, resume: bool, log: Callable) -> TrainResult:
    rank0 = _rank() == 0
    say = log if rank0 else (lambda *a, **k: None)

    import torch
    from transformers import EarlyStoppingCallback, TrainingArguments, set_seed

    from kaggle_kit.runtime.modeling import load_base, load_tokenizer
    from kaggle_kit.runtime.prompting import Encoder

    from .data import PadCollator, build_examples
    from .model import attach_adapter, resolve_targets, trainable_summary, weights_note
    from .numerics import check_final, choose_precision, guard_context, nonfinite_guard, swap_applied

    ds = plan.dataset
    say(f"data: {ds.path} ({ds.format}, {plan.kind}, labels {plan.labels}); "
        f"{'fold ' + str(plan.fold) + '/' + str(plan.n_folds) if plan.fold is not None else 'holdout'}: "
        f"{len(plan.train_idx)} train rows, {len(plan.val_idx)} validation rows")
    if ds.skipped:
        say(f"data: skipped {ds.skipped} row(s) with bad labels (data.skip_bad_rows = true)")

    # output folders (rank 0 owns them)
    if rank0 and not resume and plan.partial.exists():
        say(f"removing the unfinished run {plan.partial} (pass --resume to continue it instead)")
        shutil.rmtree(plan.partial)
    if rank0:
        plan.partial.mkdir(parents=True, exist_ok=True)

    # tokenizer and examples (the inference encoder)
    tok = load_tokenizer(plan.base_path)
    from kaggle_kit.data.spec import prompt_spec

    spec = prompt_spec(cfg, plan.kind)
    encoder = Encoder(tok, spec, plan.kind)
    rows = ds.rows
    train_rows = [rows[i] for i in plan.train_idx]
    if plan.kind == "pairwise":
        from .task import identical_training_rows

        train_rows = identical_training_rows(encoder, train_rows, cfg.data.skip_identical_after_truncation, say)
    val_rows = [rows[i] for i in plan.val_idx]
    swap = swap_applied(cfg, plan.kind)
    if cfg.train.swap_augment and not swap:
        say(f"train.swap_augment ignored: A/B swapping applies to pairwise tasks, this one is {plan.kind}")
    train_ds = build_examples(train_rows, encoder, plan.labels, plan.multilabel, swap_augment=swap)
    val_ds = build_examples(val_rows, encoder, plan.labels, plan.multilabel)
    order = sorted(range(len(val_ds)), key=lambda i: val_ds.lengths[i])  # evaluate in length order
    from .data import EncodedDataset

    val_sorted = EncodedDataset([val_ds.input_ids[i] for i in order], [val_ds.labels[i] for i in order],
                                [val_ds.ids[i] for i in order])
    trunc = sum(1 for e in train_ds.lengths if e >= spec.max_length)
    say(f"encoded: {len(train_ds)} training examples{' (with A/B swaps)' if swap else ''}, mean {train_ds.num_tokens / len(train_ds):.0f} "
        f"tokens, {trunc} at max_length {spec.max_length}")

    # model
    precision = choose_precision(cfg.train.precision)
    quant = dataclasses.asdict(cfg.quantization)
    quantized = quant["mode"] != "none"
    device_map = None
    if quantized and torch.cuda.is_available():
        device_map = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    problem_type = "multi_label_classification" if plan.multilabel else "single_label_classification"
    say(f"base: {plan.base_name} ({plan.base_path}), {weights_note(quant, precision)}")
    model = load_base(plan.base_path, num_labels=len(plan.labels), quantization=quant, dtype=cfg.model.dtype,
                      device_map=device_map, label_names=plan.labels, problem_type=problem_type,
                      pad_token_id=tok.pad_token_id)
    peft_dict = dataclasses.asdict(cfg.peft)
    targets = resolve_targets(model, peft_dict["targets"])
    pm = attach_adapter(model, peft_dict, cfg.train.seed, quantized, cfg.train.gradient_checkpointing)
    ts = trainable_summary(pm)
    say(f"adapter: {cfg.peft.method} on {targets}{f' above layer {cfg.peft.freeze_layers}' if cfg.peft.freeze_layers else ''}; "
        f"{ts['trainable']:,} trainable of {ts['total']:,} parameters ({ts['share']:.2%})")

    # schedule
    max_steps = cfg.train.max_steps if cfg.train.max_steps > 0 else -1
    eval_steps = cfg.train.eval_steps
    world = _world()
    steps_per_epoch = max(1, math.ceil(len(train_ds) / (cfg.train.batch_size * world * cfg.train.grad_accum)))
    total_steps = max_steps if max_steps > 0 else math.ceil(steps_per_epoch * cfg.train.epochs)
    if eval_steps <= 0 and total_steps < steps_per_epoch:
        eval_steps = max(1, math.ceil(total_steps / 2))  # shorter than an epoch: evaluate mid-run and at the end
    strategy = "steps" if eval_steps > 0 else "epoch"
    greater = M.greater_is_better(plan.metric)
    args = TrainingArguments(
        output_dir=str(plan.partial / CHECKPOINTS),
        **train_section_args(cfg),
        max_steps=max_steps,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=eval_steps if strategy == "steps" else None,
        save_steps=eval_steps if strategy == "steps" else None,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=plan.metric,
        greater_is_better=greater,
        logging_steps=cfg.train.logging_steps,
        logging_first_step=True,
        data_seed=cfg.train.seed,
        label_names=["labels"],
        include_num_input_tokens_seen="non_padding",
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        **_EXTRA_ARGS,
    )
    eval_logits: dict = {}  # step -> validation logits of that evaluation (the final oof.csv reuses the best one's)

    def compute(ev):
        logits = ev.predictions[0] if isinstance(ev.predictions, tuple) else ev.predictions
        for hook in _EVAL_HOOKS:
            hook(logits, ev.label_ids)
        full = M.compute_metrics(logits, ev.label_ids, plan.multilabel, plan.labels, extra=(plan.metric,))
        eval_logits[trainer.state.global_step] = logits
        return M.scalar_metrics(full)

    from .loglines import final_line, install, make_callback

    kit_log = make_callback(say, plan.metric, len(val_sorted), val_sorted.num_tokens)
    context = guard_context(cfg, precision, plan.partial)
    callbacks = [nonfinite_guard(context)]
    if cfg.train.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))
    callbacks += list(_EXTRA_CALLBACKS)
    collator = PadCollator(tok.pad_token_id, multilabel=plan.multilabel)
    Trainer = _make_trainer_class()
    trainer = Trainer(model=pm, args=args, train_dataset=train_ds, eval_dataset=val_sorted, data_collator=collator,
                      processing_class=tok, compute_metrics=compute, callbacks=callbacks)
    install(trainer, kit_log)
    set_seed(cfg.train.seed)
    if plan.resume_from:
        say(f"resuming from {plan.resume_from}")
    t0 = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=plan.resume_from)
    train_time = time.perf_counter() - t0

    # the final evaluation: the best checkpoint's predictions on the validation rows -> oof.csv
    state = trainer.state
    best_step = None
    if state.best_model_checkpoint:
        try:
            best_step = int(Path(state.best_model_checkpoint).name.split("-")[-1])
        except ValueError:
            best_step = None
    if best_step is not None and best_step in eval_logits:
        logits = eval_logits[best_step]  # the same weights were evaluated at that step: no second pass
        say(final_line(best_step, len(val_sorted)) + " (predictions of that evaluation)")
    else:  # e.g. a resumed run whose best evaluation happened before the restart
        say(final_line(best_step, len(val_sorted)) + ": predicting the validation rows again")
        logits = trainer.predict(val_sorted).predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
    final = M.compute_metrics(logits, [val_sorted.labels[i] for i in range(len(val_sorted))], plan.multilabel, plan.labels,
                              extra=(plan.metric,))
    check_final(M.scalar_metrics(final), state.global_step, context, "the final evaluation (best checkpoint)")
    tokens = state.num_input_tokens_seen
    summary = {
        "fold": plan.fold, "n_folds": plan.n_folds, "metric": plan.metric, "best_step": best_step,
        "best_metric": state.best_metric, "global_step": state.global_step,
        "final": final,
        "train": {"runtime_s": round(train_time, 2), "steps": state.global_step, "loss": train_out.training_loss,
                  "tokens_seen": tokens, "tokens_per_s": tokens / train_time if train_time > 0 else None,
                  "samples_per_s": train_out.metrics.get("train_samples_per_second"),
                  "examples": len(train_ds), "world_size": world},
        "rows": {"train": len(plan.train_idx), "val": len(plan.val_idx)},
        "history": [h for h in state.log_history if any(k.startswith("eval_") for k in h)],
    }
    if rank0:
        _write_run_folder(cfg, plan, pm, tok, spec, targets, quant, summary, logits, order, val_ds, state.log_history,
                          precision, best_step)
        _publish(plan.partial, plan.output, say)
        shown = list(dict.fromkeys([plan.metric, "log_loss", "accuracy"]))  # each name once
        say(f"done: {plan.output} | " + " ".join(f"{k} {_fmt(final[k])}" for k in shown if k in final)
            + f" | best step {best_step} | {summary['train']['tokens_per_s'] or 0:,.0f} train tokens/s")
    trainer.accelerator.wait_for_everyone()
    return TrainResult(plan.output, summary, plan.fold, list(state.log_history), best_step)


def _write_run_folder(cfg, plan, pm, tok, spec, targets, quant, summary, logits, order, val_ds, log_history,
                      precision, best_step) -> None:
    import numpy as np

    from kaggle_kit import __version__
    from kaggle_kit.data.spec import text_columns
    from kaggle_kit.runtime.basecheck import architecture_keys, base_architecture
    from kaggle_kit.runtime.manifest import Manifest, config_sha256, library_versions

    from . import plots
    from .numerics import swap_applied

    out = plan.partial
    pm.save_pretrained(str(out))
    (out / "README.md").unlink(missing_ok=True)  # PEFT's empty model card; the manifest describes the run
    tok.save_pretrained(str(out))
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    # out-of-fold predictions, in the data's order
    logits = np.asarray(logits, dtype=np.float64)
    probs = M.sigmoid(logits) if plan.multilabel else M.softmax(logits)
    unsorted = np.empty_like(probs)
    unsorted[np.asarray(order)] = probs
    with (out / "oof.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "fold", "label", *plan.labels, "predicted"])
        for i in range(len(val_ds)):
            lab = val_ds.labels[i]
            if plan.multilabel:
                true = ";".join(n for n, v in zip(plan.labels, lab) if v)
                predicted = ";".join(n for n, p in zip(plan.labels, unsorted[i]) if p >= 0.5)
            else:
                true = plan.labels[lab]
                predicted = plan.labels[int(unsorted[i].argmax())]
            w.writerow([val_ds.ids[i], "" if plan.fold is None else plan.fold, true,
                        *(f"{p:.6f}" for p in unsorted[i]), predicted])
    if not plan.multilabel:
        cm = M.confusion_matrix([val_ds.labels[i] for i in order], logits.argmax(axis=1), len(plan.labels))
        plots.confusion_matrix_png(cm, plan.labels, out / "confusion_matrix.png")
    plots.curves_png(log_history, out / "curves.png", plan.metric)
    if {cfg.task.metric, plan.metric} & set(plots.PROBABILITY_METRICS):  # log loss rewards calibration
        onehot = np.asarray([list(lab) for lab in val_ds.labels], dtype=np.float64) if plan.multilabel else \
            np.eye(len(plan.labels))[np.asarray(val_ds.labels, dtype=np.int64)]
        plots.calibration_png(unsorted, onehot, plan.labels, out / "calibration.png")
    base_path = plan.base_path
    config = plan.base_config
    Manifest(
        task={"kind": plan.kind, "labels": list(plan.labels), "metric": cfg.task.metric, "metric_for_best": plan.metric,
              "format": plan.dataset.format, "problem_type": "multi_label_classification" if plan.multilabel else "single_label_classification",
              "text_columns": list(text_columns(cfg)), "label_columns": list(cfg.data.label_columns),
              "label_join": cfg.data.label_join, "id_column": cfg.data.id_column, "submission": plan.submission},
        prompt=spec.to_dict(),
        base_model={"name": plan.base_name, "path": str(Path(base_path).resolve()) if isinstance(base_path, Path) else "",
                    "hub_id": "" if isinstance(base_path, Path) else str(base_path),
                    "config_sha256": config_sha256(base_path) if isinstance(base_path, Path) else None,
                    "architecture": (getattr(config, "architectures", None) or [type(pm.base_model.model).__name__])[0],
                    "model_type": config.model_type, "classifier_class": type(pm.base_model.model).__name__,
                    "architecture_keys": base_architecture(base_path) or architecture_keys(config.to_dict()),
                    "pad_token_id": tok.pad_token_id, "dtype": cfg.model.dtype},
        quantization=quant,
        peft={**dataclasses.asdict(cfg.peft), "target_modules": list(targets)},
        training={"fold": plan.fold, "n_folds": plan.n_folds, "val_fraction": cfg.data.val_fraction, "seed": cfg.train.seed,
                  "data_seed": cfg.data.seed, "group_by_prompt": cfg.data.group_by_prompt, "data": str(plan.dataset.path),
                  "train_rows": len(plan.train_idx), "val_rows": len(plan.val_idx), "swap_augment": swap_applied(cfg, plan.kind),
                  "steps": summary["global_step"], "best_step": best_step, "precision": precision,
                  "optimizer": cfg.train.optimizer, "learning_rate": cfg.train.learning_rate, "scheduler": cfg.train.scheduler,
                  "batch_size": cfg.train.batch_size, "grad_accum": cfg.train.grad_accum, "epochs": cfg.train.epochs,
                  "max_steps": cfg.train.max_steps, "world_size": summary["train"]["world_size"]},
        versions=library_versions(),
        metrics={k: v for k, v in M.scalar_metrics(summary["final"]).items()},
        kit_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    ).save(out)


def _publish(partial: Path, output: Path, say: Callable) -> None:
    """Drop the checkpoints and rename ``<output>.partial`` to ``<output>`` (replacing an older run)."""
    shutil.rmtree(partial / CHECKPOINTS, ignore_errors=True)
    old = None
    if output.exists():
        old = output.with_name(output.name + f".old-{os.getpid()}")
        os.replace(output, old)
    os.replace(partial, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        say(f"replaced the previous run in {output}")

"""The classifier recipe: one fold of fine-tuning from a KitConfig to a self-describing run folder.

Order of work: every check that can fail on bad input (data file, labels, task kind, base model
folder, fold index, metric) runs before any weights load (:func:`kaggle_kit.train.plan.plan_run`).
Then the phases of :func:`_train`, each a function here: the data (tokenizer, the examples through
`runtime.prompting.Encoder`, the same code inference uses), the model (`runtime.modeling.load_base`
+ the adapter), the schedule (TrainingArguments), the Trainer, training and the final evaluation,
and the run folder. The run writes into ``<output>.partial/`` (checkpoints under ``checkpoints/``,
so ``resume=True`` continues there) and renames it to ``<output>`` at the end: a killed run never
leaves a folder that looks complete (`kaggle_kit.train.runfolder`).

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

from kaggle_kit.runtime import metrics as M

from .plan import Plan, plan_run
from .runfolder import CHECKPOINTS, best_step_of, publish, train_section_args

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
class Examples:
    """The data phase's output: tokenizer, prompt spec, training set, validation set (data order and length order)."""

    tokenizer: object
    spec: object
    train: object
    val: object
    val_sorted: object
    order: list
    encoder: object = None  # runtime.prompting.Encoder (the baselines read the same kept tokens)
    train_rows: list = field(default_factory=list)
    val_rows: list = field(default_factory=list)
    label_setup: object = None  # train.label_tokens.LabelSetup with task.head = 'label_tokens'
    distill: object = None  # train.distill.DistillData with [distill] teacher (train is then its wrapped set)


@dataclass
class Model:
    """The model phase's output: the PEFT model and how its weights were set up."""

    peft_model: object
    targets: list
    quant: dict
    precision: str
    numerics: object = None  # train.numerics.Numerics: the dtypes and who chose them
    head: dict = field(default_factory=dict)  # how the classification head starts and its learning rate (manifest)


# --------------------------------------------------------------------------- helpers


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


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

        def create_optimizer(self, model=None):
            # the classification head gets its own parameter group at train.head_learning_rate (any `optim`,
            # 8-bit ones included); split before the scheduler is built, so it follows the same schedule
            fresh = self.optimizer is None
            optimizer = super().create_optimizer(model)
            if fresh and getattr(self, "kit_head_lr", None):
                from .model import head_parameters, split_head_group

                split_head_group(optimizer, head_parameters(self.model), self.kit_head_lr)
            return optimizer

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # the label-token head: cross-entropy over the classes' token logits at the answer position only
            ids = getattr(self, "kit_label_token_ids", None)
            if not ids:
                return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            from .label_tokens import compute_loss

            return compute_loss(model, inputs, ids, return_outputs=return_outputs)

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


# --------------------------------------------------------------------------- the recipe


def run_classifier(cfg, fold: Optional[int] = None, resume: bool = False, log: Callable = print,
                   allow_kind_from_data: bool = False, callbacks: tuple = ()) -> TrainResult:
    """Train one fold (``fold`` or ``cfg.data.fold``) of a classifier and write the run folder ``cfg.train.output``.

    ``callbacks``: extra TrainerCallbacks (e.g. `train.budget_stop`: stop at a time budget, best checkpoint kept)."""
    from kaggle_kit.runtime.progress import quiet_known_warnings

    with quiet_known_warnings():  # only the listed harmless library warnings, only during this run
        plan = plan_run(cfg, fold, resume, allow_kind_from_data)
        from . import label_tokens as LT

        if LT.wanted(cfg):  # the causal LM's own head: a causal base, single-label tasks (before weights load)
            plan = LT.adjust_plan(cfg, plan)
        return _train(cfg, plan, resume, log, callbacks)


def _train(cfg, plan: Plan, resume: bool, log: Callable, callbacks: tuple = ()) -> TrainResult:
    """The phases in order: data, model, schedule, trainer, train + final evaluation, run folder (rank 0)."""
    rank0 = _rank() == 0
    say = log if rank0 else (lambda *a, **k: None)
    data = setup_data(cfg, plan, resume, rank0, say)
    from .baselines import compare, for_run

    baselines = for_run(cfg, plan, data, say) if rank0 else None  # the bar the model must clear, before weights load
    model = setup_model(cfg, plan, data.tokenizer, say, label_setup=data.label_setup)
    args = training_arguments(cfg, plan, len(data.train), model.precision)
    trainer, eval_logits, context = setup_trainer(cfg, plan, data, model, args, say, callbacks)
    from transformers import set_seed

    set_seed(cfg.train.seed)
    if plan.resume_from:
        say(f"resuming from {plan.resume_from}")
    t0 = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=plan.resume_from)
    train_time = time.perf_counter() - t0
    best_step, final, logits = final_evaluation(plan, trainer, data, eval_logits, context, say)
    summary = _summary(plan, trainer.state, train_out, train_time, best_step, final, len(data.train))
    versus = ""
    if baselines is not None:
        summary["baselines"], versus = compare(cfg, plan, final, baselines, say)
    if rank0:
        save_run_folder(cfg, plan, data, model, summary, logits, trainer.state.log_history, best_step)
        publish(plan.partial, plan.output, say)
        shown = list(dict.fromkeys([plan.metric, "log_loss", "accuracy"]))  # each name once
        say(f"done: {plan.output} | " + " ".join(f"{k} {_fmt(final[k])}" for k in shown if k in final) + versus
            + f" | best step {best_step} | {summary['train']['tokens_per_s'] or 0:,.0f} train tokens/s")
    trainer.accelerator.wait_for_everyone()
    return TrainResult(plan.output, summary, plan.fold, list(trainer.state.log_history), best_step)


def setup_data(cfg, plan: Plan, resume: bool, rank0: bool, say: Callable) -> Examples:
    """Data phase: the output folder (rank 0), the tokenizer, the training and validation examples."""
    from kaggle_kit.data.spec import prompt_spec
    from kaggle_kit.runtime.modeling import load_tokenizer
    from kaggle_kit.runtime.prompting import Encoder

    from .data import EncodedDataset, build_examples
    from .numerics import swap_applied

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
    from . import label_tokens as LT

    label_setup = LT.setup(cfg, tok, plan.labels, plan.kind, say) if LT.wanted(cfg) else None  # checked before weights load
    spec = prompt_spec(cfg, plan.kind, **(label_setup.spec_overrides() if label_setup else {}))
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
    val_sorted = EncodedDataset([val_ds.input_ids[i] for i in order], [val_ds.labels[i] for i in order],
                                [val_ds.ids[i] for i in order])
    trunc = sum(1 for e in train_ds.lengths if e >= spec.max_length)
    say(f"encoded: {len(train_ds)} training examples{' (with A/B swaps)' if swap else ''}, mean {train_ds.num_tokens / len(train_ds):.0f} "
        f"tokens, {trunc} at max_length {spec.max_length}")
    from .distill import prepare as prepare_distill

    distill = prepare_distill(cfg, plan.labels, plan.kind, plan.multilabel, train_ds, say)  # None without [distill] teacher
    return Examples(tok, spec, distill.train if distill else train_ds, val_ds, val_sorted, order, encoder, train_rows, val_rows,
                    label_setup, distill)


def setup_model(cfg, plan: Plan, tok, say: Callable, label_setup=None) -> Model:
    """Model phase: the base (quantized or not, in the training precision) with the adapter attached.
    ``label_setup``: the label-token head (a causal LM whose ``lm_head`` stays as pretrained)."""
    import torch

    from kaggle_kit.runtime.modeling import load_base, quiet_head_report

    from .model import (HEAD_LR_FACTOR, attach_adapter, cpu_fit_notes, head_learning_rate, init_head, resolve_targets,
                        trainable_summary, weights_note)
    from .numerics import training_numerics

    numerics = training_numerics(cfg)  # the one precision rule: base and compute dtype follow the device
    precision, quant = numerics.precision, numerics.quantization
    quantized = quant["mode"] != "none"
    device_map = None
    if quantized and torch.cuda.is_available():
        device_map = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    problem_type = "multi_label_classification" if plan.multilabel else "single_label_classification"
    say(f"base: {plan.base_name} ({plan.base_path}), {weights_note(quant, precision)}")
    say(f"numerics: {numerics.describe()}")
    for note in cpu_fit_notes(quant["mode"], cfg.train.optimizer, torch.cuda.is_available()):
        say(note)  # before any weights load: the cost of GPU-minded settings on this machine, and the setting to change
    if label_setup is not None:
        return _setup_causal(cfg, plan, tok, say, numerics, device_map)
    with quiet_head_report():  # transformers' "score.weight MISSING" report: the `head:` line below says how it starts
        model = load_base(plan.base_path, num_labels=len(plan.labels), quantization=quant, dtype=numerics.base_dtype,
                          device_map=device_map, label_names=plan.labels, problem_type=problem_type,
                          pad_token_id=tok.pad_token_id)
    peft_dict = dataclasses.asdict(cfg.peft)
    targets = resolve_targets(model, peft_dict["targets"])
    started, note = init_head(model, cfg.train.head_init, plan.base_path)  # before the adapter copies the head
    head = {"init": started, "learning_rate": head_learning_rate(cfg.train)}
    say(f"{note}; learning rate {head['learning_rate']:.2e} (adapter {cfg.train.learning_rate:.2e}; "
        f"{'train.head_learning_rate' if cfg.train.head_learning_rate > 0 else f'train.head_learning_rate = 0: {HEAD_LR_FACTOR:g} x the adapter rate'})")
    pm = attach_adapter(model, peft_dict, cfg.train.seed, quantized, cfg.train.gradient_checkpointing)
    ts = trainable_summary(pm)
    say(f"adapter: {cfg.peft.method} on {targets}{f' above layer {cfg.peft.freeze_layers}' if cfg.peft.freeze_layers else ''}; "
        f"{ts['trainable']:,} trainable of {ts['total']:,} parameters ({ts['share']:.2%})")
    return Model(pm, targets, quant, precision, numerics, head)


def _setup_causal(cfg, plan: Plan, tok, say: Callable, numerics, device_map) -> Model:
    """Model phase of the label-token head: the causal LM, the adapter (no classification head: ``lm_head`` and
    the embeddings stay as pretrained and frozen)."""
    from kaggle_kit.runtime.modeling import load_causal

    from .model import attach_adapter, resolve_targets, trainable_summary

    quant = numerics.quantization
    model = load_causal(plan.base_path, quantization=quant, dtype=numerics.base_dtype, device_map=device_map,
                        pad_token_id=tok.pad_token_id)
    peft_dict = dataclasses.asdict(cfg.peft)
    targets = resolve_targets(model, peft_dict["targets"])
    head = {"init": "label_tokens", "learning_rate": None}
    say("head: label tokens: the causal LM's own lm_head at the answer position (pretrained, frozen; no new head)")
    pm = attach_adapter(model, peft_dict, cfg.train.seed, quant["mode"] != "none", cfg.train.gradient_checkpointing, causal=True)
    ts = trainable_summary(pm)
    say(f"adapter: {cfg.peft.method} on {targets}{f' above layer {cfg.peft.freeze_layers}' if cfg.peft.freeze_layers else ''}; "
        f"{ts['trainable']:,} trainable of {ts['total']:,} parameters ({ts['share']:.2%})")
    return Model(pm, targets, quant, numerics.precision, numerics, head)


def training_arguments(cfg, plan: Plan, n_train: int, precision: str):
    """Schedule phase: steps, evaluation / checkpoint cadence and the optimizer settings as TrainingArguments."""
    import torch
    from transformers import TrainingArguments

    max_steps = cfg.train.max_steps if cfg.train.max_steps > 0 else -1
    eval_steps = cfg.train.eval_steps
    steps_per_epoch = max(1, math.ceil(n_train / (cfg.train.batch_size * _world() * cfg.train.grad_accum)))
    total_steps = max_steps if max_steps > 0 else math.ceil(steps_per_epoch * cfg.train.epochs)
    if eval_steps <= 0 and total_steps < steps_per_epoch:
        eval_steps = max(1, math.ceil(total_steps / 2))  # shorter than an epoch: evaluate mid-run and at the end
    strategy = "steps" if eval_steps > 0 else "epoch"
    return TrainingArguments(
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
        greater_is_better=M.greater_is_better(plan.metric),
        logging_steps=cfg.train.logging_steps,
        logging_first_step=True,
        data_seed=cfg.train.seed,
        label_names=["labels"],
        include_num_input_tokens_seen="non_padding",
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        **_EXTRA_ARGS,
    )


def setup_trainer(cfg, plan: Plan, data: Examples, model: Model, args, say: Callable, extra: tuple = ()) -> tuple:
    """Trainer phase: (trainer, {step: validation logits of that evaluation}, the non-finite guard's context).

    Callbacks: the non-finite guard, early stopping, the test hooks; the kit's log lines replace the
    Trainer's printers."""
    from transformers import EarlyStoppingCallback

    from .data import PadCollator
    from .loglines import install, make_callback
    from .numerics import guard_context, nonfinite_guard

    eval_logits: dict = {}  # step -> validation logits of that evaluation (the final oof.csv reuses the best one's)

    def compute(ev):
        logits = ev.predictions[0] if isinstance(ev.predictions, tuple) else ev.predictions
        for hook in _EVAL_HOOKS:
            hook(logits, ev.label_ids)
        full = M.compute_metrics(logits, ev.label_ids, plan.multilabel, plan.labels, extra=(plan.metric,))
        eval_logits[trainer.state.global_step] = logits
        if full.get("undefined"):  # e.g. auc on a fold with one class: said in the [eval] line, not a NaN
            kit_log.undefined[trainer.state.global_step] = dict(full["undefined"])
        return M.scalar_metrics(full)

    kit_log = make_callback(say, plan.metric, len(data.val_sorted), data.val_sorted.num_tokens)
    context = guard_context(cfg, model.numerics, plan.partial, plan.metric)
    callbacks = [nonfinite_guard(context)]
    if cfg.train.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))
    callbacks += list(_EXTRA_CALLBACKS) + list(extra)
    collator = PadCollator(data.tokenizer.pad_token_id, multilabel=plan.multilabel)
    Trainer = _make_trainer_class()
    if data.distill is not None:  # the KL term on the class logits, whatever head produced them (train/distill.py)
        from .distill import distill_trainer

        Trainer = distill_trainer(Trainer, data.distill.settings)
    trainer = Trainer(model=model.peft_model, args=args, train_dataset=data.train, eval_dataset=data.val_sorted,
                      data_collator=collator, processing_class=data.tokenizer, compute_metrics=compute, callbacks=callbacks)
    trainer.kit_head_lr = model.head.get("learning_rate")
    trainer.kit_label_token_ids = data.label_setup.token_ids if data.label_setup is not None else None
    install(trainer, kit_log)
    return trainer, eval_logits, context


def final_evaluation(plan: Plan, trainer, data: Examples, eval_logits: dict, context: dict, say: Callable) -> tuple:
    """(best step, final metrics, validation logits in length order): the best checkpoint's predictions
    on the validation rows, reused from its evaluation when the run saw it, else predicted again."""
    from .loglines import final_line
    from .numerics import check_final

    state = trainer.state
    best_step = best_step_of(state)
    val_sorted = data.val_sorted
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
    return best_step, final, logits


def _summary(plan: Plan, state, train_out, train_time: float, best_step, final: dict, n_examples: int) -> dict:
    """metrics.json: the final metrics, the training throughput, the row counts, the evaluation history."""
    tokens = state.num_input_tokens_seen
    return {
        "fold": plan.fold, "n_folds": plan.n_folds, "metric": plan.metric, "best_step": best_step,
        "best_metric": state.best_metric, "global_step": state.global_step,
        "final": final,
        "train": {"runtime_s": round(train_time, 2), "steps": state.global_step, "loss": train_out.training_loss,
                  "tokens_seen": tokens, "tokens_per_s": tokens / train_time if train_time > 0 else None,
                  "samples_per_s": train_out.metrics.get("train_samples_per_second"),
                  "examples": n_examples, "world_size": _world()},
        "rows": {"train": len(plan.train_idx), "val": len(plan.val_idx)},
        "history": [h for h in state.log_history if any(k.startswith("eval_") for k in h)],
    }


# --------------------------------------------------------------------------- the run folder


def save_run_folder(cfg, plan: Plan, data: Examples, model: Model, summary: dict, logits, log_history: list,
                    best_step) -> None:
    """Run-folder phase: adapter, tokenizer, metrics.json, oof.csv, plots and kit_manifest.json into ``<output>.partial``."""
    out = plan.partial
    pm = model.peft_model
    pm.save_pretrained(str(out))
    (out / "README.md").unlink(missing_ok=True)  # PEFT's empty model card; the manifest describes the run
    data.tokenizer.save_pretrained(str(out))
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    _write_predictions(cfg, plan, data, logits, log_history, summary.get("baselines"))
    _manifest(cfg, plan, data, model, summary, best_step).save(out)


def _write_predictions(cfg, plan: Plan, data: Examples, logits, log_history: list, baselines: Optional[dict] = None) -> None:
    """oof.csv (out-of-fold predictions, in the data's order) and the plots (curves.png with the baselines' levels)."""
    import numpy as np

    from . import plots

    out, val_ds, order = plan.partial, data.val, data.order
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
    plots.curves_png(log_history, out / "curves.png", plan.metric, baselines=baselines)
    if {cfg.task.metric, plan.metric} & set(plots.PROBABILITY_METRICS):  # log loss rewards calibration
        onehot = np.asarray([list(lab) for lab in val_ds.labels], dtype=np.float64) if plan.multilabel else \
            np.eye(len(plan.labels))[np.asarray(val_ds.labels, dtype=np.int64)]
        plots.calibration_png(unsorted, onehot, plan.labels, out / "calibration.png")


def _manifest(cfg, plan: Plan, data: Examples, model: Model, summary: dict, best_step):
    """kit_manifest.json: everything a predictor needs to rebuild this classifier."""
    from kaggle_kit import __version__
    from kaggle_kit.data.spec import text_columns
    from kaggle_kit.runtime.basecheck import architecture_keys, base_architecture
    from kaggle_kit.runtime.manifest import Manifest, config_sha256, library_versions

    from .numerics import swap_applied

    pm, tok, base_path, config = model.peft_model, data.tokenizer, plan.base_path, plan.base_config
    local = isinstance(base_path, Path)
    return Manifest(
        task={"kind": plan.kind, "labels": list(plan.labels), "metric": cfg.task.metric, "metric_for_best": plan.metric,
              "format": plan.dataset.format, "problem_type": "multi_label_classification" if plan.multilabel else "single_label_classification",
              "text_columns": list(text_columns(cfg)), "label_columns": list(cfg.data.label_columns),
              "label_join": cfg.data.label_join, "id_column": cfg.data.id_column, "submission": plan.submission,
              "head": "label_tokens" if data.label_setup is not None else "seq_cls",
              **({"label_tokens": data.label_setup.record()} if data.label_setup is not None else {}),
              **_candidates(cfg, plan)},
        prompt=data.spec.to_dict(),
        base_model={"name": plan.base_name, "path": str(Path(base_path).resolve()) if local else "",
                    "hub_id": "" if local else str(base_path),
                    "config_sha256": config_sha256(base_path) if local else None,
                    "architecture": (getattr(config, "architectures", None) or [type(pm.base_model.model).__name__])[0],
                    "model_type": config.model_type, "classifier_class": type(pm.base_model.model).__name__,
                    "architecture_keys": base_architecture(base_path) or architecture_keys(config.to_dict()),
                    "pad_token_id": tok.pad_token_id, "dtype": cfg.model.dtype},
        quantization=model.quant,
        peft={**dataclasses.asdict(cfg.peft), "target_modules": list(model.targets)},
        training={"fold": plan.fold, "n_folds": plan.n_folds, "val_fraction": cfg.data.val_fraction, "seed": cfg.train.seed,
                  "data_seed": cfg.data.seed, "group_by_prompt": cfg.data.group_by_prompt, "data": str(plan.dataset.path),
                  "train_rows": len(plan.train_idx), "val_rows": len(plan.val_idx), "swap_augment": swap_applied(cfg, plan.kind),
                  "steps": summary["global_step"], "best_step": best_step, "precision": model.precision,
                  "numerics": model.numerics.record() if model.numerics is not None else None,
                  "optimizer": cfg.train.optimizer, "learning_rate": cfg.train.learning_rate, "scheduler": cfg.train.scheduler,
                  "head": dict(model.head),
                  "distill": data.distill.record if data.distill is not None else None,
                  "batch_size": cfg.train.batch_size, "grad_accum": cfg.train.grad_accum, "epochs": cfg.train.epochs,
                  "max_steps": cfg.train.max_steps, "world_size": summary["train"]["world_size"]},
        versions=library_versions(),
        metrics={k: v for k, v in M.scalar_metrics(summary["final"]).items()},
        kit_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _candidates(cfg, plan: Plan) -> dict:
    """manifest.task['candidates_by'/'candidates']: the labels seen with each value of ``task.candidates_by`` in the
    training rows (``runtime.label_tokens.restrict_candidates`` applies it at prediction)."""
    if not cfg.task.candidates_by:
        return {}
    from kaggle_kit.runtime.label_tokens import candidate_map, group_values

    groups = group_values(cfg.data.train, cfg.task.candidates_by, cfg.data.id_column)
    rows = [plan.dataset.rows[i] for i in plan.train_idx]
    return {"candidates_by": cfg.task.candidates_by,
            "candidates": candidate_map([groups[str(r.id)] for r in rows], [r.label for r in rows])}

"""The SFT recipe, `run_sft`: instruction tuning of a causal LM with LoRA / QLoRA / IA3, writing a self-describing run folder.

The same kit.toml sections as classifier training: [model], [data] (format ``instructions``),
[prompt] (template, max_length), [quantization], [peft] (``all-linear`` targets by default for
SFT), [train] and [inference] (generation settings saved in the manifest's ``generation`` block).
`kit train` (`kaggle_kit.train.run_training`) comes here when ``cfg.task.kind == "sft"``;
generation and evaluation live in the embeddable `kaggle_kit.runtime.generation` (used by
`kit generate` and the generation notebook).

The phases of :func:`_run_sft`: the data (rows, split, tokenizer, examples with the loss on the
response tokens), the model (base + adapter), the schedule (TrainingArguments), the Trainer,
training and the final evaluation, and the run folder, written into ``<output>.partial`` and
renamed at the end (`kaggle_kit.train.runfolder`).

The run folder holds the adapter (``adapter_config.json`` + ``adapter_model.safetensors``), the
tokenizer, ``kit_manifest.json`` (task.kind = 'sft'), ``log_history.json`` and ``loss.png``.
Causal LMs normalise their loss by the Trainer's ``num_items_in_batch`` (the count of response
tokens over all accumulated micro-batches), so gradient accumulation gives the same loss and
gradient as one large batch (tests check this); ``accepts_loss_kwargs`` stays as the model sets it.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kaggle_kit.errors import KitError

from .runfolder import CHECKPOINTS, best_step_of, partial_of, publish, train_section_args


@dataclass
class SFTResult:
    output_dir: Path
    metrics: dict
    manifest: object = None
    log_history: list = field(default_factory=list)
    train_rows: int = 0
    val_rows: int = 0
    fold: int | None = None
    best_step: int | None = None


@dataclass
class SFTData:
    """The data phase's output: the instruction rows as split, the base, its tokenizer and template, the examples."""

    format: str
    train_rows: list
    val_rows: list
    base: object
    tokenizer: object
    template: str
    max_length: int
    train: object
    val: object

    @property
    def has_eval(self) -> bool:
        return self.val is not None and len(self.val) > 0


@dataclass
class SFTModel:
    """The model phase's output: the PEFT model, how its weights were set up, its trainable tensors before training."""

    peft_model: object
    targets: list
    quant: dict
    precision: str
    before: dict
    numerics: object = None  # train.numerics.Numerics: the dtypes and who chose them


def resolve_base(cfg) -> Path | str:
    """The base model folder: model.path, a named model ('tiny': the cached causal Gemma-2, 'smollm2'), else the hub id."""
    if cfg.model.path:
        path = Path(cfg.model.path)
        if not path.exists():
            raise KitError(f"model.path = {cfg.model.path!r} does not exist; point it at a downloaded base model folder")
        return path
    from kaggle_kit.models.named import is_named, named_model_dir

    if is_named(cfg.model.name):
        return named_model_dir(cfg.model.name, causal=True)
    return cfg.model.name


def check_causal_base(base, cfg) -> None:
    """config.json checks before any weights load: a causal-LM architecture, max_length within its
    position limit, freeze_layers below its layer count (KitError naming the value and the fix)."""
    from kaggle_kit.runtime.basecheck import BaseCheckError, check_base_config, read_config

    if not (Path(str(base)) / "config.json").is_file():
        return  # a hub id: transformers reads the config when it loads
    try:
        check_base_config(base, read_config(base), max_length=cfg.prompt.max_length,
                          freeze_layers=int(cfg.peft.freeze_layers or 0), causal=True,
                          where="model.path" if cfg.model.path else "model.name")
    except BaseCheckError as exc:
        raise KitError(str(exc)) from None


def peft_config_causal(model, peft: dict):
    """LoraConfig / IA3Config for a causal LM (``lm_head`` never adapted; ``all-linear`` is the SFT default)."""
    from peft import IA3Config, LoraConfig, TaskType

    from .model import FEEDFORWARD_NAMES, layer_of, linear_module_names, num_layers, resolve_targets

    method = peft.get("method", "lora")
    targets = [t for t in resolve_targets(model, list(peft.get("targets") or ["all-linear"])) if t != "lm_head"]
    freeze = int(peft.get("freeze_layers", 0) or 0)
    n_layers = num_layers(model)
    if freeze and freeze >= n_layers:
        raise KitError(f"peft.freeze_layers = {freeze} leaves no layer to adapt: the base has {n_layers} layers; use a value below {n_layers}")
    linear = {full: short for full, short in linear_module_names(model).items() if short != "lm_head"}
    full_targets = [f for f, s in linear.items() if s in targets and (not freeze or (layer_of(f) is not None and layer_of(f) >= freeze))]
    if not full_targets:
        raise KitError(f"peft.targets = {peft.get('targets')}: no linear layer to adapt in {type(model).__name__}")
    if method == "lora":
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=int(peft.get("r", 16)), lora_alpha=float(peft.get("alpha", 32)),
            lora_dropout=float(peft.get("dropout", 0.0)), bias=peft.get("bias", "none"), target_modules=full_targets,
        ), targets
    if method == "ia3":
        ff = [f for f in full_targets if linear[f] in FEEDFORWARD_NAMES]
        return IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=full_targets, feedforward_modules=ff), targets
    raise KitError(f"peft.method = {method!r}: SFT trains an adapter; use 'lora' or 'ia3'")


def _precision(cfg):
    """train.precision for this process's device (the same rule as classifier training)."""
    from .numerics import choose_precision

    return choose_precision(cfg.train.precision)


# --------------------------------------------------------------------------- the recipe


def run_sft(cfg, log=print, fold: int | None = None, resume: bool = False) -> SFTResult:
    """Fine-tune a causal LM on instruction data per ``cfg`` (a KitConfig with task.kind = 'sft').

    ``fold`` overrides ``data.fold`` (the held-out fold when ``data.val_fraction`` is 0).
    """
    from kaggle_kit.runtime.progress import quiet_known_warnings

    with quiet_known_warnings():  # only the listed harmless library warnings, only during this run
        return _run_sft(cfg, log, fold, resume)


def _run_sft(cfg, log, fold, resume) -> SFTResult:
    """The phases in order: data, model, run folder, schedule, trainer, train + final evaluation, save and publish."""
    started = time.time()
    data = setup_data(cfg, fold, resume, log)
    model = setup_model(cfg, data.base, log)
    final_out = Path(cfg.train.output)
    out = partial_of(final_out)  # renamed to train.output when finished
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    args = training_arguments(cfg, out / CHECKPOINTS, data.has_eval, model.precision)
    trainer, kit_log, context = setup_trainer(cfg, model, args, data, out, log)
    metrics = train_and_evaluate(trainer, kit_log, context, data, log)
    _note_adapter_changes(metrics, model, data, started, log)
    log("sft: baselines skipped: generation has no class prior or TF-IDF+LR to compare with (classifier runs fit them)")
    history = list(trainer.state.log_history)
    fold = cfg.data.fold if fold is None else fold
    manifest = save_run_folder(cfg, out, model, data, history, metrics, warmup=args.warmup_steps, fold=fold)
    publish(out, final_out, log)
    log(f"sft: wrote {final_out} (train loss {metrics['train_loss']:.4f}"
        + (f", eval loss {metrics['eval_loss']:.4f}" if "eval_loss" in metrics else "") + f", {metrics['seconds']} s)")
    return SFTResult(final_out, metrics, manifest, history, len(data.train_rows), len(data.val_rows),
                     fold, best_step_of(trainer.state))


def setup_data(cfg, fold, resume, log) -> SFTData:
    """Data phase: the instruction rows with an output, split; the base checked; tokenizer, template, examples."""
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.generation import resolve_template
    from kaggle_kit.runtime.modeling import load_tokenizer

    from .sft_data import build_sft_examples, split_rows

    if cfg.task.kind != "sft":
        raise KitError(f"run_sft needs task.kind = 'sft', got {cfg.task.kind!r}")
    if resume:
        raise KitError("--resume is not supported for task.kind = 'sft' yet; start the run again")
    if not cfg.data.train:
        raise KitError("data.train is empty; set it to an instruction JSON/JSONL file (instruction, input, output)")
    fmt = cfg.data.format if cfg.data.format != "auto" else "instructions"
    data = read_dataset(cfg.data.train, fmt, id_column=cfg.data.id_column)
    if data.kind != "instructions":
        raise KitError(f"{cfg.data.train}: read as {data.format!r}; SFT needs data.format = 'instructions'")
    rows = [r for r in data.rows if r.response_a]
    if not rows:
        raise KitError(f"{cfg.data.train}: no row has an 'output'; SFT training needs reference answers")
    skipped = len(data.rows) - len(rows)
    train_rows, val_rows = split_rows(
        rows, folds=cfg.data.folds, fold=cfg.data.fold if fold is None else fold, val_fraction=cfg.data.val_fraction,
        group_by_prompt=cfg.data.group_by_prompt, seed=cfg.data.seed,
    )
    base = resolve_base(cfg)
    check_causal_base(base, cfg)
    tokenizer = load_tokenizer(base, padding_side="right")
    try:
        template = resolve_template(tokenizer, cfg.prompt.template)
    except ValueError as exc:
        raise KitError(str(exc)) from None
    max_length = int(cfg.prompt.max_length)
    train_ds = build_sft_examples(train_rows, tokenizer, template, max_length)
    val_ds = build_sft_examples(val_rows, tokenizer, template, max_length) if val_rows else None
    log(
        f"sft: {len(train_rows)} training / {len(val_rows)} validation rows ({skipped} without output skipped), "
        f"template {template}, {train_ds.response_tokens} response tokens of {train_ds.num_tokens}"
    )
    return SFTData(data.format, train_rows, val_rows, base, tokenizer, template, max_length, train_ds, val_ds)


def setup_model(cfg, base, log) -> SFTModel:
    """Model phase: the causal base (quantized or not, gradient checkpointing) with the adapter attached."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    from kaggle_kit.runtime.generation import load_causal

    from .model import weights_note
    from .numerics import training_numerics

    numerics = training_numerics(cfg)  # the one precision rule: base and compute dtype follow the device
    quant, precision = numerics.quantization, numerics.precision
    quantized = quant["mode"] in ("4bit", "8bit")
    log(f"sft: numerics: {numerics.describe()}")
    device_map = {"": numerics.device} if (quantized and numerics.device.startswith("cuda")) else None  # this rank's GPU
    model = load_causal(base, quant, dtype=numerics.base_dtype, device_map=device_map)
    gc = bool(cfg.train.gradient_checkpointing)
    gc_kwargs = {"use_reentrant": False}
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc, gradient_checkpointing_kwargs=gc_kwargs)
    elif gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
        model.enable_input_require_grads()
    model.config.use_cache = False
    peft_cfg, targets = peft_config_causal(model, asdict(cfg.peft))
    set_seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    model = get_peft_model(model, peft_cfg)
    before = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainable = sum(p.numel() for p in before.values())
    log(f"sft: {type(model.get_base_model()).__name__} from {base}, {cfg.peft.method} on {targets}, {trainable:,} trainable parameters, {weights_note(quant, precision)}")
    return SFTModel(model, targets, quant, precision, before, numerics)


def training_arguments(cfg, ckpt: Path, has_eval: bool, precision: str):
    """Schedule phase: TrainingArguments (evaluation and checkpoints only when there are validation rows)."""
    import torch
    from transformers import TrainingArguments

    strategy = ("steps" if cfg.train.eval_steps > 0 else "epoch") if has_eval else "no"
    return TrainingArguments(
        output_dir=str(ckpt),
        **train_section_args(cfg),
        max_steps=cfg.train.max_steps if cfg.train.max_steps > 0 else -1,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        eval_strategy=strategy,
        eval_steps=cfg.train.eval_steps if strategy == "steps" else None,
        save_strategy=strategy if has_eval else "no",
        save_steps=cfg.train.eval_steps if strategy == "steps" else None,
        save_total_limit=1,
        load_best_model_at_end=has_eval,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=max(1, cfg.train.logging_steps),
        dataloader_num_workers=0,
    )


def setup_trainer(cfg, model: SFTModel, args, data: SFTData, out: Path, log) -> tuple:
    """Trainer phase: (trainer, the kit's log callback, the non-finite guard's context)."""
    from transformers import EarlyStoppingCallback, Trainer

    from .loglines import install, make_callback
    from .numerics import guard_context, guarded_trainer, nonfinite_guard
    from .sft_data import SFTCollator

    has_eval = data.has_eval
    context = guard_context(cfg, model.numerics, out)
    callbacks = [nonfinite_guard(context)]
    if has_eval and cfg.train.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))
    tokenizer = data.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = guarded_trainer(Trainer)(
        model=model.peft_model, args=args, train_dataset=data.train, eval_dataset=data.val if has_eval else None,
        data_collator=SFTCollator(pad_id), processing_class=tokenizer, callbacks=callbacks,
    )
    kit_log = make_callback(log, "loss", len(data.val) if has_eval else 0, data.val.num_tokens if has_eval else 0)
    install(trainer, kit_log)
    return trainer, kit_log, context


def train_and_evaluate(trainer, kit_log, context: dict, data: SFTData, log) -> dict:
    """Train, then evaluate the best (or last) checkpoint on the validation rows; returns the metrics."""
    from .numerics import check_final

    train_out = trainer.train()
    metrics = {"train_loss": float(train_out.training_loss), "steps": int(trainer.state.global_step),
               "epochs": float(trainer.state.epoch or 0.0)}
    if data.has_eval:
        kit_log.phase = "final evaluation"
        log(f"[final] {'best' if trainer.state.best_model_checkpoint else 'last'} checkpoint on {len(data.val):,} validation rows -> metrics")
        ev = trainer.evaluate()
        check_final({"eval_loss": ev["eval_loss"]}, trainer.state.global_step, context)
        metrics["eval_loss"] = float(ev["eval_loss"])
        metrics["perplexity"] = float(math.exp(min(ev["eval_loss"], 50.0)))
        if trainer.state.best_metric is not None:
            metrics["best_eval_loss"] = float(trainer.state.best_metric)
    return metrics


def _note_adapter_changes(metrics: dict, model: SFTModel, data: SFTData, started: float, log) -> None:
    """Adds to ``metrics`` how many adapter tensors training moved, the row counts and the seconds; warns when none moved."""
    import torch

    before = model.before
    moved = sum(1 for n, p in model.peft_model.named_parameters()
                if n in before and not torch.equal(p.detach().float().cpu(), before[n].cpu()))
    metrics["adapter_tensors_changed"] = f"{moved}/{len(before)}"
    metrics["train_rows"], metrics["val_rows"] = len(data.train_rows), len(data.val_rows)
    metrics["seconds"] = round(time.time() - started, 2)
    if moved == 0:
        log("sft: WARNING: no adapter weight changed during training (learning rate, steps or the 4-bit CPU trap?)")


# --------------------------------------------------------------------------- the run folder


def save_run_folder(cfg, out: Path, model: SFTModel, data: SFTData, history: list, metrics: dict, *, warmup, fold):
    """Run-folder phase: adapter, tokenizer, log_history.json, loss.png and kit_manifest.json into ``out``; returns the manifest."""
    from .plots import curves_png

    model.peft_model.save_pretrained(out)
    data.tokenizer.save_pretrained(out)
    (out / "log_history.json").write_text(json.dumps(history, indent=1) + "\n")
    if any("loss" in h or "eval_loss" in h for h in history):
        curves_png(history, out / "loss.png", "loss")
    manifest = _manifest(cfg, model, data, metrics, warmup, fold)
    manifest.save(out)
    return manifest


def _manifest(cfg, model: SFTModel, data: SFTData, metrics: dict, warmup, fold):
    """kit_manifest.json for an SFT adapter: base, adapter, training settings and the generation block."""
    from kaggle_kit import __version__
    from kaggle_kit.runtime.basecheck import architecture_keys, base_architecture
    from kaggle_kit.runtime.generation import default_stop_strings
    from kaggle_kit.runtime.manifest import Manifest, config_sha256, library_versions
    from kaggle_kit.runtime.prompting import PromptSpec

    base, template, base_model = data.base, data.template, model.peft_model.get_base_model()
    stops = list(cfg.inference.stop_strings) or default_stop_strings(template)
    return Manifest(
        task={"kind": "sft", "labels": [], "metric": "eval_loss", "format": data.format},
        prompt=PromptSpec(template=template, max_length=data.max_length, truncation="head_tail", shares=[1, 1, 0]).to_dict(),
        base_model={
            "name": cfg.model.name, "path": str(base) if Path(str(base)).exists() else "",
            "config_sha256": config_sha256(base) if Path(str(base)).exists() else None,
            "architecture": type(base_model).__name__, "model_type": getattr(base_model.config, "model_type", ""),
            "architecture_keys": base_architecture(base) or architecture_keys(base_model.config.to_dict()),
        },
        quantization=model.quant,
        peft={**asdict(cfg.peft), "targets": model.targets, "task_type": "CAUSAL_LM"},
        training={
            "optimizer": cfg.train.optimizer, "learning_rate": cfg.train.learning_rate, "scheduler": cfg.train.scheduler,
            "warmup": warmup, "weight_decay": cfg.train.weight_decay, "max_grad_norm": cfg.train.max_grad_norm,
            "batch_size": cfg.train.batch_size, "grad_accum": cfg.train.grad_accum, "epochs": cfg.train.epochs,
            "max_steps": cfg.train.max_steps, "precision": model.precision, "seed": cfg.train.seed,
            "numerics": model.numerics.record() if model.numerics is not None else None,
            "early_stopping_patience": cfg.train.early_stopping_patience, "group_by_length": cfg.train.group_by_length,
            "data": str(cfg.data.train), "train_rows": len(data.train_rows), "val_rows": len(data.val_rows),
            "split": {"folds": cfg.data.folds, "fold": fold, "val_fraction": cfg.data.val_fraction,
                      "group_by_prompt": cfg.data.group_by_prompt, "seed": cfg.data.seed},
            "loss": "response tokens only (prompt and padding labels -100)",
        },
        generation={
            "template": template, "max_new_tokens": cfg.inference.max_new_tokens, "stop_strings": stops,
            "do_sample": cfg.inference.do_sample, "temperature": cfg.inference.temperature, "top_p": cfg.inference.top_p,
            "top_k": cfg.inference.top_k, "batch_size": cfg.inference.max_batch_rows, "batch_tokens": cfg.inference.batch_tokens,
            "seed": cfg.train.seed,
        },
        versions=library_versions(),
        metrics=metrics,
        kit_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )

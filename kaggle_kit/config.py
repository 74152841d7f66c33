"""`kit.toml` → typed dataclasses.

Precedence: the dataclass defaults, then a preset, then `kit.toml`, then `--set section.key=value`
flags. Every field carries its help text in ``metadata["help"]``; `kit init` writes it as comments.
Unknown keys are errors that name the key and the nearest valid one, and all problems of a file
are reported at once.

This module imports only the standard library (it is on the `kit --help` path).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILE = "kit.toml"


def _f(default: Any, help: str, choices: tuple | None = None, int_as_str: bool = False):
    """A dataclass field with help text (and allowed values, checked on load).

    ``int_as_str``: a string field that also takes a TOML integer (e.g. ``version = 3``)."""
    meta = {"help": help}
    if choices:
        meta["choices"] = choices
    if int_as_str:
        meta["int_as_str"] = True
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)), metadata=meta)
    return field(default=default, metadata=meta)


class ConfigError(ValueError):
    """One or more problems in a configuration; ``problems`` lists each as a line."""

    def __init__(self, problems: list[str], source: str = CONFIG_FILE):
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


# --------------------------------------------------------------------------- sections


@dataclass
class KaggleConfig:
    username: str = _f("", "Kaggle user name; empty = from KAGGLE_USERNAME or the kaggle credentials.")
    competition: str = _f("", "Competition slug, e.g. 'llm-classification-finetuning'.")
    extra_machine_shapes: list = _f([], "Accelerator names (machine_shape) Kaggle added after this kit's list; "
                                        "`kit validate` accepts them as they are.")


@dataclass
class ModelConfig:
    name: str = _f("tiny", "Base model: a hub id (e.g. 'google/gemma-2-9b-it'), 'tiny' (offline random Gemma-2), or the offline pretrained 'smollm2' (SmolLM2-135M-Instruct) / 'minilm' (see README: Real bases).")
    path: str = _f("", "Local folder of the base model; used instead of the hub when set.")
    dtype: str = _f("auto", "Weights dtype when not quantized.", ("auto", "float32", "bfloat16", "float16"))


@dataclass
class TaskConfig:
    kind: str = _f("pairwise", "What the model learns.", ("pairwise", "classification", "multilabel", "sft"))
    labels: list = _f([], "Class names in output order; empty = from the data format (e.g. LMSYS: winner_model_a, winner_model_b, winner_tie).")
    metric: str = _f("log_loss", "Competition metric, also used to pick the best checkpoint: log_loss, accuracy, macro_f1, micro_f1, "
                     "map@K (e.g. map@3: top-K labels, Kaggle's MAP@K), auc or average_precision (binary / multi-label).")


@dataclass
class DataConfig:
    train: str = _f("", "Training file (CSV, parquet, JSON or JSONL).")
    test: str = _f("", "Test file to predict (no labels).")
    format: str = _f("auto", "File format; auto detects it from the columns.", ("auto", "lmsys", "wsdm", "hh-rlhf", "classification", "instructions"))
    text_columns: list = _f([], "Generic classification: the text column(s); empty = 'text'.")
    label_columns: list = _f([], "Generic classification: one label column, or several 0/1 columns (multi-label), or several columns "
                             "composed into one class with label_join; empty = 'label'.")
    label_join: str = _f("", "Compose one class from several label_columns joined by this string (e.g. ':' for "
                         "'Category:Misconception'); values are read exactly as written ('NA' stays 'NA'). Empty = multi-label 0/1 columns.")
    id_column: str = _f("id", "Row id column.")
    skip_bad_rows: bool = _f(False, "Training data: skip rows with bad labels (counted and reported) instead of refusing the file.")
    skip_identical_after_truncation: bool = _f(False, "Pairwise training: skip rows whose responses A and B keep the same tokens "
                                               "after truncation although their texts differ (label noise; counted and listed).")
    folds: int = _f(5, "Number of stratified folds.")
    fold: int = _f(0, "Fold held out for validation.")
    val_fraction: float = _f(0.0, "If > 0, a plain train/val split of this fraction instead of folds.")
    group_by_prompt: bool = _f(True, "Keep rows that share a prompt on the same side of a split.")
    seed: int = _f(42, "Seed for splits and for hh-rlhf A/B order.")


@dataclass
class PromptConfig:
    template: str = _f("kit-v1", "Named prompt template (saved in the adapter manifest).")
    max_length: int = _f(1024, "Maximum tokens per example, special tokens included.")
    truncation: str = _f("per_component", "How over-long examples are shortened.", ("per_component", "head_tail", "turn_aware"))
    shares: list = _f([1, 1, 1], "Relative token budget of prompt / response A / response B; unused budget flows to the others.")
    head_fraction: float = _f(0.5, "head_tail: fraction of a shortened component kept from its start (the rest from its end).")
    text_template: str = _f("", "Classification: a template over the data's columns, e.g. 'Question: {QuestionText}\\nAnswer: "
                            "{MC_Answer}'; each {field} is truncated on its own budget. Empty = the named template over text_columns.")
    field_shares: dict = _f({}, "text_template: relative token budget per field, e.g. {StudentExplanation = 2}; missing fields = 1. "
                            "Each field keeps a floor of 16 tokens; what a short field leaves unused flows to the others.")


@dataclass
class SubmissionConfig:
    sample: str = _f("", "The competition's sample_submission.csv: it decides the id column, the output columns and the style "
                     "(probabilities per class, one label, top-k labels joined by spaces, or the positive class's probability).")
    top_k: int = _f(0, "Top-k style: labels per row; 0 = as many as the sample's cells hold.")
    positive_label: str = _f("", "Binary probability style: the class whose probability is written; empty = '1'/'True'/'yes' "
                             "when a label is one of those, else the last label.")


@dataclass
class QuantizationConfig:
    mode: str = _f("none", "Base weights: none, 4-bit NF4 (QLoRA) or 8-bit.", ("none", "4bit", "8bit"))
    quant_type: str = _f("nf4", "4-bit quantization type.", ("nf4", "fp4"))
    double_quant: bool = _f(True, "4-bit double quantization.")
    compute_dtype: str = _f("bfloat16", "4-bit compute dtype.", ("bfloat16", "float16", "float32"))


@dataclass
class PeftConfig:
    method: str = _f("lora", "Adapter type; the classification head is always trained and saved.", ("lora", "ia3", "none"))
    r: int = _f(16, "LoRA rank.")
    alpha: float = _f(32.0, "LoRA alpha.")
    dropout: float = _f(0.05, "LoRA dropout.")
    bias: str = _f("none", "LoRA bias.", ("none", "all", "lora_only"))
    targets: list = _f(["attention"], "Target modules: ['attention'], ['all-linear'] or explicit names like ['q_proj', 'v_proj'].")
    freeze_layers: int = _f(0, "Put no adapter on the lowest N decoder layers.")


@dataclass
class TrainConfig:
    output: str = _f("runs/latest", "Run folder the adapter and its manifest are written to.")
    optimizer: str = _f("adamw_torch", "Optimizer.", ("adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"))
    learning_rate: float = _f(2e-4, "Peak learning rate.")
    scheduler: str = _f("cosine", "Learning-rate schedule.", ("cosine", "linear", "constant"))
    warmup_ratio: float = _f(0.05, "Warm-up as a share of all steps (ignored when warmup_steps > 0).")
    warmup_steps: int = _f(0, "Warm-up steps.")
    weight_decay: float = _f(0.01, "Weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.")
    batch_size: int = _f(4, "Examples per device per step.")
    eval_batch_size: int = _f(8, "Examples per device per evaluation step.")
    grad_accum: int = _f(1, "Gradient accumulation steps (the loss is scaled to the equivalent batch).")
    epochs: float = _f(1.0, "Epochs (ignored when max_steps > 0).")
    max_steps: int = _f(0, "Stop after this many optimizer steps (0 = use epochs).")
    precision: str = _f("auto", "auto = bf16 where supported, else fp16 on GPUs, fp32 on CPUs.", ("auto", "bf16", "fp16", "fp32"))
    group_by_length: bool = _f(True, "Length-grouped sampling with dynamic padding.")
    eval_steps: int = _f(0, "Evaluate every N steps (0 = once per epoch).")
    early_stopping_patience: int = _f(0, "Stop after N evaluations without improvement (0 = off).")
    metric_for_best: str = _f("", "Metric that picks the best checkpoint; empty = the task's metric.")
    seed: int = _f(42, "Seed (set before the adapter is created).")
    swap_augment: bool = _f(False, "Pairwise tasks: also train on each example with A/B swapped and the label mirrored.")
    gradient_checkpointing: bool = _f(False, "Non-reentrant gradient checkpointing.")
    report_to: list = _f([], "Loggers passed through to the Trainer, e.g. ['wandb'] or ['tensorboard'].")
    logging_steps: int = _f(10, "Log the training loss every N steps.")


@dataclass
class InferenceConfig:
    batch_tokens: int = _f(8192, "Token budget per batch (padded size).")
    max_batch_rows: int = _f(64, "Row cap per batch.")
    tta: str = _f("none", "A/B-swap test-time augmentation: none, all, or uncertain:FRACTION.")
    budget_minutes: float = _f(0.0, "Time budget for prediction; 0 = none. The run degrades in steps to finish in time.")
    devices: list = _f([], "Devices to run one model replica each on, e.g. ['cuda:0', 'cuda:1']; empty = all GPUs, else the CPU.")
    quantization: str = _f("", "Override the quantization recorded in the adapter manifest (none, 4bit, 8bit); empty = as trained.")
    max_unpredicted_share: float = _f(0.01, "Largest share of test rows that may get the fill (mean of the predicted rows) instead of a "
                                            "prediction — rows with non-finite logits after a float32 re-run, or cut by the time budget — "
                                            "before `kit predict` exits 1 (after writing the submission). 0 = any such row fails the run.")
    max_new_tokens: int = _f(256, "SFT generation: most new tokens per answer.")
    do_sample: bool = _f(False, "SFT generation: sample (temperature/top_p/top_k) instead of greedy decoding.")
    temperature: float = _f(0.7, "SFT generation: sampling temperature (do_sample only).")
    top_p: float = _f(0.9, "SFT generation: nucleus sampling mass (do_sample only).")
    top_k: int = _f(0, "SFT generation: top-k sampling (0 = off; do_sample only).")
    stop_strings: list = _f([], "SFT generation: cut answers at these strings; empty = the prompt template's defaults.")


@dataclass
class EnsembleConfig:
    members: list = _f([], "Run folders predicted together by `kit predict` (an --all-folds parent counts as its folds, sharing its weight); `kit blend --write-config` fills it. Empty = one adapter.")
    weights: list = _f([], "One weight per member (normalised to sum to 1); empty = equal. `kit blend` fits them on out-of-fold predictions.")
    combine: str = _f("mean", "How member probabilities combine: weighted mean, or weighted mean of log-probabilities (logits for multi-label) renormalised.", ("mean", "logit_mean"))
    parts: str = _f("", "Folder where each member's predictions are saved as it finishes (a rerun skips finished members); empty = 'parts' beside the submission (/kaggle/working/parts in the notebook).")


@dataclass
class WheelsConfig:
    target: str = _f("kaggle-gpu-2026", "Target Kaggle runtime profile, or a path to a `pip freeze` taken in a Kaggle notebook.")
    out: str = _f("wheels", "Folder the wheel set is written to.")
    extra: list = _f([], "Extra requirements to ship, e.g. ['sentencepiece==0.2.0'].")
    dataset_slug: str = _f("kit-wheels", "Kaggle dataset slug of the wheel set.")
    dataset_title: str = _f("kit-wheels", "Kaggle dataset title (its slug must equal dataset_slug).")
    license: str = _f("other", "Dataset licence name.")


@dataclass
class KernelConfig:
    slug: str = _f("", "Kernel slug; empty = '<competition>-<name>'.")
    title: str = _f("", "Kernel title; empty = the slug. Kaggle derives the id from it.")
    template: str = _f("inference", "Notebook source in notebooks_src/ (without .py).")
    accelerator: str = _f("NvidiaTeslaT4", "Kaggle accelerator (machine_shape): NvidiaTeslaT4 = GPU T4 x2, "
                                           "TpuV5E8 = TPU v5e-8, '' = CPU; new names: kaggle.extra_machine_shapes.")
    enable_gpu: bool = _f(True, "Run on a GPU.")
    enable_internet: bool = _f(False, "Internet access (must be off for competition submissions).")
    is_private: bool = _f(True, "Private kernel.")
    dataset_sources: list = _f([], "Extra dataset sources 'owner/slug' (the wheel dataset is added automatically).")
    model_sources: list = _f([], "Extra model sources 'owner/model/framework/instance/version'.")
    instances: list = _f([], "Model instances from [instances] this kernel mounts.")


@dataclass
class InstanceConfig:
    model_slug: str = _f("", "Kaggle model slug the instance belongs to.")
    model_title: str = _f("", "Kaggle model title; empty = the model slug.")
    slug: str = _f("", "Instance slug; empty = the table's name.")
    kind: str = _f("adapter", "What is published: a trained adapter (run folder) or a base-model snapshot.", ("adapter", "base"))
    source: str = _f("", "Folder to publish; empty = train.output for adapters, model.path for bases.")
    framework: str = _f("transformers", "Kaggle framework (PEFT adapters are 'transformers').")
    license: str = _f("apache-2.0", "Licence name Kaggle knows.")
    version: str = _f("latest", "Version mounted by kernels: an integer, or 'latest' (resolved from Kaggle).", int_as_str=True)
    is_private: bool = _f(True, "Private model.")


@dataclass
class KitConfig:
    kaggle: KaggleConfig = field(default_factory=KaggleConfig, metadata={"help": "Kaggle identity and competition."})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Base model."})
    task: TaskConfig = field(default_factory=TaskConfig, metadata={"help": "Task and labels."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Data files, format and splits."})
    prompt: PromptConfig = field(default_factory=PromptConfig, metadata={"help": "Prompt format and truncation (saved in the adapter manifest)."})
    submission: SubmissionConfig = field(default_factory=SubmissionConfig, metadata={"help": "Submission shape (saved in the adapter manifest)."})
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig, metadata={"help": "Quantization of the base model."})
    peft: PeftConfig = field(default_factory=PeftConfig, metadata={"help": "Adapter (PEFT) settings."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Training."})
    inference: InferenceConfig = field(default_factory=InferenceConfig, metadata={"help": "Batched inference."})
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig, metadata={"help": "Several adapters in one prediction (kit predict, the inference notebook)."})
    wheels: WheelsConfig = field(default_factory=WheelsConfig, metadata={"help": "Offline wheel dataset."})
    kernels: dict = field(default_factory=dict, metadata={"help": "Kaggle kernels by name.", "item": KernelConfig})
    instances: dict = field(default_factory=dict, metadata={"help": "Kaggle model instances by name.", "item": InstanceConfig})

    # ------------------------------------------------------------------ helpers
    def kaggle_username(self) -> str:
        """The configured user name, else the kaggle client's usual places (no import of kaggle)."""
        return self.kaggle.username or kaggle_username_from_environment()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)



# --------------------------------------------------------------------------- loading


def _type_ok(value: Any, tp: Any) -> bool:
    if tp in (Any, object):
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is list:
        return isinstance(value, list)
    if tp is dict:
        return isinstance(value, dict)
    return True


def _hint(cls) -> dict:
    return typing.get_type_hints(cls)


def _nearest(key: str, valid: list[str], prefix: str = "") -> str:
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    dotted = f"{prefix}." if prefix else ""
    return f"; did you mean '{dotted}{near[0]}'?" if near else f"; valid keys: {', '.join(valid)}"


def _apply(obj: Any, data: dict, where: str, problems: list[str]) -> None:
    hints = _hint(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            problems.append(f"unknown key '{path}'{_nearest(key, list(fields), where)}")
            continue
        f = fields[key]
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                problems.append(f"'{path}' must be a table [{path}], got {value!r}")
                continue
            _apply(getattr(obj, key), value, path, problems)
            continue
        item = f.metadata.get("item")
        if item is not None:
            if not isinstance(value, dict):
                problems.append(f"'{path}' must be a table of named tables like [{path}.NAME], got {value!r}")
                continue
            target = getattr(obj, key)
            for name, sub in value.items():
                if not isinstance(sub, dict):
                    problems.append(f"'{path}.{name}' must be a table, got {sub!r}")
                    continue
                inst = target.get(name) or item()
                _apply(inst, sub, f"{path}.{name}", problems)
                target[name] = inst
            continue
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if tp is str and f.metadata.get("int_as_str") and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not _type_ok(value, tp):
            problems.append(
                f"'{path}' must be {getattr(tp, '__name__', tp)}, got {value!r} ({type(value).__name__})"
            )
            continue
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            problems.append(f"'{path}' = {value!r} is not one of: {', '.join(map(str, choices))}")
            continue
        setattr(obj, key, value)


def parse_set_flags(flags: typing.Iterable[str]) -> dict:
    """`section.key=value` strings → nested dict. Values are read as TOML, else kept as strings."""
    out: dict = {}
    problems = []
    for flag in flags:
        if "=" not in flag:
            problems.append(f"--set {flag!r}: expected section.key=value, e.g. --set train.max_steps=50")
            continue
        dotted, raw = flag.split("=", 1)
        parts = [p for p in dotted.strip().split(".") if p]
        if len(parts) < 2:
            problems.append(f"--set {flag!r}: the key needs a section, e.g. train.{dotted.strip() or 'max_steps'}")
            continue
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    if problems:
        raise ConfigError(problems, source="--set")
    return out


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def build_config(*layers: tuple[str, dict]) -> KitConfig:
    """Apply (source name, dict) layers in order onto the defaults; report every problem at once."""
    cfg = KitConfig()
    problems: list[str] = []
    sources = []
    for source, data in layers:
        before = len(problems)
        _apply(cfg, data, "", problems)
        if len(problems) > before:
            sources.append(source)
    problems += _cross_checks(cfg)
    if problems:
        raise ConfigError(problems, source=" + ".join(sources) or "config")
    return cfg


def _cross_checks(cfg: KitConfig) -> list[str]:
    problems = []
    if cfg.prompt.max_length < 16:
        problems.append(f"'prompt.max_length' = {cfg.prompt.max_length} is too small; use at least 16 (typical: 1024-2048)")
    if len(cfg.prompt.shares) != 3 or not all(isinstance(s, (int, float)) and s >= 0 for s in cfg.prompt.shares) or sum(cfg.prompt.shares) <= 0:
        problems.append(f"'prompt.shares' = {cfg.prompt.shares!r} must be three non-negative numbers (prompt, A, B), e.g. [1, 1, 1]")
    if not 0.0 <= cfg.prompt.head_fraction <= 1.0:
        problems.append(f"'prompt.head_fraction' = {cfg.prompt.head_fraction} must lie in [0, 1]")
    if cfg.data.folds < 2 and cfg.data.val_fraction <= 0:
        problems.append(f"'data.folds' = {cfg.data.folds} must be at least 2 (or set data.val_fraction)")
    if not 0 <= cfg.data.fold < max(cfg.data.folds, 1):
        problems.append(f"'data.fold' = {cfg.data.fold} is out of range 0..{cfg.data.folds - 1}")
    import re as _re

    if not (cfg.task.metric in ("log_loss", "accuracy", "macro_f1", "micro_f1", "subset_accuracy", "auc", "average_precision")
            or _re.match(r"^map@[1-9][0-9]*$", cfg.task.metric)):
        problems.append(f"'task.metric' = {cfg.task.metric!r}: use log_loss, accuracy, macro_f1, micro_f1, subset_accuracy, "
                        f"auc, average_precision or map@K (e.g. map@3)")
    if cfg.submission.top_k < 0:
        problems.append(f"'submission.top_k' = {cfg.submission.top_k} must be 0 (from the sample) or more")
    bad_shares = {k: v for k, v in cfg.prompt.field_shares.items() if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0}
    if bad_shares:
        problems.append(f"'prompt.field_shares' = {bad_shares!r}: each share must be a non-negative number")
    if not 0.0 <= cfg.inference.max_unpredicted_share <= 1.0:
        problems.append(f"'inference.max_unpredicted_share' = {cfg.inference.max_unpredicted_share} must lie in [0, 1] (e.g. 0.01)")
    tta = cfg.inference.tta
    if tta not in ("none", "all") and not tta.startswith("uncertain:"):
        problems.append(f"'inference.tta' = {tta!r}: use none, all or uncertain:FRACTION (e.g. uncertain:0.3)")
    elif tta.startswith("uncertain:"):
        try:
            frac = float(tta.split(":", 1)[1])
            if not 0 < frac <= 1:
                raise ValueError
        except ValueError:
            problems.append(f"'inference.tta' = {tta!r}: the fraction must be in (0, 1], e.g. uncertain:0.3")
    ens = cfg.ensemble
    if ens.weights and ens.members and len(ens.weights) != len(ens.members):
        problems.append(f"'ensemble.weights' has {len(ens.weights)} value(s) for {len(ens.members)} member(s); give one weight per member, in order")
    if any(not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0 for w in ens.weights) or (ens.weights and sum(ens.weights) <= 0):
        problems.append(f"'ensemble.weights' = {ens.weights!r} must be non-negative numbers with a positive sum, e.g. [0.6, 0.4]")
    for name, inst in cfg.instances.items():
        if not isinstance(inst, InstanceConfig):
            continue
        if inst.version != "latest" and not str(inst.version).isdigit():
            problems.append(f"'instances.{name}.version' = {inst.version!r} must be an integer or 'latest'")
    for name, kernel in cfg.kernels.items():
        for inst in kernel.instances:
            if inst not in cfg.instances:
                problems.append(
                    f"'kernels.{name}.instances' names {inst!r}, which is not a table [instances.{inst}]"
                    f"{_nearest(inst, list(cfg.instances)) if cfg.instances else ''}"
                )
    return problems


def read_toml(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"file not found; create one with `kit init --preset lmsys`"], source=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source=str(path)) from None


def load_config(
    path: str | os.PathLike | None = None,
    overrides: typing.Iterable[str] = (),
    preset: str | None = None,
    required: bool = False,
) -> KitConfig:
    """Defaults → preset → `kit.toml` (if present, or required) → `--set` overrides."""
    layers: list[tuple[str, dict]] = []
    if preset:
        layers.append((f"preset {preset}", preset_values(preset)))
    if path is None and Path(CONFIG_FILE).exists():
        path = CONFIG_FILE
    if path is not None:
        if not Path(path).exists() and not required:
            pass
        else:
            layers.append((str(path), read_toml(path)))
    sets = parse_set_flags(overrides)
    if sets:
        layers.append(("--set", sets))
    cfg = build_config(*layers)
    cfg._source = str(path) if path else None  # type: ignore[attr-defined]
    return cfg


# --------------------------------------------------------------------------- presets

PRESETS: dict[str, dict] = {
    "lmsys": {
        "kaggle": {"competition": "llm-classification-finetuning"},
        "model": {"name": "google/gemma-2-9b-it"},
        "task": {"kind": "pairwise", "labels": ["winner_model_a", "winner_model_b", "winner_tie"], "metric": "log_loss"},
        "data": {"train": "data/train.csv", "test": "/kaggle/input/competitions/llm-classification-finetuning/test.csv", "format": "lmsys"},
        "prompt": {"max_length": 2048, "truncation": "per_component"},
        "quantization": {"mode": "4bit"},
        "peft": {"method": "lora", "r": 16, "alpha": 32.0, "targets": ["attention"], "freeze_layers": 16},
        "train": {"optimizer": "adamw_8bit", "batch_size": 2, "grad_accum": 4, "learning_rate": 2e-4, "output": "runs/gemma2-lmsys"},
        "inference": {"tta": "all"},
        "wheels": {"dataset_slug": "kit-wheels-lmsys", "dataset_title": "kit-wheels-lmsys"},
        "kernels": {"inference": {"template": "inference", "instances": ["gemma2-base", "peft-lora-classifier"]}},
        "instances": {
            "gemma2-base": {"model_slug": "gemma2-base", "kind": "base", "license": "gemma"},
            "peft-lora-classifier": {"model_slug": "gemma2-lmsys-adapter", "kind": "adapter"},
        },
    },
    "wsdm": {
        "kaggle": {"competition": "wsdm-cup-multilingual-chatbot-arena"},
        "model": {"name": "google/gemma-2-9b-it"},
        "task": {"kind": "pairwise", "labels": ["model_a", "model_b"], "metric": "accuracy"},
        "data": {"train": "data/train.parquet", "test": "/kaggle/input/competitions/wsdm-cup-multilingual-chatbot-arena/test.parquet", "format": "wsdm"},
        "prompt": {"max_length": 2048, "truncation": "per_component"},
        "quantization": {"mode": "4bit"},
        "peft": {"method": "lora", "r": 16, "alpha": 32.0, "targets": ["attention"], "freeze_layers": 6},
        "train": {"optimizer": "adamw_8bit", "batch_size": 1, "grad_accum": 8, "learning_rate": 2e-5, "output": "runs/gemma2-wsdm", "metric_for_best": "accuracy"},
        "inference": {"tta": "all"},
        "wheels": {"dataset_slug": "kit-wheels-wsdm", "dataset_title": "kit-wheels-wsdm"},
        "kernels": {"inference": {"template": "inference", "instances": ["gemma2-base", "peft-lora-classifier"]}},
        "instances": {
            "gemma2-base": {"model_slug": "gemma2-base", "kind": "base", "license": "gemma"},
            "peft-lora-classifier": {"model_slug": "gemma2-wsdm-adapter", "kind": "adapter"},
        },
    },
    "classification": {
        "model": {"name": "Qwen/Qwen2.5-1.5B"},
        "task": {"kind": "classification", "labels": [], "metric": "macro_f1"},
        "data": {"train": "data/train.csv", "test": "data/test.csv", "format": "classification", "text_columns": ["text"], "label_columns": ["label"], "group_by_prompt": False},
        "prompt": {"max_length": 512, "truncation": "head_tail", "shares": [1, 0, 0]},
        "quantization": {"mode": "4bit"},
        "peft": {"method": "lora", "targets": ["all-linear"]},
        "train": {"output": "runs/classifier", "metric_for_best": "macro_f1", "early_stopping_patience": 3},
        "kernels": {"inference": {"template": "inference", "instances": ["peft-lora-classifier"]}},
        "instances": {"peft-lora-classifier": {"model_slug": "text-classifier-adapter", "kind": "adapter"}},
    },
    # "MAP - Charting Student Math Misunderstandings" (2025): the target is Category:Misconception
    # (Misconception is the literal text NA when there is none), scored by MAP@3 over top-3 labels
    "misconceptions": {
        "kaggle": {"competition": "map-charting-student-math-misunderstandings"},
        "model": {"name": "google/gemma-2-9b-it"},
        "task": {"kind": "classification", "labels": [], "metric": "map@3"},
        "data": {"train": "data/train.csv", "test": "/kaggle/input/competitions/map-charting-student-math-misunderstandings/test.csv",
                 "format": "classification", "id_column": "row_id", "label_columns": ["Category", "Misconception"], "label_join": ":", "group_by_prompt": False},
        "prompt": {"max_length": 256, "truncation": "per_component",
                   "text_template": "Question: {QuestionText}\nAnswer: {MC_Answer}\nStudent explanation: {StudentExplanation}",
                   "field_shares": {"StudentExplanation": 2}},
        "submission": {"sample": "data/sample_submission.csv", "top_k": 3},
        "quantization": {"mode": "4bit"},
        "peft": {"method": "lora", "r": 16, "alpha": 32.0, "targets": ["all-linear"]},
        "train": {"optimizer": "adamw_8bit", "batch_size": 8, "learning_rate": 2e-4, "output": "runs/misconceptions", "metric_for_best": "map@3"},
        "wheels": {"dataset_slug": "kit-wheels-map", "dataset_title": "kit-wheels-map"},
        "kernels": {"inference": {"template": "inference", "instances": ["peft-lora-classifier"]}},
        "instances": {"peft-lora-classifier": {"model_slug": "gemma2-misconceptions-adapter", "kind": "adapter"}},
    },
    # "Jigsaw - Agile Community Rules Classification" (2025): binary rule_violation, scored by
    # column-averaged ROC AUC over the probability of a violation
    "rules": {
        "kaggle": {"competition": "jigsaw-agile-community-rules"},
        "model": {"name": "Qwen/Qwen2.5-7B-Instruct"},
        "task": {"kind": "classification", "labels": [], "metric": "auc"},
        "data": {"train": "data/train.csv", "test": "/kaggle/input/competitions/jigsaw-agile-community-rules/test.csv",
                 "format": "classification", "id_column": "row_id", "label_columns": ["rule_violation"], "group_by_prompt": False},
        "prompt": {"max_length": 512, "truncation": "head_tail",
                   "text_template": "r/{subreddit}\nRule: {rule}\nViolates: {positive_example_1}\nViolates: {positive_example_2}\n"
                                    "Does not violate: {negative_example_1}\nDoes not violate: {negative_example_2}\nComment: {body}",
                   "field_shares": {"body": 3}},
        "submission": {"sample": "data/sample_submission.csv"},
        "quantization": {"mode": "4bit"},
        "peft": {"method": "lora", "r": 16, "alpha": 32.0, "targets": ["all-linear"]},
        "train": {"optimizer": "adamw_8bit", "batch_size": 8, "learning_rate": 1e-4, "output": "runs/rules", "metric_for_best": "auc"},
        "wheels": {"dataset_slug": "kit-wheels-rules", "dataset_title": "kit-wheels-rules"},
        "kernels": {"inference": {"template": "inference", "instances": ["peft-lora-classifier"]}},
        "instances": {"peft-lora-classifier": {"model_slug": "qwen-rules-adapter", "kind": "adapter"}},
    },
    "sft": {
        "model": {"name": "google/gemma-7b"},
        "task": {"kind": "sft", "labels": []},
        "data": {"train": "data/train.jsonl", "test": "data/test.jsonl", "format": "instructions", "group_by_prompt": False},
        "prompt": {"template": "auto", "max_length": 1024},
        "quantization": {"mode": "4bit"},
        "peft": {"method": "lora", "r": 128, "alpha": 256.0, "targets": ["all-linear"]},
        "train": {"optimizer": "paged_adamw_32bit", "scheduler": "cosine", "warmup_ratio": 0.03, "max_grad_norm": 0.3, "output": "runs/sft", "early_stopping_patience": 3},
        "kernels": {"generate": {"template": "generate", "instances": ["peft-lora-sft"]}},
        "instances": {"peft-lora-sft": {"model_slug": "gemma-sft-adapter", "kind": "adapter"}},
    },
}


def preset_values(name: str) -> dict:
    if name not in PRESETS:
        raise ConfigError([f"unknown preset {name!r}{_nearest(name, list(PRESETS))}"], source="--preset")
    return json.loads(json.dumps(PRESETS[name]))


# --------------------------------------------------------------------------- writing (`kit init`)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


# Settings a task kind never reads: `kit init` leaves them out of its kit.toml (a file that shows
# `metric = "log_loss"` for instruction tuning would claim something that does not happen).
UNUSED_BY_KIND = {
    "sft": {
        "task": {"labels", "metric"},
        "data": {"text_columns", "label_columns", "skip_bad_rows"},
        "prompt": {"truncation", "shares", "head_fraction"},
        "train": {"metric_for_best", "swap_augment"},
        "inference": {"tta", "budget_minutes", "devices"},
    },
}


def _write_table(lines: list[str], header: str, obj: Any, skip: frozenset = frozenset()) -> None:
    lines.append(f"[{header}]")
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        help_text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        if choices:
            help_text += f" One of: {', '.join(choices)}."
        lines.append(f"# {help_text}")
        lines.append(f"{f.name} = {_toml_value(getattr(obj, f.name))}")
    lines.append("")


def render_toml(cfg: KitConfig, preset: str | None = None) -> str:
    """A commented `kit.toml` holding every setting of ``cfg``."""
    lines = [
        f"# kit.toml: kaggle-kit project configuration{f' (preset {preset})' if preset else ''}.",
        "# Written by `kit init`. Precedence: defaults < this file < `--set section.key=value` flags.",
        "",
    ]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        lines.append(f"# ---- {f.metadata.get('help', '')}")
        if dataclasses.is_dataclass(value):
            _write_table(lines, f.name, value, frozenset(UNUSED_BY_KIND.get(cfg.task.kind, {}).get(f.name, ())))
        else:
            if not value:
                lines.append(f"# [{f.name}.NAME] tables; see `kit init --preset lmsys` for an example.")
                lines.append("")
            for name, sub in value.items():
                _write_table(lines, f"{f.name}.{name}", sub)
    return "\n".join(lines)


def init_config(path: str | os.PathLike, preset: str = "lmsys", force: bool = False, username: str = "") -> Path:
    """Write a commented `kit.toml` for ``preset``; returns the path. Refuses to overwrite unless ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    cfg = build_config((f"preset {preset}", preset_values(preset)))
    if username:
        cfg.kaggle.username = username
    text = render_toml(cfg, preset)
    build_config((str(path), tomllib.loads(text)))  # what we write must load
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- identity


def kaggle_username_from_environment() -> str:
    """KAGGLE_USERNAME, else `username` in kaggle.json in the client's usual folders; '' when none."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    for folder in kaggle_config_dirs():
        cred = folder / "kaggle.json"
        if cred.is_file():
            try:
                return str(json.loads(cred.read_text()).get("username", ""))
            except (OSError, ValueError):
                return ""
    return ""


def kaggle_config_dirs() -> list[Path]:
    """Where the kaggle client looks for credentials, in its order."""
    dirs = []
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        dirs.append(Path(os.environ["KAGGLE_CONFIG_DIR"]))
    home = Path.home()
    dirs += [home / ".kaggle", Path(os.environ.get("XDG_CONFIG_HOME", home / ".config")) / "kaggle"]
    return dirs

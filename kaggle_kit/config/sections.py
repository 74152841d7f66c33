"""The typed sections of `kit.toml`: one dataclass per table, every field with its help text.

Each field carries ``metadata["help"]`` (written as a comment by `kit init`) and, where the values are
fixed, ``metadata["choices"]`` (checked on load).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from kaggle_kit.config.identity import kaggle_username_from_environment


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
    dtype: str = _f("auto", "Dtype the base's weights load in; auto = the training device's precision (bfloat16 on compute "
                    "capability 8.0+, float16 on older GPUs such as the T4, float32 on the CPU; a quantized base: its compute dtype).",
                    ("auto", "float32", "bfloat16", "float16"))


@dataclass
class TaskConfig:
    kind: str = _f("pairwise", "What the model learns.", ("pairwise", "classification", "multilabel", "sft"))
    labels: list = _f([], "Class names in output order; empty = from the data format (e.g. LMSYS: winner_model_a, winner_model_b, winner_tie).")
    metric: str = _f("log_loss", "Competition metric, also used to pick the best checkpoint: log_loss, accuracy, macro_f1, micro_f1, "
                     "map@K (e.g. map@3: top-K labels, Kaggle's MAP@K), auc or average_precision (binary / multi-label).")
    head: str = _f("seq_cls", "How classes are scored: 'seq_cls' = a new linear head on the last token (AutoModelForSequenceClassification); "
                   "'label_tokens' = the causal LM's own vocabulary projection read at the answer position, each class scored by "
                   "the log-sum-exp of its verbalizations' token logits (works zero-shot; README: Label-token classifiers).",
                   ("seq_cls", "label_tokens"))
    label_tokens: dict = _f({}, "label_tokens head: class -> single-token verbalizations, e.g. {winner_model_a = ['A', ' A']}; "
                            "every string must be one token of the tokenizer in use (checked before training). Empty = defaults "
                            "from the label names (A/B/tie, Yes/No, else a distinct token of each class name).")
    candidates_by: str = _f("", "Single-label tasks: a column of the data; at prediction only the labels seen with that column's "
                            "value in training compete (others get probability 0; unseen values keep every label). Empty = off.")


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
    group_column: str = _f("", "Keep rows that share this column's value on the same side of a split (e.g. 'source_row': the "
                           "training rows mined from one test row); empty = by prompt (group_by_prompt) or none.")
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
    chat_template: str = _f("auto", "task.head = 'label_tokens': wrap the text and question in the tokenizer's chat template "
                            "(auto = when it has one, else a plain template; on = required; off = the plain template).",
                            ("auto", "on", "off"))
    question: str = _f("", "task.head = 'label_tokens': the question after the text; empty = a default naming the answers "
                       "(e.g. 'Which response is better? Answer with A, B or tie.').")
    answer_cue: str = _f("", "task.head = 'label_tokens': text right before the answer token; empty = 'Answer:' in the plain "
                         "template, nothing after the chat template's assistant turn.")


@dataclass
class SubmissionConfig:
    sample: str = _f("", "The competition's sample_submission.csv: it decides the id column, the output columns and the style "
                     "(probabilities per class, one label, top-k labels joined by spaces, or the positive class's probability).")
    top_k: int = _f(0, "Top-k style: labels per row; 0 = as many as the sample's cells hold.")
    positive_label: str = _f("", "Binary probability style: the class whose probability is written; empty = '1'/'True'/'yes' "
                             "when a label is one of those, else the last label.")
    rank_within: str = _f("", "Binary probability style: replace each score by its rank within the rows sharing this column's "
                          "value (e.g. 'rule'), scaled to (0, 1], for a column-averaged AUC; the metric is then also computed per "
                          "group and averaged when labels are known. Empty = the probabilities as predicted.")


@dataclass
class QuantizationConfig:
    mode: str = _f("none", "Base weights: none, 4-bit NF4 (QLoRA) or 8-bit.", ("none", "4bit", "8bit"))
    quant_type: str = _f("nf4", "4-bit quantization type.", ("nf4", "fp4"))
    double_quant: bool = _f(True, "4-bit double quantization.")
    compute_dtype: str = _f("auto", "4-bit / 8-bit compute dtype; auto = the training device's precision (float16 on a T4, "
                            "where bfloat16 is only emulated; bfloat16 on compute capability 8.0+; float32 on the CPU).",
                            ("auto", "bfloat16", "float16", "float32"))


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
    head_learning_rate: float = _f(0.0, "Peak learning rate of the classification head (its own optimizer group, same schedule); "
                                   "0 = 10 x learning_rate (measured on real text, README: Training). Classifiers only.")
    head_init: str = _f("zero", "How a new classification head starts: 'zero' (the untrained model gives every class the same "
                        "probability) or 'model' (the model class's random normal(0, 0.02), confidently biased on large pooled "
                        "states). A head the base checkpoint already holds is kept.", ("zero", "model"))
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
    cascade: bool = _f(False, "Run the members as a cascade: the first predicts every row, each later member only the rows the "
                       "members before it are least sure of (cascade_share / cascade_threshold). `kit blend --cascade` picks the settings.")
    cascade_share: float = _f(0.5, "Cascade: share of all rows each later member predicts, the most uncertain first (0 = the first member "
                              "alone, 1 = the full ensemble); a time budget may shrink it (logged).")
    cascade_by: str = _f("margin", "Cascade: how uncertainty is measured: 'margin' (top-1 minus top-2 probability, smallest first) or "
                         "'entropy' (largest first); multi-label: the closeness of each probability to 0.5.", ("margin", "entropy"))
    cascade_threshold: float = _f(0.0, "Cascade: if > 0, later members predict the rows whose top probability is below this value "
                                  "instead of a fixed share.")
    cascade_combine: str = _f("mean", "Cascade: a later member's predictions on its rows 'replace' the earlier ones, or are combined "
                              "with them ('mean': the [ensemble] combine of the members that saw the row, weights renormalised).",
                              ("mean", "replace"))


@dataclass
class TestTimeConfig:
    examples: dict = _f({}, "Test-file columns whose text becomes a training row with that label (test-time training), e.g. "
                        "{positive_example_1 = 1, positive_example_2 = 1, negative_example_1 = 0, negative_example_2 = 0}; "
                        "empty = no mining (`kit data mine-examples`, the train-predict notebook).")
    body_column: str = _f("body", "The column a mined example's text goes into (the row's other fields are kept).")
    group_column: str = _f("rule", "Mined examples are deduplicated by text and this column's value; empty = by text alone.")
    example_fill: str = _f("other_row", "What the example column a mined row's text came from holds: 'other_row' (that column "
                           "of the next test row of the same group, so the body never repeats a listed example), 'keep' "
                           "(unchanged) or 'empty'.", ("other_row", "keep", "empty"))
    include_train: bool = _f(False, "Also train on the training file's rows (data.train), deduplicated with the mined ones.")
    budget_minutes: float = _f(0.0, "One time budget for the train-predict notebook (training + prediction); 0 = the "
                               "competition's notebook limit (720 for Jigsaw 2025, else Kaggle's usual 540) less 10%.")
    train_share: float = _f(0.6, "Share of the budget training may use; it stops there (the best checkpoint so far is kept).")
    pseudo_label_share: float = _f(0.0, "After a first prediction, the most confident share of test rows joins the training "
                                   "rows (with the predicted label) for a second, shorter fine-tune; 0 = no second round.")
    pseudo_round_share: float = _f(0.35, "Share of the training time the pseudo-label round gets (the first round the rest).")
    nproc: int = _f(0, "Processes for the kernel's fine-tune: 0 = one per visible CUDA device (Kaggle's 2xT4: 2; 1 without a GPU); "
                    "N > 1 = data-parallel (DDP under torch.distributed.run: NCCL on GPUs, gloo on CPUs); 1 = in the notebook's process.")


@dataclass
class DistillConfig:
    teacher: str = _f("", "Teacher file for distillation (`kit predict --logits` output, or a CSV/parquet 'id, <one column per class in "
                      "the label order>' of logits made elsewhere); empty = no distillation.")
    teachers: list = _f([], "More teacher files, combined with `teacher` by the weighted mean of their log-probabilities.")
    weights: list = _f([], "One weight per teacher file (teacher first, then teachers); empty = equal.")
    alpha: float = _f(0.5, "Weight of the KL(teacher || student) term; the hard-label cross-entropy gets 1 - alpha.")
    temperature: float = _f(2.0, "Softmax temperature of teacher and student in the KL term (scaled by T^2, Hinton et al. 2015).")
    logit_loss: str = _f("none", "Extra term on the row-centred logits: 'mse' or 'cosine' (1 - cosine similarity), weighted by logit_weight.",
                         ("none", "mse", "cosine"))
    logit_weight: float = _f(0.0, "Weight of the logit_loss term.")
    missing: str = _f("hard", "Training rows without a teacher value: train them on the hard label alone ('hard', counted and listed) or "
                      "refuse the run ('error').", ("hard", "error"))


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
    slug: str = _f("", "Kernel slug, 5-50 characters, lowercase-hyphenated; empty = '<competition>-<name>', "
                        "shortened to 50 characters (whole words of the competition, then the name) and noted.")
    title: str = _f("", "Kernel title, 5-50 characters; empty = the slug. Kaggle derives the id from it.")
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
    distill: DistillConfig = field(default_factory=DistillConfig, metadata={"help": "Distillation: a student trained on teachers' logits (kit train)."})
    test_time: TestTimeConfig = field(default_factory=TestTimeConfig, metadata={"help": "Training on the test file's labelled examples inside the kernel (train-predict)."})
    wheels: WheelsConfig = field(default_factory=WheelsConfig, metadata={"help": "Offline wheel dataset."})
    kernels: dict = field(default_factory=dict, metadata={"help": "Kaggle kernels by name.", "item": KernelConfig})
    instances: dict = field(default_factory=dict, metadata={"help": "Kaggle model instances by name.", "item": InstanceConfig})

    # ------------------------------------------------------------------ helpers
    def kaggle_username(self) -> str:
        """The configured user name, else the kaggle client's usual places (no import of kaggle)."""
        return self.kaggle.username or kaggle_username_from_environment()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

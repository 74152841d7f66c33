"""Ready-made settings per competition (`kit init --preset NAME`, `--preset`)."""
from __future__ import annotations

import json

from kaggle_kit.config.problems import ConfigError, _nearest

# Every kernel mounts the base its adapters were trained on as an instance with kind = "base": a notebook
# loads models only from its sources under /kaggle/input (`kaggle_kit.publish.kernel_checks`).
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
        "kernels": {"inference": {"template": "inference", "instances": ["qwen2-5-1-5b-base", "peft-lora-classifier"]}},
        "instances": {
            "qwen2-5-1-5b-base": {"model_slug": "qwen2-5-1-5b-base", "kind": "base", "license": "apache-2.0"},
            "peft-lora-classifier": {"model_slug": "text-classifier-adapter", "kind": "adapter"},
        },
    },
    # "MAP - Charting Student Math Misunderstandings" (2025): the target is Category:Misconception
    # (Misconception is the literal text NA when there is none), scored by MAP@3 over top-3 labels
    "misconceptions": {
        "kaggle": {"competition": "map-charting-student-math-misunderstandings"},
        "model": {"name": "google/gemma-2-9b-it"},
        "task": {"kind": "classification", "labels": [], "metric": "map@3"},  # task.head = "label_tokens": a distinct token of each class name
        "data": {"train": "data/train.csv", "test": "/kaggle/input/competitions/map-charting-student-math-misunderstandings/test.csv",
                 "format": "classification", "id_column": "row_id", "label_columns": ["Category", "Misconception"], "label_join": ":", "group_by_prompt": False},
        "prompt": {"max_length": 256, "truncation": "per_component",
                   "text_template": "Question: {QuestionText}\nAnswer: {MC_Answer}\nStudent explanation: {StudentExplanation}",
                   "field_shares": {"StudentExplanation": 2},
                   "question": "Which category and misconception fit the student's explanation?"},
        "submission": {"sample": "data/sample_submission.csv", "top_k": 3},
        "quantization": {"mode": "4bit"},
        "peft": {"method": "lora", "r": 16, "alpha": 32.0, "targets": ["all-linear"]},
        "train": {"optimizer": "adamw_8bit", "batch_size": 8, "learning_rate": 2e-4, "output": "runs/misconceptions", "metric_for_best": "map@3"},
        "wheels": {"dataset_slug": "kit-wheels-map", "dataset_title": "kit-wheels-map"},
        "kernels": {"inference": {"template": "inference", "instances": ["gemma2-base", "peft-lora-classifier"]}},
        "instances": {
            "gemma2-base": {"model_slug": "gemma2-base", "kind": "base", "license": "gemma"},
            "peft-lora-classifier": {"model_slug": "gemma2-misconceptions-adapter", "kind": "adapter"},
        },
    },
    # "Jigsaw - Agile Community Rules Classification" (2025): binary rule_violation, scored by
    # column-averaged ROC AUC over the probability of a violation
    "rules": {
        "kaggle": {"competition": "jigsaw-agile-community-rules"},
        "model": {"name": "Qwen/Qwen2.5-7B-Instruct"},
        # task.head = "label_tokens" reads Yes / No at the answer (the 1st place's head)
        "task": {"kind": "classification", "labels": [], "metric": "auc", "label_tokens": {"0": ["No", " No"], "1": ["Yes", " Yes"]}},
        "data": {"train": "data/train.csv", "test": "/kaggle/input/competitions/jigsaw-agile-community-rules/test.csv",
                 "format": "classification", "id_column": "row_id", "label_columns": ["rule_violation"], "group_by_prompt": False},
        "prompt": {"max_length": 512, "truncation": "head_tail",
                   "text_template": "r/{subreddit}\nRule: {rule}\nViolates: {positive_example_1}\nViolates: {positive_example_2}\n"
                                    "Does not violate: {negative_example_1}\nDoes not violate: {negative_example_2}\nComment: {body}",
                   "field_shares": {"body": 3}, "question": "Does the comment violate the rule? Answer Yes or No."},
        "submission": {"sample": "data/sample_submission.csv", "rank_within": "rule"},
        "quantization": {"mode": "4bit"},
        "peft": {"method": "lora", "r": 16, "alpha": 32.0, "targets": ["all-linear"]},
        "train": {"optimizer": "adamw_8bit", "batch_size": 8, "learning_rate": 1e-4, "output": "runs/rules", "metric_for_best": "auc"},
        # test-time training (the train-predict notebook, `kit data mine-examples`): each test row's labelled
        # examples become training rows for its rule, the rules the training file lacks included
        "test_time": {"examples": {"positive_example_1": 1, "positive_example_2": 1, "negative_example_1": 0, "negative_example_2": 0},
                      "body_column": "body", "group_column": "rule"},
        "wheels": {"dataset_slug": "kit-wheels-rules", "dataset_title": "kit-wheels-rules"},
        "kernels": {"inference": {"template": "inference", "instances": ["qwen2-5-7b-base", "peft-lora-classifier"]}},
        "instances": {
            "qwen2-5-7b-base": {"model_slug": "qwen2-5-7b-base", "kind": "base", "license": "apache-2.0"},
            "peft-lora-classifier": {"model_slug": "qwen-rules-adapter", "kind": "adapter"},
        },
    },
    "sft": {
        "model": {"name": "google/gemma-7b"},
        "task": {"kind": "sft", "labels": []},
        "data": {"train": "data/train.jsonl", "test": "data/test.jsonl", "format": "instructions", "group_by_prompt": False},
        "prompt": {"template": "auto", "max_length": 1024},
        "quantization": {"mode": "4bit"},
        "peft": {"method": "lora", "r": 128, "alpha": 256.0, "targets": ["all-linear"]},
        "train": {"optimizer": "paged_adamw_32bit", "scheduler": "cosine", "warmup_ratio": 0.03, "max_grad_norm": 0.3, "output": "runs/sft", "early_stopping_patience": 3},
        "kernels": {"generate": {"template": "generate", "instances": ["gemma-7b-base", "peft-lora-sft"]}},
        "instances": {
            "gemma-7b-base": {"model_slug": "gemma-7b-base", "kind": "base", "license": "gemma"},
            "peft-lora-sft": {"model_slug": "gemma-sft-adapter", "kind": "adapter"},
        },
    },
}


def preset_values(name: str) -> dict:
    if name not in PRESETS:
        raise ConfigError([f"unknown preset {name!r}{_nearest(name, list(PRESETS))}"], source="--preset")
    return json.loads(json.dumps(PRESETS[name]))

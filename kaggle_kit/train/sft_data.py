"""Instruction rows → causal-LM training examples (loss on the response tokens only).

Prompts come from `kaggle_kit.runtime.generation` (the code generation uses), so the model is
trained on exactly the prompt it will see when it answers.
"""
from __future__ import annotations

from dataclasses import dataclass

from kaggle_kit.runtime.generation import encode_example


class SFTDataset:
    """A torch-style map dataset of {'input_ids', 'labels'}; ``lengths`` for length-grouped batches."""

    def __init__(self, examples: list, ids: list):
        self.examples = examples
        self.ids = ids
        self.lengths = [len(e["input_ids"]) for e in examples]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        e = self.examples[i]
        return {"input_ids": e["input_ids"], "labels": e["labels"]}

    @property
    def num_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def response_tokens(self) -> int:
        return sum(sum(1 for x in e["labels"] if x != -100) for e in self.examples)


def build_sft_examples(rows: list, tokenizer, template: str, max_length: int) -> SFTDataset:
    examples = [
        encode_example(tokenizer, template, r.prompt[0], r.prompt[1] if len(r.prompt) > 1 else "", r.response_a[0], max_length)
        for r in rows
    ]
    return SFTDataset(examples, [r.id for r in rows])


@dataclass
class SFTCollator:
    """Right-pads a batch (to a multiple of ``multiple``): ids with ``pad_id``, labels with -100."""

    pad_id: int
    multiple: int = 8

    def __call__(self, features: list) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.multiple > 1:
            width = -(-width // self.multiple) * self.multiple
        n = len(features)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        labels = torch.full((n, width), -100, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            ids[i, :k] = torch.tensor(f["input_ids"], dtype=torch.long)
            labels[i, :k] = torch.tensor(f["labels"], dtype=torch.long)
            mask[i, :k] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def split_rows(rows: list, *, folds: int, fold: int, val_fraction: float, group_by_prompt: bool, seed: int) -> tuple:
    """(train rows, validation rows) through `kaggle_kit.train.splits` (the classifier path's splitter).

    With ``group_by_prompt``, rows sharing an instruction (self-instruct ``instances``) stay on one
    side. ``val_fraction`` > 0 gives a plain split; else fold ``fold`` of ``folds`` is held out.
    """
    from kaggle_kit.errors import KitError
    from .splits import fold_indices, split_indices

    if len(rows) < 2:
        return list(rows), []
    labels = [None] * len(rows)
    groups = [r.prompt[0] for r in rows] if group_by_prompt else None
    try:
        if val_fraction > 0:
            train_idx, val_idx = split_indices(labels, groups, fractions=(1.0 - val_fraction, val_fraction), seed=seed)
        else:
            train_idx, val_idx = fold_indices(labels, groups, n_folds=folds, fold=fold, seed=seed)
    except ValueError as exc:
        raise KitError(f"cannot split {len(rows)} instruction rows for validation: {exc}; "
                       f"set data.val_fraction (e.g. 0.1) or fewer data.folds") from None
    return [rows[i] for i in train_idx], [rows[i] for i in val_idx]

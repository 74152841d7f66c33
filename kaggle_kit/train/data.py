"""Rows → training examples, through the same `runtime.prompting.Encoder` that inference uses.

- :func:`build_examples`: encodes rows (optionally adding each pairwise row with A/B swapped and the
  label mirrored by `formats.swap_permutation`) into an :class:`EncodedDataset`.
- :class:`PadCollator`: dynamic padding to the longest example of the batch (rounded up to a
  multiple of 8), or fixed padding to ``max_length`` (the seeds' way, for `kit bench train`).
- Length-grouped sampling: the Trainer's `LengthGroupedSampler`, fed the precomputed
  ``EncodedDataset.lengths`` (see `classifier.KitTrainer`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kaggle_kit.runtime.formats import swap_permutation


def label_target(label, num_labels: int, multilabel: bool):
    """A row's label as the model's target: class index, or a 0/1 float vector for multi-label."""
    if multilabel:
        vec = [0.0] * num_labels
        for i in (label if isinstance(label, list) else [label]):
            vec[i] = 1.0
        return vec
    return int(label)


class EncodedDataset:
    """A torch-style map dataset of {'input_ids', 'labels'} items; ``lengths`` for length grouping."""

    def __init__(self, input_ids: list, labels: list, ids: list, swapped: Optional[list] = None):
        self.input_ids = input_ids
        self.labels = labels
        self.ids = ids
        self.swapped = swapped or [False] * len(input_ids)
        self.lengths = [len(x) for x in input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.input_ids[i]}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item

    @property
    def num_tokens(self) -> int:
        return sum(self.lengths)


def build_examples(rows: list, encoder, label_names: list, multilabel: bool = False, swap_augment: bool = False) -> EncodedDataset:
    """Encode rows (and, for pairwise rows with ``swap_augment``, their A/B-swapped mirror)."""
    rows = list(rows)
    swapped_flags = [False] * len(rows)
    if swap_augment and encoder.kind == "pairwise":
        perm = swap_permutation(label_names)
        rows = rows + [r.swapped(perm) for r in rows]
        swapped_flags += [True] * (len(rows) - len(swapped_flags))
    encoded = encoder.encode(rows)
    has_labels = all(r.label is not None for r in rows)
    labels = [label_target(r.label, len(label_names), multilabel) for r in rows] if has_labels else None
    return EncodedDataset([e.input_ids for e in encoded], labels, [r.id for r in rows], swapped_flags)


@dataclass
class PadCollator:
    """Pads a list of items to a batch. ``pad_to``: a fixed length (else the batch's longest)."""

    pad_token_id: int
    multilabel: bool = False
    pad_to: Optional[int] = None
    multiple_of: int = 8
    padding_side: str = "right"

    def __call__(self, items: list) -> dict:
        import torch

        longest = max(len(x["input_ids"]) for x in items)
        if self.pad_to:
            width = max(self.pad_to, longest)
        else:
            m = self.multiple_of or 1
            width = -(-longest // m) * m
        ids = torch.full((len(items), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for b, x in enumerate(items):
            seq = torch.as_tensor(x["input_ids"], dtype=torch.long)
            n = len(seq)
            if self.padding_side == "left":
                ids[b, width - n:] = seq
                mask[b, width - n:] = 1
            else:
                ids[b, :n] = seq
                mask[b, :n] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if "labels" in items[0]:
            dtype = torch.float32 if self.multilabel else torch.long
            batch["labels"] = torch.tensor([x["labels"] for x in items], dtype=dtype)
        return batch

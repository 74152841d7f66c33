"""Distillation: a student trained on a teacher's logits as well as the hard labels (``[distill]`` in kit.toml).

The loss per training example i (Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural Network":
the KL term is scaled by T² so its gradients keep their size as T changes)::

    has_i:  (1 - alpha) * CE(s_i, y_i) + alpha * T² * KL(softmax(t_i / T) || softmax(s_i / T)) + w * aux(s_i, t_i)
    else:   CE(s_i, y_i)                                     (a row without a teacher value: hard label only)

averaged over the batch; ``aux`` (``logit_loss``) is the MSE or 1 − cosine between the row-centred logits of
student and teacher (WSDM 2024 1st place trained its student with cross-entropy + KL + cosine on the logits).
Multi-label tasks: per-class binary cross-entropy and Bernoulli KL of sigmoid(z / T), averaged over classes.

It works on the student's **class logits** whatever head produced them (``outputs.logits`` of the model the
Trainer calls): :func:`distill_trainer` wraps any Trainer class's ``compute_loss``, so a head that maps
label tokens to class logits composes with it. Evaluation (no teacher columns in the batch) is untouched:
checkpoints are chosen on the hard labels.

Swap augmentation: an example trained with responses A and B swapped gets its teacher row mirrored by the
same permutation as its label (:func:`runtime.formats.swap_permutation`), as the engine mirrors TTA passes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from kaggle_kit.errors import KitError

TEACHER_KEY = "teacher_logits"
HAS_KEY = "teacher_has"


@dataclass
class DistillSettings:
    alpha: float = 0.5
    temperature: float = 2.0
    logit_loss: str = "none"
    logit_weight: float = 0.0
    multilabel: bool = False


@dataclass
class DistillData:
    """What the data phase hands the trainer and the manifest: the settings, the wrapped training set, the record."""

    settings: DistillSettings
    train: object
    record: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- the loss


def distill_loss(student, labels, teacher, has, s: DistillSettings):
    """The batch's loss (a scalar tensor): see the module's docstring. ``student`` / ``teacher``: rows × classes
    logits (teacher rows without a value may hold anything); ``has``: bool per row; ``labels``: class indices
    (multi-label: 0/1 floats)."""
    import torch
    import torch.nn.functional as F

    z = student.float()
    t = torch.nan_to_num(teacher.to(z.device).float())
    has = has.to(z.device).bool()
    T = float(s.temperature)
    if s.multilabel:
        hard = F.binary_cross_entropy_with_logits(z, labels.to(z.device).float(), reduction="none").mean(dim=-1)
        pt, ls, l1s = torch.sigmoid(t / T), F.logsigmoid(z / T), F.logsigmoid(-z / T)
        lt, l1t = F.logsigmoid(t / T), F.logsigmoid(-t / T)
        kl = (pt * (lt - ls) + (1 - pt) * (l1t - l1s)).mean(dim=-1)
    else:
        hard = F.cross_entropy(z, labels.to(z.device).long(), reduction="none")
        log_t, log_s = F.log_softmax(t / T, dim=-1), F.log_softmax(z / T, dim=-1)
        kl = (log_t.exp() * (log_t - log_s)).sum(dim=-1)
    soft = s.alpha * T * T * kl + s.logit_weight * logit_term(z, t, s.logit_loss, s.multilabel)
    per_row = torch.where(has, (1.0 - s.alpha) * hard + soft, hard)
    return per_row.mean()


def logit_term(z, t, kind: str, multilabel: bool = False):
    """Per-row MSE or 1 − cosine similarity of the row-centred logits (multi-label: the logits as they are); zeros for 'none'."""
    import torch
    import torch.nn.functional as F

    if kind == "none":
        return torch.zeros(z.shape[0], device=z.device)
    if not multilabel:
        z, t = z - z.mean(dim=-1, keepdim=True), t - t.mean(dim=-1, keepdim=True)
    if kind == "mse":
        return ((z - t) ** 2).mean(dim=-1)
    return 1.0 - F.cosine_similarity(z, t, dim=-1, eps=1e-8)


def class_logits(outputs):
    """The student's class logits from a model's outputs (a ModelOutput, a dict or a tuple)."""
    if isinstance(outputs, dict) or hasattr(outputs, "keys"):
        return outputs["logits"]
    return outputs[1] if isinstance(outputs, (tuple, list)) and len(outputs) > 1 else outputs[0]


# --------------------------------------------------------------------------- data


class DistillDataset:
    """The training set with each example's teacher row (mirrored for swapped examples) and whether it has one."""

    def __init__(self, base, teacher: np.ndarray, has: np.ndarray):
        self.base, self.teacher, self.has = base, teacher, has

    def __len__(self) -> int:
        return len(self.base)

    def __getattr__(self, name):  # lengths, ids, labels, swapped, num_tokens, input_ids of the wrapped set
        if name in ("base", "teacher", "has"):
            raise AttributeError(name)
        return getattr(self.base, name)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        item[TEACHER_KEY] = self.teacher[i].tolist()
        item[HAS_KEY] = bool(self.has[i])
        return item


class TeacherCollator:
    """Takes the teacher columns off the items, lets ``inner`` (the padding collator, behind the Trainer's column
    filter) build the batch, and adds them back as tensors."""

    def __init__(self, inner: Callable):
        self.inner = inner

    def __call__(self, items: list) -> dict:
        import torch

        if not items or TEACHER_KEY not in items[0]:
            return self.inner(items)
        teacher = [x[TEACHER_KEY] for x in items]
        has = [x[HAS_KEY] for x in items]
        batch = self.inner([{k: v for k, v in x.items() if k not in (TEACHER_KEY, HAS_KEY)} for x in items])
        batch[TEACHER_KEY] = torch.tensor(teacher, dtype=torch.float32)
        batch[HAS_KEY] = torch.tensor(has, dtype=torch.bool)
        return batch


def teacher_rows(train_ds, teacher, labels: list, kind: str) -> tuple:
    """(rows × labels teacher values per training example, bool has-a-value per example): each example's id looked
    up; a swapped example (``train_ds.swapped``) gets its row mirrored by the label permutation."""
    from kaggle_kit.runtime.formats import swap_permutation

    values, has = teacher.rows_for(train_ds.ids)
    perm = swap_permutation(labels) if kind == "pairwise" else list(range(len(labels)))
    swapped = np.asarray(getattr(train_ds, "swapped", [False] * len(train_ds)), dtype=bool)
    values[swapped] = values[swapped][:, perm]
    return values, has


def prepare(cfg, labels: list, kind: str, multilabel: bool, train_ds, say: Callable) -> Optional[DistillData]:
    """The data phase's part: the teacher file(s) read and checked against the labels, the training rows without a
    teacher value counted and listed (refused with ``distill.missing = "error"``), the training set wrapped.
    None when ``[distill] teacher`` is empty."""
    from kaggle_kit.runtime.teacher import TeacherError, load_teachers, record

    d = cfg.distill
    paths = [p for p in [d.teacher, *d.teachers] if p]
    if not paths:
        return None
    if not 0.0 <= d.alpha <= 1.0 or d.temperature <= 0 or d.logit_weight < 0:
        raise KitError(f"[distill] alpha = {d.alpha} must lie in [0, 1], temperature = {d.temperature} be > 0 and logit_weight = "
                       f"{d.logit_weight} be >= 0")
    if d.logit_loss != "none" and d.logit_weight <= 0:
        raise KitError(f"distill.logit_loss = {d.logit_loss!r} needs distill.logit_weight > 0 (it is {d.logit_weight})")
    try:
        teacher = load_teachers(paths, labels, list(d.weights) or None, multilabel, cfg.data.id_column)
    except TeacherError as exc:
        raise KitError(f"distill.teacher: {exc}") from None
    values, has = teacher_rows(train_ds, teacher, labels, kind)
    originals = [i for i, sw in zip(train_ds.ids, getattr(train_ds, "swapped", [False] * len(train_ds))) if not sw]
    missing = [str(i) for i, h, sw in zip(train_ds.ids, has, getattr(train_ds, "swapped", [False] * len(has))) if not h and not sw]
    shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
    if missing and d.missing == "error":
        raise KitError(f"distill.teacher: {len(missing)} of {len(originals)} training rows have no teacher value in {', '.join(paths)}: "
                       f"{shown}; predict them (kit predict --logits over the whole training file) or set distill.missing = \"hard\" "
                       f"to train them on their hard labels")
    if missing:
        say(f"distill: {len(missing)} of {len(originals)} training rows have no teacher value and train on their hard labels "
            f"(distill.missing = \"hard\"): {shown}")
    s = DistillSettings(d.alpha, d.temperature, d.logit_loss, d.logit_weight, multilabel)
    say(f"distill: teacher {' + '.join(paths)} ({teacher.meta.get('values', 'logits')}) on {len(originals) - len(missing)} of "
        f"{len(originals)} training rows; loss (1 - {d.alpha:g}) CE + {d.alpha:g} T² KL at T = {d.temperature:g}"
        + (f" + {d.logit_weight:g} {d.logit_loss}" if d.logit_loss != "none" else ""))
    rec = {"teachers": record(teacher, paths), "weights": list(d.weights), "alpha": d.alpha, "temperature": d.temperature,
           "logit_loss": d.logit_loss, "logit_weight": d.logit_weight, "missing": d.missing,
           "rows_with_teacher": len(originals) - len(missing), "missing_rows": len(missing), "missing_ids": missing}
    return DistillData(s, DistillDataset(train_ds, values, has), rec)


# --------------------------------------------------------------------------- the trainer


def distill_trainer(base, settings: DistillSettings):
    """A subclass of the Trainer class ``base`` whose loss on batches with teacher columns is :func:`distill_loss`
    on the class logits the model returns; other batches (evaluation) keep ``base``'s loss."""

    class Distill(base):
        loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides it over gradient accumulation

        def _get_collator_with_removed_columns(self, data_collator, description=None):
            return TeacherCollator(super()._get_collator_with_removed_columns(data_collator, description))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            teacher, has = inputs.pop(TEACHER_KEY, None), inputs.pop(HAS_KEY, None)
            if teacher is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            _, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
            loss = distill_loss(class_logits(outputs), inputs["labels"], teacher, has, settings)
            return (loss, outputs) if return_outputs else loss

    Distill.__name__ = Distill.__qualname__ = f"Distill{base.__name__}"
    return Distill

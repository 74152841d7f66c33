"""The label-token head in training (``task.head = "label_tokens"``): setup before weights load, and the loss.

- :func:`adjust_plan`: the base as a causal LM (a named model's causal folder), single-label tasks only;
- :func:`setup`: the verbalizations checked against the tokenizer (``runtime.label_tokens.resolve_verbalizations``),
  the question and the frame (chat template or plain) — all before any weights load;
- :func:`label_token_loss` / :func:`compute_loss`: cross-entropy over the classes' log-sum-exp of their tokens'
  logits at the answer position (not over the vocabulary, not on the prompt). Only that position's vocabulary
  logits are computed (``runtime.label_tokens.answer_logits``): memory stays that of a classifier;
- :func:`record`: what the manifest keeps (head, verbalizations, token ids, frame), checked again at load;
- :func:`zero_shot_manifest`: the manifest of a base with no adapter (``kit predict --zero-shot``).

Sources: Jigsaw Agile Community Rules 1st place (loss on the Yes/No tokens only) and WSDM Cup 3rd place
(causal LM, loss on the A/B tokens); see runtime/label_tokens.py.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kaggle_kit.errors import KitError


@dataclass
class LabelSetup:
    """The label-token head of one run, decided before weights load."""

    verbalizations: dict
    token_ids: list
    question: str
    frame: str
    frame_before: str
    frame_after: str
    notes: list = field(default_factory=list)

    def spec_overrides(self) -> dict:
        return {"frame": self.frame, "frame_before": self.frame_before, "frame_after": self.frame_after}

    def record(self) -> dict:
        """manifest.task['label_tokens']."""
        return {"verbalizations": {k: list(v) for k, v in self.verbalizations.items()},
                "token_ids": [list(x) for x in self.token_ids], "question": self.question, "frame": self.frame}


def wanted(cfg) -> bool:
    head = getattr(cfg.task, "head", "seq_cls")
    if head not in ("seq_cls", "label_tokens"):
        raise KitError(f"task.head = {head!r}: use 'seq_cls' (a new linear head) or 'label_tokens' (the LM head's own tokens)")
    return head == "label_tokens"


def causal_base(cfg, base, name: str):
    """(base path or hub id, its config) as a causal LM: a named model's causal folder; checked (config only)."""
    from transformers import AutoConfig

    from kaggle_kit.runtime.basecheck import BaseCheckError, check_base_config

    if not cfg.model.path:  # a named model (tiny, smollm2): its causal-LM folder (the train notebook sets model.path)
        from kaggle_kit.models.named import is_named, named_model_dir

        if cfg.model.name == "minilm":
            raise KitError("task.head = 'label_tokens' reads a causal LM's vocabulary; --model minilm is an encoder (BERT): "
                           "use --model smollm2 or tiny, or task.head = 'seq_cls'")
        if is_named(cfg.model.name):
            base = named_model_dir(cfg.model.name, causal=True)
    config = AutoConfig.from_pretrained(str(base))
    where = "model.path" if cfg.model.path else "model.name"
    try:
        check_base_config(base, config.to_dict(), max_length=cfg.prompt.max_length,
                          freeze_layers=int(cfg.peft.freeze_layers or 0), causal=True, where=where)
    except BaseCheckError as exc:
        raise KitError(f"task.head = 'label_tokens': {exc}") from None
    return base, config


def adjust_plan(cfg, plan):
    """The plan with a causal-LM base; multi-label tasks refused (one class per row is read at the answer)."""
    if plan.multilabel:
        raise KitError("task.head = 'label_tokens' scores one class per row at the answer position; this task is multi-label: "
                       "use task.head = 'seq_cls'")
    base, config = causal_base(cfg, plan.base_path, plan.base_name)
    return dataclasses.replace(plan, base_path=Path(base) if isinstance(base, Path) else base, base_config=config)


def setup(cfg, tokenizer, labels: list, kind: str, say: Callable = print) -> LabelSetup:
    """Verbalizations (checked: one token each, no token shared), the question and the frame, for ``tokenizer``."""
    from kaggle_kit.runtime.label_tokens import default_question, frame_texts, resolve_verbalizations

    verbal, ids, notes = resolve_verbalizations(tokenizer, labels, dict(cfg.task.label_tokens or {}))
    question = cfg.prompt.question or default_question(kind, labels, verbal)
    frame, before, after = frame_texts(tokenizer, cfg.prompt.chat_template, question, cfg.prompt.answer_cue)
    for note in notes:
        say(note)
    shown = "; ".join(f"{lab}: {verbal[lab]} = {ids[i]}" for i, lab in enumerate(labels))
    say(f"label tokens: {shown}; frame {'chat (the tokenizer chat template)' if frame == 'chat' else 'plain'}, "
        f"question {question!r}")
    return LabelSetup(verbal, ids, question, frame, before, after, notes)


# --------------------------------------------------------------------------- the loss


def label_token_loss(scores, labels):
    """Mean cross-entropy of class ``scores`` (rows x classes: each class's log-sum-exp of its token logits)."""
    import torch

    return torch.nn.functional.cross_entropy(scores.float(), labels.long())


def compute_loss(model, inputs: dict, token_ids: list, return_outputs: bool = False):
    """The Trainer's loss for the label-token head: (loss, {'logits': class scores}) or the loss."""
    from kaggle_kit.runtime.label_tokens import class_logits

    labels = inputs.get("labels")
    scores = class_logits(model, inputs["input_ids"], inputs["attention_mask"], token_ids)
    loss = label_token_loss(scores, labels) if labels is not None else None
    out = {"loss": loss, "logits": scores} if loss is not None else {"logits": scores}
    return (loss, out) if return_outputs else loss


# --------------------------------------------------------------------------- zero-shot


def zero_shot_manifest(cfg, base, base_name: str, tokenizer, kind: str, labels: list, fmt: str, submission: dict,
                       say: Callable = print):
    """A manifest for scoring ``base`` with no adapter through the prediction path (merged-folder style)."""
    from kaggle_kit import __version__
    from kaggle_kit.data.spec import prompt_spec, text_columns
    from kaggle_kit.runtime.manifest import Manifest, library_versions

    lt = setup(cfg, tokenizer, labels, kind, say)
    spec = prompt_spec(cfg, kind, **lt.spec_overrides())
    return Manifest(
        task={"kind": kind, "labels": list(labels), "metric": cfg.task.metric, "format": fmt, "head": "label_tokens",
              "label_tokens": lt.record(), "problem_type": "single_label_classification",
              "text_columns": list(text_columns(cfg)), "label_columns": list(cfg.data.label_columns),
              "label_join": cfg.data.label_join, "id_column": cfg.data.id_column, "submission": submission,
              "candidates_by": "", "zero_shot": True},
        prompt=spec.to_dict(),
        base_model={"name": base_name, "path": str(base), "hub_id": ""},
        quantization={"mode": cfg.quantization.mode if cfg.quantization.mode != "none" else "none"},
        peft={"method": "none"},
        training={"zero_shot": True},
        versions=library_versions(),
        kit_version=__version__,
    )


def zero_shot_predict(cfg, data_path, out_path, *, log: Callable = print, progress: bool = True, **predict_kwargs):
    """`kit predict --zero-shot`: the base (``model.name`` / ``model.path``) with no adapter scores ``data_path``
    through the label-token head and the prediction engine (task, prompt, label tokens from ``cfg``); writes the
    submission and, on labelled data, the metric (runtime.infer.predict_file)."""
    from kaggle_kit.data.spec import read_kwargs
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.infer import predict_file
    from kaggle_kit.runtime.modeling import load_tokenizer

    from .plan import resolve_base
    from .task import submission_spec

    kwargs = read_kwargs(cfg, label_names=list(cfg.task.labels) or None, require_labels=False)
    ds = read_dataset(data_path, cfg.data.format, **kwargs)
    if ds.kind in ("instructions", "multilabel"):
        raise KitError(f"{data_path}: {ds.kind} data; --zero-shot scores one class per row (pairwise or classification)")
    labels = list(ds.label_names) or list(cfg.task.labels)
    if len(labels) < 2:
        raise KitError(f"{data_path}: no labels in the file and task.labels = {list(cfg.task.labels)}; set task.labels "
                       f"(the classes, in output order) in kit.toml or with --set")
    base, name = resolve_base(cfg, len(labels), log=log)
    base, _ = causal_base(cfg, base, name)
    tok = load_tokenizer(base)
    submission = submission_spec(cfg, ds, ds.kind, labels)
    manifest = zero_shot_manifest(cfg, base, name, tok, ds.kind, labels, ds.format, submission, say=log)
    log(f"zero-shot: {name} ({base}) with no adapter, label-token head")
    return predict_file(base, data_path, out_path, manifest=manifest, log=log, progress=progress, **predict_kwargs)

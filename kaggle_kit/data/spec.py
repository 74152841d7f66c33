"""How `[data]` and `[prompt]` of a KitConfig become reader arguments and a prompt spec: one place
for `kit train`, `kit data inspect|prepare|preview` (prediction reads the same from the manifest)."""
from __future__ import annotations


def text_columns(cfg) -> tuple:
    """The columns the model reads: the fields of ``prompt.text_template``, else ``data.text_columns``."""
    from kaggle_kit.runtime.templates import template_fields

    return tuple(template_fields(cfg.prompt.text_template) or cfg.data.text_columns)


def read_kwargs(cfg, **extra) -> dict:
    """Keyword arguments of :func:`kaggle_kit.runtime.formats.read_dataset` from ``cfg``."""
    kinds = ("classification", "multilabel")
    out = dict(
        label_names=(list(cfg.task.labels) or None) if cfg.task.kind in kinds else None,
        text_columns=text_columns(cfg), label_columns=tuple(cfg.data.label_columns), label_join=cfg.data.label_join,
        id_column=cfg.data.id_column, skip_bad_rows=cfg.data.skip_bad_rows, multilabel=cfg.task.kind == "multilabel",
        seed=cfg.data.seed,
    )
    out.update(extra)
    return out


def prompt_spec(cfg, kind: str, **overrides):
    """The :class:`~kaggle_kit.runtime.prompting.PromptSpec` of ``[prompt]`` for a task ``kind``
    (shares cut to the kind's number of components; the template only for classification kinds)."""
    from kaggle_kit.runtime.prompting import PromptSpec

    n_comp = 3 if kind == "pairwise" else 2 if kind == "instructions" else 1
    shares = list(cfg.prompt.shares)
    values = dict(
        template=cfg.prompt.template, max_length=int(cfg.prompt.max_length), truncation=cfg.prompt.truncation,
        shares=shares if kind == "pairwise" else (shares[:n_comp] if len(shares) >= n_comp else [1] * n_comp),
        head_fraction=cfg.prompt.head_fraction,
        text_template=cfg.prompt.text_template if kind in ("classification", "multilabel") else "",
        field_shares=dict(cfg.prompt.field_shares),
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    return PromptSpec(**values)

"""Prompt templates over a data file's columns (``[prompt] text_template``).

A template such as ``"Question: {QuestionText}\\nAnswer: {MC_Answer}\\nExplanation: {StudentExplanation}"``
is split into literal pieces and fields: ``literal₀ {field₀} literal₁ {field₁} … literalₙ``. The
:class:`~kaggle_kit.runtime.prompting.Encoder` tokenizes each literal once (as a marker) and each
field's cell on its own, so every field is truncated on its own token budget (``field_shares``,
water-filled: each field keeps a floor, what a short field leaves unused flows on) and the result
stays token-exact and within ``max_length`` like the named templates.

Fields follow Python's ``str.format`` syntax: ``{name}`` names a column; ``{{`` and ``}}`` are
literal braces. Format specs, conversions, attribute access and repeated fields are refused.
"""
from __future__ import annotations

import string
from dataclasses import dataclass

from .problems import DataError


class TemplateError(DataError):
    """A text_template that cannot be used; the message names the problem and the fix."""


@dataclass(frozen=True)
class Template:
    """A parsed template: ``literals[i]`` precedes ``fields[i]``; ``trailer`` follows the last field."""

    source: str
    literals: tuple
    fields: tuple
    trailer: str

    def render(self, values: dict) -> str:
        """The untruncated text for a row's field values (missing fields as empty text)."""
        return "".join(lit + str(values.get(f, "")) for lit, f in zip(self.literals, self.fields)) + self.trailer


def parse_template(text: str) -> Template:
    """Split ``text`` into literals and fields; :class:`TemplateError` for anything but plain ``{column}`` fields."""
    if not isinstance(text, str) or not text.strip():
        raise TemplateError("prompt.text_template is empty; write the columns as {column}, e.g. 'Text: {body}'")
    literals, fields = [], []
    pending = ""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"prompt.text_template {text!r}: {exc}; write literal braces as '{{{{' and '}}}}'") from None
    for literal, name, spec, conversion in parts:
        pending += literal
        if name is None:
            continue
        if not name or spec or conversion or not all(ch.isalnum() or ch in "_- " for ch in name):
            raise TemplateError(
                f"prompt.text_template {text!r}: field {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not a plain column name; write {{column}} (no format specs, "
                f"conversions or indexing)")
        if name in fields:
            raise TemplateError(f"prompt.text_template {text!r}: field {{{name}}} appears twice; use each column once")
        literals.append(pending)
        fields.append(name)
        pending = ""
    if not fields:
        raise TemplateError(f"prompt.text_template {text!r} names no column; write the columns as {{column}}")
    return Template(text, tuple(literals), tuple(fields), pending)


def template_fields(text: str) -> list:
    """The column names a template reads, in order ([] for an empty template)."""
    return list(parse_template(text).fields) if text else []


def field_shares(template: Template, shares: dict) -> list:
    """Relative budgets of the template's fields (1 for fields not named in ``shares``);
    a share naming no field of the template is a :class:`TemplateError`."""
    shares = dict(shares or {})
    unknown = [k for k in shares if k not in template.fields]
    if unknown:
        raise TemplateError(f"prompt.field_shares names {unknown}, which the template does not use; its fields: {list(template.fields)}")
    return [float(shares.get(f, 1.0)) for f in template.fields]

"""Prompt formatting and truncation, measured in tokens of the real tokenizer.

An example is laid out as ``[specials] marker₀ component₀ marker₁ component₁ … [specials]``; a
pairwise row has three components (prompt, response A, response B), a classification row one
(its text columns). Each component is the token list of its turns joined by a separator.

Truncation strategies (``PromptSpec.truncation``); the result is never longer than ``max_length``
including special tokens, markers are always kept, and no strategy drops a whole component while
budget remains for part of it (every non-empty component keeps at least a floor of tokens):

- ``per_component``: a token budget per component in proportion to ``shares``; what a short
  component leaves unused flows to the others (water-filling); each shortened component keeps its head.
- ``head_tail``: the same budgets, but a shortened component keeps its first and last tokens
  (``head_fraction`` of them from the start), so endings and conclusions survive. (Cutting the
  middle of the *whole* text, as seed 000 did, is what drops whole responses.)
- ``turn_aware``: turns aligned from the newest; the newest turns are kept whole while they fit,
  the turn that no longer fits is split between its prompt/A/B parts by the shares, older turns
  are dropped. A floor of tokens stays held for each component until it has kept some text, so
  a component whose text lies in older turns is not starved by whole newer turns of the others.

With ``PromptSpec.text_template`` (classification tasks) the layout comes from a template over the
data's columns (:mod:`runtime.templates`): each ``{field}`` is a component with its own budget
(``field_shares``), the template's literal text the markers, and any text after the last field a
trailer kept whole.

Training, local prediction and the Kaggle notebook all call :class:`Encoder`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

TRUNCATIONS = ("per_component", "head_tail", "turn_aware")

# Markers of each named template, by task kind. Saved by name in the adapter manifest.
TEMPLATES = {
    "kit-v1": {
        "pairwise": ("<prompt>: ", "\n\n<response_a>: ", "\n\n<response_b>: "),
        "classification": ("<text>: ",),
        "multilabel": ("<text>: ",),
        "instructions": ("<instruction>: ", "\n\n<response>: "),
    },
}
TURN_SEPARATOR = "\n"
MIN_COMPONENT_TOKENS = 16  # floor kept of every non-empty component when the budget allows


@dataclass
class PromptSpec:
    template: str = "kit-v1"
    max_length: int = 1024
    truncation: str = "per_component"
    shares: list = field(default_factory=lambda: [1, 1, 1])
    head_fraction: float = 0.5
    text_template: str = ""  # classification: a template over the data's columns (runtime.templates)
    field_shares: dict = field(default_factory=dict)  # text_template: relative budget per field (default 1)
    # label-token head (runtime/label_tokens.py): '' (none), 'chat' or 'plain'; the fixed texts around the row
    # (chat template turns, question, answer cue), recorded so inference never re-derives them. With a frame the
    # row ends at the answer position: no special tokens after it ('chat': none before it either, the template
    # text holds them; 'plain': the tokenizer's own, e.g. <bos>).
    frame: str = ""
    frame_before: str = ""
    frame_after: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PromptSpec":
        keys = ("template", "max_length", "truncation", "shares", "head_fraction", "text_template", "field_shares",
                "frame", "frame_before", "frame_after")
        known = {k: data[k] for k in keys if k in data}
        return cls(**known)


@dataclass
class Encoded:
    """One example's token ids, with each component's length before and after truncation."""

    input_ids: list
    lengths: tuple
    kept: tuple

    @property
    def truncated(self) -> bool:
        return self.lengths != self.kept


def components_of(row, kind: str) -> list:
    """The row's components as lists of turns: [prompt, A, B] (pairwise), [instruction + input,
    output] (instructions) or [text turns] (classification)."""
    if kind == "pairwise":
        return [row.prompt, row.response_a, row.response_b]
    if kind == "instructions":
        return [row.prompt, row.response_a]
    return [row.prompt]


def waterfill(lengths: list, budget: int, shares: list, floor: int = MIN_COMPONENT_TOKENS) -> list:
    """Split ``budget`` tokens over components of ``lengths``.

    Each non-empty component first gets ``min(length, floor)`` (less when the budget is too small
    for that, but at least one token while any remains); the rest is shared in proportion to
    ``shares`` and what a component cannot use flows to the others.
    """
    n = len(lengths)
    alloc = [0] * n
    remaining = max(0, int(budget))
    nonempty = [i for i in range(n) if lengths[i] > 0]
    if not nonempty or remaining == 0:
        return alloc
    per = min(floor, remaining // len(nonempty))
    if per == 0:  # fewer tokens than components: one each, in order
        for i in nonempty[:remaining]:
            alloc[i] = 1
        return alloc
    for i in nonempty:
        alloc[i] = min(lengths[i], per)
        remaining -= alloc[i]
    active = [i for i in nonempty if alloc[i] < lengths[i]]
    while active and remaining > 0:
        weights = [max(float(shares[i]) if i < len(shares) else 1.0, 0.0) for i in active]
        total = sum(weights)
        if total <= 0:
            weights, total = [1.0] * len(active), float(len(active))
        grants = [min(lengths[i] - alloc[i], int(remaining * w / total)) for i, w in zip(active, weights)]
        if sum(grants) == 0:  # rounding left less than one token each: hand out singles by weight
            order = sorted(range(len(active)), key=lambda k: -weights[k])
            for k in order:
                if remaining == 0:
                    break
                alloc[active[k]] += 1
                remaining -= 1
        else:
            for i, g in zip(active, grants):
                alloc[i] += g
                remaining -= g
        active = [i for i in active if alloc[i] < lengths[i]]
    return alloc


def _cut(ids: list, keep: int, mode: str, head_fraction: float) -> list:
    if keep >= len(ids):
        return ids
    if keep <= 0:
        return []
    if mode == "head_tail":
        head = int(round(keep * head_fraction))
        tail = keep - head
        return ids[:head] + (ids[len(ids) - tail:] if tail else [])
    return ids[:keep]


class Encoder:
    """Formats and truncates rows into token ids for one tokenizer and :class:`PromptSpec`."""

    def __init__(self, tokenizer, spec: PromptSpec, kind: str = "pairwise"):
        if spec.truncation not in TRUNCATIONS:
            raise ValueError(f"truncation {spec.truncation!r} is not one of {TRUNCATIONS}")
        if spec.template not in TEMPLATES:
            raise ValueError(f"prompt template {spec.template!r} is unknown; known: {sorted(TEMPLATES)}")
        self.layout = None  # a runtime.templates.Template when spec.text_template is set
        self.shares = list(spec.shares)
        trailer = ""
        if spec.text_template:
            from .templates import field_shares, parse_template

            if kind not in ("classification", "multilabel"):
                raise ValueError(f"prompt.text_template applies to classification tasks; this task is {kind!r} (leave it empty)")
            self.layout = parse_template(spec.text_template)
            markers, trailer = self.layout.literals, self.layout.trailer
            self.shares = field_shares(self.layout, spec.field_shares)
        else:
            markers = TEMPLATES[spec.template].get(kind)
        if markers is None:
            raise ValueError(f"prompt template {spec.template!r} has no layout for task kind {kind!r}")
        self.tokenizer = tokenizer
        self.spec = spec
        self.kind = kind
        self._backend = _plain_backend(tokenizer)
        self.markers = [self._ids(m) for m in markers]
        self.trailer = self._ids(trailer)
        self.separator = self._ids(TURN_SEPARATOR)
        self.prefix, self.suffix = special_tokens_around(tokenizer)
        if spec.frame:  # label-token head: the answer position is the row's last token
            if spec.frame not in ("chat", "plain"):
                raise ValueError(f"prompt frame {spec.frame!r} is not one of chat, plain")
            self.prefix = (list(self.prefix) if spec.frame == "plain" else []) + self._ids(spec.frame_before)
            self.suffix = self._ids(spec.frame_after)
        fixed = len(self.prefix) + len(self.suffix) + len(self.trailer) + sum(len(m) for m in self.markers)
        self.budget = spec.max_length - fixed
        if self.budget < len(self.markers):
            raise ValueError(
                f"prompt.max_length = {spec.max_length} leaves no room for text after {fixed} tokens of "
                f"markers and special tokens; raise it"
            )

    def _ids(self, text: str) -> list:
        return list(self._batch_ids([text])[0]) if text else []

    def _batch_ids(self, texts: list) -> list:
        """Token ids of each text, without special tokens, truncation or padding.

        A fast tokenizer's Rust backend is called directly (``encode_batch_fast``: no offsets, no
        per-encoding Python conversion; about 20% faster than the transformers wrapper, same ids);
        other tokenizers go through their ``__call__``.
        """
        if not texts:
            return []
        if self._backend is not None:
            return [e.ids for e in self._backend(texts, add_special_tokens=False)]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    # ------------------------------------------------------------------ public
    def encode(self, rows: list, chunk: int = 1024) -> list:
        """Encode rows (in order). Tokenizes all turns of a chunk in one batched call."""
        out = []
        for start in range(0, len(rows), chunk):
            out.extend(self._encode_chunk(rows[start:start + chunk]))
        return out

    def encode_one(self, row) -> Encoded:
        return self._encode_chunk([row])[0]

    @property
    def fields(self) -> list:
        """The template's column names (text_template), else [] (the row's text columns are turns)."""
        return list(self.layout.fields) if self.layout else []

    def components(self, row) -> list:
        """The row's components as lists of turns; with a text_template one component per field."""
        if self.layout is not None:
            values = list(row.prompt) + [""] * (len(self.layout.fields) - len(row.prompt))
            return [[v] for v in values[: len(self.layout.fields)]]
        return components_of(row, self.kind)

    def text(self, row) -> str:
        """The untruncated text of a row, as the model would read it (for display)."""
        if self.layout is not None:
            body = self.layout.render(dict(zip(self.layout.fields, row.prompt)))
        else:
            markers = TEMPLATES[self.spec.template][self.kind]
            body = "".join(m + TURN_SEPARATOR.join(turns) for m, turns in zip(markers, components_of(row, self.kind)))
        return self.spec.frame_before + body + self.spec.frame_after

    def pieces(self, encoded: "Encoded") -> list:
        """Each component's kept token ids, cut back out of ``encoded.input_ids``."""
        out, pos = [], len(self.prefix)
        for marker, size in zip(self.markers, encoded.kept):
            pos += len(marker)
            out.append(list(encoded.input_ids[pos:pos + size]))
            pos += size
        return out

    def decode(self, encoded: "Encoded") -> str:
        """The exact text the model sees (special tokens included), for `kit data preview`."""
        ids = list(encoded.input_ids)
        if hasattr(self.tokenizer, "decode"):
            return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return "".join(chr(i) for i in ids)

    def tokenize(self, rows: list) -> list:
        """Per row, per component, the token ids of each turn (one batched tokenizer call).

        With :meth:`assemble` this lets several encoders (e.g. one per truncation strategy, same
        tokenizer) share one tokenization, as `kit data inspect` does.
        """
        comps = [self.components(r) for r in rows]
        flat = [t for c in comps for turns in c for t in turns]
        ids = self._batch_ids(flat)
        out = []
        pos = 0
        for c in comps:
            turn_ids = []
            for turns in c:
                turn_ids.append(ids[pos:pos + len(turns)])
                pos += len(turns)
            out.append(turn_ids)
        return out

    def assemble(self, turn_ids: list) -> Encoded:
        """One row's :meth:`tokenize` output → its truncated :class:`Encoded` under this spec."""
        return self._assemble(turn_ids)

    # ------------------------------------------------------------------ internals
    def _encode_chunk(self, rows: list) -> list:
        return [self._assemble(t) for t in self.tokenize(rows)]

    def _join(self, turns: list) -> list:
        if len(turns) == 1:
            return list(turns[0])
        joined: list = []
        for k, t in enumerate(turns):
            if k:
                joined.extend(self.separator)
            joined.extend(t)
        return joined

    def _assemble(self, turn_ids: list) -> Encoded:
        spec = self.spec
        if spec.truncation == "turn_aware":
            pieces, lengths = self._turn_aware(turn_ids)
        else:
            comps = [self._join(t) for t in turn_ids]
            lengths = tuple(len(c) for c in comps)
            if sum(lengths) <= self.budget:
                pieces = comps
            else:
                keep = waterfill(list(lengths), self.budget, self.shares)
                pieces = [_cut(c, k, spec.truncation, spec.head_fraction) for c, k in zip(comps, keep)]
        ids = list(self.prefix)
        for marker, piece in zip(self.markers, pieces):
            ids.extend(marker)
            ids.extend(piece)
        ids.extend(self.trailer)
        ids.extend(self.suffix)
        return Encoded(ids, tuple(lengths), tuple(len(p) for p in pieces))

    def _turn_aware(self, turn_ids: list) -> tuple:
        sep = len(self.separator)
        lengths = tuple(sum(len(t) for t in turns) + sep * max(len(turns) - 1, 0) for turns in turn_ids)
        if sum(lengths) <= self.budget:
            return [self._join(t) for t in turn_ids], lengths
        n_turns = max(len(t) for t in turn_ids)
        kept: list = [[] for _ in turn_ids]  # newest first
        remaining = self.budget
        # a floor of tokens held back for every component with text until it keeps some, so that
        # whole newer turns of one component cannot starve another whose text is older
        text = [sum(len(t) for t in turns) for turns in turn_ids]
        n_text = sum(1 for x in text if x)
        per = min(MIN_COMPONENT_TOKENS, self.budget // n_text) if n_text else 0
        reserve = [min(per, x) for x in text]
        for back in range(1, n_turns + 1):
            parts = [turns[-back] if back <= len(turns) else None for turns in turn_ids]
            cost = [0 if p is None else len(p) + (sep if kept[c] else 0) for c, p in enumerate(parts)]
            held = sum(reserve[c] for c, p in enumerate(parts) if p is None or not len(p))
            if sum(cost) <= remaining - held:
                for c, p in enumerate(parts):
                    if p is not None:
                        kept[c].append(list(p))
                        if len(p):
                            reserve[c] = 0
                remaining -= sum(cost)
                continue
            # the turn that no longer fits: split what is left between its parts, then stop.
            # A component that has kept no text yet starts afresh (its kept empty turns and their
            # separators go) and, if its part here is empty, stands in its newest non-empty older
            # turn: no component with text loses all of it while budget remains for part of it.
            for c, turns in enumerate(turn_ids):
                if not any(kept[c]):
                    kept[c] = []
                    if parts[c] is None or not len(parts[c]):
                        older = [t for t in turns[: max(len(turns) - back, 0)] if len(t)]
                        parts[c] = older[-1] if older else parts[c]
            need = [0 if p is None else len(p) for p in parts]
            fresh = [c for c in range(len(parts)) if need[c] > 0 and not kept[c]]
            extend = [c for c in range(len(parts)) if need[c] > 0 and kept[c]]
            avail = remaining - sep * len(extend)
            if fresh and avail < len(fresh) + len(extend):  # too little for all: text-less ones first
                for c in extend:
                    need[c] = 0
                avail = remaining
            alloc = waterfill(need, max(0, avail), self.shares)
            for c, p in enumerate(parts):
                if p is not None and alloc[c] > 0:
                    kept[c].append(list(p[:alloc[c]]))
            break
        pieces = [self._join(list(reversed(k))) if k else [] for k in kept]
        return pieces, lengths


def _plain_backend(tokenizer):
    """The batch-encode method of a copy of a fast tokenizer's backend with truncation and padding
    off (a tokenizer.json may carry both, e.g. MiniLM's 128), or None for other tokenizers."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", False):
        return None
    try:
        plain = type(backend).from_str(backend.to_str())  # a copy; no import of `tokenizers` needed
        plain.no_truncation()
        plain.no_padding()
        return getattr(plain, "encode_batch_fast", None) or plain.encode_batch
    except Exception:  # an unusual backend: use the tokenizer's own call
        return None


def special_tokens_around(tokenizer) -> tuple:
    """The special tokens the tokenizer puts before and after a text (e.g. Gemma: [bos], []; BERT: [CLS], [SEP])."""
    probe = "x"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    return [], []


def truncation_report(encoded: list) -> dict:
    """Share of rows truncated and per-component kept/total token counts (for `kit data inspect`)."""
    n = len(encoded)
    truncated = sum(1 for e in encoded if e.truncated)
    return {"rows": n, "truncated_rows": truncated, "truncated_share": (truncated / n) if n else 0.0}

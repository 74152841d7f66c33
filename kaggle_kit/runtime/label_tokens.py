"""Label-token classifiers: classes scored with the causal LM's own vocabulary at the answer position.

``task.head = "label_tokens"`` keeps the causal LM and its ``lm_head``: the prompt ends with a question and
an answer cue (the tokenizer's chat template when it has one, else a plain template), and each class maps
to one or more *verbalizations*, strings that are each one token of the tokenizer in use. A class's score
is the log-sum-exp of its tokens' logits at the answer position (the last token of the row); the class
probabilities are the softmax of those scores. The same functions serve training (the loss in
``kaggle_kit.train.label_tokens``), `kit predict`, the notebooks and zero-shot scoring.

This follows the 2025 Kaggle winners' head: Jigsaw Agile Community Rules 1st place (loss on the Yes/No
tokens only, log-odds over Yes/No token variants from one forward pass), WSDM Cup 3rd place (loss on the
A/B tokens of a causal LM), MAP 1st place (one token per candidate label).

Here:

- :func:`default_verbalizations` and :func:`resolve_verbalizations`: the class -> strings map (defaults from
  the label names) and its check: every string one token, no token shared by two classes; errors name the
  class, the string and how it tokenizes;
- :func:`frame_texts`: the fixed text before and after a row's layout (chat template or plain), recorded in
  the prompt spec so inference never re-derives it;
- :func:`class_logits`: one forward pass of the LM body, the last real position's hidden state gathered,
  ``lm_head`` applied to that position only (no full-sequence vocabulary projection), the per-class
  log-sum-exp; :func:`make_classifier` wraps a causal LM so the engine sees a classifier;
- :func:`check_token_ids`: the recorded token ids against the tokenizer at load time;
- :func:`restrict_candidates`: per-group candidate restriction (``task.candidates_by``, MAP 3rd place).
"""
from __future__ import annotations

from typing import Optional

from .problems import DataError

HEADS = ("seq_cls", "label_tokens")
PLAIN_CUE = "Answer:"
_SENTINEL = "\u2063KIT_TEXT\u2063"

# recognised label names -> verbalization candidates (defaults; variants that are not one token are dropped, said)
_A = ["A", " A"]
_B = ["B", " B"]
_TIE = ["tie", " tie", "Tie", " Tie"]
_YES = ["Yes", " Yes", "yes", " yes"]
_NO = ["No", " No", "no", " no"]
PAIRWISE_NAMES = {"winner_model_a": _A, "model_a": _A, "a": _A, "winner_model_b": _B, "model_b": _B, "b": _B,
                  "winner_tie": _TIE, "tie": _TIE}
YES_NAMES = {"1", "true", "yes", "positive", "violation", "1.0"}
NO_NAMES = {"0", "false", "no", "negative", "0.0"}


class LabelTokenError(DataError):
    """Verbalizations that cannot serve as label tokens (multi-token, shared, missing), or that changed."""


def _ids(tokenizer, text: str) -> list:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _pieces(tokenizer, ids: list) -> list:
    return [tokenizer.decode([i]) for i in ids]


# --------------------------------------------------------------------------- verbalizations


def default_verbalizations(labels: list, tokenizer) -> tuple:
    """({class: [candidate strings]}, how): A/B/tie for pairwise names, Yes/No for a binary yes/no-like pair,
    else for each class a token of its name that no other class name holds (the first such token; else its
    first token not taken by an earlier class)."""
    low = [str(n).strip().lower() for n in labels]
    if all(n in PAIRWISE_NAMES for n in low):
        return {lab: list(PAIRWISE_NAMES[n]) for lab, n in zip(labels, low)}, "A/B/tie (pairwise label names)"
    if len(labels) == 2 and sum(n in NO_NAMES for n in low) == 1 and sum(n in YES_NAMES for n in low) == 1:
        return {lab: list(_NO if n in NO_NAMES else _YES) for lab, n in zip(labels, low)}, "No/Yes (binary label names)"
    tokens = {lab: _ids(tokenizer, str(lab)) for lab in labels}
    count: dict = {}
    for lab in labels:
        for t in set(tokens[lab]):
            count[t] = count.get(t, 0) + 1
    taken: set = set()
    out = {}
    for lab in labels:
        ids = tokens[lab]
        own = [t for t in ids if count[t] == 1 and t not in taken]
        free = [t for t in ids if t not in taken]
        if not (own or free):
            raise LabelTokenError(
                f"task.label_tokens is empty and class {lab!r} has no token of its own: its tokens "
                f"{_pieces(tokenizer, ids)} are all taken by other classes; set task.label_tokens = "
                f"{{{lab} = ['WORD']}} with a word that is one token of this tokenizer for each class")
        pick = (own or free)[0]
        taken.add(pick)
        out[lab] = [tokenizer.decode([pick])]
    return out, "a distinct token of each class name"


def resolve_verbalizations(tokenizer, labels: list, given: Optional[dict] = None) -> tuple:
    """(verbalizations {class: [str]}, token ids [[int]] in label order, notes [str]).

    ``given`` (``task.label_tokens``) must name every class and only classes, each string one token of
    ``tokenizer`` (checked strictly: LabelTokenError naming the class, the string and its tokens). Without it
    the defaults apply; their variants that are not one token here are dropped and each drop is a note.
    No token may serve two classes."""
    notes: list = []
    labels = [str(n) for n in labels]
    if given:
        given = {str(k): ([v] if isinstance(v, str) else list(v)) for k, v in dict(given).items()}
        unknown = [k for k in given if k not in labels]
        missing = [n for n in labels if n not in given]
        if unknown or missing:
            raise LabelTokenError(
                f"task.label_tokens names {sorted(given)} but the classes are {labels}"
                + (f"; unknown: {unknown}" if unknown else "") + (f"; missing: {missing}" if missing else "")
                + "; give one list of single-token strings per class, e.g. {" + f"{labels[0]} = ['A', ' A']" + "}")
        strict, verbal = True, given
    else:
        strict = False
        verbal, how = default_verbalizations(labels, tokenizer)
        notes.append(f"label tokens: task.label_tokens is empty: defaults from the label names ({how})")
    out, ids_out, owner = {}, [], {}
    for lab in labels:
        keep, ids = [], []
        for s in verbal[lab]:
            if not isinstance(s, str) or not s:
                raise LabelTokenError(f"task.label_tokens: class {lab!r} has an empty or non-string verbalization {s!r}; use strings")
            t = _ids(tokenizer, s)
            if len(t) != 1:
                why = f"{s!r} is {len(t)} tokens {_pieces(tokenizer, t)} (ids {t}) in this tokenizer"
                if strict:
                    raise LabelTokenError(f"task.label_tokens: class {lab!r}: {why}; each verbalization must be exactly one "
                                          f"token: drop it or use a shorter word (e.g. its first piece {_pieces(tokenizer, t)[:1]})")
                notes.append(f"label tokens: default {why}: dropped for class {lab!r}")
                continue
            if t[0] in owner and owner[t[0]] != lab:
                raise LabelTokenError(f"task.label_tokens: {s!r} of class {lab!r} is token {t[0]} "
                                      f"({_pieces(tokenizer, t)[0]!r}), which class {owner[t[0]]!r} already uses; "
                                      f"every class needs tokens of its own")
            if t[0] in ids:
                continue  # the same token twice in one class adds nothing
            owner[t[0]] = lab
            keep.append(s)
            ids.append(t[0])
        if not ids:
            tried = "; ".join(f"{s!r} -> {_pieces(tokenizer, _ids(tokenizer, s))}" for s in verbal[lab])
            raise LabelTokenError(f"task.label_tokens: class {lab!r} has no single-token verbalization in this tokenizer "
                                  f"(tried {tried}); set task.label_tokens.{lab} = ['WORD'] with a one-token word "
                                  f"(and the other classes' lists: task.label_tokens names every class)")
        out[lab], _ = keep, ids_out.append(ids)
    return out, ids_out, notes


def check_token_ids(tokenizer, verbalizations: dict, token_ids: list, labels: list, where: str = "kit_manifest.json") -> None:
    """Raise LabelTokenError when ``tokenizer`` no longer maps the recorded verbalizations to the recorded ids."""
    for lab, ids in zip(labels, token_ids):
        strings = list((verbalizations or {}).get(lab, []))
        now = [_ids(tokenizer, s) for s in strings]
        if [x[0] if len(x) == 1 else x for x in now] != list(ids):
            raise LabelTokenError(f"{where}: class {lab!r} was trained on verbalizations {strings} = token ids {list(ids)}, "
                                  f"but this tokenizer gives {now}; load the tokenizer saved with the run (or the same base)")


def default_question(kind: str, labels: list, verbalizations: dict) -> str:
    """The question asked when ``prompt.question`` is empty: the answers named by their first verbalization."""
    words = [verbalizations[lab][0].strip() for lab in labels]
    listed = ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
    if kind == "pairwise":
        return f"Which response is better? Answer with {listed}."
    return f"Which label fits? Answer with {listed}."


# --------------------------------------------------------------------------- the frame around a row


def frame_texts(tokenizer, chat_template: str, question: str, answer_cue: str) -> tuple:
    """(frame, text before the row, text after it) for the label-token head.

    ``chat_template``: 'auto' (the chat template when the tokenizer has one), 'on', 'off'. With the chat
    template the row and the question are the user turn and the answer follows the generation prompt
    (``add_generation_prompt=True``) and ``answer_cue`` (default none); the plain frame is the row, the
    question and ``answer_cue`` (default 'Answer:'). The texts are recorded in the prompt spec."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if chat_template not in ("auto", "on", "off"):
        raise LabelTokenError(f"prompt.chat_template = {chat_template!r}: use auto, on or off")
    if chat_template == "on" and not has:
        raise LabelTokenError("prompt.chat_template = 'on' but this tokenizer has no chat template; set it to 'auto' or 'off'")
    if has and chat_template != "off":
        text = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], add_generation_prompt=True, tokenize=False)
        before, after = text.split(_SENTINEL)
        return "chat", before, "\n\n" + question + after + (answer_cue or "")
    return "plain", "", "\n\n" + question + "\n" + (answer_cue if answer_cue else PLAIN_CUE)


# --------------------------------------------------------------------------- scoring


def lm_parts(model) -> tuple:
    """(body, lm_head, config) of a causal LM, a PeftModel around one, or a LabelTokenClassifier."""
    lm = model.lm if is_label_token_model(model) else model
    if hasattr(lm, "get_base_model"):
        lm = lm.get_base_model()
    body = getattr(lm, getattr(lm, "base_model_prefix", "model"), None)
    head = lm.get_output_embeddings()
    if body is None or head is None:
        raise LabelTokenError(f"{type(lm).__name__} is not a causal LM with an output embedding; task.head = 'label_tokens' needs one")
    return body, head, lm.config


def last_positions(attention_mask):
    """Index of each row's last real token (right padding)."""
    import torch

    n = attention_mask.long().sum(dim=1) - 1
    return torch.clamp(n, min=0)


def answer_logits(model, input_ids, attention_mask):
    """Vocabulary logits (rows x vocab, float32) at each row's last real position: the body runs once, ``lm_head``
    sees only the gathered position (never the whole sequence), with the model's logit soft-capping / scaling."""
    import torch

    body, head, config = lm_parts(model)
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    pos = last_positions(attention_mask).to(hidden.device)
    last = hidden[torch.arange(hidden.shape[0], device=hidden.device), pos]  # rows x hidden
    logits = head(last.unsqueeze(1).to(head.weight.dtype)).squeeze(1).float()
    cap = getattr(config, "final_logit_softcapping", None)  # Gemma-2/3 (as their *ForCausalLM.forward)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    scale = getattr(config, "logit_scale", None)  # Cohere multiplies
    if isinstance(scale, (int, float)) and scale not in (0, 1):
        logits = logits * scale
    div = getattr(config, "logits_scaling", None)  # Granite divides
    if isinstance(div, (int, float)) and div not in (0, 1):
        logits = logits / div
    return logits


def class_scores(vocab_logits, token_ids: list):
    """Per class, the log-sum-exp of its tokens' logits (rows x classes, float32)."""
    import torch

    return torch.stack([torch.logsumexp(vocab_logits[:, list(ids)], dim=-1) for ids in token_ids], dim=-1)


def class_logits(model, input_ids, attention_mask, token_ids: list):
    """Class scores (rows x classes) of the label-token head: :func:`answer_logits` then :func:`class_scores`."""
    return class_scores(answer_logits(model, input_ids, attention_mask), token_ids)


class _Output(dict):
    """What a classifier returns: ``.logits`` (rows x classes) and ``.loss``, also as dict items."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


_CLASS: list = []


def make_classifier(lm, token_ids: list, verbalizations: Optional[dict] = None):
    """A causal LM seen as a classifier (``LabelTokenClassifier``): ``forward(input_ids, attention_mask).logits``
    are the class scores at the answer position. Other attributes (``config``, ``merge_and_unload``,
    ``save_pretrained``…) pass through to the wrapped model, so the engine, ensembles and `kit merge` treat it
    like any classifier. The class is built on first use (this module imports no torch at import time)."""
    if not _CLASS:
        import torch

        class LabelTokenClassifier(torch.nn.Module):
            kit_label_tokens = True

            def __init__(self, lm, token_ids: list, verbalizations: Optional[dict] = None):
                super().__init__()
                self.lm = lm
                self.token_ids = [list(map(int, ids)) for ids in token_ids]
                self.verbalizations = dict(verbalizations or {})

            def forward(self, input_ids=None, attention_mask=None, **_):
                if attention_mask is None:
                    attention_mask = torch.ones_like(input_ids)
                return _Output(logits=class_logits(self.lm, input_ids, attention_mask, self.token_ids))

            def __getattr__(self, name):
                try:
                    return super().__getattr__(name)
                except AttributeError:
                    return getattr(self._modules["lm"], name)

        _CLASS.append(LabelTokenClassifier)
    return _CLASS[0](lm, token_ids, verbalizations)


def is_label_token_model(model) -> bool:
    return bool(getattr(type(model), "kit_label_tokens", False))


# --------------------------------------------------------------------------- candidates per group


def candidate_map(groups: list, labels: list) -> dict:
    """{group value: sorted label indices seen with it} from training rows' group values and label indices."""
    out: dict = {}
    for g, y in zip(groups, labels):
        out.setdefault(str(g), set()).add(int(y))
    return {g: sorted(v) for g, v in out.items()}


def restrict_candidates(probs, groups: list, candidates: dict) -> tuple:
    """(probs, report): each row's probabilities outside the labels seen with its group value set to 0 and the
    rest renormalised; rows whose value training never saw keep every label. ``report``: counts and ids by
    position (``restricted``, ``unseen``: row positions; ``zeroed``: labels set to 0 in all)."""
    import numpy as np

    probs = np.array(probs, dtype=np.float64, copy=True)
    restricted, unseen, zeroed = [], [], 0
    for i, g in enumerate(groups):
        keep = candidates.get(str(g))
        if keep is None:
            unseen.append(i)
            continue
        mask = np.zeros(probs.shape[1], dtype=bool)
        mask[keep] = True
        if mask.all():
            continue
        zeroed += int((~mask).sum())
        row = np.where(mask, probs[i], 0.0)
        total = row.sum()
        probs[i] = row / total if total > 0 else mask / mask.sum()
        restricted.append(i)
    return probs.astype(np.float32), {"restricted": restricted, "unseen": unseen, "zeroed": zeroed}


def group_values(path, column: str, id_column: str = "id") -> dict:
    """{row id: value of ``column``} of a data file (``task.candidates_by``); DataError naming the file and the
    columns when the column is absent. Ids as ``formats.read_dataset`` makes them (the id column, else the row number)."""
    from .formats import _rid, columns_of, read_records

    records = read_records(path)
    if records and column not in columns_of(records):
        raise DataError(f"{path}: task.candidates_by = {column!r} names no column of this file (columns: {columns_of(records)}); "
                        f"set it to the column whose values group the rows (e.g. 'QuestionId'), or leave it empty")
    return {_rid(rec, id_column, n): str(rec.get(column)) for n, rec in enumerate(records)}

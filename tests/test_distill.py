"""Distillation (issue 24): teacher files (write, read, errors, combining), the KL loss against a hand computation,
mirrored teacher rows for swapped examples, `kit predict --logits` out of fold, and a student trained on a tiny
teacher's logits that matches it better than a hard-label student."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]


def _softmax(z, T=1.0):
    z = np.asarray(z, dtype=np.float64) / T
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- the loss


def test_kl_term_equals_a_hand_computation():
    import torch

    from kaggle_kit.train.distill import DistillSettings, distill_loss

    s = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, -0.3], [1.5, 1.0, -2.0]])
    t = np.array([[0.0, 1.0, -1.0], [3.0, -2.0, 0.0], [np.nan, np.nan, np.nan]])  # row 3: no teacher value
    y = np.array([0, 2, 1])
    has = np.array([True, True, False])
    alpha, T = 0.7, 3.0
    got = distill_loss(torch.tensor(s), torch.tensor(y), torch.tensor(t), torch.tensor(has),
                       DistillSettings(alpha=alpha, temperature=T)).item()
    want = []
    for i in range(3):
        ce = -math.log(_softmax(s[i])[y[i]])
        if not has[i]:
            want.append(ce)
            continue
        pt, ps = _softmax(t[i], T), _softmax(s[i], T)
        kl = float(np.sum(pt * (np.log(pt) - np.log(ps))))
        want.append((1 - alpha) * ce + alpha * T * T * kl)
    assert got == pytest.approx(np.mean(want), rel=1e-6)

    # the row-centred logit terms
    sc, tc = s[:2] - s[:2].mean(1, keepdims=True), t[:2] - t[:2].mean(1, keepdims=True)
    mse = ((sc - tc) ** 2).mean(1)
    cos = 1 - (sc * tc).sum(1) / np.linalg.norm(sc, axis=1) / np.linalg.norm(tc, axis=1)
    for kind, extra in (("mse", mse), ("cosine", cos)):
        got = distill_loss(torch.tensor(s[:2]), torch.tensor(y[:2]), torch.tensor(t[:2]), torch.tensor(has[:2]),
                           DistillSettings(alpha=0.0, temperature=1.0, logit_loss=kind, logit_weight=0.5)).item()
        ce = [-math.log(_softmax(s[i])[y[i]]) for i in range(2)]
        assert got == pytest.approx(np.mean(np.array(ce) + 0.5 * extra), rel=1e-6)


def test_multilabel_kl_is_bernoulli_per_class():
    import torch

    from kaggle_kit.train.distill import DistillSettings, distill_loss

    s, t, y = np.array([[1.0, -2.0]]), np.array([[-0.5, 0.5]]), np.array([[1.0, 0.0]])
    got = distill_loss(torch.tensor(s), torch.tensor(y), torch.tensor(t), torch.tensor([True]),
                       DistillSettings(alpha=1.0, temperature=2.0, multilabel=True)).item()
    ps, pt = 1 / (1 + np.exp(-s / 2)), 1 / (1 + np.exp(-t / 2))
    kl = pt * np.log(pt / ps) + (1 - pt) * np.log((1 - pt) / (1 - ps))
    assert got == pytest.approx(4.0 * kl.mean(), rel=1e-6)


def test_the_loss_takes_the_class_logits_whatever_head_made_them():
    """distill_trainer wraps any Trainer's compute_loss: a head that returns class scores under 'logits' (e.g. the
    label-token head's {'logits': scores}) is distilled on those scores; batches without teacher columns keep its loss."""
    import torch

    from kaggle_kit.train.distill import HAS_KEY, TEACHER_KEY, DistillSettings, distill_loss, distill_trainer

    class HeadTrainer:  # stands in for a Trainer whose loss comes from a label-token head
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            scores = inputs["input_ids"].float() * 0.5  # "class scores" from the inputs
            loss = torch.tensor(123.0)
            return (loss, {"logits": scores}) if return_outputs else loss

    s = DistillSettings(alpha=0.6, temperature=2.0)
    trainer = distill_trainer(HeadTrainer, s)()
    ids = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
    teacher, has, labels = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]]), torch.tensor([True, True]), torch.tensor([1, 2])
    got = trainer.compute_loss(None, {"input_ids": ids, "labels": labels, TEACHER_KEY: teacher, HAS_KEY: has})
    assert got.item() == pytest.approx(distill_loss(ids * 0.5, labels, teacher, has, s).item(), rel=1e-6)
    assert trainer.compute_loss(None, {"input_ids": ids, "labels": labels}).item() == 123.0  # evaluation: the head's own loss


# --------------------------------------------------------------------------- teacher files


def _teacher(ids, values, meta=None):
    from kaggle_kit.runtime.teacher import TeacherLogits

    return TeacherLogits([str(i) for i in ids], list(LABELS), np.asarray(values, dtype=np.float64), meta or {"values": "logits"})


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_teacher_file_round_trip(tmp_path, suffix):
    from kaggle_kit.runtime.teacher import read_teacher, write_teacher

    vals = np.array([[0.5, -1.25, 2.0], [1e-3, 0.0, -7.5]])
    path = write_teacher(tmp_path / f"t{suffix}", _teacher(["a", "7"], vals, {"values": "logits", "teachers": [{"adapter": "x"}]}))
    back = read_teacher(path, LABELS)
    assert back.ids == ["a", "7"] and back.labels == LABELS
    np.testing.assert_allclose(back.values, vals, rtol=1e-8)
    assert back.meta["teachers"] == [{"adapter": "x"}] and back.meta["labels"] == LABELS


def test_user_csv_errors_name_the_problem(tmp_path):
    from kaggle_kit.runtime.teacher import TeacherError, read_teacher

    def write(name, header, rows):
        p = tmp_path / name
        with p.open("w", newline="") as fh:
            csv.writer(fh).writerows([header, *rows])
        return p

    ok = write("ok.csv", ["id", *LABELS], [["1", 0.1, 0.2, 0.3], ["2", 1, 2, 3]])
    assert read_teacher(ok, LABELS).ids == ["1", "2"]  # a plain CSV made elsewhere, no metadata
    other = write("order.csv", ["id", LABELS[1], LABELS[0], LABELS[2]], [["1", 0.1, 0.2, 0.3]])
    with pytest.raises(TeacherError, match=r"order.csv.*another label order.*winner_model_b.*winner_model_a"):
        read_teacher(other, LABELS)
    nan = write("nan.csv", ["id", *LABELS], [["1", 0.1, 0.2, 0.3], ["row-9", "nan", 0.2, 0.3]])
    with pytest.raises(TeacherError, match=r"nan.csv: 1 row\(s\) hold non-finite values.*row-9 \(winner_model_a = nan\)"):
        read_teacher(nan, LABELS)
    inf = write("inf.csv", ["id", *LABELS], [["5", 0.1, "inf", 0.3]])
    with pytest.raises(TeacherError, match=r"5 \(winner_model_b = inf\)"):
        read_teacher(inf, LABELS)
    noid = write("noid.csv", ["row", *LABELS], [["1", 0.1, 0.2, 0.3]])
    with pytest.raises(TeacherError, match="no 'id' column"):
        read_teacher(noid, LABELS)
    dup = write("dup.csv", ["id", *LABELS], [["1", 0.1, 0.2, 0.3], ["1", 0.1, 0.2, 0.3]])
    with pytest.raises(TeacherError, match="appear more than once"):
        read_teacher(dup, LABELS)
    with pytest.raises(TeacherError, match="missing \\['winner_tie'\\]"):
        read_teacher(write("few.csv", ["id", *LABELS[:2]], [["1", 0.1, 0.2]]), LABELS)


def test_combining_teachers_is_the_weighted_mean_of_log_probabilities():
    from kaggle_kit.runtime.teacher import combine_teachers, log_softmax

    a = _teacher(["1", "2", "3"], [[1, 2, 3], [0, 0, 0], [5, 1, 1]])
    b = _teacher(["2", "1"], [[1, -1, 0], [3, 2, 1]])
    c = combine_teachers([a, b], [3, 1])
    assert c.ids == ["1", "2"] and c.meta["partial_ids"] == ["3"]
    want = 0.75 * log_softmax(np.array([[1, 2, 3], [0, 0, 0]])) + 0.25 * log_softmax(np.array([[3, 2, 1], [1, -1, 0]]))
    np.testing.assert_allclose(c.values, want, rtol=1e-12)


# --------------------------------------------------------------------------- teacher rows of the training set


def test_swapped_examples_get_mirrored_teacher_rows(tiny_base, lmsys_synth):
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.modeling import load_tokenizer
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec
    from kaggle_kit.train.data import PadCollator, build_examples
    from kaggle_kit.train.distill import HAS_KEY, TEACHER_KEY, DistillDataset, TeacherCollator, teacher_rows

    rows = read_dataset(lmsys_synth, "lmsys").rows[:6]
    enc = Encoder(load_tokenizer(tiny_base), PromptSpec(max_length=64), "pairwise")
    ds = build_examples(rows, enc, LABELS, swap_augment=True)
    assert len(ds) == 12 and ds.swapped == [False] * 6 + [True] * 6
    vals = np.arange(15, dtype=np.float64).reshape(5, 3)  # the 6th row has no teacher value
    teacher = _teacher([r.id for r in rows[:5]], vals)
    t, has = teacher_rows(ds, teacher, LABELS, "pairwise")
    np.testing.assert_array_equal(t[:5], vals)
    np.testing.assert_array_equal(t[6:11], vals[:, [1, 0, 2]])  # A and B exchanged: the teacher's a/b columns too
    assert has.tolist() == [True] * 5 + [False] + [True] * 5 + [False]
    # the swapped example's hard label is mirrored the same way: the teacher's argmax follows it
    assert [ds.labels[6 + i] for i in range(5)] == [[1, 0, 2][ds.labels[i]] for i in range(5)]
    batch = TeacherCollator(PadCollator(0))([DistillDataset(ds, t, has)[i] for i in (0, 6, 5)])
    np.testing.assert_array_equal(batch[TEACHER_KEY][:2].numpy(), np.array([vals[0], vals[0][[1, 0, 2]]]))
    assert batch[HAS_KEY].tolist() == [True, True, False] and batch["input_ids"].shape[0] == 3


def test_missing_teacher_rows_are_listed_or_refused(tiny_base, lmsys_synth, tmp_path):
    from kaggle_kit.config import KitConfig
    from kaggle_kit.errors import KitError
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.modeling import load_tokenizer
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec
    from kaggle_kit.runtime.teacher import write_teacher
    from kaggle_kit.train.data import build_examples
    from kaggle_kit.train.distill import prepare

    rows = read_dataset(lmsys_synth, "lmsys").rows[:8]
    ds = build_examples(rows, Encoder(load_tokenizer(tiny_base), PromptSpec(max_length=64), "pairwise"), LABELS)
    path = write_teacher(tmp_path / "t.parquet", _teacher([r.id for r in rows[:6]], np.zeros((6, 3))))
    cfg = KitConfig()
    cfg.distill.teacher = str(path)
    said = []
    out = prepare(cfg, LABELS, "pairwise", False, ds, said.append)
    missing = [rows[6].id, rows[7].id]
    assert out.record["missing_ids"] == missing and out.record["rows_with_teacher"] == 6
    assert any(f"2 of 8 training rows have no teacher value" in s and missing[0] in s for s in said)
    assert out.record["teachers"][0]["sha256"] and len(out.train) == 8
    cfg.distill.missing = "error"
    with pytest.raises(KitError, match=rf"2 of 8 training rows have no teacher value.*{missing[0]}, {missing[1]}"):
        prepare(cfg, LABELS, "pairwise", False, ds, said.append)
    cfg.distill.missing = "hard"
    cfg.task.labels = []
    with pytest.raises(KitError, match="another label order"):
        prepare(cfg, [LABELS[1], LABELS[0], LABELS[2]], "pairwise", False, ds, said.append)


# --------------------------------------------------------------------------- the journey (tiny, CPU)


def _kit(args):
    from kaggle_kit.cli import main

    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


TINY = ["--model", "tiny", "--max-length", "64", "--set", "train.batch_size=8", "--set", "train.eval_batch_size=32",
        "--set", "data.folds=2", "--set", "data.group_by_prompt=false"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, lmsys_synth, kit_cache):
    """A tiny teacher trained on both folds (another seed, high learning rates), and its OOF logits on every training row."""
    d = tmp_path_factory.mktemp("distill")
    (d / "empty.toml").write_text("", encoding="utf-8")
    _kit(["train", "--config", str(d / "empty.toml"), *TINY, "--data", str(lmsys_synth), "--output", str(d / "teacher"),
          "--all-folds", "--max-steps", "12", "--set", "train.seed=7", "--set", "train.learning_rate=3e-3",
          "--set", "train.head_learning_rate=3e-2"])
    r = _kit(["predict", "--config", str(d / "empty.toml"), "--adapter", str(d / "teacher"), "--data", str(lmsys_synth),
              "--logits", "--out", str(d / "teacher.parquet"), "--no-progress", "--json"])
    return d, json.loads(r.stdout[r.stdout.index("{"):])


@pytest.mark.slow
def test_predict_logits_gives_every_training_row_from_the_fold_that_did_not_see_it(teacher, lmsys_synth):
    from kaggle_kit.runtime.teacher import read_teacher

    d, summary = teacher
    t = read_teacher(d / "teacher.parquet", LABELS)
    assert summary["rows"] == summary["written"] == summary["oof_rows"] == 240 and summary["not_oof_rows"] == 0
    assert t.meta["values"] == "log_probs" and len(t.meta["teachers"][0]["folds"]) == 2
    assert all(len(f["manifest_sha256"]) == 64 for f in t.meta["teachers"][0]["folds"])
    checked = 0
    for k in (0, 1):  # each fold's oof.csv (written by training) holds the same probabilities for its held-out rows
        with (d / "teacher" / f"fold-{k}" / "oof.csv").open(newline="") as fh:
            oof = list(csv.DictReader(fh))
        values, have = t.rows_for([r["id"] for r in oof])
        assert have.all()
        probs = np.array([[float(r[c]) for c in LABELS] for r in oof])
        np.testing.assert_allclose(np.exp(values), probs, atol=2e-5)
        checked += len(oof)
    assert checked == 240


def _kl_on(oof_csv: Path, teacher) -> float:
    with oof_csv.open(newline="") as fh:
        oof = list(csv.DictReader(fh))
    ps = np.clip(np.array([[float(r[c]) for c in LABELS] for r in oof]), 1e-9, 1)
    lt, have = teacher.rows_for([r["id"] for r in oof])
    assert have.all()
    pt = np.exp(lt)
    return float(np.mean(np.sum(pt * (lt - np.log(ps)), axis=1)))


@pytest.mark.slow
def test_student_on_teacher_logits_matches_it_better_than_a_hard_label_student(teacher, lmsys_synth):
    """The teacher is one tiny trained run (fold 1 of the parent: one function on every row; out-of-fold values mix two
    functions). Two students on fold 0, same steps and rates: alpha = 1 on its logits, and hard labels only."""
    from kaggle_kit.runtime.teacher import read_teacher

    d, _ = teacher
    r = _kit(["predict", "--config", str(d / "empty.toml"), "--adapter", str(d / "teacher" / "fold-1"), "--data", str(lmsys_synth),
              "--logits", "--out", str(d / "fold1.csv"), "--no-progress"])
    assert "240 of 240 rows" in r.output
    common = ["train", "--config", str(d / "empty.toml"), *TINY, "--data", str(lmsys_synth), "--fold", "0", "--max-steps", "8",
              "--set", "train.learning_rate=2e-3", "--set", "train.head_learning_rate=2e-2", "--set", "train.eval_steps=8"]
    r = _kit([*common, "--output", str(d / "student"), "--set", f'distill.teacher="{d / "fold1.csv"}"',
              "--set", "distill.alpha=1.0", "--set", "distill.temperature=1.0"])
    assert "distill: teacher" in r.output and "on 120 of 120 training rows" in r.output
    _kit([*common, "--output", str(d / "hard")])
    manifest = json.loads((d / "student" / "kit_manifest.json").read_text())
    rec = manifest["training"]["distill"]
    assert rec["alpha"] == 1.0 and rec["missing_rows"] == 0 and rec["teachers"][0]["file"] == str((d / "fold1.csv").resolve())
    assert rec["teachers"][0]["teachers"][0]["adapter"] == str((d / "teacher" / "fold-1").resolve())
    t = read_teacher(d / "fold1.csv", LABELS)
    kl_student, kl_hard = _kl_on(d / "student" / "oof.csv", t), _kl_on(d / "hard" / "oof.csv", t)
    print(f"held-out KL(teacher || student): distilled {kl_student:.5f}, hard labels {kl_hard:.5f}")
    assert kl_student < 0.8 * kl_hard

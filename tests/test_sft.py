"""Instruction tuning: loss mask, training a tiny causal Gemma-2, batched generation, `kit generate`, the notebook."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from kaggle_kit.runtime.textmetrics import exact_match, lcs_length, rouge_l, score_texts, token_f1

WORDS = ["apple", "river", "stone", "cloud", "green", "music", "paper", "light", "north", "bread", "chair", "ocean"]
ANSWERS = {"greet": "hello there, friend", "count": "one two three four"}


# --------------------------------------------------------------------------- text metrics (no torch)


def test_exact_match_normalises_case_punctuation_and_articles():
    assert exact_match("The Cat sat.", "cat sat") == 1.0
    assert exact_match("a cat sat", "the  cat   sat!") == 1.0
    assert exact_match("cat sat down", "cat sat") == 0.0
    assert exact_match("", "") == 1.0


def test_token_f1_known_values():
    # pred tokens: cat sat mat; ref tokens: cat sat on mat -> 3 common, P=1, R=3/4, F1=6/7
    assert token_f1("the cat sat mat", "the cat sat on the mat") == pytest.approx(6 / 7)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("", "cat") == 0.0
    # repeated tokens count once per match: pred "yes yes", ref "yes" -> P=1/2, R=1, F1=2/3
    assert token_f1("yes yes", "yes") == pytest.approx(2 / 3)


def test_rouge_l_known_values():
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    # LCS("the cat on the mat", "the cat sat on the mat") = 5; P=5/5, R=5/6 -> F = 10/11
    assert rouge_l("the cat on the mat", "the cat sat on the mat") == pytest.approx(10 / 11)
    # order matters for ROUGE-L but not for token F1
    assert rouge_l("mat the on sat cat the", "the cat sat on the mat") < token_f1("mat the on sat cat the", "the cat sat on the mat")
    assert rouge_l("Police killed the gunman", "police kill the gunman") == pytest.approx(0.75)
    assert rouge_l("x", "y") == 0.0


def test_score_texts_averages_and_counts_rows_without_reference():
    m = score_texts(["one two", "three", "skip"], ["one two", "four", None])
    assert m["rows"] == 2 and m["rows_without_reference"] == 1
    assert m["exact_match"] == pytest.approx(0.5)
    assert m["token_f1"] == pytest.approx(0.5)
    assert m["rouge_l"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        score_texts(["a"], [])


# --------------------------------------------------------------------------- fixtures


def build_test_base(out: Path) -> Path:
    """A 2-layer causal Gemma-2 whose random weights are large enough (init 0.3) that a frozen
    lm_head and final norm still allow confident predictions: the kit's own tiny base (init 0.02)
    caps every logit near 1, so no adapter can make it answer."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from kaggle_kit.models.tiny import TINY_CONFIG, build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(0)
    config = Gemma2Config(
        **{**TINY_CONFIG, "vocab_size": len(tok), "num_hidden_layers": 2}, initializer_range=0.3,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    Gemma2ForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_instructions(path: Path, n: int, seed: int = 0, with_output: bool = True, long_inputs: bool = False) -> Path:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            key = rng.choice(sorted(ANSWERS))
            rec = {"id": f"r{i}", "instruction": f"{key}: {' '.join(rng.sample(WORDS, 2))}",
                   "input": " ".join(rng.sample(WORDS, rng.randint(0, 8))) if long_inputs else ""}
            if with_output:
                rec["output"] = ANSWERS[key]
            fh.write(json.dumps(rec) + "\n")
    return path


def sft_config(base: Path, train: Path, output: Path, **train_overrides):
    from kaggle_kit.config import build_config, preset_values

    layer = {
        "model": {"name": "tiny-test", "path": str(base)},
        "data": {"train": str(train), "val_fraction": 0.125},
        "prompt": {"max_length": 64},
        "quantization": {"mode": "none"},
        "peft": {"r": 16, "alpha": 32.0},
        "train": {"output": str(output), "optimizer": "adamw_torch", "learning_rate": 1e-2, "batch_size": 8,
                  "max_steps": 30, "warmup_steps": 3, "eval_steps": 10, "logging_steps": 3,
                  "early_stopping_patience": 2, **train_overrides},
        "inference": {"max_new_tokens": 12},
    }
    return build_config(("preset sft", preset_values("sft")), ("test", layer))


@pytest.fixture(scope="module")
def sft_base(tmp_path_factory) -> Path:
    return build_test_base(tmp_path_factory.mktemp("sft-base") / "base")


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory) -> Path:
    return write_instructions(tmp_path_factory.mktemp("sft-data") / "train.jsonl", 64)


@pytest.fixture(scope="module")
def sft_run(sft_base, sft_data, tmp_path_factory):
    from kaggle_kit.train.sft import run_sft

    out = tmp_path_factory.mktemp("sft-run") / "run"
    lines: list = []
    result = run_sft(sft_config(sft_base, sft_data, out), log=lines.append)
    return result, lines


@pytest.fixture(scope="module")
def loaded(sft_run):
    from kaggle_kit.runtime.generation import load_for_generation

    result, _ = sft_run
    return load_for_generation(result.output_dir, device="cpu")


# --------------------------------------------------------------------------- prompts and the loss mask


def test_loss_mask_covers_only_response_tokens(sft_base):
    from kaggle_kit.runtime.generation import encode_example, render_prompt
    from kaggle_kit.runtime.modeling import load_tokenizer
    from kaggle_kit.train.sft_data import SFTCollator

    tok = load_tokenizer(sft_base)
    a = encode_example(tok, "kit-sft-v1", "count: apple river", "", "one two three four", max_length=256)
    b = encode_example(tok, "kit-sft-v1", "greet: stone", "some context words here", "hello there, friend", max_length=256)
    for ex, instruction, output in ((a, "count: apple river", "one two three four"), (b, "greet: stone", "hello there, friend")):
        n = ex["prompt_length"]
        assert ex["labels"][:n] == [-100] * n
        assert ex["labels"][n:] == ex["input_ids"][n:]
        assert ex["input_ids"][-1] == tok.eos_token_id  # the model learns to stop
        assert tok.decode(ex["input_ids"][n:], skip_special_tokens=True) == output
        assert tok.decode(ex["input_ids"][:n], skip_special_tokens=True) == render_prompt(tok, "kit-sft-v1", instruction, "" if ex is a else "some context words here")
    assert "### Input:" in tok.decode(b["input_ids"]) and "### Input:" not in tok.decode(a["input_ids"])
    batch = SFTCollator(tok.pad_token_id)([a, b])
    assert batch["input_ids"].shape[1] % 8 == 0
    for i, ex in enumerate((a, b)):
        k = len(ex["input_ids"])
        labels = batch["labels"][i].tolist()
        assert labels[:k] == ex["labels"] and set(labels[k:]) <= {-100}
        assert batch["attention_mask"][i].tolist() == [1] * k + [0] * (batch["input_ids"].shape[1] - k)
        supervised = [j for j, x in enumerate(labels) if x != -100]
        assert supervised == list(range(ex["prompt_length"], k))


def test_long_examples_fit_max_length_and_keep_the_response_marker(sft_base):
    from kaggle_kit.runtime.generation import encode_example, encode_prompt
    from kaggle_kit.runtime.modeling import load_tokenizer

    tok = load_tokenizer(sft_base)
    long_input = " ".join(WORDS * 20)
    ex = encode_example(tok, "kit-sft-v1", "count: apple", long_input, "one two three four", max_length=48)
    assert len(ex["input_ids"]) <= 48
    assert tok.decode(ex["input_ids"][ex["prompt_length"]:], skip_special_tokens=True) == "one two three four"
    assert tok.decode(ex["input_ids"][: ex["prompt_length"]]).endswith("### Response:\n")
    ids = encode_prompt(tok, "kit-sft-v1", "count: apple", long_input, max_length=40)
    assert len(ids) == 40 and tok.decode(ids).endswith("### Response:\n") and tok.decode(ids).startswith("<bos>### Instruction:")


def test_template_resolution_prefers_the_chat_template(sft_base):
    from kaggle_kit.runtime.generation import encode_example, render_prompt, resolve_template
    from kaggle_kit.runtime.modeling import load_tokenizer

    tok = load_tokenizer(sft_base)
    assert resolve_template(tok, "auto") == "kit-sft-v1" and resolve_template(tok, "kit-v1") == "kit-sft-v1"
    with pytest.raises(ValueError, match="no chat template"):
        resolve_template(tok, "chat")
    with pytest.raises(ValueError, match="kit-sft-v1"):
        resolve_template(tok, "alpaca-typo")
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    assert resolve_template(tok, "auto") == "chat"
    prompt = render_prompt(tok, "chat", "count: apple", "ctx")
    assert prompt == "<bos><|user|>\ncount: apple\n\nctx<|end|>\n<|assistant|>\n"
    ex = encode_example(tok, "chat", "count: apple", "ctx", "one two", max_length=128)
    response = tok.decode(ex["input_ids"][ex["prompt_length"]:])
    assert response == "one two<|end|>\n<eos>"
    assert tok.decode(ex["input_ids"][: ex["prompt_length"]]) == prompt  # bos only once


def test_split_keeps_instances_of_one_instruction_together():
    from kaggle_kit.runtime.formats import Row
    from kaggle_kit.train.sft_data import split_rows

    rows = [Row(f"t{i}-{k}", [f"task {i}", f"input {k}"], [f"out {k}"], []) for i in range(20) for k in range(3)]
    train, val = split_rows(rows, folds=5, fold=1, val_fraction=0.0, group_by_prompt=True, seed=3)
    assert len(train) + len(val) == 60 and 9 <= len(val) <= 15
    assert not {r.prompt[0] for r in train} & {r.prompt[0] for r in val}
    again = split_rows(rows, folds=5, fold=1, val_fraction=0.0, group_by_prompt=True, seed=3)
    assert [r.id for r in again[1]] == [r.id for r in val]
    train, val = split_rows(rows, folds=5, fold=0, val_fraction=0.1, group_by_prompt=False, seed=3)
    assert len(val) == 6 and len(train) == 54


def test_self_instruct_seed_tasks_encode_within_max_length(shared_data, sft_base):
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.modeling import load_tokenizer
    from kaggle_kit.train.sft_data import build_sft_examples

    ds = read_dataset(shared_data / "instructions" / "self-instruct_seed_tasks.jsonl", "instructions")
    rows = [r for r in ds.rows if r.response_a]
    assert len(rows) >= 175  # 175 seed tasks
    examples = build_sft_examples(rows, load_tokenizer(sft_base), "kit-sft-v1", max_length=128)
    assert max(examples.lengths) <= 128
    assert all(e["labels"][-1] != -100 and e["labels"][0] == -100 for e in examples.examples)
    assert 0 < examples.response_tokens < examples.num_tokens


# --------------------------------------------------------------------------- training


def test_sft_learns_a_fixed_answer_pattern(sft_run, sft_data):
    from kaggle_kit.runtime.manifest import Manifest

    result, lines = sft_run
    out = Path(result.output_dir)
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    evals = [h["eval_loss"] for h in result.log_history if "eval_loss" in h]
    assert len(losses) >= 5 and losses[-1] < 0.2 * losses[0], losses
    assert evals and result.metrics["eval_loss"] < 1.0, evals
    assert result.metrics["adapter_tensors_changed"].split("/")[0] == result.metrics["adapter_tensors_changed"].split("/")[1]
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "kit_manifest.json", "log_history.json", "loss.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()
    m = Manifest.load(out)
    assert m.kind == "sft" and m.task["format"] == "instructions"
    assert m.prompt["template"] == "kit-sft-v1" and m.prompt["max_length"] == 64
    assert m.generation["template"] == "kit-sft-v1" and m.generation["max_new_tokens"] == 12
    assert "### Instruction:" in m.generation["stop_strings"]
    assert sorted(m.peft["targets"]) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert m.training["train_rows"] + m.training["val_rows"] == 64 and m.training["val_rows"] == 8
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["task_type"] == "CAUSAL_LM" and not any("lm_head" in t for t in cfg["target_modules"])
    assert any("template kit-sft-v1" in line for line in lines)


def test_greedy_generation_reproduces_the_pattern_and_ignores_batching(loaded, sft_data):
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.generation import encode_prompt, generate_texts

    model, tok, manifest = loaded
    rows = read_dataset(sft_data, "instructions").rows[:9]
    prompts = [encode_prompt(tok, "kit-sft-v1", r.prompt[0], r.prompt[1], 64) for r in rows]
    # vary the prompt lengths so batches really are left-padded
    prompts[1] = prompts[1][:1] + prompts[3][1:4] + prompts[1][1:]
    kw = dict(max_new_tokens=12, stop_strings=manifest.generation["stop_strings"], progress=False)
    batched = generate_texts(model, tok, prompts, batch_size=4, **kw)
    single = [generate_texts(model, tok, [p], batch_size=1, **kw)[0] for p in prompts]
    again = generate_texts(model, tok, prompts, batch_size=3, **kw)
    assert batched == single == again
    sampled = [generate_texts(model, tok, prompts[:4], batch_size=4, do_sample=True, temperature=1.5, top_p=1.0, seed=s, **kw) for s in (7, 7)]
    assert sampled[0] == sampled[1]  # sampling is seeded
    expected = [r.response_a[0] for r in rows]
    hits = sum(a == e for a, e, i in zip(batched, expected, range(len(rows))) if i != 1)
    assert hits >= 7, list(zip(batched, expected))


def test_stop_strings_cut_answers(loaded):
    from kaggle_kit.runtime.generation import cut_at_stop, plan_batches

    assert cut_at_stop("four ### Instruction: more", ["### Instruction:"]) == "four"
    assert cut_at_stop(" plain ", []) == "plain"
    batches = plan_batches([5, 30, 10, 30, 7], max_new_tokens=10, batch_size=2, batch_tokens=1000)
    assert batches == [[1, 3], [2, 4], [0]]  # longest first, original index breaks ties
    assert plan_batches([50, 50, 50], max_new_tokens=10, batch_size=8, batch_tokens=120) == [[0, 1], [2]]


def test_causal_loss_is_normalised_over_accumulated_tokens(sft_base, tmp_path):
    """Causal LMs take num_items_in_batch: with grad accumulation the logged loss is the token mean, not x accum."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from kaggle_kit.runtime.generation import encode_example, load_causal
    from kaggle_kit.runtime.modeling import load_tokenizer
    from kaggle_kit.train.sft_data import SFTCollator, SFTDataset

    tok = load_tokenizer(sft_base)
    exs = [encode_example(tok, "kit-sft-v1", "count: apple", "", "one two three four five six seven", 64),
           encode_example(tok, "kit-sft-v1", "greet: river stone cloud", "", "hello", 64)]
    ds = SFTDataset(exs, ["a", "b"])
    model = load_causal(sft_base, {"mode": "none"}, dtype="float32")
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj"]))
    coll = SFTCollator(tok.pad_token_id)
    with torch.no_grad():
        batch = coll(exs)
        expected = float(model(**batch).loss)  # mean over all response tokens of both rows
        per_row = [float(model(**coll([e])).loss) for e in exs]
    assert abs(expected - sum(per_row) / 2) > 1e-3  # unequal response lengths: the two means differ
    args = TrainingArguments(output_dir=str(tmp_path / "ck"), per_device_train_batch_size=1, gradient_accumulation_steps=2,
                             max_steps=1, learning_rate=0.0, logging_steps=1, report_to="none", use_cpu=True,
                             save_strategy="no", remove_unused_columns=False, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=coll)
    assert trainer.model_accepts_loss_kwargs
    trainer.train()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h][0]
    assert logged == pytest.approx(expected, rel=1e-3)


def test_qlora_adapter_still_gets_gradients_after_a_no_grad_forward(sft_base):
    """The bitsandbytes CPU trap: a no-grad (eval) forward of a 4-bit model must not cut LoRA gradients."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    from kaggle_kit.runtime.generation import encode_example, load_causal
    from kaggle_kit.runtime.modeling import load_tokenizer
    from kaggle_kit.train.sft import peft_config_causal
    from kaggle_kit.train.sft_data import SFTCollator

    tok = load_tokenizer(sft_base)
    model = load_causal(sft_base, {"mode": "4bit", "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    cfg, targets = peft_config_causal(model, {"method": "lora", "r": 4, "alpha": 8, "dropout": 0.0, "targets": ["all-linear"]})
    assert "lm_head" not in targets and "gate_proj" in targets
    torch.manual_seed(0)
    model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    batch = SFTCollator(tok.pad_token_id)([encode_example(tok, "kit-sft-v1", "count: apple", "", "one two", 32)])

    def lora_grads():
        model.zero_grad()
        model.train()
        model(**batch).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if "lora_A" in n}

    reference = lora_grads()
    model.eval()
    with torch.no_grad():  # what an evaluation step does (repacks the weights when the trap is not avoided)
        model(**batch)
    after = lora_grads()
    assert len(reference) == 14 and all(float(g.abs().sum()) > 0 for g in reference.values())
    # measured: with repacking left on, gradients below the top layer change by ~100%
    for name, g in reference.items():
        assert torch.allclose(after[name], g, rtol=1e-3, atol=1e-6), name


# --------------------------------------------------------------------------- kit generate


def test_kit_generate_writes_answers_metrics_and_side_by_side(sft_run, sft_data, tmp_path):
    from click.testing import CliRunner

    from kaggle_kit.cli import main

    result, _ = sft_run
    data = tmp_path / "eval.jsonl"
    lines = sft_data.read_text().splitlines()[:6]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "answers.csv"
    res = CliRunner().invoke(main, ["generate", "--adapter", str(result.output_dir), "--data", str(data), "--out", str(out),
                                    "--max-new-tokens", "10", "--batch-size", "4", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "exact match" in res.output
    with out.open(newline="") as fh:
        answers = list(csv.DictReader(fh))
    assert [a["id"] for a in answers] == [json.loads(l)["id"] for l in lines]
    metrics = json.loads((out.parent / "metrics.json").read_text())
    refs = [json.loads(l)["output"] for l in lines]
    expected = score_texts([a["answer"] for a in answers], refs)
    for k in ("exact_match", "token_f1", "rouge_l"):
        assert metrics[k] == pytest.approx(expected[k])
    assert metrics["rows"] == 6 and metrics["exact_match"] >= 0.5
    with (out.parent / "side_by_side.csv").open(newline="") as fh:
        side = list(csv.DictReader(fh))
    assert list(side[0])[:5] == ["id", "instruction", "input", "reference", "answer"]
    assert [s["reference"] for s in side] == refs and [s["answer"] for s in side] == [a["answer"] for a in answers]

    # no references: answers only, JSONL, and no metrics
    plain = write_instructions(tmp_path / "test.jsonl", 3, seed=5, with_output=False)
    out2 = tmp_path / "out2" / "answers.jsonl"
    res = CliRunner().invoke(main, ["generate", "--adapter", str(result.output_dir), "--data", str(plain), "--out", str(out2), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output[res.output.index("{"):])
    assert payload["rows"] == 3 and payload["metrics"] is None
    assert len(out2.read_text().splitlines()) == 3 and not (out2.parent / "metrics.json").exists()


def test_kit_generate_refuses_a_classifier_adapter(untrained_adapter, sft_data, tmp_path):
    from click.testing import CliRunner

    from kaggle_kit.cli import main

    res = CliRunner().invoke(main, ["generate", "--adapter", str(untrained_adapter), "--data", str(sft_data), "--out", str(tmp_path / "a.csv")])
    assert res.exit_code == 2 and "not 'sft'" in res.output and "Traceback" not in res.output


# --------------------------------------------------------------------------- the generation notebook


def _has_version_check() -> bool:
    from kaggle_kit.runtime import manifest

    return hasattr(manifest, "check_versions")


@pytest.mark.skipif(not _has_version_check(), reason="runtime.manifest.check_versions (used by the notebooks' version check) not there yet")
def test_generation_notebook_renders_and_runs_offline(sft_run, sft_data, tmp_path):
    pytest.importorskip("nbclient")
    from kaggle_kit.config import load_config
    from kaggle_kit.notebooks.render import render_kernel
    from kaggle_kit.notebooks.run_local import run_notebook

    result, _ = sft_run
    root = tmp_path / "project"
    root.mkdir()
    (root / "kit.toml").write_text(
        "[kaggle]\nusername = \"kit-demo\"\n"
        "[task]\nkind = \"sft\"\n"
        "[data]\ntest = \"/kaggle/input/my-instructions/eval.jsonl\"\nformat = \"instructions\"\n"
        "[inference]\nmax_batch_rows = 4\n"
        "[kernels.generate]\ntemplate = \"generate\"\ninstances = [\"tiny-base\", \"sft-adapter\"]\n"
        "[instances.tiny-base]\nmodel_slug = \"tiny-base\"\nkind = \"base\"\nversion = \"1\"\n"  # run-local mounts the manifest's base there
        "[instances.sft-adapter]\nmodel_slug = \"tiny-sft-adapter\"\nkind = \"adapter\"\nversion = \"1\"\n",
        encoding="utf-8",
    )
    nb = render_kernel(load_config(root / "kit.toml", required=True), "generate", root).notebook_path
    text = nb.read_text()
    assert "generate_file" in text and "kaggle_kit/runtime/generation.py" in text and "textmetrics.py" in text
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "eval.jsonl").write_text("\n".join(sft_data.read_text().splitlines()[:4]) + "\n")
    out = tmp_path / "nb-out"
    run = run_notebook(nb, {"competition": str(data_dir), "adapter": str(result.output_dir)}, out, log=lambda s: None)
    with (out / "predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["r0", "r1", "r2", "r3"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows"] == 4 and (out / "side_by_side.csv").is_file()
    assert run is not None

"""The `tiny` model preset: a small Gemma-2 and a byte-level BPE tokenizer built offline.

Used by tests, benchmarks and `make demo` where no model hub can be reached. `build_tiny_base(dir)`
writes a folder that the Auto classes load like any hub snapshot (config, safetensors weights,
tokenizer), so training and inference treat it as an ordinary local base model.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

TINY_CONFIG = dict(
    vocab_size=4096,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=8192,
    sliding_window=4096,
)
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]
# A causal base needs larger initial weights: with the default 0.02 every logit stays near 1 while
# lm_head and the final norm are frozen under LoRA, and the tiny model cannot show learning.
CAUSAL_INIT_RANGE = 0.3


def _corpus() -> list:
    from kaggle_kit.models.words import corpus_lines

    return corpus_lines()


def build_tokenizer(vocab_size: int = TINY_CONFIG["vocab_size"]):
    """A byte-level BPE fast tokenizer trained on the synthetic corpus (deterministic, ~0.1 s)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        model_max_length=TINY_CONFIG["max_position_embeddings"], padding_side="right",
    )


def build_tiny_base(out_dir, num_labels: int = 3, seed: int = 0, causal: bool = False) -> Path:
    """Write a tiny Gemma-2 (sequence classifier, or causal LM) and its tokenizer to ``out_dir``."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM, Gemma2ForSequenceClassification

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = Gemma2Config(
        **{**TINY_CONFIG, "vocab_size": len(tokenizer)},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_labels=num_labels,
        **({"initializer_range": CAUSAL_INIT_RANGE} if causal else {}),
    )
    model = (Gemma2ForCausalLM if causal else Gemma2ForSequenceClassification)(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "KIT_TINY.json").write_text(json.dumps({"generator": "kaggle_kit.models.tiny", "seed": seed, "causal": causal}) + "\n")
    return out


def tiny_base_dir(num_labels: int = 3, causal: bool = False) -> Path:
    """A cached tiny base under $KIT_CACHE (default ~/.cache/kaggle-kit); built on first use."""
    root = Path(os.environ.get("KIT_CACHE", Path.home() / ".cache" / "kaggle-kit"))
    key = hashlib.sha256(json.dumps([TINY_CONFIG, num_labels, causal, CAUSAL_INIT_RANGE if causal else None, _corpus_version()]).encode()).hexdigest()[:10]
    path = root / f"tiny-gemma2-{'causal' if causal else f'cls{num_labels}'}-{key}"
    if not (path / "config.json").exists():
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        build_tiny_base(tmp, num_labels=num_labels, causal=causal)
        try:
            tmp.rename(path)
        except OSError:  # another process won the race
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _corpus_version() -> str:
    from kaggle_kit.models.words import CORPUS_VERSION

    return CORPUS_VERSION

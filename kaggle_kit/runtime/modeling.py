"""Loading base models the same way in training, local prediction and the Kaggle notebook.

`load_base` handles quantization (4-bit NF4 with double quantization, 8-bit, or none), the pad
token of decoder models, and the bitsandbytes CPU trap from the stack notes: on CPUs with
AVX512-BF16, the first no-grad forward of a 4-bit model repacks the weights for a kernel with no
backward pass, after which LoRA weights under the head silently stop learning. We switch that
repacking off on every `Linear4bit` right after loading.
"""
from __future__ import annotations

from typing import Optional

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}


def torch_dtype(name: Optional[str]):
    import torch

    if name in (None, "", "auto"):
        return None
    return getattr(torch, DTYPES.get(name, name))


def quantization_config(quantization: dict):
    """A transformers BitsAndBytesConfig for {'mode': '4bit'|'8bit'|'none', …}, or None."""
    mode = (quantization or {}).get("mode", "none")
    if mode in ("none", "", None):
        return None
    from transformers import BitsAndBytesConfig

    if mode == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=quantization.get("quant_type", "nf4"),
            bnb_4bit_use_double_quant=bool(quantization.get("double_quant", True)),
            bnb_4bit_compute_dtype=torch_dtype(quantization.get("compute_dtype", "bfloat16")),
        )
    if mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"quantization mode {mode!r} is not one of none, 4bit, 8bit")


def disable_cpu_4bit_repack(model) -> int:
    """Stop bitsandbytes from repacking 4-bit weights into a forward-only CPU kernel. Returns the count."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def load_tokenizer(path, padding_side: str = "right"):
    """The tokenizer of a base or adapter folder, with a pad token (decoder models often lack one)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    tok.padding_side = padding_side
    return tok


def load_base(
    path,
    num_labels: int,
    quantization: Optional[dict] = None,
    dtype: Optional[str] = None,
    device_map=None,
    label_names: Optional[list] = None,
    problem_type: Optional[str] = None,
    pad_token_id: Optional[int] = None,
):
    """A sequence-classification base from a local folder (or hub id), quantized as asked."""
    import torch
    from transformers import AutoModelForSequenceClassification

    qconfig = quantization_config(quantization or {})
    kwargs = dict(num_labels=num_labels)
    if label_names:
        kwargs["id2label"] = {i: n for i, n in enumerate(label_names)}
        kwargs["label2id"] = {n: i for i, n in enumerate(label_names)}
    if problem_type:
        kwargs["problem_type"] = problem_type
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
        if dtype in (None, "", "auto"):
            dtype = (quantization or {}).get("compute_dtype", "bfloat16")
    td = torch_dtype(dtype)
    if td is not None:
        kwargs["dtype"] = td
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForSequenceClassification.from_pretrained(str(path), **kwargs)
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    if qconfig is not None and getattr(qconfig, "load_in_4bit", False):
        disable_cpu_4bit_repack(model)
    if torch.cuda.is_available() is False and qconfig is not None:
        model.config.use_cache = False
    return model

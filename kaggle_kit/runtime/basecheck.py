"""What a base model and an adapter folder are, read before any weights load.

Everything here reads config.json, adapter_config.json and the safetensors *header* (the JSON index
at the start of the file), so a wrong base, a too-long ``max_length``, a ``freeze_layers`` beyond
the layer count or an adapter that lacks its head is refused in a second, not after minutes of
loading, and with a message naming the file, the value and the fix.

- :func:`architecture_keys`: the config keys that describe the network itself (recorded in the
  manifest; a base whose config.json differs only in other keys is the same network).
- :func:`position_limit`: the longest input the position embeddings allow.
- :func:`head_modules`: the classification head and pooler module names of the architecture,
  found by building the model class on the meta device (no memory, no weights) and taking the
  modules outside the backbone (``base_model_prefix``) plus any pooler inside it. These are kept
  out of 4/8-bit quantization: bitsandbytes cannot quantize a 3-row head and a quantized pooler
  breaks encoder heads (BERT-likes), see tests/test_real_bases.py.
- :func:`check_adapter_tensors`: the adapter's safetensors hold its head (``modules_to_save``) and
  LoRA/IA3 tensors for its target modules.
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Optional

ARCH_KEYS = ("model_type", "architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "vocab_size", "max_position_embeddings", "intermediate_size", "head_dim")
# Names some configs use for the same quantities (GPT-2 family, T5-likes); the first one found wins.
_ALIASES = {
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"),
}
# RoBERTa-style models offset positions by padding_idx + 1 (transformers' create_position_ids_from_input_ids),
# so max_position_embeddings = 514 admits 512 tokens.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart", "xlm-roberta-xl", "data2vec-text"}


class BaseCheckError(ValueError):
    """A base or adapter folder that cannot work, found from its small files alone."""


def read_config(folder) -> dict:
    """config.json of a model folder as a dict (BaseCheckError naming the file when missing or broken)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise BaseCheckError(f"{folder}: no config.json; point at a transformers model folder (config.json, weights, tokenizer)")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BaseCheckError(f"{path}: not valid JSON ({exc}); restore the file from the model's original copy") from None
    if not isinstance(cfg, dict):
        raise BaseCheckError(f"{path}: holds {type(cfg).__name__}, not a JSON object")
    return cfg


def _get(cfg: dict, key: str):
    for name in _ALIASES.get(key, (key,)):
        if cfg.get(name) is not None:
            return cfg[name]
    sub = cfg.get("text_config")  # multimodal wrappers keep the language model's sizes here
    if isinstance(sub, dict):
        for name in _ALIASES.get(key, (key,)):
            if sub.get(name) is not None:
                return sub[name]
    return None


def architecture_keys(cfg: dict) -> dict:
    """The keys of ``cfg`` (a config.json dict) that describe the network: type, sizes, layers, heads, vocab, positions."""
    out = {k: _get(cfg, k) for k in ARCH_KEYS}
    if out["num_key_value_heads"] is None:
        out["num_key_value_heads"] = out["num_attention_heads"]
    if isinstance(out["architectures"], list):
        out["architectures"] = list(out["architectures"])
    return out


def compare_architecture(recorded: dict, given: dict) -> dict:
    """{key: (recorded, given)} for the architecture keys that differ (``architectures`` compares the
    backbone: LlamaForCausalLM and LlamaForSequenceClassification are the same network)."""
    diff = {}
    for key in ARCH_KEYS:
        a, b = recorded.get(key), given.get(key)
        if key not in recorded:
            continue
        if key == "architectures":
            strip = lambda v: sorted({re.sub(r"For[A-Za-z]+$", "", x) for x in (v or [])})  # noqa: E731
            if a and b and strip(a) != strip(b):
                diff[key] = (a, b)
            continue
        if a != b:
            diff[key] = (a, b)
    return diff


def position_limit(cfg: dict) -> Optional[int]:
    """The longest input (tokens) the base's position embeddings allow, or None when unbounded (RoPE
    models still record max_position_embeddings: the length they were trained for, which we honour)."""
    mpe = _get(cfg, "max_position_embeddings")
    if mpe is None:
        return None
    if cfg.get("model_type") in _OFFSET_POSITIONS:
        return int(mpe) - int(cfg.get("pad_token_id") or 1) - 1
    return int(mpe)


def layer_count(cfg: dict) -> Optional[int]:
    n = _get(cfg, "num_hidden_layers")
    return int(n) if n is not None else None


def check_base_config(folder, cfg: dict, *, max_length: Optional[int] = None, freeze_layers: int = 0,
                      causal: bool = False, where: str = "model.path") -> None:
    """Refuse (BaseCheckError) a base whose config.json cannot serve this run, before weights load.

    ``max_length`` must fit the position limit; ``freeze_layers`` must leave a layer to adapt; the
    model type must have a sequence-classification class (a causal-LM class with ``causal=True``).
    """
    from transformers.models.auto import modeling_auto as ma

    mtype = cfg.get("model_type")
    mapping = ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES if causal else ma.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    if mtype not in mapping:
        what = "causal-LM" if causal else "sequence-classification"
        raise BaseCheckError(
            f"{where} = {str(folder)!r}: model type {mtype!r} (config.json) has no {what} class in transformers; "
            f"choose a base like Gemma-2, Qwen-2, Llama, Mistral{'' if causal else ' or a BERT-like encoder'}")
    limit = position_limit(cfg)
    if max_length and limit is not None and int(max_length) > limit:
        raise BaseCheckError(
            f"prompt.max_length = {max_length} exceeds the position limit of {where} = {str(folder)!r}: "
            f"config.json max_position_embeddings allows {limit} tokens ({mtype}); "
            f"set --max-length {limit} (or prompt.max_length = {limit}) or lower")
    n_layers = layer_count(cfg)
    if freeze_layers and n_layers is not None and int(freeze_layers) >= n_layers:
        raise BaseCheckError(
            f"peft.freeze_layers = {freeze_layers} leaves no layer to adapt: {where} = {str(folder)!r} has "
            f"{n_layers} layers (config.json num_hidden_layers); use a value below {n_layers}, e.g. "
            f"--set peft.freeze_layers={max(0, n_layers // 2)}")


def head_modules(config, causal: bool = False) -> list:
    """Module names (as in ``model.named_modules()``) of the head and pooler of ``config``'s
    sequence-classification (or causal-LM) class, found on the meta device (no weights, no memory).

    Head: every top-level child holding parameters other than the backbone (``base_model_prefix``):
    ``score`` (Llama, Gemma, Qwen, Mistral), ``classifier`` and ``pre_classifier`` (BERT-likes,
    DistilBERT), ``lm_head`` (causal). Pooler: any module named ``pooler`` inside the backbone
    (BERT's ``bert.pooler``, DeBERTa's ``pooler``).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
    with torch.device("meta"):
        model = auto.from_config(config)
    prefix = getattr(model, "base_model_prefix", "") or ""
    names = []
    for name, child in model.named_children():
        if name == prefix:
            continue
        if any(True for _ in child.parameters()):
            names.append(name)
    backbone = getattr(model, prefix, None) if prefix else None
    if backbone is not None:
        for name, _ in backbone.named_modules():
            if name and name.rsplit(".", 1)[-1] == "pooler":
                names.append(f"{prefix}.{name}")
    return names


# --------------------------------------------------------------------------- adapter folders

def safetensors_keys(path) -> list:
    """Tensor names in a safetensors file, read from its header only (8-byte length + JSON index)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise BaseCheckError(f"{path}: empty or truncated safetensors file; copy the run folder again")
            (n,) = struct.unpack("<Q", raw)
            if n > 100_000_000:
                raise BaseCheckError(f"{path}: not a safetensors file (header length {n}); copy the run folder again")
            header = json.loads(fh.read(n).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, BaseCheckError):
            raise
        raise BaseCheckError(f"{path}: unreadable safetensors header ({exc}); copy the run folder again") from None
    return sorted(k for k in header if k != "__metadata__")


def _module_matches(key: str, target: str) -> bool:
    return f".{target}." in f".{key}"


def check_adapter_tensors(adapter_dir, base_heads: Optional[list] = None) -> dict:
    """Check an adapter folder's tensors against its adapter_config.json; returns {'head': [...], 'targets': [...]}.

    Raises BaseCheckError naming the file and the missing tensors: the head named by
    ``modules_to_save`` (without it peft raises KeyError or, in other versions, loads a random head)
    and, for LoRA, ``lora_A``/``lora_B`` of each target module; for IA3, ``ia3_l``.
    """
    adapter_dir = Path(adapter_dir)
    cfg_path = adapter_dir / "adapter_config.json"
    if not cfg_path.is_file():
        raise BaseCheckError(f"{adapter_dir}: no adapter_config.json; point at a run folder written by `kit train`")
    try:
        acfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BaseCheckError(f"{cfg_path}: not valid JSON ({exc}); restore it from the run folder") from None
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        found = sorted(p.name for p in adapter_dir.iterdir())[:10]
        raise BaseCheckError(f"{adapter_dir}: no adapter_model.safetensors (files: {found}); copy the whole run folder")
    keys = safetensors_keys(weights)
    missing = []
    heads = list(acfg.get("modules_to_save") or [])
    # peft adds its default head names ('classifier', 'score') to modules_to_save for SEQ_CLS; only the
    # one the base has is saved. ``base_heads`` (from head_modules) says which; else any one will do.
    required = [h for h in heads if h in base_heads] if base_heads else []
    present = [h for h in heads if any(_module_matches(k, h) for k in keys)]
    for head in required:
        if head not in present:
            missing.append(f"head {head!r} ({head}.weight)")
    if heads and not required and not present:
        missing.append(f"head {' or '.join(repr(h) for h in heads)}")
    ptype = str(acfg.get("peft_type", "LORA")).upper()
    markers = {"LORA": ("lora_A", "lora_B"), "IA3": ("ia3_l",)}.get(ptype, ())
    targets = acfg.get("target_modules") or []
    if isinstance(targets, str):  # a regular expression over full module names
        adapted = [k for k in keys if any(f".{m}." in k or k.endswith(f".{m}") for m in markers)]
        if markers and not adapted:
            missing.append(f"{ptype} tensors for target_modules {targets!r}")
    else:
        for t in targets:
            for m in markers:
                if not any(_module_matches(k, t) and f".{m}" in k for k in keys):
                    missing.append(f"{m} of {t!r}")
    if missing:
        raise BaseCheckError(
            f"{weights}: missing tensor(s) {', '.join(missing)} that {cfg_path.name} declares "
            f"(modules_to_save {heads}, target_modules {targets}); this adapter was saved incompletely "
            f"(e.g. without modules_to_save). Retrain with `kit train` or copy the complete run folder")
    return {"head": present, "targets": targets if isinstance(targets, list) else [targets]}


def base_architecture(base) -> dict:
    """Architecture keys of a local base folder's config.json for the manifest ({} for a hub id)."""
    path = Path(str(base))
    if not (path / "config.json").is_file():
        return {}
    return architecture_keys(read_config(path))

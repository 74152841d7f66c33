"""Base model + PEFT adapter for training.

The base comes from `runtime.modeling.load_base` (the same loader inference uses: quantization, pad
token, the CPU 4-bit repack trap). On top: LoRA or IA3 on a target preset ('attention',
'all-linear') or explicit module names, no adapter on the lowest N layers, the classification head
always trained and saved (``modules_to_save``), k-bit preparation, non-reentrant gradient
checkpointing, and the seed set right before the adapter's random initial weights are drawn.
"""
from __future__ import annotations

import re

from kaggle_kit.errors import KitError

# attention projections by naming family (decoders, BERT-likes, DeBERTa, GPT-2-likes)
ATTENTION_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value", "query_proj", "key_proj",
                   "value_proj", "c_attn", "qkv_proj", "Wqkv", "in_proj")
# the feed-forward output projection (IA3 scales its input)
FEEDFORWARD_NAMES = ("down_proj", "fc2", "w2", "dense_4h_to_h", "c_proj")
HEAD_NAMES = ("score", "classifier")
_LAYER_RE = re.compile(r"\.(?:layers|layer|h|blocks|block)\.(\d+)\.")


def linear_module_names(model) -> dict:
    """Full name -> short name of every Linear-like module below the classification head."""
    import torch

    try:
        import bitsandbytes as bnb

        linear_types = (torch.nn.Linear, bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    except ImportError:  # pragma: no cover
        linear_types = (torch.nn.Linear,)
    out = {}
    for name, module in model.named_modules():
        short = name.rsplit(".", 1)[-1]
        # lm_head: the label-token head reads the pretrained vocabulary projection (as peft's 'all-linear' leaves it out)
        if isinstance(module, linear_types) and short not in HEAD_NAMES and short != "lm_head" and "pooler" not in name:
            out[name] = short
    return out


def head_name(model) -> str:
    for name, _ in model.named_children():
        if name in HEAD_NAMES:
            return name
    raise KitError(f"{type(model).__name__} has no classification head named {' or '.join(HEAD_NAMES)}; "
                   f"use a base that AutoModelForSequenceClassification supports")


def num_layers(model) -> int:
    n = getattr(model.config, "num_hidden_layers", None)
    if n is None:
        idx = [int(m.group(1)) for name in linear_module_names(model) for m in [_LAYER_RE.search(name)] if m]
        n = max(idx) + 1 if idx else 0
    return int(n)


def layer_of(name: str):
    m = _LAYER_RE.search("." + name + ".")
    return int(m.group(1)) if m else None


def resolve_targets(model, targets: list) -> list:
    """Short module names for a preset ('attention', 'all-linear') or an explicit list (checked)."""
    linear = linear_module_names(model)
    shorts = sorted(set(linear.values()))
    targets = list(targets or ["attention"])
    if targets == ["attention"]:
        found = [n for n in shorts if n in ATTENTION_NAMES]
        if not found:
            raise KitError(f"peft.targets = ['attention']: no attention projections found in {type(model).__name__} "
                           f"(linear layers: {shorts}); list module names explicitly, e.g. peft.targets = {shorts[:2]}")
        return found
    if targets == ["all-linear"]:
        return shorts
    unknown = [t for t in targets if t not in shorts and not any(full.endswith("." + t) or full == t for full in linear)]
    if unknown:
        raise KitError(f"peft.targets = {targets}: {unknown} name no linear layer of {type(model).__name__}; "
                       f"available: {shorts}, or the presets 'attention' / 'all-linear'")
    return targets


def peft_config(model, peft: dict, multilabel: bool = False, causal: bool = False):
    """A LoraConfig / IA3Config for ``model`` from the [peft] section (a dict). ``causal``: the label-token head
    (task type CAUSAL_LM, no head to save: ``lm_head`` stays the pretrained one, frozen)."""
    from peft import IA3Config, LoraConfig, TaskType

    method = peft.get("method", "lora")
    targets = resolve_targets(model, peft.get("targets", ["attention"]))
    freeze = int(peft.get("freeze_layers", 0) or 0)
    n_layers = num_layers(model)
    if freeze and freeze >= n_layers:
        raise KitError(f"peft.freeze_layers = {freeze} leaves no layer to adapt: the base has {n_layers} layers; "
                       f"use a value below {n_layers}")
    head = None if causal else head_name(model)
    task_type = TaskType.CAUSAL_LM if causal else TaskType.SEQ_CLS
    saved = None if causal else [head]
    if method == "lora":
        kwargs = {}
        if freeze:
            kwargs["layers_to_transform"] = list(range(freeze, n_layers))
        return LoraConfig(
            task_type=task_type, r=int(peft.get("r", 16)), lora_alpha=float(peft.get("alpha", 32)),
            lora_dropout=float(peft.get("dropout", 0.0)), bias=peft.get("bias", "none"),
            target_modules=targets, modules_to_save=saved, **kwargs,
        )
    if method == "ia3":
        if list(peft.get("targets", ["attention"])) == ["attention"]:
            # IA3 on attention: keys, values and the feed-forward output (IA3 paper / PEFT defaults)
            targets = [t for t in targets if t in ("k_proj", "v_proj", "key", "value", "key_proj", "value_proj", "c_attn", "in_proj", "qkv_proj", "Wqkv")]
            linear = linear_module_names(model)
            targets += sorted({s for s in linear.values() if s in FEEDFORWARD_NAMES})
            if "output" in {full.rsplit(".", 2)[-2] for full in linear if full.count(".") >= 2}:  # BERT-like: output.dense
                targets.append("output.dense")
        ff = [t for t in targets if t in FEEDFORWARD_NAMES or t == "output.dense"]
        linear = linear_module_names(model)
        full_targets = [full for full in linear if any(full == t or full.endswith("." + t) for t in targets)]
        full_ff = [full for full in full_targets if any(full.endswith("." + t) for t in ff)]
        if freeze:
            full_targets = [f for f in full_targets if (layer_of(f) is None or layer_of(f) >= freeze)]
            full_ff = [f for f in full_ff if f in full_targets]
        return IA3Config(task_type=task_type, target_modules=full_targets, feedforward_modules=full_ff,
                         modules_to_save=saved)
    raise KitError(f"peft.method = {method!r}: training needs an adapter ('lora' or 'ia3')")


def attach_adapter(model, peft: dict, seed: int, quantized: bool, gradient_checkpointing: bool = False, causal: bool = False):
    """Prepare (k-bit, checkpointing), seed, wrap in PEFT. Returns the PeftModel. ``causal``: a causal LM for the
    label-token head (no classification head to train)."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    from kaggle_kit.runtime.precision import keep_head_fp32

    gc_kwargs = {"use_reentrant": False}
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs=gc_kwargs)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
    if gradient_checkpointing:
        model.config.use_cache = False
    # Sequence classifiers accept **kwargs, so the Trainer would believe they normalise the loss by
    # num_items_in_batch; they don't (loss x grad_accum, x world size). See stack notes.
    model.accepts_loss_kwargs = False
    cfg = peft_config(model, peft, causal=causal)
    set_seed(seed)
    torch.manual_seed(seed)
    pm = get_peft_model(model, cfg)
    if causal:
        return pm
    head = head_name(model)
    for name, p in pm.named_parameters():
        if "modules_to_save" in name and head in name:
            p.requires_grad_(True)
    # the head copy trains in fp32 on every base dtype (a float16 head turns NaN after one AdamW step;
    # in bf16 most small updates round away); LoRA/IA3 matrices are fp32 already (peft autocast)
    keep_head_fp32(pm)
    return pm


def weights_note(quant: dict, precision: str) -> str:
    """How the base's weights and the step run, in the words the manifest records (logs = manifest):
    'quantization 4bit (nf4, compute bfloat16), precision fp32'."""
    mode = (quant or {}).get("mode", "none")
    detail = ""
    if mode == "4bit":
        detail = f" ({quant.get('quant_type', 'nf4')}, compute {quant.get('compute_dtype', 'bfloat16')})"
    return f"quantization {mode}{detail}, precision {precision}"


def trainable_summary(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": int(trainable), "total": int(total), "share": trainable / max(total, 1)}


# --------------------------------------------------------------------------- the classification head: start and pace


def head_in_checkpoint(base_path, head: str) -> bool:
    """Whether the base's weight files already hold a trained ``head`` (a classifier checkpoint), read from the
    safetensors headers / index of a local folder; a hub id counts as new (its head is what the config's
    architecture says: a ``*ForSequenceClassification`` checkpoint ships one)."""
    import json
    from pathlib import Path

    path = Path(str(base_path))
    if not path.is_dir():
        try:
            from transformers import AutoConfig

            archs = getattr(AutoConfig.from_pretrained(str(base_path)), "architectures", None) or []
        except Exception:  # noqa: BLE001 - no config: nothing says a head ships with it
            return False
        return any(a.endswith("ForSequenceClassification") for a in archs)
    names: list = []
    for index in path.glob("*.safetensors.index.json"):
        names += list(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}))
    if not names:
        from safetensors import safe_open

        for f in path.glob("*.safetensors"):
            with safe_open(str(f), "pt") as fh:
                names += list(fh.keys())
    if not names:  # pytorch_model.bin only: its config's architecture says whether a head ships with it
        config = json.loads((path / "config.json").read_text(encoding="utf-8")) if (path / "config.json").is_file() else {}
        return any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or [])
    return any(n == f"{head}.weight" or n.endswith(f".{head}.weight") for n in names)


def init_head(model, mode: str, base_path) -> tuple:
    """Start the new classification head as ``mode`` says, before the adapter copies it; returns (how it
    started: 'zero' | 'model' | 'checkpoint', the log note).

    ``zero``: weights and bias 0, so the untrained model gives every class the same logit (uniform
    probabilities, log loss = ln K) instead of the confident, arbitrary bias of ``normal(0, 0.02)`` on pooled
    states of norm ~50 (SmolLM2; issue 20). ``model``: the model class's own random init. A head that the base
    checkpoint already holds (a trained classifier) is kept whatever ``mode`` says."""
    import torch

    head = head_name(model)
    if head_in_checkpoint(base_path, head):
        return "checkpoint", f"head: {head} comes with the base checkpoint: kept as loaded"
    if mode == "model":
        return "model", f"head: {head} new, the model class's random init (train.head_init = 'model')"
    if mode != "zero":
        raise KitError(f"train.head_init = {mode!r}: use 'zero' or 'model'")
    module = getattr(model, head)
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return "zero", f"head: {head} new, zero-initialised (train.head_init = 'zero': the untrained model predicts every class equally)"


def head_parameters(model) -> list:
    """The trainable parameters of the classification head's trained copy (``modules_to_save``)."""
    heads = set(HEAD_NAMES)
    return [p for name, p in model.named_parameters()
            if p.requires_grad and "modules_to_save" in name and heads & set(name.split("."))]


def split_head_group(optimizer, head_params: list, lr: float) -> int:
    """Move ``head_params`` out of the optimizer's parameter groups into groups of their own at ``lr`` (same
    weight decay and other settings as where they were); returns how many tensors moved. Call it before the
    LR scheduler is built: the scheduler then scales every group, the head's included, by the same schedule."""
    wanted = {id(p) for p in head_params}
    moved = 0
    new_groups = []
    for group in optimizer.param_groups:
        mine = [p for p in group["params"] if id(p) in wanted]
        if not mine:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in wanted]
        new_groups.append({**{k: v for k, v in group.items() if k not in ("params", "initial_lr")}, "params": mine, "lr": lr})
        moved += len(mine)
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
    for g in new_groups:
        optimizer.add_param_group(g)
    return moved


# train.head_learning_rate = 0: the head learns at this multiple of train.learning_rate (README: Training, measured)
HEAD_LR_FACTOR = 10.0


def head_learning_rate(train) -> float:
    """The head's peak learning rate from the [train] section: ``head_learning_rate``, else ``HEAD_LR_FACTOR`` x ``learning_rate``."""
    return float(train.head_learning_rate) if train.head_learning_rate > 0 else HEAD_LR_FACTOR * float(train.learning_rate)


# Step time of bitsandbytes on a CPU relative to fp32 (LoRA on attention, batch 4 x 64 tokens, 2-core machine, README:
# Training): 4-bit 1.22x (SmolLM2-135M) / 1.24x (MiniLM), 8-bit 1.19x / 1.58x, adamw_8bit 1.0x / 1.12x.
CPU_SLOWDOWN = {"4bit": "1.2x", "8bit": "1.2-1.6x", "8bit_optimizer": "1.0-1.1x"}


def cpu_fit_notes(quant_mode: str, optimizer: str, cuda: bool) -> list:
    """What a CPU run pays for GPU-minded settings, said before step 1 (nothing is changed): each note names the
    measured cost and the setting to change. Empty on a GPU or with CPU-fit settings."""
    if cuda:
        return []
    notes = []
    if quant_mode in ("4bit", "8bit"):
        notes.append(f"note: quantization.mode = '{quant_mode}' on a CPU runs bitsandbytes' CPU kernels: each step takes about "
                     f"{CPU_SLOWDOWN[quant_mode]} the fp32 time here and saves memory only; set quantization.mode = 'none' "
                     f"(--quantization none) unless the base does not fit in memory")
    if "8bit" in optimizer:
        notes.append(f"note: train.optimizer = '{optimizer}' on a CPU: no GPU kernel, about {CPU_SLOWDOWN['8bit_optimizer']} the "
                     f"step time of adamw_torch here, saving optimizer memory only; set train.optimizer = 'adamw_torch'")
    return notes

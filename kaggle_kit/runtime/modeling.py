"""Loading base models the same way in training, local prediction and the Kaggle notebook.

`load_base` handles quantization (4-bit NF4 with double quantization, 8-bit, or none), the pad
token of decoder models, and the bitsandbytes CPU trap from the stack notes: on CPUs with
AVX512-BF16, the first no-grad forward of a 4-bit model repacks the weights for a kernel with no
backward pass, after which LoRA weights under the head silently stop learning. We switch that
repacking off on every `Linear4bit` right after loading.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .manifest import Manifest

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}


def torch_dtype(name: Optional[str]):
    import torch

    if name in (None, "", "auto"):
        return None
    return getattr(torch, DTYPES.get(name, name))


def quantization_config(quantization: dict, skip_modules: Optional[list] = None):
    """A transformers BitsAndBytesConfig for {'mode': '4bit'|'8bit'|'none', …}, or None.

    ``skip_modules``: module names kept in full precision (the head and pooler, see
    ``basecheck.head_modules``); bitsandbytes' ``llm_int8_skip_modules`` applies to 4-bit too."""
    mode = (quantization or {}).get("mode", "none")
    if mode in ("none", "", None):
        return None
    from transformers import BitsAndBytesConfig

    skip = {"llm_int8_skip_modules": list(skip_modules)} if skip_modules else {}
    if mode == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=quantization.get("quant_type", "nf4"),
            bnb_4bit_use_double_quant=bool(quantization.get("double_quant", True)),
            bnb_4bit_compute_dtype=torch_dtype(quantization.get("compute_dtype", "bfloat16")),
            **skip,
        )
    if mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, **skip)
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


def load_pretrained(auto_class, path, quantization: Optional[dict] = None, dtype: Optional[str] = None, device_map=None, **kwargs):
    """``auto_class.from_pretrained`` quantized as asked: the dtype defaults to the 4-bit compute
    dtype, 4-bit weights are kept out of the CPU repack trap, and the head and pooler of the
    architecture (``basecheck.head_modules``) stay out of quantization. Shared by every model head."""
    qconfig = quantization_config(quantization or {})
    if qconfig is not None:
        from transformers import AutoConfig, AutoModelForCausalLM

        from .basecheck import head_modules

        config = AutoConfig.from_pretrained(str(path), **{k: v for k, v in kwargs.items() if k in ("num_labels", "id2label", "label2id")})
        qconfig = quantization_config(quantization or {}, skip_modules=head_modules(config, causal=auto_class is AutoModelForCausalLM))
        kwargs["quantization_config"] = qconfig
        if dtype in (None, "", "auto"):
            dtype = (quantization or {}).get("compute_dtype", "bfloat16")
    td = torch_dtype(dtype)
    if td is not None:
        kwargs["dtype"] = td
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = auto_class.from_pretrained(str(path), **kwargs)
    if qconfig is not None and getattr(qconfig, "load_in_4bit", False):
        disable_cpu_4bit_repack(model)
    return model


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

    kwargs = dict(num_labels=num_labels)
    if label_names:
        kwargs["id2label"] = {i: n for i, n in enumerate(label_names)}
        kwargs["label2id"] = {n: i for i, n in enumerate(label_names)}
    if problem_type:
        kwargs["problem_type"] = problem_type
    model = load_pretrained(AutoModelForSequenceClassification, path, quantization, dtype, device_map, **kwargs)
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    if not torch.cuda.is_available() and quantization_config(quantization or {}) is not None:
        model.config.use_cache = False
    return model


def load_causal(path, quantization: Optional[dict] = None, dtype: Optional[str] = None, device_map=None,
                pad_token_id: Optional[int] = None):
    """A causal LM (the label-token head, ``task.head = 'label_tokens'``) quantized as asked, ``lm_head`` kept out of
    quantization (``basecheck.head_modules(causal=True)``), as :func:`load_base` does for a classification head."""
    import torch
    from transformers import AutoModelForCausalLM

    model = load_pretrained(AutoModelForCausalLM, path, quantization, dtype, device_map)
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    if not torch.cuda.is_available() and quantization_config(quantization or {}) is not None:
        model.config.use_cache = False
    return model


def is_label_tokens(manifest) -> bool:
    """Whether a run folder's manifest records the label-token head (``task.head``; older manifests: seq_cls)."""
    return (manifest.task or {}).get("head", "seq_cls") == "label_tokens"


def quantization_for(manifest_quant: Optional[dict], override: Optional[str]) -> dict:
    """The quantization dict to load with: the trained one, or ``override`` ('none' | '4bit' | '8bit')."""
    q = dict(manifest_quant or {"mode": "none"})
    if override in (None, ""):
        return q
    if override not in ("none", "4bit", "8bit"):
        raise ValueError(f"quantization {override!r} is not one of none, 4bit, 8bit")
    q["mode"] = override
    if override == "4bit":
        q.setdefault("quant_type", "nf4")
        q.setdefault("double_quant", True)
        q.setdefault("compute_dtype", "bfloat16")
    return q


def is_merged_folder(folder) -> bool:
    """A folder written by `kit merge` (full model + manifest, no adapter_config.json)."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file()


def _compute_dtype_for(device: str, wanted: Optional[str]) -> Optional[str]:
    """bf16 compute where the GPU has it natively (compute capability >= 8.0); fp16 on older GPUs
    (T4); as asked on the CPU. The rule lives in :func:`runtime.precision.half_dtype_for`."""
    from .precision import half_dtype_for

    return half_dtype_for(device, wanted) if device.startswith("cuda") else wanted


def _head_names(source, num_labels: int, causal: bool = False) -> list:
    from transformers import AutoConfig

    from .basecheck import head_modules

    return head_modules(AutoConfig.from_pretrained(str(source), num_labels=num_labels), causal=causal)


class load_errors:
    """Context manager: any exception of transformers/peft while loading becomes a CompatibilityError
    (the CLI prints it as one `Error:` line) naming ``what``, the original error and ``fix``."""

    def __init__(self, what: str, fix: str):
        self.what, self.fix = what, fix

    def __enter__(self):
        return self

    def __exit__(self, etype, exc, tb):
        from .manifest import CompatibilityError

        if exc is None or isinstance(exc, (CompatibilityError, KeyboardInterrupt, MemoryError)):
            return False
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CompatibilityError(f"{self.what} ({type(exc).__name__}: {msg[:300]}); {self.fix}") from exc


class quiet_head_report:
    """Hide transformers' load report when all it says is that the head is MISSING.

    A fresh sequence-classification base reports its head (``score.weight``, ``classifier.*``) as
    MISSING ("newly initialized … Consider training"); the adapter's ``modules_to_save`` replaces
    those weights right after, so that report would only mislead. A report naming any other key or
    status (UNEXPECTED, MISMATCH, a missing backbone weight) still shows. ``heads``: module names
    from ``basecheck.head_modules``."""

    def __init__(self, enabled: bool = True, heads: Optional[list] = None):
        self.enabled, self.heads = enabled, tuple(heads or ("score", "classifier"))

    def filter(self, record) -> bool:
        msg = record.getMessage()
        if "LOAD REPORT" not in msg:
            return True
        rows = [[c.strip() for c in line.split("|")] for line in msg.splitlines() if line.count("|") >= 2]
        rows = [r for r in rows if len(r) >= 2 and r[0] and r[0] != "Key" and not set(r[0]) <= set("-+")]
        only_head = rows and all(r[1] == "MISSING" and any(r[0].startswith(h + ".") for h in self.heads) for r in rows)
        return not only_head

    def _handlers(self):
        import logging

        return logging.getLogger("transformers").handlers

    def __enter__(self):
        if self.enabled:
            for h in self._handlers():
                h.addFilter(self)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            for h in self._handlers():
                h.removeFilter(self)
        return False


@dataclass
class LoadPlan:
    """What every device's copy of one run folder shares, checked and decided once before any weights load.

    ``source``: the folder the weights load from (the base, or the merged folder itself);
    ``quantization``: the dict to load with (before the per-device 4-bit compute dtype); ``heads``: the
    base's head and pooler module names (None for a merged folder); ``tokenizer_dir``: where the
    tokenizer is read (the run folder when it saved one, else the base)."""

    adapter_dir: Path
    manifest: Manifest
    merged: bool
    source: Path
    quantization: dict
    heads: Optional[list]
    tokenizer_dir: Path


def load_for_inference(adapter_dir, base_path=None, quantization: Optional[str] = None, device=None, merged: Optional[bool] = False,
                       dtype: Optional[str] = None, log=None, manifest: Optional[Manifest] = None):
    """(model, tokenizer, manifest) ready for prediction from a run folder's ``kit_manifest.json``.

    - the base loads in the quantization it was trained with, or ``quantization`` ('none'|'4bit'|'8bit');
    - the adapter attaches with ``PeftModel.from_pretrained`` (or, for a folder written by `kit merge`,
      ``merged=True`` or auto-detected, the merged model loads directly);
    - the pad token comes from the tokenizer saved with the adapter (right padding);
    - compatibility (base, labels, library versions) is checked before any weights load.

    ``manifest``: the folder's kit_manifest.json already read (else read here). Loading one folder on
    several devices: :func:`plan_load` once, then :func:`load_planned` per device.
    """
    plan = plan_load(adapter_dir, manifest, base_path=base_path, quantization=quantization, merged=merged, log=log)
    model, tokenizer = load_planned(plan, device, dtype)
    return model, tokenizer, plan.manifest


def plan_load(adapter_dir, manifest: Optional[Manifest] = None, *, base_path=None, quantization: Optional[str] = None,
              merged: Optional[bool] = False, log=None) -> LoadPlan:
    """The device-independent half of :func:`load_for_inference`: the library versions, the base and the
    adapter's tensors checked (config files and safetensors headers only; warnings and notes to ``log``),
    the weights' folder, quantization and tokenizer folder chosen. ``manifest``: read here when None.

    Raises CompatibilityError naming the problem and the fix.
    """
    from .basecheck import BaseCheckError, check_adapter_tensors
    from .kaggle_env import recorded_base
    from .manifest import CompatibilityError, check_compatible, check_versions

    log = log or (lambda *a, **k: None)
    adapter_dir = Path(adapter_dir)
    manifest = Manifest.load(adapter_dir) if manifest is None else manifest
    heads = None
    warns, errors = check_versions(manifest)
    for w in warns:
        log(f"warning: {w}")
    if errors:
        raise CompatibilityError("; ".join(errors))
    merged = bool(merged) or is_merged_folder(adapter_dir)
    if merged:
        source = adapter_dir
        q = quantization_for({"mode": "none"}, quantization)
    else:
        source = Path(base_path) if base_path else Path(recorded_base(manifest.base_model, adapter_dir))
        if not str(source) or not (source / "config.json").is_file():
            raise CompatibilityError(
                f"{adapter_dir}: the base model folder {str(source) or '(none recorded)'} is not here; "
                f"pass --base with the base model folder ({manifest.base_model.get('name', '?')})"
            )
        for note in check_compatible(manifest, source, None):
            log(note)
        heads = _head_names(source, len(manifest.labels) or 2, causal=is_label_tokens(manifest))
        try:  # the adapter's tensors against its config and the base's head, before any weights load
            check_adapter_tensors(adapter_dir, base_heads=heads)
        except BaseCheckError as exc:
            raise CompatibilityError(str(exc)) from None
        q = quantization_for(manifest.quantization, quantization)
    tok_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else source
    return LoadPlan(adapter_dir, manifest, merged, source, q, heads, tok_dir)


def load_planned(plan: LoadPlan, device=None, dtype: Optional[str] = None, tokenizer=None) -> tuple:
    """(model, tokenizer): ``plan``'s model on ``device`` (default: the first GPU, else the CPU), in eval
    mode, without KV cache. ``dtype``: None = the device's own half precision on a GPU (bf16 where native,
    else fp16; a merged folder's saved dtype where it fits), float32 on the CPU. ``tokenizer``: one
    already loaded for this plan (replicas on several devices share it); else loaded (right padding)."""
    import torch

    device = str(device or ("cuda:0" if torch.cuda.is_available() else "cpu"))
    q = dict(plan.quantization)
    if q.get("mode") in ("4bit", "8bit"):  # 8-bit: the dtype its unquantized layers load and compute in
        q["compute_dtype"] = _compute_dtype_for(device, q.get("compute_dtype", "bfloat16"))
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(plan.tokenizer_dir, padding_side="right")
    if is_label_tokens(plan.manifest):  # the recorded verbalizations must still be the recorded token ids
        from .label_tokens import check_token_ids

        lt = plan.manifest.task.get("label_tokens") or {}
        check_token_ids(tokenizer, lt.get("verbalizations"), lt.get("token_ids") or [], plan.manifest.labels,
                        where=f"{plan.adapter_dir / 'kit_manifest.json'} (task.label_tokens)")
    if dtype is None and q.get("mode", "none") == "none":
        saved = (plan.manifest.training or {}).get("merged", {}).get("dtype") if plan.merged else None
        if device.startswith("cuda"):
            dtype = _compute_dtype_for(device, saved)  # None: the device's own half precision
        else:
            dtype = "float32"
    device_map = {"": device} if q.get("mode", "none") != "none" else None
    model = _build_model(plan, q, dtype, device_map, tokenizer)
    if device_map is None:
        model = model.to(device)
    model.eval()
    cfg = getattr(model, "config", None)
    if cfg is not None:
        cfg.pad_token_id = tokenizer.pad_token_id
        cfg.use_cache = False
    return model, tokenizer


def _build_model(plan: LoadPlan, q: dict, dtype: Optional[str], device_map, tokenizer):
    """The base (or merged model) loaded as asked, the adapter attached with its head kept in float32;
    loading errors become CompatibilityErrors naming the folder and the fix."""
    manifest, source = plan.manifest, plan.source
    if is_label_tokens(manifest):
        return _build_label_token_model(plan, q, dtype, device_map, tokenizer)
    with load_errors(f"{source}: cannot load the base model", "pass --base with the folder the adapter was trained on"), \
            quiet_head_report(not plan.merged, plan.heads):
        model = load_base(
            source, num_labels=len(manifest.labels) or 2, quantization=q, dtype=dtype, device_map=device_map,
            label_names=manifest.labels or None, pad_token_id=tokenizer.pad_token_id,
            problem_type="multi_label_classification" if manifest.kind == "multilabel" else None,
        )
    if plan.merged:
        return model
    from peft import PeftModel

    with load_errors(f"{plan.adapter_dir}: cannot attach the adapter to {source}", "retrain with `kit train` or pass the base it was trained on"):
        model = PeftModel.from_pretrained(model, str(plan.adapter_dir), is_trainable=False)
    from .precision import keep_head_fp32

    keep_head_fp32(model)  # the head computes in float32 on a 16-bit base, as it trained
    return model


def _build_label_token_model(plan: LoadPlan, q: dict, dtype: Optional[str], device_map, tokenizer):
    """The label-token head's model: the causal LM (+ adapter) wrapped so that ``.logits`` are the class scores
    at the answer position (:func:`runtime.label_tokens.make_classifier`)."""
    from .label_tokens import make_classifier

    lt = plan.manifest.task.get("label_tokens") or {}
    with load_errors(f"{plan.source}: cannot load the base model as a causal LM", "pass --base with the folder the adapter was trained on"):
        model = load_causal(plan.source, quantization=q, dtype=dtype, device_map=device_map, pad_token_id=tokenizer.pad_token_id)
    if not plan.merged:
        from peft import PeftModel

        with load_errors(f"{plan.adapter_dir}: cannot attach the adapter to {plan.source}",
                         "retrain with `kit train` or pass the base it was trained on"):
            model = PeftModel.from_pretrained(model, str(plan.adapter_dir), is_trainable=False)
    return make_classifier(model, lt.get("token_ids") or [], lt.get("verbalizations"))

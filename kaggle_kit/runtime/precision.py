"""Numeric precision, decided once per target device, for training, prediction and generation.

- :func:`precision_for_device` is THE rule: bf16 only where the device computes it natively (an
  NVIDIA GPU of compute capability >= 8.0: A100, L4, H100 …), fp16 on older GPUs (Kaggle's T4 and
  P100 are 7.5 / 6.0), fp32 on the CPU. It asks ``torch.cuda.get_device_capability(device)`` for the
  device being loaded, not ``torch.cuda.is_bf16_supported()``: that one answers about the *current*
  device and, with its default ``including_emulation=True``, says True on a T4, where bf16 runs
  emulated (slowly) — see torch/cuda/__init__.py, ``is_bf16_supported``; bf16 tensor cores arrived
  with Ampere (CUDA C Programming Guide, "Compute Capabilities").
- :func:`dtype_by_rule` turns a dtype setting ('auto' or a name: ``model.dtype``,
  ``quantization.compute_dtype``) into the dtype a run computing in a precision uses, and says who chose
  it: 'auto' follows the precision (float16 under fp16 on a T4, never an emulated bfloat16), a name is
  the user's choice and is kept. Training and inference both go through it.
- :func:`keep_head_fp32` keeps the trainable parameters that are not adapter matrices (the
  classification head PEFT copies into ``modules_to_save``) in float32 on every base dtype, and casts
  their input to float32: a float16 head's AdamW update (eps 1e-8 rounds to 0 in fp16) turns it into
  NaN after one step, and in bf16 most of a small update rounds away.
"""
from __future__ import annotations

from typing import Optional

PRECISIONS = ("bf16", "fp16", "fp32")
DTYPE_OF = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
BF16_MIN_CAPABILITY = (8, 0)


def dtype_name(name: str) -> str:
    """'bf16' | 'fp16' | 'fp32' or a torch dtype name -> the torch dtype name ('bfloat16' …)."""
    return DTYPE_OF.get(name, name)


def dtype_by_rule(setting: Optional[str], precision: str) -> tuple:
    """(dtype name, 'rule' | 'user') for a dtype ``setting`` in a run that computes in ``precision``:
    'auto' (or empty) → the precision's own dtype, by the rule; anything else → kept, the user's choice."""
    if setting in (None, "", "auto"):
        return DTYPE_OF[precision], "rule"
    return dtype_name(setting), "user"


def device_capability(device) -> Optional[tuple]:
    """(major, minor) compute capability of a CUDA ``device`` ('cuda', 'cuda:1', torch.device), else None."""
    import torch

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability(dev))


def precision_for_device(device) -> str:
    """'bf16' | 'fp16' | 'fp32': the half precision ``device`` runs natively (see the module docstring)."""
    cap = device_capability(device)
    if cap is None:
        return "fp32"
    return "bf16" if cap >= BF16_MIN_CAPABILITY else "fp16"


def resolve_precision(requested: str, device) -> str:
    """The precision to train with: ``requested`` ('auto' | 'bf16' | 'fp16' | 'fp32') on ``device``.

    'auto' → :func:`precision_for_device`. Raises ValueError for bf16 on a GPU without native bf16
    and for a half precision on the CPU (the Trainer's CPU autocast is bf16-only and slow): both
    would run, but not as asked."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        return precision_for_device(device)
    if requested not in PRECISIONS:
        raise ValueError(f"train.precision = {requested!r} is not one of auto, {', '.join(PRECISIONS)}")
    cap = device_capability(device)
    if requested == "bf16" and cap is not None and cap < BF16_MIN_CAPABILITY:
        raise ValueError(f"train.precision = 'bf16' but {device} (compute capability {cap[0]}.{cap[1]}) has no native bf16 "
                         f"(needs 8.0+); use 'auto' or 'fp16'")
    if requested == "fp16" and cap is None:
        raise ValueError(f"train.precision = 'fp16' needs a GPU ({device} is not one); use 'auto' (fp32 on the CPU)")
    return requested


def half_dtype_for(device, wanted: Optional[str] = None) -> str:
    """The dtype name ('bfloat16' | 'float16' | 'float32') to load or compute in on ``device``.

    ``wanted`` (e.g. the 4-bit compute dtype or a merged model's saved dtype) is kept unless it is
    bfloat16 on a GPU without native bf16 (→ float16). None: the device's own precision."""
    native = DTYPE_OF[precision_for_device(device)]
    if wanted in (None, "", "auto"):
        return native
    wanted = dtype_name(wanted)
    if wanted == "bfloat16" and native == "float16":
        return "float16"
    return wanted


def _cast_input_hook(module, args, kwargs):
    import torch

    dtype = next((p.dtype for p in module.parameters()), None)
    if dtype is None:
        return None
    cast = lambda a: a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() and a.dtype != dtype else a  # noqa: E731
    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def keep_head_fp32(model) -> list:
    """Cast every ``modules_to_save`` copy (the classification head) of a PEFT ``model`` to float32 and
    make it cast its input to float32 (the rest of the model keeps its dtype; under the Trainer's
    autocast the matmul runs in the autocast dtype with fp32 master weights). LoRA / IA3 matrices are
    already float32: ``get_peft_model`` / ``PeftModel.from_pretrained`` upcast them
    (``autocast_adapter_dtype=True``) and cast their input themselves. Idempotent; returns the
    names of the copies cast."""
    import torch

    try:
        from peft.utils import ModulesToSaveWrapper
    except ImportError:  # pragma: no cover - peft always ships it
        ModulesToSaveWrapper = ()
    changed = []
    for name, module in model.named_modules():
        if ModulesToSaveWrapper and isinstance(module, ModulesToSaveWrapper):
            for key, copy in module.modules_to_save.items():
                if any(p.dtype in (torch.float16, torch.bfloat16) for p in copy.parameters()):
                    copy.float()
                    changed.append(f"{name}.modules_to_save.{key}")
                if not getattr(copy, "_kit_fp32_hook", False):
                    copy.register_forward_pre_hook(_cast_input_hook, with_kwargs=True)
                    copy._kit_fp32_hook = True
    return changed

"""Gemma-2's eager attention with in-place steps, for inference (used by :mod:`runtime.infer`)."""
from __future__ import annotations


FAST_ATTENTION = "kit_eager_inplace"
FAST_ATTENTION_TYPES = ("gemma2",)  # eager-only models whose attention this function reproduces


def eager_inplace_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, softcap=None, **kwargs):
    """Gemma-2's eager attention (logit soft-capping, additive mask, fp32 softmax) with in-place steps.

    The same arithmetic as transformers' ``eager_attention_forward``, but the (rows × heads × L × L)
    score tensor is allocated once instead of six times (scale and 1/softcap fold into the query;
    tanh, ×softcap and the mask apply in place). Inference only: no dropout, no attention weights
    returned, in-place ops have no backward. Probabilities match the stock path to ~1e-7.
    """
    import torch

    if scaling is None:
        scaling = module.head_dim ** -0.5
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        b, h, n, d = key.shape
        key = key[:, :, None].expand(b, h, groups, n, d).reshape(b, h * groups, n, d)
        value = value[:, :, None].expand(b, h, groups, n, d).reshape(b, h * groups, n, d)
    q = query * (scaling / softcap) if softcap else query * scaling
    w = torch.matmul(q, key.transpose(2, 3))
    if softcap:
        w.tanh_().mul_(softcap)
    if attention_mask is not None:
        w.add_(attention_mask[:, :, :, : key.shape[-2]])
    if w.dtype == torch.float32:
        w = torch.softmax(w, dim=-1)
    else:
        w = torch.softmax(w, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(w, value).transpose(1, 2).contiguous()
    return out, None


def _register_fast_attention() -> bool:
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    except ImportError:  # pragma: no cover - older transformers
        return False
    AttentionInterface.register(FAST_ATTENTION, eager_inplace_attention)
    AttentionMaskInterface.register(FAST_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    return True


class fast_attention:
    """Context: models running Gemma-2 eager attention use :func:`eager_inplace_attention` inside it.

    The configuration is restored on exit, so a model that goes back to training gets the stock
    (differentiable) attention again.
    """

    def __init__(self, models, enabled: bool = True):
        self.models, self.enabled, self.changed = list(models), enabled, []

    def __enter__(self):
        if not self.enabled:
            return self
        seen = set()
        for m in self.models:
            cfg = getattr(m, "config", None)
            if cfg is None or id(cfg) in seen:
                continue
            seen.add(id(cfg))
            if getattr(cfg, "model_type", None) in FAST_ATTENTION_TYPES and cfg._attn_implementation in (None, "eager"):
                if not _register_fast_attention():
                    return self
                self.changed.append((cfg, cfg._attn_implementation))
                cfg._attn_implementation = FAST_ATTENTION
        return self

    def __exit__(self, *exc):
        for cfg, old in self.changed:
            cfg._attn_implementation = old
        return False

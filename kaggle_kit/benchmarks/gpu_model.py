"""Random-weight Gemma-2 classifiers built from config directly on a device, for `kit bench gpu`.

No download: the architecture comes from a :class:`transformers.Gemma2Config` with the published
sizes of Gemma-2-9B and Gemma-2-2B (google/gemma-2-9b and gemma-2-2b ``config.json``: hidden 3584 /
2304, MLP 14336 / 9216, 42 / 26 layers, 16 / 8 heads of 256 with 8 / 4 KV heads, vocabulary 256,000).
The model is first made on the ``meta`` device (no memory), then each decoder layer is built for
real on the device, its weights drawn from N(0, 0.02) as transformers initialises Gemma-2
(``initializer_range``), cast to the compute dtype and — for ``8bit`` / ``4bit`` — every linear
layer replaced by its bitsandbytes counterpart (``Linear8bitLt`` with LLM.int8()'s threshold 6.0,
``Linear4bit`` NF4 with double quantization: the kit's :func:`runtime.modeling.quantization_config`
settings), one layer at a time, so peak memory stays at the quantized model plus one 16-bit layer.
The embeddings, final norm, rotary embedding and the 3-label head follow; nothing is left on ``meta``.
"""
from __future__ import annotations

GEMMA2_SHAPES = {
    "9b": dict(hidden_size=3584, intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
               num_key_value_heads=8, head_dim=256, query_pre_attn_scalar=256),
    "2b": dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
               num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256),
}
MODES = ("fp16", "8bit", "4bit")
INIT_STD = 0.02  # Gemma2Config.initializer_range
INT8_THRESHOLD = 6.0  # BitsAndBytesConfig.llm_int8_threshold's default


def gemma2_config(shape: dict, num_labels: int = 3, vocab_size: int = 256_000, pad_token_id: int = 0):
    """A Gemma2Config of ``shape`` (a :data:`GEMMA2_SHAPES` entry or any dict of its keys), eager attention."""
    from transformers import Gemma2Config

    return Gemma2Config(vocab_size=vocab_size, num_labels=num_labels, pad_token_id=pad_token_id,
                        attn_implementation="eager", **shape)


def weight_bytes(config, mode: str) -> int:
    """Bytes the weights take on the device in ``mode`` (16-bit embeddings, norms and head; the layers'
    matrices at 2, 1 or ~0.56 bytes per parameter: NF4 plus its block scales)."""
    from kaggle_kit.benchmarks.roofline import arch_of

    per = {"fp16": 2.0, "bf16": 2.0, "fp32": 4.0, "8bit": 1.0, "4bit": 0.5625}[mode]
    arch = arch_of(config)
    return int(arch.matrix_params * per + config.vocab_size * config.hidden_size * 2)


def _quantized(linear, mode: str, dtype, device):
    """The bitsandbytes module for ``linear`` (weights already drawn, in ``dtype``), quantized on ``device``."""
    import bitsandbytes as bnb

    w = linear.weight.data
    if mode == "4bit":
        q = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=False, compute_dtype=dtype,
                              compress_statistics=True, quant_type="nf4", device="meta")
        q.weight = bnb.nn.Params4bit(w, requires_grad=False, compress_statistics=True, quant_type="nf4",
                                     module=q).to(device)  # Params4bit quantizes on its first move to a device
        return q
    q = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=False, has_fp16_weights=False,
                            threshold=INT8_THRESHOLD, device="meta")
    q.weight = bnb.nn.Int8Params(w.to("cpu", dtype=dtype), requires_grad=False, has_fp16_weights=False).to(device)
    return q  # Int8Params quantizes when it moves from the CPU to a device


def _layer(config, i: int, mode: str, dtype, device, gen):
    """Decoder layer ``i`` on ``device``: weights ~ N(0, INIT_STD), in ``dtype``, quantized for 8bit/4bit."""
    import torch
    from transformers.models.gemma2 import modeling_gemma2 as g2

    with torch.device(device):
        layer = g2.Gemma2DecoderLayer(config, i)
    with torch.no_grad():
        for m in layer.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.0, INIT_STD, generator=gen)
    layer = layer.to(dtype)
    if mode in ("8bit", "4bit"):
        for parent in list(layer.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear):
                    setattr(parent, name, _quantized(child, mode, dtype, device))
    return layer


def build_classifier(config, mode: str, device, dtype=None, seed: int = 0):
    """A random-weight Gemma2ForSequenceClassification of ``config`` on ``device`` in ``mode``
    ('fp16' | 'bf16' | 'fp32' | '8bit' | '4bit'; the compute dtype of 8bit/4bit is ``dtype``,
    default float16). Eval mode, no KV cache."""
    import torch
    from transformers import Gemma2ForSequenceClassification
    from transformers.models.gemma2 import modeling_gemma2 as g2

    if mode not in MODES + ("bf16", "fp32"):
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES + ('bf16', 'fp32'))}")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}.get(mode, dtype or torch.float16)
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.device("meta"):
        model = Gemma2ForSequenceClassification(config)
    for i in range(config.num_hidden_layers):
        model.model.layers[i] = _layer(config, i, mode, dtype, device, gen)
    with torch.device(device), torch.no_grad():
        emb = torch.nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id, dtype=dtype)
        emb.weight.normal_(0.0, INIT_STD, generator=gen)
        model.model.embed_tokens = emb
        model.model.norm = g2.Gemma2RMSNorm(config.hidden_size, eps=config.rms_norm_eps).to(dtype)
        model.model.rotary_emb = g2.Gemma2RotaryEmbedding(config=config)
        head = torch.nn.Linear(config.hidden_size, config.num_labels, bias=False, dtype=dtype)
        head.weight.normal_(0.0, INIT_STD, generator=gen)
        model.score = head
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"build_classifier left tensors on the meta device: {left[:5]}")
    model.config.use_cache = False
    return model.eval()

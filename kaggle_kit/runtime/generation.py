"""Instruction prompts and batched generation for SFT adapters (one source of truth).

Training (`kaggle_kit.sft`), `kit generate` and the generation notebook all build prompts here:

- The prompt comes from the tokenizer's chat template when the base has one (template name
  ``chat``), else from a named template such as ``kit-sft-v1``::

      ### Instruction:
      {instruction}

      ### Input:
      {input}

      ### Response:

  (the ``### Input`` block is left out when the input is empty). The resolved name is saved in the
  adapter manifest's ``generation`` block, so generation rebuilds exactly the training prompt.
- :func:`encode_example` gives ``input_ids`` and ``labels`` with ``-100`` on every prompt token: the
  loss covers the response (and the end-of-sequence token that teaches the model to stop) only.
- Over-long examples keep the response's head (at least half of ``max_length`` when it needs it)
  and the prompt's head and tail (the tail holds the "### Response:" marker / generation prompt).
- :func:`generate_texts` sorts prompts by length, batches them under a row cap and a token budget,
  LEFT-pads, decodes greedily (or samples) under ``torch.inference_mode``, stops each row at EOS or
  a stop string, and restores the original order. Greedy answers do not depend on batching.
- :func:`generate_file` reads everything else (base model, quantization, prompt template, stop
  strings, max new tokens) from ``kit_manifest.json``, writes one answer per input row (CSV or
  JSONL), and when the data has reference outputs, ``metrics.json`` (exact match, token F1, ROUGE-L)
  and a side-by-side CSV (id, instruction, input, reference, answer).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from .progress import quiet_known_warnings
from .textmetrics import score_row, score_texts

CHAT = "chat"
AUTO_NAMES = ("auto", "kit-v1", "")  # "kit-v1" is the classifier default: resolve it like "auto"
SFT_TEMPLATES = {
    "kit-sft-v1": {
        "with_input": "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
        "without_input": "### Instruction:\n{instruction}\n\n### Response:\n",
        "stop_strings": ["### Instruction:", "### Input:", "### Response:"],
    },
}
PROMPT_TAIL_TOKENS = 32  # tokens kept from a shortened prompt's end (the response marker lives there)
DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_BATCH_SIZE = 16
DEFAULT_BATCH_TOKENS = 16384


# --------------------------------------------------------------------------- prompts


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_template(tokenizer, requested: str = "auto") -> str:
    """``chat`` when asked for (or ``auto`` and the tokenizer has a chat template), else a named template."""
    requested = requested or "auto"
    if requested in AUTO_NAMES:
        return CHAT if has_chat_template(tokenizer) else "kit-sft-v1"
    if requested == CHAT:
        if not has_chat_template(tokenizer):
            raise ValueError(
                "prompt.template = 'chat' but the tokenizer has no chat template; "
                f"use one of: auto, {', '.join(SFT_TEMPLATES)}"
            )
        return CHAT
    if requested not in SFT_TEMPLATES:
        raise ValueError(f"unknown SFT prompt template {requested!r}; use one of: auto, chat, {', '.join(SFT_TEMPLATES)}")
    return requested


def default_stop_strings(template: str) -> list:
    return list(SFT_TEMPLATES.get(template, {}).get("stop_strings", []))


def user_message(instruction: str, input_text: str = "") -> str:
    instruction = (instruction or "").strip()
    input_text = (input_text or "").strip()
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def render_prompt(tokenizer, template: str, instruction: str, input_text: str = "") -> str:
    """The prompt text a response follows (for ``chat``: the template with the generation prompt)."""
    if template == CHAT:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message(instruction, input_text)}], tokenize=False, add_generation_prompt=True
        )
    spec = SFT_TEMPLATES[template]
    input_text = (input_text or "").strip()
    pattern = spec["with_input"] if input_text else spec["without_input"]
    return pattern.format(instruction=(instruction or "").strip(), input=input_text)


def render_response(tokenizer, template: str, instruction: str, input_text: str, output: str) -> str:
    """The text that follows the prompt in a training example (for ``chat``: with the end-of-turn marks)."""
    if template == CHAT:
        prompt = render_prompt(tokenizer, template, instruction, input_text)
        full = tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message(instruction, input_text)}, {"role": "assistant", "content": output}],
            tokenize=False,
        )
        if full.startswith(prompt):
            return full[len(prompt):]
    return output


def _ids(tokenizer, text: str, specials: bool) -> list:
    return list(tokenizer(text, add_special_tokens=specials)["input_ids"])


def fit_prompt(ids: list, budget: int, tail: int = PROMPT_TAIL_TOKENS) -> list:
    """``ids`` shortened to ``budget`` tokens keeping the head and the last ``tail`` tokens."""
    if len(ids) <= budget:
        return list(ids)
    if budget <= 0:
        return []
    tail = min(tail, budget // 2)
    return list(ids[: budget - tail]) + (list(ids[-tail:]) if tail else [])


def encode_prompt(tokenizer, template: str, instruction: str, input_text: str = "", max_length: int = 1024) -> list:
    """Prompt token ids (special tokens included), at most ``max_length``."""
    text = render_prompt(tokenizer, template, instruction, input_text)
    return fit_prompt(_ids(tokenizer, text, specials=template != CHAT), max_length)


def encode_example(tokenizer, template: str, instruction: str, input_text: str, output: str, max_length: int = 1024) -> dict:
    """A training example: ``input_ids`` and ``labels`` (-100 on the prompt), at most ``max_length`` tokens."""
    prompt_ids = _ids(tokenizer, render_prompt(tokenizer, template, instruction, input_text), specials=template != CHAT)
    response_ids = _ids(tokenizer, render_response(tokenizer, template, instruction, input_text, output), specials=False)
    if tokenizer.eos_token_id is not None and (not response_ids or response_ids[-1] != tokenizer.eos_token_id):
        response_ids.append(tokenizer.eos_token_id)
    total = len(prompt_ids) + len(response_ids)
    if total > max_length:
        response_budget = min(len(response_ids), max(max_length - len(prompt_ids), max_length // 2))
        response_ids = response_ids[:response_budget]
        prompt_ids = fit_prompt(prompt_ids, max_length - response_budget)
    return {
        "input_ids": prompt_ids + response_ids,
        "labels": [-100] * len(prompt_ids) + list(response_ids),
        "prompt_length": len(prompt_ids),
    }


def cut_at_stop(text: str, stop_strings) -> str:
    """``text`` up to the first stop string, stripped of surrounding whitespace."""
    cut = len(text)
    for s in stop_strings or ():
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut].strip()


# --------------------------------------------------------------------------- models


def load_causal(path, quantization: Optional[dict] = None, dtype: Optional[str] = None, device_map=None):
    """A causal LM base from a local folder (or hub id), quantized as asked (4-bit: CPU repack trap avoided)."""
    from transformers import AutoModelForCausalLM

    from .modeling import load_pretrained

    return load_pretrained(AutoModelForCausalLM, path, quantization, dtype, device_map)


def default_device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def resolve_base_path(manifest, base_path=None, adapter_dir="the adapter") -> str:
    """The base model folder: ``base_path`` if given, else the manifest's path, else its hub name (the last
    two never inside a notebook: `kaggle_env.recorded_base`)."""
    from .kaggle_env import recorded_base

    if base_path:
        if not Path(base_path).exists():
            raise FileNotFoundError(f"base model folder {base_path} does not exist")
        return str(base_path)
    path = recorded_base(manifest.base_model, adapter_dir)
    if path and Path(path).exists():
        return path
    name = manifest.base_model.get("name") or ""
    if name and name != "tiny" and not os.environ.get("HF_HUB_OFFLINE"):
        return name
    raise FileNotFoundError(
        f"the adapter's base model is not here (manifest path {path!r}, name {name!r}); "
        "pass the folder that holds it (kit generate --base DIR, or base_path=... in the notebook)"
    )


def load_for_generation(adapter_dir, base_path=None, quantization: Optional[str] = None, device: Optional[str] = None,
                        manifest=None):
    """(model, tokenizer, manifest) of an SFT run folder, ready for :func:`generate_texts`.
    ``manifest``: its kit_manifest.json already read (else read here)."""
    import torch
    from peft import PeftModel

    from .manifest import Manifest
    from .modeling import load_tokenizer
    from .precision import half_dtype_for

    adapter_dir = Path(adapter_dir)
    manifest = Manifest.load(adapter_dir) if manifest is None else manifest
    if manifest.kind != "sft":
        raise ValueError(
            f"{adapter_dir}: task.kind is {manifest.kind!r}, not 'sft'; use `kit predict` for classifier adapters"
        )
    device = device or default_device()
    quant = dict(manifest.quantization or {"mode": "none"})
    if quantization:
        quant["mode"] = quantization
    mode = quant.get("mode", "none")
    dtype = None
    if mode in ("none", "", None):
        dtype = half_dtype_for(device)  # bf16 on compute capability >= 8.0, fp16 on older GPUs, fp32 on the CPU
    elif quant.get("compute_dtype") and device.startswith("cuda"):
        quant["compute_dtype"] = half_dtype_for(device, quant["compute_dtype"])
    device_map = {"": device} if mode not in ("none", "", None) and device.startswith("cuda") else None
    base = load_causal(resolve_base_path(manifest, base_path, adapter_dir), quant, dtype=dtype, device_map=device_map)
    model = PeftModel.from_pretrained(base, str(adapter_dir)) if (adapter_dir / "adapter_config.json").exists() else base
    if device_map is None:
        model.to(device)
    model.eval()
    tok_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else resolve_base_path(manifest, base_path, adapter_dir)
    tokenizer = load_tokenizer(tok_dir, padding_side="left")
    return model, tokenizer, manifest


# --------------------------------------------------------------------------- generation


def plan_batches(lengths: list, max_new_tokens: int, batch_size: int, batch_tokens: int) -> list:
    """Index batches over prompts sorted by length (longest first), capped by rows and padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, cur = [], []
    for i in order:
        width = lengths[cur[0]] if cur else lengths[i]  # the batch's first (longest) prompt sets the width
        if cur and (len(cur) + 1 > batch_size or (len(cur) + 1) * (width + max_new_tokens) > batch_tokens):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def _stop_criteria(tokenizer, stop_strings, prompt_width: int):
    """A StoppingCriteria marking each row done once its new text holds a stop string."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    longest = max(len(s) for s in stop_strings)

    class StopOnStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = []
            for row in input_ids:
                tail = tokenizer.decode(row[prompt_width:][-(longest + 8):], skip_special_tokens=True)
                done.append(any(s in tail for s in stop_strings))
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopOnStrings()])


def _progress(total: int, enabled: bool, desc: str):
    """A bar on a terminal, plain lines in notebooks and logs (runtime/progress.py)."""
    if not enabled:
        return None
    from .progress import Progress

    return Progress(total, desc, "row")


def generate_texts(
    model,
    tokenizer,
    prompts: list,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    stop_strings=(),
    do_sample: bool = False,
    temperature: float = 0.7,
    top_p: float = 0.9,
    top_k: int = 0,
    seed: int = 0,
    progress: bool = True,
    stats: Optional[dict] = None,
) -> list:
    """Answers for ``prompts`` (lists of token ids), in their order.

    ``stats`` (a dict) receives ``generated_tokens``: the tokens the model generated (up to and
    including each row's end-of-sequence token, not the padding after it), whatever the stop-string
    cut and the whitespace strip keep of them."""
    import torch

    if not prompts:
        return []
    stop_strings = [s for s in (stop_strings or []) if s]
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    gen_cfg_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for e in gen_cfg_eos if isinstance(gen_cfg_eos, list) else [gen_cfg_eos]:
        if e is not None and e not in eos_ids:
            eos_ids.append(e)
    lengths = [max(1, len(p)) for p in prompts]
    batches = plan_batches(lengths, max_new_tokens, max(1, batch_size), max(1, batch_tokens))
    answers: list = [None] * len(prompts)
    bar = _progress(len(prompts), progress, "generate")
    if do_sample:
        torch.manual_seed(seed)
    kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_ids or None, do_sample=do_sample)
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k or None)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    generated = 0
    with torch.inference_mode():
        for batch in batches:
            width = max(len(prompts[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):  # left padding
                p = prompts[i] or [pad_id]
                ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
                mask[r, width - len(p):] = 1
            extra = {}
            if stop_strings:
                extra["stopping_criteria"] = _stop_criteria(tokenizer, stop_strings, width)
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs, **extra)
            for r, i in enumerate(batch):
                new = out[r, width:]
                generated += _generated_length(new.tolist(), eos_ids, pad_id)
                text = tokenizer.decode(new, skip_special_tokens=True)
                answers[i] = cut_at_stop(text, stop_strings)
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    if stats is not None:
        stats["generated_tokens"] = stats.get("generated_tokens", 0) + generated
    return answers


def _generated_length(tokens: list, eos_ids: list, pad_id) -> int:
    """Tokens a row generated: up to and including its first end-of-sequence token; a row that
    stopped early is padded with ``pad_id`` by ``generate`` (not counted)."""
    for j, t in enumerate(tokens):
        if t in eos_ids:
            return j + 1
        if t == pad_id:
            return j
    return len(tokens)


# --------------------------------------------------------------------------- files


@dataclass
class GenerateResult:
    out_path: str
    rows: int
    seconds: float
    new_tokens_per_second: float
    template: str
    max_new_tokens: int
    metrics: Optional[dict] = None
    metrics_path: Optional[str] = None
    side_by_side_path: Optional[str] = None
    problems: list = field(default_factory=list)
    generated_tokens: int = 0
    empty_answers: int = 0
    empty_ids: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def generation_settings(manifest, **overrides) -> dict:
    """The manifest's generation block with defaults filled in and non-None ``overrides`` applied."""
    gen = dict(manifest.generation or {})
    out = {
        "template": gen.get("template") or manifest.prompt.get("template") or "auto",
        "max_new_tokens": int(gen.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS),
        "stop_strings": list(gen.get("stop_strings") or []),
        "do_sample": bool(gen.get("do_sample", False)),
        "temperature": float(gen.get("temperature", 0.7)),
        "top_p": float(gen.get("top_p", 0.9)),
        "top_k": int(gen.get("top_k", 0) or 0),
        "batch_size": int(gen.get("batch_size") or DEFAULT_BATCH_SIZE),
        "batch_tokens": int(gen.get("batch_tokens") or DEFAULT_BATCH_TOKENS),
        "seed": int(gen.get("seed", 0) or 0),
    }
    for k, v in overrides.items():
        if v is not None:
            out[k] = v
    return out


def _write_table(path: Path, records: list, columns: list) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame = pd.DataFrame(records, columns=columns)
    if path.suffix.lower() == ".jsonl":
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    elif path.suffix.lower() == ".json":
        frame.to_json(tmp, orient="records", force_ascii=False, indent=1)
    else:
        frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


@dataclass
class _GenerationJob:
    """What :func:`generate_file` settles before generating: the model and its manifest (read once), the
    instruction rows (formats.Dataset ``data``, ``rows`` after the limit), the resolved settings, template and
    stop strings, and each row's prompt token ids."""

    model: object
    tokenizer: object
    manifest: object
    data: object
    rows: list
    settings: dict
    template: str
    stops: list
    prompts: list


@quiet_known_warnings()  # the listed harmless library warnings only, only during the call
def generate_file(
    adapter_dir,
    data_path,
    out_path,
    *,
    max_new_tokens: Optional[int] = None,
    batch_size: Optional[int] = None,
    log=print,
    progress: bool = True,
    limit: Optional[int] = None,
    base_path=None,
    device: Optional[str] = None,
    quantization: Optional[str] = None,
    metrics_path=None,
    side_by_side_path=None,
    model_and_tokenizer=None,
    manifest=None,
) -> GenerateResult:
    """Generate an answer for every row of ``data_path`` with the SFT run folder ``adapter_dir``.

    Writes ``out_path`` (``.csv``, ``.jsonl`` or ``.json``; columns id, answer). When the data has
    reference outputs, also writes ``metrics_path`` (default: ``metrics.json`` beside ``out_path``)
    and ``side_by_side_path`` (default: ``side_by_side.csv`` beside it). ``limit`` keeps the first N
    rows (to read a few answers before paying for the whole file). ``manifest``: the run folder's
    kit_manifest.json already read (e.g. by the notebook's version check), else read here, once.
    """
    started = time.time()
    out_path = Path(out_path)
    if out_path.suffix.lower() not in (".csv", ".jsonl", ".json"):
        raise ValueError(f"--out {out_path}: use a .csv, .jsonl or .json file name")
    job = _prepare_generation(adapter_dir, data_path, manifest, model_and_tokenizer, limit,
                              dict(max_new_tokens=max_new_tokens, batch_size=batch_size),
                              dict(base_path=base_path, quantization=quantization, device=device))
    settings = job.settings
    log(
        f"generating {len(job.rows)} answer(s) with {adapter_dir}: template {job.template}, "
        f"max_new_tokens {settings['max_new_tokens']}, {'sampling' if settings['do_sample'] else 'greedy'}, "
        f"batch size {settings['batch_size']}"
    )
    t0 = time.time()
    stats: dict = {}
    answers = generate_texts(
        job.model, job.tokenizer, job.prompts,
        max_new_tokens=settings["max_new_tokens"], batch_size=settings["batch_size"], batch_tokens=settings["batch_tokens"],
        stop_strings=job.stops, do_sample=settings["do_sample"], temperature=settings["temperature"],
        top_p=settings["top_p"], top_k=settings["top_k"], seed=settings["seed"], progress=progress, stats=stats,
    )
    result = _write_answers(job, answers, out_path, time.time() - t0, int(stats.get("generated_tokens", 0)), log)
    references = [r.response_a[0] if r.response_a else None for r in job.rows]
    if any(ref is not None for ref in references):
        _write_scores(job, answers, references, result, Path(metrics_path) if metrics_path else out_path.with_name("metrics.json"),
                      Path(side_by_side_path) if side_by_side_path else out_path.with_name("side_by_side.csv"),
                      {"data": str(data_path), "adapter": str(adapter_dir)}, log)
    result.seconds = time.time() - started
    log(f"wrote {out_path} ({result.rows} rows, {result.empty_answers} empty, {result.seconds:.1f} s, "
        f"{result.generated_tokens:,} generated tokens, {result.new_tokens_per_second:.1f} generated tokens/s)")
    return result


def _prepare_generation(adapter_dir, data_path, manifest, model_and_tokenizer, limit, overrides: dict, load: dict) -> _GenerationJob:
    """The model (``model_and_tokenizer``, else loaded with ``load``'s base_path, quantization and device) and
    its manifest (read once, unless given), the instruction rows, the settings (the manifest's generation
    block with non-None ``overrides``), template, stop strings and left-padded prompts' token ids.

    Raises ValueError when the data is not instruction rows."""
    from .formats import read_dataset

    if model_and_tokenizer is not None:
        from .manifest import Manifest

        model, tokenizer = model_and_tokenizer
        manifest = Manifest.load(adapter_dir) if manifest is None else manifest
    else:
        model, tokenizer, manifest = load_for_generation(adapter_dir, manifest=manifest, **load)
    tokenizer.padding_side = "left"
    data = read_dataset(data_path, manifest.task.get("format") or "instructions",
                        format_from="the run's kit_manifest.json (task.format)")
    if data.kind != "instructions":
        raise ValueError(f"{data_path}: read as {data.format!r} rows; SFT generation needs instruction/input(/output) rows")
    rows = data.rows[:limit] if limit else data.rows
    settings = generation_settings(manifest, **overrides)
    template = resolve_template(tokenizer, settings["template"])
    stops = settings["stop_strings"] or default_stop_strings(template)
    max_length = int(manifest.prompt.get("max_length", 1024))
    prompts = [encode_prompt(tokenizer, template, r.prompt[0], r.prompt[1] if len(r.prompt) > 1 else "", max_length) for r in rows]
    return _GenerationJob(model, tokenizer, manifest, data, rows, settings, template, stops, prompts)


def _write_answers(job: _GenerationJob, answers: list, out_path: Path, gen_seconds: float, generated: int, log) -> GenerateResult:
    """``out_path`` written (id, answer); the result's figures; a warning naming the rows with empty answers."""
    rows = job.rows
    empty = [r.id for r, a in zip(rows, answers) if not (a or "").strip()]
    _write_table(out_path, [{"id": r.id, "answer": a} for r, a in zip(rows, answers)], ["id", "answer"])
    result = GenerateResult(
        out_path=str(out_path), rows=len(rows), seconds=0.0,
        new_tokens_per_second=generated / gen_seconds if gen_seconds > 0 else 0.0,
        template=job.template, max_new_tokens=job.settings["max_new_tokens"], problems=[str(p) for p in job.data.problems[:20]],
        generated_tokens=generated, empty_answers=len(empty), empty_ids=empty,
    )
    if empty:
        shown = ", ".join(str(i) for i in empty[:5]) + (f" … (+{len(empty) - 5})" if len(empty) > 5 else "")
        log(f"warning: {len(empty)} of {len(rows)} answers are empty after stripping (the model generated only whitespace, "
            f"end-of-sequence or a stop string); first ids: {shown}. Check the prompt template (training and generation "
            f"must match), max_new_tokens and whether the run learned anything")
    return result


def _write_scores(job: _GenerationJob, answers: list, references: list, result: GenerateResult, metrics_path: Path,
                  side_path: Path, origin: dict, log) -> None:
    """Rows with a reference output: ``metrics_path`` (exact match, token F1, ROUGE-L, plus ``origin``: data and
    adapter) and ``side_path`` (id, instruction, input, reference, answer, per-row scores); noted in ``result``."""
    metrics = score_texts(answers, references)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps({**metrics, **origin}, indent=2) + "\n")
    side = []
    for r, ref, a in zip(job.rows, references, answers):
        s = score_row(a, ref) if ref is not None else {}
        side.append({
            "id": r.id, "instruction": r.prompt[0], "input": r.prompt[1] if len(r.prompt) > 1 else "",
            "reference": ref, "answer": a, **{k: round(v, 4) for k, v in s.items()},
        })
    _write_table(side_path, side, ["id", "instruction", "input", "reference", "answer", "exact_match", "token_f1", "rouge_l"])
    result.metrics, result.metrics_path, result.side_by_side_path = metrics, str(metrics_path), str(side_path)
    log(
        f"exact match {metrics['exact_match']:.4f}, token F1 {metrics['token_f1']:.4f}, "
        f"ROUGE-L {metrics['rouge_l']:.4f} over {metrics['rows']} row(s) with a reference"
    )

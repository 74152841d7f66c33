"""`kit demo`: the local journey on the embedded default (synthetic LMSYS data, the tiny model).

No credentials, no GPU, no network. :func:`run_demo` runs :data:`STEPS` in order; each step is a
function ``step(ctx) -> dict of artifact name -> path`` that reads what earlier steps left in
``ctx`` (a :class:`DemoContext`) and adds its own. ``kit demo --help`` lists :data:`STEPS`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# The embedded default: small enough for 2 CPU cores in about a minute.
DEFAULTS = {
    "preset": "lmsys",
    "train_rows": 600,
    "test_rows": 200,
    "seed": 0,
    "max_length": 512,
    "truncation": "per_component",
    "train_steps": 60,
}


@dataclass
class DemoContext:
    workdir: Path
    log: Callable = print
    settings: dict = field(default_factory=lambda: dict(DEFAULTS))
    artifacts: dict = field(default_factory=dict)  # name -> path (str)
    state: dict = field(default_factory=dict)      # in-memory values steps share (e.g. the tokenizer)

    def path(self, *parts) -> Path:
        p = self.workdir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def step_synthesize(ctx: DemoContext) -> dict:
    """Synthetic LMSYS train.csv and test.csv (keyword signal in response B)."""
    from kaggle_kit.data.synth import write_synth

    s = ctx.settings
    train = write_synth(s["preset"], s["train_rows"], ctx.path("data", "train.csv"), seed=s["seed"])
    test = write_synth(s["preset"], s["test_rows"], ctx.path("data", "test.csv"), seed=s["seed"] + 1, test=True)
    ctx.log(f"  {s['train_rows']} training rows, {s['test_rows']} test rows (LMSYS CSV format)")
    return {"train_csv": str(train), "test_csv": str(test)}


def step_tiny_base(ctx: DemoContext) -> dict:
    """The tiny Gemma-2 classifier and its BPE tokenizer, built offline into the workdir."""
    from kaggle_kit.models.tiny import build_tiny_base

    from kaggle_kit.runtime.progress import quiet_known_warnings

    out = ctx.workdir / "tiny-base"
    if not (out / "config.json").exists():
        with quiet_known_warnings():  # no "Writing model shards" bar in a log
            build_tiny_base(out, num_labels=3, seed=ctx.settings["seed"])
    ctx.log("  tiny Gemma-2 sequence classifier (3 labels), byte-level BPE tokenizer")
    return {"base_model": str(out)}


def step_inspect(ctx: DemoContext) -> dict:
    """`kit data inspect` on both files in tokens of the tiny tokenizer: JSON reports and histograms."""
    from kaggle_kit.data.inspect import inspect_file
    from kaggle_kit.templating import write_json

    out = {}
    tok = _tokenizer(ctx)
    for name in ("train", "test"):
        report = inspect_file(
            ctx.artifacts[f"{name}_csv"], tokenizer_path=tok, max_length=ctx.settings["max_length"],
            plot=str(ctx.path("inspect", f"{name}_lengths.png")),
        )
        report["tokenizer"] = "tiny"
        js = ctx.path("inspect", f"{name}.json")
        write_json(js, report)
        t = report["truncation"][ctx.settings["truncation"]]
        labels = ", ".join(f"{k} {v}" for k, v in report["labels"].items()) or "none (test data)"
        ctx.log(f"  {name}: {report['rows']} rows, format {report['format']}, labels: {labels}; "
                f"{t['truncated_share']:.1%} truncated at {report['max_length']} tokens; {len(report['problems'])} problems")
        out[f"{name}_inspect_json"] = str(js)
        out[f"{name}_lengths_png"] = report["plot"]
    return out


def step_encode(ctx: DemoContext) -> dict:
    """Model inputs: every row formatted and truncated by the runtime Encoder, as JSONL."""
    from kaggle_kit.data.prepare import write_encoded
    from kaggle_kit.runtime.formats import read_dataset
    from kaggle_kit.runtime.prompting import Encoder, PromptSpec

    s = ctx.settings
    spec = PromptSpec(max_length=s["max_length"], truncation=s["truncation"])
    encoder = Encoder(_tokenizer(ctx), spec, "pairwise")
    out = {}
    for name in ("train", "test"):
        ds = read_dataset(ctx.artifacts[f"{name}_csv"])
        t0 = time.perf_counter()
        encoded = encoder.encode(ds.rows)
        dt = time.perf_counter() - t0
        path = write_encoded(ds.rows, encoded, ctx.path("encoded", f"{name}.jsonl"))
        longest = max(len(e.input_ids) for e in encoded)
        ctx.log(f"  {name}: {len(encoded)} rows encoded in {dt:.2f}s ({len(encoded) / max(dt, 1e-9):,.0f} rows/s), "
                f"longest {longest} <= max_length {s['max_length']}")
        out[f"{name}_encoded"] = str(path)
    ctx.state["prompt_spec"] = spec.to_dict()
    return out


def _tokenizer(ctx: DemoContext):
    if "tokenizer" not in ctx.state:
        from kaggle_kit.runtime.modeling import load_tokenizer

        ctx.state["tokenizer"] = load_tokenizer(ctx.artifacts["base_model"])
    return ctx.state["tokenizer"]


def step_train(ctx: DemoContext) -> dict:
    """`kit train` with the tiny preset: LoRA on the tiny base, a mid-run evaluation, a run folder."""
    from kaggle_kit.config import build_config
    from kaggle_kit.train import run_training

    s = ctx.settings
    run_dir = ctx.workdir / "runs" / "tiny-lmsys"
    cfg = build_config((
        "demo",
        {
            "model": {"name": "tiny", "path": ctx.artifacts["base_model"]},
            "task": {"kind": "pairwise", "metric": "log_loss"},
            "data": {"train": ctx.artifacts["train_csv"], "format": "lmsys", "seed": s["seed"]},
            "prompt": {"max_length": s["max_length"], "truncation": s["truncation"]},
            "peft": {"method": "lora", "targets": ["all-linear"], "r": 8, "alpha": 16.0},
            "train": {
                "output": str(run_dir), "max_steps": s["train_steps"], "eval_steps": max(1, s["train_steps"] // 2),
                "learning_rate": 3e-3, "batch_size": 8, "warmup_ratio": 0.0, "logging_steps": 10, "seed": s["seed"],
            },
        },
    ))
    result = run_training(cfg, log=lambda line: ctx.log("    " + str(line)))
    final = result.metrics.get("final", {})
    ctx.log(f"  validation: log_loss {final.get('log_loss', float('nan')):.4f}, accuracy {final.get('accuracy', float('nan')):.3f}")
    out = {"run_dir": str(result.output_dir)}
    for name in ("metrics.json", "confusion_matrix.png", "curves.png", "calibration.png", "kit_manifest.json"):
        if (Path(result.output_dir) / name).exists():
            out[name.replace(".", "_")] = str(Path(result.output_dir) / name)
    return out


def step_notebook(ctx: DemoContext) -> dict:
    """`kit render inference` + `kit run-local inference`: the Kaggle notebook, run here offline."""
    from kaggle_kit.notebooks.run_local import step_notebook as run_notebook_step

    return run_notebook_step(ctx)


def step_submission(ctx: DemoContext) -> dict:
    """Validate the notebook's submission against the test ids and copy it to the workdir."""
    import shutil

    from kaggle_kit.runtime.formats import LMSYS_LABELS, read_dataset
    from kaggle_kit.runtime.submission import validate_file

    produced = ctx.artifacts.get("notebook_submission_csv")
    if not produced:
        from kaggle_kit.errors import KitError

        raise KitError("demo: the notebook wrote no submission.csv; see the executed notebook in the workdir")
    ids = read_dataset(ctx.artifacts["test_csv"]).ids
    validate_file(produced, ids, "lmsys", LMSYS_LABELS)
    final = ctx.path("submission.csv")
    shutil.copyfile(produced, final)
    ctx.log(f"  valid: {len(ids)} rows, every test id once in order, probabilities sum to 1")
    return {"submission_csv": str(final)}


# (name, function): run in order.
STEPS: list = [
    ("synthesize data", step_synthesize),
    ("build the tiny base model", step_tiny_base),
    ("inspect the data", step_inspect),
    ("encode model inputs", step_encode),
    ("train (kit train, tiny preset)", step_train),
    ("render and run the inference notebook offline (kit render + kit run-local)", step_notebook),
    ("validate the submission", step_submission),
]


def run_demo(workdir, log: Callable = print, steps: list | None = None, settings: dict | None = None) -> dict:
    """Run the demo steps in ``workdir``; returns every artifact's path by name (also saved as
    ``artifacts.json`` in the workdir)."""
    ctx = DemoContext(Path(workdir), log, {**DEFAULTS, **(settings or {})})
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    steps = STEPS if steps is None else steps
    for i, (name, fn) in enumerate(steps, 1):
        log(f"[{i}/{len(steps)}] {name}")
        t0 = time.perf_counter()
        produced = fn(ctx) or {}
        ctx.artifacts.update(produced)
        for key, value in produced.items():
            log(f"    {key}: {value}")
        log(f"    ({time.perf_counter() - t0:.1f}s)")
    (ctx.workdir / "artifacts.json").write_text(json.dumps(ctx.artifacts, indent=2) + "\n", encoding="utf-8")
    return dict(ctx.artifacts)

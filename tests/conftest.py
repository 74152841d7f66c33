"""Shared fixtures: offline environment, the tiny Gemma-2 base, synthetic data, an untrained adapter."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except ImportError:  # pragma: no cover
        pass


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_gpu = False
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def kit_cache(tmp_path_factory) -> Path:
    """A per-session KIT_CACHE so tests never depend on a developer's cache."""
    path = tmp_path_factory.mktemp("kit-cache")
    os.environ["KIT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_base(kit_cache) -> Path:
    """Folder of a tiny Gemma-2 sequence classifier (3 labels) with its BPE tokenizer."""
    from kaggle_kit.models.tiny import tiny_base_dir

    return tiny_base_dir(num_labels=3)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: the product must not need it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def lmsys_synth(tmp_path_factory) -> Path:
    """A 240-row synthetic LMSYS train.csv (labels one-hot, keyword signal in response B)."""
    from kaggle_kit.data.synth import write_synth

    return write_synth("lmsys", 240, tmp_path_factory.mktemp("synth") / "train.csv", seed=1)


@pytest.fixture(scope="session")
def lmsys_synth_test(tmp_path_factory) -> Path:
    """A 120-row synthetic LMSYS test.csv (no label columns)."""
    from kaggle_kit.data.synth import write_synth

    return write_synth("lmsys", 120, tmp_path_factory.mktemp("synth-test") / "test.csv", seed=2, test=True)


def first_rows(src: Path, out: Path, rows: int) -> Path:
    """A copy of the CSV ``src`` with its header and first ``rows`` rows, at ``out``."""
    import csv

    with src.open(newline="", encoding="utf-8") as fh:
        lines = list(csv.reader(fh))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(lines[: rows + 1])
    return out


def two_member_project(sources: tuple = ("runs/a", "runs/b"), sections: str = "") -> str:
    """kit.toml text for a two-adapter inference kernel on the LMSYS competition: a tiny base instance and
    members ``member-a``/``member-b`` from ``sources``; ``sections`` (TOML text) goes after ``[data]``."""
    members = "".join(f'\n[instances.member-{m}]\nmodel_slug = "tiny-{m}"\nkind = "adapter"\nsource = "{src}"\nversion = "1"\n'
                      for m, src in zip("ab", sources))
    return ('[kaggle]\nusername = "kit-demo"\ncompetition = "llm-classification-finetuning"\n\n'
            '[data]\ntest = "/kaggle/input/llm-classification-finetuning/test.csv"\nformat = "lmsys"\n\n'
            f'{sections}'
            '[kernels.inference]\ntemplate = "inference"\ninstances = ["tiny-base", "member-a", "member-b"]\n\n'
            '[instances.tiny-base]\nmodel_slug = "tiny-base"\nkind = "base"\nversion = "1"\n' + members)


def make_untrained_adapter(out: Path, base: Path, max_length: int = 256, seed: int = 0) -> Path:
    """A LoRA adapter folder in `kit train`'s layout, with random (seeded) weights, for tests of
    the readers of run folders (prediction, notebooks, publishing) that must not wait on training."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    from kaggle_kit import __version__
    from kaggle_kit.runtime.formats import LMSYS_LABELS
    from kaggle_kit.runtime.manifest import Manifest, config_sha256, library_versions
    from kaggle_kit.runtime.modeling import load_base, load_tokenizer
    from kaggle_kit.runtime.prompting import PromptSpec

    tok = load_tokenizer(base)
    model = load_base(base, num_labels=3, label_names=LMSYS_LABELS, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # LoRA B starts at zero: move it so the adapter changes the logits
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out)
    tok.save_pretrained(out)
    Manifest(
        task={"kind": "pairwise", "labels": list(LMSYS_LABELS), "metric": "log_loss", "format": "lmsys"},
        prompt=PromptSpec(max_length=max_length).to_dict(),
        base_model={"name": "tiny", "path": str(base), "config_sha256": config_sha256(base), "architecture": "Gemma2ForSequenceClassification", "model_type": "gemma2"},
        quantization={"mode": "none"},
        peft={"method": "lora", "r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
        versions=library_versions(),
        kit_version=__version__,
    ).save(out)
    return out


@pytest.fixture(scope="session")
def untrained_adapter(tiny_base, tmp_path_factory) -> Path:
    return make_untrained_adapter(tmp_path_factory.mktemp("adapter") / "run", tiny_base)

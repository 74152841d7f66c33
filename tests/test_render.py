"""`kit render`: golden notebook, verbatim embedding, determinism, --check, template errors, inputs."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from kaggle_kit.errors import KitError

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("KIT_UPDATE_GOLDEN") == "1"

PROJECT_TOML = """\
[kaggle]
username = "kit-demo"
competition = "llm-classification-finetuning"

[data]
test = "/kaggle/input/llm-classification-finetuning/test.csv"
format = "lmsys"

[inference]
tta = "all"
budget_minutes = 500.0

[wheels]
dataset_slug = "kit-wheels-lmsys"
dataset_title = "kit-wheels-lmsys"

[kernels.inference]
template = "inference"
instances = ["gemma2-base", "peft-lora-classifier"]

[instances.gemma2-base]
model_slug = "gemma2-base"
kind = "base"
license = "gemma"
version = "2"

[instances.peft-lora-classifier]
model_slug = "gemma2-lmsys-adapter"
kind = "adapter"
version = "1"
"""


def _project(tmp_path: Path, text: str = PROJECT_TOML) -> Path:
    root = tmp_path / "project"
    root.mkdir(parents=True, exist_ok=True)
    (root / "kit.toml").write_text(text, encoding="utf-8")
    return root


def _cfg(root: Path):
    from kaggle_kit.config import load_config

    return load_config(root / "kit.toml", required=True)


def _normalize(nb: dict) -> dict:
    """Pin the volatile parts: the embedded module sources (checked byte for byte elsewhere) collapse
    into one placeholder cell, and the list of embedded modules into a placeholder."""
    from kaggle_kit.notebooks.render import WRITEFILE_PREFIX

    cells, embedded_seen = [], False
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if src.startswith(WRITEFILE_PREFIX):
            if not embedded_seen:
                cells.append({"cell_type": "code", "id": "<embedded>", "source": "<%%writefile cells: the kaggle_kit runtime>"})
                embedded_seen = True
            continue
        if cell["cell_type"] == "code":
            src = re.sub(r'for folder in \[[^\]]*\]:', "for folder in <embedded folders>:", src)
        # ids are "c<index>-<content hash>": the index moves when a runtime module is added
        cells.append({"cell_type": cell["cell_type"], "id": cell["id"].split("-", 1)[1] if "<embedded" not in src else "<pinned>", "source": src})
    meta = json.loads(json.dumps(nb["metadata"]))
    meta["kaggle_kit"]["embedded"] = "<embedded modules>"
    return {"cells": cells, "metadata": meta, "nbformat": nb["nbformat"], "nbformat_minor": nb["nbformat_minor"]}


def _compare_golden(name: str, text: str):
    path = GOLDEN / name
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"golden file {path} was missing and has been written; check it and run again")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from the golden file; if intended, rerun with KIT_UPDATE_GOLDEN=1"


def test_golden_inference_notebook(tmp_path, monkeypatch):
    import kaggle_kit
    from kaggle_kit.notebooks.render import render_kernel

    monkeypatch.setattr(kaggle_kit, "__version__", "0.0.0-golden")
    root = _project(tmp_path)
    result = render_kernel(_cfg(root), "inference", root)
    assert result.changed and result.notebook_path == root / "kernels/inference/inference.ipynb"
    nb = json.loads(result.notebook_path.read_text(encoding="utf-8"))
    assert (nb["nbformat"], nb["nbformat_minor"]) == (4, 5)
    _compare_golden("inference.ipynb.json", json.dumps(_normalize(nb), indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    _compare_golden("inference.kernel-metadata.json", result.metadata_path.read_text(encoding="utf-8"))


def test_notebook_order_and_metadata(tmp_path):
    from kaggle_kit.notebooks.render import WRITEFILE_PREFIX, render_kernel

    root = _project(tmp_path)
    result = render_kernel(_cfg(root), "inference", root)
    nb = json.loads(result.notebook_path.read_text(encoding="utf-8"))
    sources = ["".join(c["source"]) for c in nb["cells"]]
    assert nb["cells"][0]["cell_type"] == "markdown" and "kit render" in sources[0] and "notebooks_src/inference.py" in sources[0]
    assert "kit.toml" in sources[0]

    def first(pred):  # the first notebook cell (not an embedded module) matching pred
        return next(i for i, s in enumerate(sources) if pred(s) and not s.startswith(WRITEFILE_PREFIX))

    embed = next(i for i, s in enumerate(sources) if s.startswith(WRITEFILE_PREFIX))
    install = first(lambda s: "install_wheels(WHEELS_DIR)" in s)
    check = first(lambda s: "check_library_versions(ADAPTER_DIR" in s)
    predict = first(lambda s: "predict_file(" in s)
    assert 0 < embed < install < check < predict
    assert "budget_minutes=500.0" in sources[predict] and "tta='all'" in sources[predict]
    meta = json.loads(result.metadata_path.read_text(encoding="utf-8"))
    assert meta["id"] == "kit-demo/llm-classification-finetuning-inference"
    assert meta["enable_internet"] is False and meta["enable_gpu"] is True and meta["is_private"] is True
    assert meta["code_file"] == "inference.ipynb"
    assert meta["model_sources"] == [
        "kit-demo/gemma2-base/transformers/gemma2-base/2",
        "kit-demo/gemma2-lmsys-adapter/transformers/peft-lora-classifier/1",
    ]
    inputs = nb["metadata"]["kaggle_kit"]["inputs"]
    assert inputs["base"]["paths"] == ["input/models/kit-demo/gemma2-base/transformers/gemma2-base/2", "input/gemma2-base/transformers/gemma2-base/2"]
    assert inputs["adapter"]["key"] == "instances.peft-lora-classifier"
    assert inputs["competition"]["paths"][0] == "input/competitions/llm-classification-finetuning"
    assert inputs["competition"]["file"] == "test.csv"
    assert inputs["wheels"]["paths"][0] == "input/datasets/kit-demo/kit-wheels-lmsys"
    # no timestamps, so two renders are byte-identical; ids are unique and valid
    ids = [c["id"] for c in nb["cells"]]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", i) for i in ids)
    text1 = result.notebook_path.read_bytes()
    again = render_kernel(_cfg(root), "inference", root)
    assert not again.changed and again.stale_files == [] and result.notebook_path.read_bytes() == text1


def test_embedded_code_equals_library_source_byte_for_byte(tmp_path):
    from kaggle_kit.notebooks.render import embedded_sources, render_kernel

    root = _project(tmp_path)
    result = render_kernel(_cfg(root), "inference", root)
    embedded = embedded_sources(result.notebook_path)
    pkg = REPO / "kaggle_kit"
    runtime = {f"kaggle_kit/runtime/{p.name}" for p in (pkg / "runtime").glob("*.py")}
    assert runtime | {"kaggle_kit/__init__.py"} <= set(embedded)
    for rel, body in embedded.items():
        assert body == (REPO / rel).read_text(encoding="utf-8"), f"{rel} differs from the library source"
    # the inference notebook carries nothing from outside the runtime (it must not need click, jinja2, ...)
    assert set(embedded) == runtime | {"kaggle_kit/__init__.py"}


def test_train_notebook_embeds_training_code_and_config(tmp_path):
    from kaggle_kit.notebooks.render import embedded_sources, render_kernel

    text = PROJECT_TOML + '\n[kernels.train]\ntemplate = "train"\ninstances = ["gemma2-base"]\n'
    root = _project(tmp_path, text)
    result = render_kernel(_cfg(root), "train", root)
    embedded = embedded_sources(result.notebook_path)
    config_files = [f"kaggle_kit/config/{p.name}" for p in sorted((REPO / "kaggle_kit/config").glob("*.py"))]
    assert "kaggle_kit/config/__init__.py" in config_files and "kaggle_kit/config/load.py" in config_files
    for rel in ("kaggle_kit/train/__init__.py", *config_files, "kaggle_kit/errors.py", "kaggle_kit/runtime/formats.py"):
        assert rel in embedded and embedded[rel] == (REPO / rel).read_text(encoding="utf-8")
    src = result.notebook_path.read_text(encoding="utf-8")
    assert "run_training(CFG)" in src and "%%writefile {RUNTIME_DIR}/kit.toml" in src


def test_check_catches_hand_edits_and_missing_files(tmp_path):
    from kaggle_kit.cli import main

    root = _project(tmp_path)
    runner = CliRunner()
    cfg_arg = ["--config", str(root / "kit.toml")]
    out = runner.invoke(main, ["render", "--all", *cfg_arg])
    assert out.exit_code == 0, out.output
    out = runner.invoke(main, ["render", "--all", "--check", *cfg_arg])
    assert out.exit_code == 0 and "up to date" in out.output, out.output

    nb_path = root / "kernels/inference/inference.ipynb"
    pristine = nb_path.read_text(encoding="utf-8")
    edited = pristine.replace("install_wheels(WHEELS_DIR)", "install_wheels(WHEELS_DIR, verify=False)", 1)
    assert edited != pristine
    nb_path.write_text(edited, encoding="utf-8")
    out = runner.invoke(main, ["render", "inference", "--check", *cfg_arg])
    assert out.exit_code == 1 and "STALE" in out.output and "inference.ipynb" in out.output, out.output
    assert nb_path.read_text(encoding="utf-8") == edited  # --check writes nothing

    meta_path = root / "kernels/inference/kernel-metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["enable_internet"] = True
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    out = runner.invoke(main, ["render", "--all", "--check", *cfg_arg])
    assert out.exit_code == 1 and "kernel-metadata.json" in out.output

    out = runner.invoke(main, ["render", "--all", *cfg_arg])  # re-render repairs both
    assert out.exit_code == 0 and "written" in out.output
    assert nb_path.read_text(encoding="utf-8") == pristine
    meta_path.unlink()
    out = runner.invoke(main, ["render", "--all", "--check", *cfg_arg])
    assert out.exit_code == 1 and "kernel-metadata.json" in out.output


def test_missing_template_variable_is_named(tmp_path):
    from kaggle_kit.notebooks.render import render_kernel

    text = PROJECT_TOML.replace('template = "inference"', 'template = "custom"')
    root = _project(tmp_path, text)
    src = (REPO / "notebooks_src/inference.py").read_text(encoding="utf-8")
    (root / "notebooks_src").mkdir()
    (root / "notebooks_src/custom.py").write_text(src.replace("{{ py.tta }}", "{{ tta_fraction_typo }}"), encoding="utf-8")
    with pytest.raises(KitError, match="tta_fraction_typo"):
        render_kernel(_cfg(root), "inference", root)
    assert not (root / "kernels").exists()


def test_template_without_embed_cell_is_refused(tmp_path):
    from kaggle_kit.notebooks.render import render_kernel

    root = _project(tmp_path, PROJECT_TOML.replace('template = "inference"', 'template = "bare"'))
    (root / "notebooks_src").mkdir()
    (root / "notebooks_src/bare.py").write_text("# %%\nprint('hi')\n", encoding="utf-8")
    with pytest.raises(KitError, match="kit:embed"):
        render_kernel(_cfg(root), "inference", root)


def test_latest_version_needs_a_number(tmp_path):
    from kaggle_kit.notebooks.render import render_kernel

    root = _project(tmp_path, PROJECT_TOML.replace('version = "1"', 'version = "latest"'))
    with pytest.raises(KitError, match="latest"):
        render_kernel(_cfg(root), "inference", root)
    # a version recorded by `kit push-model` resolves offline
    from kaggle_kit.publish.metadata import record_published

    record_published(root, "kit-demo/gemma2-lmsys-adapter/transformers/peft-lora-classifier", 3)
    result = render_kernel(_cfg(root), "inference", root)
    meta = json.loads(result.metadata_path.read_text())
    assert "kit-demo/gemma2-lmsys-adapter/transformers/peft-lora-classifier/3" in meta["model_sources"]


def test_repository_example_renders_offline():
    """The repo's kit.toml (CI runs `kit render --all --check` on it) needs no credentials or network."""
    from kaggle_kit.config import load_config
    from kaggle_kit.notebooks.render import build

    cfg = load_config(REPO / "kit.toml", required=True)
    for name in cfg.kernels:
        built = build(cfg, name, REPO)
        assert built["metadata"]["id"].startswith("kit-demo/")


def test_require_input_names_kaggle_path_and_key(tmp_path, monkeypatch):
    from kaggle_kit.runtime import kaggle_env

    monkeypatch.setenv("KIT_KAGGLE_ROOT", str(tmp_path))
    paths = ["input/datasets/kit-demo/kit-wheels", "input/kit-wheels"]
    with pytest.raises(kaggle_env.InputMissing) as exc:
        kaggle_env.require_input("wheels", paths, key="wheels.dataset_slug")
    msg = str(exc.value)
    assert "/kaggle/input/datasets/kit-demo/kit-wheels" in msg and "/kaggle/input/kit-wheels" in msg
    assert "wheels.dataset_slug" in msg and "--inputs wheels=DIR" in msg
    (tmp_path / "input/kit-wheels").mkdir(parents=True)  # the older layout is found too
    assert kaggle_env.require_input("wheels", paths, key="wheels.dataset_slug") == tmp_path / "input/kit-wheels"
    (tmp_path / "input/competitions/comp").mkdir(parents=True)
    with pytest.raises(kaggle_env.InputMissing, match="data.test"):
        kaggle_env.require_input("competition", ["input/competitions/comp"], key="kaggle.competition", file="test.csv", file_key="data.test")


def test_kernel_without_adapter_instance_is_explained(tmp_path):
    from kaggle_kit.notebooks.render import render_kernel

    root = _project(tmp_path, PROJECT_TOML.replace('instances = ["gemma2-base", "peft-lora-classifier"]', 'instances = ["gemma2-base"]'))
    with pytest.raises(KitError, match=r"needs input\(s\) adapter.*kernels.inference.instances"):
        render_kernel(_cfg(root), "inference", root)


def test_version_check_in_the_notebook_names_the_mismatch(tmp_path):
    from kaggle_kit.runtime import kaggle_env
    from kaggle_kit.runtime.manifest import Manifest, library_versions

    now = library_versions()
    m = Manifest(task={"kind": "pairwise", "labels": ["a", "b"]}, prompt={}, base_model={}, quantization={}, peft={},
                 versions=dict(now))
    m.save(tmp_path / "same")
    lines = []
    assert kaggle_env.check_library_versions(tmp_path / "same", log=lines.append) == []
    assert lines == ["library versions match the adapter's manifest"]
    major = int(now["transformers"].split(".")[0])
    m.versions = dict(now, transformers=f"{major - 1}.46.0")
    m.save(tmp_path / "old")
    with pytest.raises(RuntimeError) as exc:
        kaggle_env.check_library_versions(tmp_path / "old", log=lines.append)
    assert f"{major - 1}.46.0" in str(exc.value) and "kit build-wheels" in str(exc.value)


def test_repository_kernels_are_up_to_date(monkeypatch):
    """CI's drift check: the committed kernels/ equal a fresh render of the repository's kit.toml
    (regenerate with `kit render --all` after changing the runtime, the templates or kit.toml)."""
    from click.testing import CliRunner

    from kaggle_kit.cli import main

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    out = CliRunner().invoke(main, ["render", "--all", "--check"])
    assert out.exit_code == 0, out.output
    assert "up to date (kernels/inference)" in out.output


@pytest.mark.parametrize("extra", ['dataset_sources = ["just-a-slug/with/too/many/parts"]',
                                   'model_sources = ["owner/model/transformers/instance/latest"]'])
def test_malformed_extra_source_is_an_error_naming_it(tmp_path, extra):
    """A source the notebook could not mount is refused by name, never skipped."""
    from kaggle_kit.errors import KitError
    from kaggle_kit.notebooks.render import render_kernel

    root = _project(tmp_path, PROJECT_TOML.replace('template = "inference"\n', f'template = "inference"\n{extra}\n'))
    with pytest.raises(KitError, match=r"kernels\.inference\.(dataset|model)_sources"):
        render_kernel(_cfg(root), "inference", root)


# --------------------------------------------------------------------------- every model a notebook loads is mounted

NO_BASE = PROJECT_TOML.replace('instances = ["gemma2-base", "peft-lora-classifier"]', 'instances = ["peft-lora-classifier"]')


@pytest.mark.parametrize("text, kernel", [
    (NO_BASE, "inference"),  # the misconceptions / rules shape before the fix
    (NO_BASE + '\n[kernels.answers]\ntemplate = "generate"\ninstances = ["peft-lora-classifier"]\n', "answers"),
    (NO_BASE + '\n[model]\nname = "google/gemma-2-9b-it"\n[kernels.train]\ntemplate = "train"\n', "train"),
    (NO_BASE + '\n[model]\npath = "/models/gemma-2-9b-it"\n[kernels.train]\ntemplate = "train"\n', "train"),
    (NO_BASE + '\n[kernels.blend]\ntemplate = "inference"\ninstances = ["peft-lora-classifier", "second"]\n'
     '[instances.second]\nmodel_slug = "second-adapter"\nkind = "adapter"\nversion = "1"\n', "blend"),
])
def test_kernel_that_would_load_a_base_from_outside_kaggle_input_is_refused(tmp_path, text, kernel):
    """A kernel mounting no base instance is refused by `kit render` (and the library call), naming the
    kernel, what is missing and the kit.toml fix, whatever its template, and for ensembles too."""
    from kaggle_kit.cli import main
    from kaggle_kit.notebooks.render import render_kernel

    root = _project(tmp_path, text)
    with pytest.raises(KitError) as exc:
        render_kernel(_cfg(root), kernel, root)
    msg = str(exc.value)
    assert f"kernels.{kernel}" in msg and "no base model" in msg and "/kaggle/input" in msg, msg
    assert 'kind = "base"' in msg and f"kernels.{kernel}.instances" in msg, msg
    assert not (root / "kernels" / kernel).exists()
    out = CliRunner().invoke(main, ["render", kernel, "--config", str(root / "kit.toml")])
    assert out.exit_code == 2 and out.output.startswith("Error: ") and f"kernels.{kernel}" in out.output, out.output


def test_train_kernel_on_a_named_model_needs_no_base(tmp_path):
    """'tiny' (and the other named bases) are built from code and installed packages, not read from a path."""
    from kaggle_kit.notebooks.render import render_kernel

    root = _project(tmp_path, NO_BASE + '\n[model]\nname = "tiny"\n[kernels.train]\ntemplate = "train"\n')
    assert render_kernel(_cfg(root), "train", root).changed


def test_adapter_whose_base_is_not_the_mounted_one_is_refused(tmp_path, untrained_adapter, tiny_base):
    """Local run folder and base folder at hand: the adapter's manifest must accept a mounted base."""
    import shutil

    from kaggle_kit.notebooks.render import render_kernel

    other = tmp_path / "other-base"
    shutil.copytree(tiny_base, other)
    config = json.loads((other / "config.json").read_text())
    config["num_hidden_layers"] = config["num_hidden_layers"] + 1
    (other / "config.json").write_text(json.dumps(config))
    text = PROJECT_TOML.replace('kind = "base"\n', f'kind = "base"\nsource = "{other}"\n').replace(
        'kind = "adapter"\n', f'kind = "adapter"\nsource = "{untrained_adapter}"\n')
    root = _project(tmp_path, text)
    with pytest.raises(KitError) as exc:
        render_kernel(_cfg(root), "inference", root)
    msg = str(exc.value)
    assert "kernels.inference" in msg and "peft-lora-classifier" in msg and "gemma2-base" in msg and "num_hidden_layers" in msg, msg
    root = _project(tmp_path / "ok", text.replace(str(other), str(tiny_base)))
    assert render_kernel(_cfg(root), "inference", root).changed


def test_merged_model_needs_no_base(tmp_path, tiny_base):
    """A folder written by `kit merge` (full weights, no adapter_config.json) is the whole model: no base instance."""
    import shutil

    from kaggle_kit.notebooks.render import render_kernel

    merged = tmp_path / "merged"
    shutil.copytree(tiny_base, merged)
    (merged / "kit_manifest.json").write_text("{}")
    root = _project(tmp_path, NO_BASE.replace('kind = "adapter"\n', f'kind = "adapter"\nsource = "{merged}"\n'))
    result = render_kernel(_cfg(root), "inference", root)
    assert "base" not in json.loads(result.notebook_path.read_text())["metadata"]["kaggle_kit"]["inputs"]

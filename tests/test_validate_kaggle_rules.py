"""`kit validate` as lenient as the kaggle client and as strict as Kaggle's server (issue 13).

Each test makes its own inputs (kernel folders written here, the fake project of fake_kaggle.py),
so none needs /work/shared; the last test runs the shared sample cases when they are there.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fake_kaggle import KEY, USER, fake_kaggle, kaggle_env, project, run_kit  # noqa: F401
from kaggle_kit.errors import KitError
from kaggle_kit.publish import metadata as md
from kaggle_kit.publish import validate as vd
from kaggle_kit.config import load_config

PY_SPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def kernel_folder(root: Path, spec=PY_SPEC, cells=None, nbformat=4, **meta) -> Path:
    """A kernel folder as a user writes it: kernel-metadata.json (``meta`` overrides) + a notebook."""
    root.mkdir(parents=True, exist_ok=True)
    nb = {"cells": cells if cells is not None else [{"cell_type": "code", "execution_count": None, "id": "c1",
                                                        "metadata": {}, "outputs": [], "source": "print(1)"}],
          "metadata": {"kernelspec": spec} if spec is not None else {}, "nbformat": nbformat, "nbformat_minor": 5}
    (root / "demo-kernel.ipynb").write_text(json.dumps(nb))
    base = {"id": "someone/demo-kernel", "title": "demo-kernel", "code_file": "demo-kernel.ipynb", "language": "python",
            "kernel_type": "notebook", "is_private": True, "enable_gpu": True, "enable_tpu": False,
            "enable_internet": False, "machine_shape": "NvidiaTeslaT4", "dataset_sources": [],
            "competition_sources": ["some-competition"], "kernel_sources": [], "model_sources": []}
    base.update(meta)
    (root / "kernel-metadata.json").write_text(json.dumps(base))
    return root


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """Run `kit validate FOLDER` where there is no kit.toml (only the folder is checked)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def check(folder: Path, extra=()):
    warnings: list = []
    problems = vd.check_metadata_file(folder / "kernel-metadata.json", warnings, extra)
    return problems, warnings


def test_string_booleans_are_read_as_the_client_reads_them(tmp_path):
    """c01 kind: Kaggle's docs example writes "true"/"false" strings; the client reads them."""
    folder = kernel_folder(tmp_path / "k", is_private="false", enable_gpu="TRUE", enable_tpu="false", enable_internet="false")
    problems, warnings = check(folder)
    assert problems == []
    assert len(warnings) == 4 and all("is a string; the kaggle client reads it as" in w for w in warnings), warnings
    # read as the client reads it: the string "true" turns internet on, which a competition kernel must not
    folder = kernel_folder(tmp_path / "k2", enable_internet="True")
    problems, _ = check(folder)
    assert any("enable_internet is 'True'" in p and "set enable_internet false" in p for p in problems), problems
    # what the client refuses ("Invalid boolean value") stays a problem
    folder = kernel_folder(tmp_path / "k3", enable_gpu="yes", is_private=0)
    problems, _ = check(folder)
    assert any("enable_gpu = 'yes' is not a boolean" in p for p in problems) and any("is_private = 0" in p for p in problems)


@pytest.mark.parametrize("spec, cells, nbformat, code_file, expect", [
    (None, None, 4, None, "metadata.kernelspec is missing; Kaggle cannot start it"),
    ({"display_name": "Python 3", "language": "python"}, None, 4, None, "metadata.kernelspec has no name"),
    ({"name": "ir", "display_name": "R", "language": "R"}, None, 4, None, "the notebook's kernel speaks 'r'"),
    (PY_SPEC, [{"cell_type": "code", "source": "x"}], 4, None, "not a valid nbformat 4 notebook"),
    (PY_SPEC, None, 3, None, "nbformat 3; Kaggle runs nbformat 4"),
    (PY_SPEC, None, 4, "gone.ipynb", "code_file 'gone.ipynb' not found"),
    (PY_SPEC, None, 4, "demo-kernel.py", "is not a .ipynb file"),
])
def test_the_notebook_itself_is_checked(tmp_path, spec, cells, nbformat, code_file, expect):
    """A notebook without a kernelspec passed as "ready" and died on Kaggle."""
    meta = {"code_file": code_file} if code_file else {}
    folder = kernel_folder(tmp_path / "k", spec=spec, cells=cells, nbformat=nbformat, **meta)
    problems, _ = check(folder)
    assert any(expect in p for p in problems), problems


def test_a_clean_kernel_folder_passes(tmp_path, outside):
    folder = kernel_folder(tmp_path / "k", dataset_sources=["someone/some-data", "someone/some-data/3"],
                           kernel_sources=["someone/feature-prep/12"], model_sources=["someone/gemma/transformers/base/2"])
    assert check(folder) == ([], [])
    code, out = run_kit("validate", str(folder))
    assert code == 0 and "OK: the folders are ready" in out, out


@pytest.mark.parametrize("key, src, bare", [
    ("dataset_sources", "dataset/someone/some-data", "someone/some-data"),
    ("dataset_sources", "datasets/someone/some-data", "someone/some-data"),
    ("dataset_sources", "https://www.kaggle.com/datasets/someone/some-data", "someone/some-data"),
    ("kernel_sources", "code/someone/feature-prep", "someone/feature-prep"),
    ("competition_sources", "c/some-competition", "some-competition"),
    ("competition_sources", "competitions/some-competition", "some-competition"),
    ("model_sources", "models/someone/gemma/transformers/base/2", "someone/gemma/transformers/base/2"),
])
def test_page_type_prefixes_are_named_and_dropped(tmp_path, key, src, bare):
    """c02 kind: sources as `kaggle kernels pull -m` and kaggle.com addresses write them."""
    folder = kernel_folder(tmp_path / "k", **{key: [src]})
    problems, _ = check(folder)
    assert len(problems) == 1, problems
    assert "page-type prefix" in problems[0] and f"drop the prefix: {bare!r}" in problems[0], problems


@pytest.mark.parametrize("key, src, expect", [
    ("dataset_sources", "someone/some-data/latest", "third part 'latest' must be a version number"),
    ("kernel_sources", "someone/feature-prep/v2", "third part 'v2' must be a version number"),
    ("dataset_sources", "someone/some-data/0", "third part '0' must be a version number"),
    ("dataset_sources", "a/b/c/d", "must be 'owner/dataset-slug' or"),
])
def test_a_third_source_part_must_be_an_integer_version(tmp_path, key, src, expect):
    folder = kernel_folder(tmp_path / "k", **{key: [src]})
    problems, _ = check(folder)
    assert any(expect in p for p in problems), problems


@pytest.mark.parametrize("shape, expect", [
    ("NvidiaTeslaT4x2", "is not an accelerator Kaggle offers"),
    ("GPU T4 x2", "is not an accelerator Kaggle offers"),
    ("nvidiateslat4", "write it 'NvidiaTeslaT4'"),
    ("NvidiaTeslaT4Highmem", "internal admin-only pool"),
    ("NvidiaTeslaP100", "retired; Kaggle runs NvidiaTeslaT4 instead"),
    ("TpuV38", "retired; Kaggle runs TpuV5E8 instead"),
])
def test_machine_shape_comes_from_kaggles_list(tmp_path, shape, expect):
    """c03 kind: an unknown shape passed as ready; Kaggle runs it on another machine."""
    folder = kernel_folder(tmp_path / "k", machine_shape=shape)
    problems, _ = check(folder)
    assert any(expect in p for p in problems), problems
    assert not any("NvidiaTeslaT4Highmem'" in p and "e.g." in p for p in problems)  # never offered as an example


def test_machine_shape_restricted_warns_and_new_names_need_the_override(tmp_path, outside):
    folder = kernel_folder(tmp_path / "k", machine_shape="NvidiaH100")
    problems, warnings = check(folder)
    assert problems == [] and any("offered only in some competitions" in w for w in warnings), warnings
    folder = kernel_folder(tmp_path / "k2", machine_shape="NvidiaB300")
    assert check(folder)[0] and check(folder, extra=["NvidiaB300"]) == ([], [])
    code, out = run_kit("validate", str(folder))
    assert code == 1 and "kaggle.extra_machine_shapes" in out
    code, out = run_kit("validate", str(folder), "--set", 'kaggle.extra_machine_shapes=["NvidiaB300"]')
    assert code == 0, out


def test_messages_never_contradict_themselves(tmp_path):
    """The old message said `enable_internet = 'false' ... set enable_internet false`."""
    folder = kernel_folder(tmp_path / "k", enable_internet="false", is_private="true")
    problems, warnings = check(folder)
    for text in problems + warnings:
        if "enable_internet = 'false'" in text:
            assert "set enable_internet false" not in text


def test_kit_validate_exit_status_and_json(tmp_path, outside):
    folder = kernel_folder(tmp_path / "k", enable_gpu="true")
    code, out = run_kit("validate", str(folder))
    assert code == 0 and "Warning:" in out and "1 warning(s)" in out, out
    code, out = run_kit("validate", "--json", str(folder))
    report = json.loads(out)
    assert code == 0 and report["problems"] == [] and len(report["warnings"]) == 1


def test_project_kernels_use_the_override_and_the_rendered_notebook(project, monkeypatch):
    import kaggle_kit.notebooks.render as render

    monkeypatch.setattr(render, "render_if_needed", lambda *a, **k: [])  # push the hand-edited folder as it is
    cfg = load_config(project / "kit.toml", ["kernels.inference.accelerator=NvidiaB300"])
    assert any("NvidiaB300" in p for p in vd.validate_project(cfg, project))
    cfg = load_config(project / "kit.toml", ["kernels.inference.accelerator=NvidiaB300", 'kaggle.extra_machine_shapes=["NvidiaB300"]'])
    assert vd.validate_project(cfg, project) == []
    nb = project / "kernels" / "inference" / "inference.ipynb"
    data = json.loads(nb.read_text())
    del data["metadata"]["kernelspec"]
    nb.write_text(json.dumps(data))
    code, out = run_kit("validate")
    assert code == 1 and "metadata.kernelspec is missing" in out
    code, out = run_kit("push-kernel", "inference", "--dry-run", "--set", "instances.peft-lora-classifier.version=1")
    assert code == 2 and "metadata.kernelspec is missing" in out


SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "cases"


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared cases folder is absent")
@pytest.mark.parametrize("case, expect", [
    ("c01-kernel-bool-strings", "metadata.kernelspec is missing"),
    ("c02-pulled-source-prefixes", "drop the prefix"),
    ("c03-machine-shape-unknown", "'NvidiaTeslaT4x2' is not an accelerator Kaggle offers"),
])
def test_shared_cases_get_the_right_verdict(case, expect, outside):
    code, out = run_kit("validate", str(SHARED / case / "kernel"))
    assert code == 1 and expect in out, out


@pytest.mark.parametrize("name, meta, expect", [
    ("dataset-metadata.json", {"id": "someone/INSERT_SLUG_HERE", "title": "INSERT_TITLE_HERE", "licenses": [{"name": "CC0-1.0"}]},
     "is the placeholder `kaggle ... init` writes"),
    ("dataset-metadata.json", {"id": "someone/wheels-set", "title": "wheels-set", "licenses": [{"name": "CC0-1.0"}], "keywords": "llm"},
     "keywords must be a list"),
    ("model-metadata.json", {"ownerSlug": "someone", "slug": "gemma-adapter", "title": "gemma-adapter", "isPrivate": "true",
                             "description": "card"}, "isPrivate = 'true' must be a JSON boolean"),
    ("model-metadata.json", {"ownerSlug": "someone", "slug": "gemma-adapter", "title": "gemma-adapter", "isPrivate": True,
                             "description": "card", "publishTime": "29/11/2026"}, "publishTime = '29/11/2026' must be a date"),
    ("model-instance-metadata.json", {"ownerSlug": "someone", "modelSlug": "gemma-adapter", "instanceSlug": "INSERT_INSTANCE_SLUG_HERE",
                                      "framework": "transformers", "licenseName": "Apache 2.0"}, "placeholder"),
    ("model-instance-metadata.json", {"ownerSlug": "someone", "modelSlug": "gemma-adapter", "instanceSlug": "lora",
                                      "framework": "transformers", "licenseName": "Apache 2.0", "fineTunable": "false"},
     "fineTunable = 'false' must be a JSON boolean"),
])
def test_dataset_model_and_instance_metadata_follow_the_client(tmp_path, name, meta, expect):
    """Strings where the client wants real booleans (model isPrivate, fineTunable: it raises), the
    `init` placeholders it refuses, and the formats it parses."""
    path = tmp_path / name
    path.write_text(json.dumps(meta))
    problems = vd.check_metadata_file(path)
    assert any(expect in p for p in problems), problems


# --------------------------------------------------------------------------- issue 21 (10): titles and slugs, 50 characters
# Kaggle refuses kernel titles/slugs over 50 characters with a bare server error (Kaggle/kaggle-cli PR
# #179; Kaggle/learntools PR #48 truncates titles for that reason); the client wants titles of 5 or more.
WSDM = "wsdm-cup-multilingual-chatbot-arena"  # 35 characters: a kernel name of 15 or more went over


def _text(n: int) -> str:
    """A valid slug of exactly ``n`` characters."""
    out = "".join("inference-"[i % 10] for i in range(n))
    return out[:-1] + "z" if out.endswith("-") else out


def _cfg(project, *sets, competition=WSDM):
    return load_config(project / "kit.toml", [f"kaggle.competition={competition}", *sets])


@pytest.mark.parametrize("length", [5, 13, 14, 15, 16, 30, 44, 45, 49, 50, 51, 70])
def test_default_kernel_slug_and_title_stay_within_kaggles_rules(project, length):
    name = _text(length)
    cfg = _cfg(project, f"kernels.{name}.template=inference")
    slug, title = md.kernel_slug(cfg, name), md.kernel_title(cfg, name)
    assert 5 <= len(slug) <= 50 and 5 <= len(title) <= 50, (slug, title)
    assert md.SLUG_RE.match(slug) and md.slugify(title) == slug and title == slug
    full = f"{WSDM}-{name}"
    notes = md.kernel_names(cfg, name).notes
    if len(full) <= 50:
        assert slug == full and notes == []
    else:  # shortened, and said so, naming the setting that chooses another
        assert slug != full and len(notes) == 1 and full in notes[0] and repr(slug) in notes[0], notes
        assert f"kernels.{name}.slug" in notes[0]
    again = _cfg(project, f"kernels.{name}.template=inference")
    assert md.kernel_slug(again, name) == slug  # deterministic
    report = vd.validate_report(cfg, project)
    assert not [p for p in report.problems if name in p], report.problems
    assert [w for w in report.warnings if full in w] == notes


def test_shortened_defaults_keep_the_kernel_name_and_stay_distinct(project):
    names = ["inference-ensemble", "inference-ensemble-qwen-gemma-llama-mistral-phi-a",
             "inference-ensemble-qwen-gemma-llama-mistral-phi-b"]
    cfg = _cfg(project, *[f"kernels.{n}.template=inference" for n in names])
    slugs = [md.kernel_slug(cfg, n) for n in names]
    assert slugs[0] == "wsdm-cup-multilingual-chatbot-inference-ensemble"  # whole words of the competition, then the name
    assert len(set(slugs)) == 3 and all(len(s) <= 50 for s in slugs), slugs


@pytest.mark.parametrize("length, ok", [(5, True), (49, True), (50, True), (51, False), (80, False)])
def test_an_explicit_kernel_slug_over_50_is_refused_naming_the_setting(project, length, ok):
    slug = _text(length)
    cfg = _cfg(project, f"kernels.inference.slug={slug}")
    bad = [p for p in vd.validate_project(cfg, project) if "kernels.inference.slug" in p and "at most 50" in p]
    assert bool(bad) != ok, bad
    if ok:
        assert md.kernel_slug(cfg, "inference") == slug and md.kernel_names(cfg, "inference").notes == []
        return
    assert f"has {length} characters" in bad[0] and repr(slug) in bad[0]
    with pytest.raises(KitError, match=r"kernels\.inference\.slug"):
        md.kernel_metadata(cfg, "inference", "inference.ipynb", resolve=lambda *a: 1)
    code, out = run_kit("render", "inference", "--set", f"kaggle.competition={WSDM}", "--set", f"kernels.inference.slug={slug}")
    assert code != 0 and "Error:" in out and "kernels.inference.slug" in out and "at most 50" in out, out


@pytest.mark.parametrize("length, ok", [(4, False), (5, True), (49, True), (50, True), (51, False), (64, False)])
def test_an_explicit_kernel_title_outside_5_to_50_is_refused_naming_the_setting(project, length, ok):
    slug = _text(max(5, min(length, 50)))
    title = slug[:length] if length < 5 else slug + "!" * (length - len(slug))  # '!' leaves the slug unchanged
    assert len(title) == length
    cfg = _cfg(project, f"kernels.inference.slug={slug}", f"kernels.inference.title={title}")
    bad = [p for p in vd.validate_project(cfg, project) if "kernels.inference.title" in p and "5-50 characters" in p]
    assert bool(bad) != ok, bad
    if not ok:
        with pytest.raises(KitError, match=r"kernels\.inference\.title"):
            md.kernel_title(cfg, "inference")


def test_kit_render_writes_a_shortened_default(project):
    name = _text(20)
    sets = [f"kaggle.competition={WSDM}", f"kernels.{name}.template=inference", f'kernels.{name}.instances=["peft-lora-classifier", "tiny-base"]',
            "instances.peft-lora-classifier.version=1"]
    code, out = run_kit("render", name, *[a for s in sets for a in ("--set", s)])
    assert code == 0, out
    meta = json.loads((project / "kernels" / name / "kernel-metadata.json").read_text())
    slug = meta["id"].split("/")[1]
    assert len(slug) <= 50 and len(meta["title"]) <= 50 and md.slugify(meta["title"]) == slug, meta
    assert vd.check_metadata_file(project / "kernels" / name / "kernel-metadata.json") == []
    assert f"note: kernels.{name}: the default slug" in out and f"using {slug!r}" in out  # the decision is shown


@pytest.mark.parametrize("slug_len, title_len, expect", [
    (50, 50, None), (51, 50, "slug"), (50, 51, "title"), (5, 4, "title"),
])
def test_hand_made_kernel_folder_slug_and_title_lengths(tmp_path, slug_len, title_len, expect):
    slug = _text(slug_len)
    title = slug[:title_len] if title_len <= slug_len else slug + "!" * (title_len - slug_len)
    folder = kernel_folder(tmp_path / "k", id=f"someone/{slug}", title=title)
    problems, _ = check(folder)
    hits = [p for p in problems if (f"slug {slug!r}" in p and "at most 50" in p) or (f"title = {title!r}" in p and "5-50" in p)]
    assert (expect is None) == (not hits), problems
    if expect:
        assert any(expect in h for h in hits), hits


@pytest.mark.parametrize("slug_len, title_len, ok", [
    (49, 49, True), (50, 50, True), (51, 51, False), (5, 5, False), (50, 51, False), (6, 6, True),
])
def test_wheel_dataset_slug_and_title_are_6_to_50(project, slug_len, title_len, ok):
    """The client's `dataset_create_new`: slug and title 6-50 characters."""
    slug = _text(slug_len)
    title = slug[:title_len] if title_len <= slug_len else slug + "!" * (title_len - slug_len)
    cfg = load_config(project / "kit.toml", [f"wheels.dataset_slug={slug}", f"wheels.dataset_title={title}"])
    bad = [p for p in vd.validate_project(cfg, project) if "6-50 characters" in p]
    assert bool(bad) != ok, bad


def test_two_kernels_with_one_slug_are_a_problem(project):
    cfg = _cfg(project, "kernels.inference.slug=same-kernel", "kernels.train.template=train", "kernels.train.slug=same-kernel")
    assert any("inference, train all have the slug 'same-kernel'" in p and "set kernels.train.slug" in p
               for p in vd.validate_project(cfg, project))
    cfg = _cfg(project, "kernels.train.template=train")
    assert not [p for p in vd.validate_project(cfg, project) if "push over each other" in p]

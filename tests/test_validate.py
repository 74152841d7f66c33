"""`kit validate` / `validate_project`: each malformed field is caught, all at once, offline."""
from __future__ import annotations

import json

import pytest

from fake_kaggle import BASE_HANDLE, COMPETITION, USER, fake_kaggle, kaggle_env, project, run_kit  # noqa: F401
from kaggle_kit.publish import metadata as md
from kaggle_kit.publish import validate as vd
from kaggle_kit.config import load_config


def _problems(project, *sets):
    cfg = load_config(project / "kit.toml", list(sets))
    return vd.validate_project(cfg, project)


def test_clean_project_has_no_problems(project):
    assert _problems(project) == []
    code, out = run_kit("validate")
    assert code == 0 and "OK" in out, out


@pytest.mark.parametrize("sets, expect", [
    # slug syntax
    (["instances.peft-lora-classifier.model_slug=Gemma_Adapter"], "'Gemma_Adapter' is not a valid slug"),
    (["instances.peft-lora-classifier.slug=Peft LoRA"], "instanceSlug = 'Peft LoRA'"),
    (["wheels.dataset_slug=Kit Wheels"], "'Kit Wheels' is not a valid slug"),
    (["kernels.inference.slug=My_Kernel"], "'My_Kernel' is not a valid slug"),
    (["kaggle.username=Kit Tester"], "'Kit Tester' is not a valid owner"),
    # id == slug of the title
    (["kernels.inference.title=My Inference Notebook"], "gives the slug 'my-inference-notebook', not the id's"),
    (["wheels.dataset_title=Kit wheels for LMSYS"], "gives the slug 'kit-wheels-for-lmsys', not the id's 'kit-wheels-lmsys'"),
    # model_sources: 5 parts, integer version, known framework
    (['kernels.inference.model_sources=["me/gemma/transformers/gemma2-base"]'], "must have 5 parts"),
    (['kernels.inference.model_sources=["me/gemma/transformers/gemma2-base/latest"]'], "version 'latest' must be an integer"),
    (['kernels.inference.model_sources=["me/gemma/peft/gemma2-base/2"]'], "framework 'peft' is not one Kaggle knows"),
    (['kernels.inference.model_sources=["Me/gemma/transformers/gemma2-base/2"]'],
     "model source 'Me/gemma/transformers/gemma2-base/2' owner = 'Me' is not a valid owner"),
    (["instances.peft-lora-classifier.version=0"], "instances.peft-lora-classifier.version = '0': Kaggle numbers versions from 1"),
    # framework of the instance
    (["instances.peft-lora-classifier.framework=peft"], "Kaggle has no 'peft' framework"),
    (["instances.peft-lora-classifier.framework=pyTorch"], "a PEFT adapter is published as 'transformers'"),
    # internet off for competition kernels
    (["kernels.inference.enable_internet=true"], "competition submissions must run with internet off"),
    # accelerator
    (['kernels.inference.accelerator=""'], "machine_shape (the accelerator) is not set"),
    (["kernels.inference.accelerator=T4x2"], "'T4x2' is not an accelerator Kaggle offers"),
    # licences
    (["instances.peft-lora-classifier.license=wtfpl"], "licenseName = 'wtfpl' is not a model licence name"),
    (["wheels.license=CC0"], "licence 'CC0' is not a dataset licence name"),
    # local sources that exist
    (["train.output=runs/missing"], "runs/missing, does not exist"),
    (["kernels.inference.template=nope"], "notebooks_src/nope.py not found"),
])
def test_each_malformed_field_is_caught(project, sets, expect):
    problems = _problems(project, *sets)
    assert any(expect in p for p in problems), problems


def test_wheels_folder_missing_and_credentials_in_sources(project):
    import shutil

    shutil.rmtree(project / "wheels")
    (project / "runs" / "adapter" / "kaggle.json").write_text('{"username": "x", "key": "y"}')
    problems = _problems(project)
    assert any("run `kit build-wheels`" in p for p in problems), problems
    assert any("kaggle.json" in p and "refused" in p for p in problems), problems


def test_kit_validate_lists_every_problem_at_once(project):
    code, out = run_kit("validate", "--set", "kernels.inference.enable_internet=true", "--set",
                        "instances.peft-lora-classifier.framework=peft", "--set", "wheels.license=CC0",
                        "--set", "train.output=runs/missing")
    assert code == 1
    assert "internet off" in out and "'peft'" in out and "'CC0'" in out and "runs/missing" in out
    assert int(out.split(" problem(s)")[0].split()[-1]) >= 4
    code, out = run_kit("validate", "--json", "--set", "wheels.license=CC0")
    report = json.loads(out)
    assert code == 1 and any("CC0" in p for p in report["problems"]) and isinstance(report["warnings"], list)


def test_rendered_metadata_files_are_checked(project):
    meta_path = project / "kernels" / "inference" / "kernel-metadata.json"
    meta = json.loads(meta_path.read_text())
    meta.update({"enable_internet": "no", "is_private": 1, "language": "Python", "code_file": "gone.ipynb",
                 "model_sources": ["a/b/Transformers/c/1", "a/b/transformers/c"]})
    meta_path.write_text(json.dumps(meta))
    problems = vd.check_metadata_file(meta_path)
    text = "\n".join(problems)
    assert "enable_internet = 'no' is not a boolean; the kaggle client refuses it" in text
    assert "is_private = 1 is not a boolean" in text
    assert "language = 'Python'" in text and "'gone.ipynb' not found" in text
    assert "must have 5 parts" in text
    assert "a/b/Transformers/c/1" not in text  # the framework's case does not matter to Kaggle's enum
    code, out = run_kit("validate", "kernels/inference")
    assert code == 1 and "gone.ipynb" in out


def test_kernel_metadata_interface(project):
    cfg = load_config(project / "kit.toml", ['instances.peft-lora-classifier.version="4"'])
    meta = md.kernel_metadata(cfg, "inference", "inference.ipynb")
    assert meta["id"] == f"{USER}/{COMPETITION}-inference" and md.slugify(meta["title"]) == meta["id"].split("/")[1]
    assert meta["is_private"] is True and meta["enable_internet"] is False and meta["enable_gpu"] is True
    assert meta["machine_shape"] == "NvidiaTeslaT4" and meta["language"] == "python" and meta["kernel_type"] == "notebook"
    assert meta["dataset_sources"][0] == f"{USER}/kit-wheels-lmsys"
    assert meta["competition_sources"] == [COMPETITION]
    assert meta["model_sources"] == [f"{USER}/gemma2-lmsys-adapter/transformers/peft-lora-classifier/4", f"{BASE_HANDLE}/1"]
    assert vd.check_kernel_metadata(meta) == []
    # 'latest' needs a resolver
    cfg = load_config(project / "kit.toml")
    with pytest.raises(md.KitError, match="pin it in kit.toml"):
        md.model_sources(cfg, "inference")
    assert md.model_sources(cfg, "inference", resolve=lambda o, m, f, i: 7)[0].endswith("/peft-lora-classifier/7")
    md.record_published(project, f"{USER}/gemma2-lmsys-adapter/transformers/peft-lora-classifier", 5)
    assert md.model_sources(cfg, "inference", resolve=md.published_resolver(project))[0].endswith("/5")
    with pytest.raises(md.KitError, match="not a positive integer"):
        md.model_sources(cfg, "inference", resolve=lambda *a: "latest")


def test_instance_and_model_metadata(project):
    cfg = load_config(project / "kit.toml", ["instances.peft-lora-classifier.framework=Transformers"])
    inst = md.instance_metadata(cfg, "peft-lora-classifier")
    assert inst["framework"] == "transformers" and inst["licenseName"] == "Apache 2.0"
    assert inst["fineTunable"] is False and inst["ownerSlug"] == USER
    model = md.model_metadata(cfg, "peft-lora-classifier")
    assert model["isPrivate"] is True and model["slug"] == "gemma2-lmsys-adapter"
    assert vd.check_instance_metadata(inst) == [] and vd.check_model_metadata(model) == []


def test_frameworks_are_the_clients_enum(kaggle_env):
    """Every framework the kit accepts resolves through the client's own enum lookup, and the
    enum has no uploadable framework the kit misses."""
    from kagglesdk.models.types.model_enums import ModelFramework

    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi.__new__(KaggleApi)
    resolved = {api.lookup_enum(ModelFramework, ModelFramework.MODEL_FRAMEWORK_API, fw) for fw in md.FRAMEWORKS}
    expected = set(ModelFramework) - {ModelFramework.MODEL_FRAMEWORK_UNSPECIFIED, ModelFramework.MODEL_FRAMEWORK_API}
    assert resolved == expected
    with pytest.raises(KeyError):
        api.lookup_enum(ModelFramework, ModelFramework.MODEL_FRAMEWORK_API, "peft")


def test_dataset_checks_match_the_clients_limits():
    ok = {"id": "me/kit-wheels", "title": "kit-wheels", "licenses": [{"name": "CC0-1.0"}], "isPrivate": True}
    assert vd.check_dataset_metadata(ok) == []
    short = dict(ok, id="me/wheel", title="wheel")
    assert any("6-50 characters" in p for p in vd.check_dataset_metadata(short))
    two = dict(ok, licenses=[{"name": "CC0-1.0"}, {"name": "other"}])
    assert any("exactly one" in p for p in vd.check_dataset_metadata(two))
    private = dict(ok, isPrivate="yes")
    assert any("isPrivate" in p for p in vd.check_dataset_metadata(private))


def test_empty_folder_lists_every_problem(tmp_path, monkeypatch):
    """No kit.toml, no user name, and with a preset's kit.toml: the missing wheels, base and adapter too."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    monkeypatch.setenv("HOME", str(tmp_path))
    code, out = run_kit("validate")
    assert code == 1 and "kit.toml: not found" in out and "no Kaggle user name" in out, out
    run_kit("init", "--preset", "lmsys")
    code, out = run_kit("validate")
    assert code == 1, out
    assert "no Kaggle user name" in out and "kit build-wheels" in out and "runs/gemma2-lmsys" in out, out
    assert int(out.split(" problem(s)")[0].split()[-1]) >= 4, out


def test_kernel_without_a_mounted_base_is_refused_by_validate_and_push(project, fake_kaggle):
    """The adapter's kit_manifest.json names a base on this machine; a kernel mounting no base instance would
    load it from there, which Kaggle does not have: validate and every push refuse it (before any network call)."""
    unmounted = 'kernels.inference.instances=["peft-lora-classifier"]'
    problems = _problems(project, unmounted)
    text = "\n".join(problems)
    assert "kit.toml [kernels.inference]" in text and "no base model" in text and "peft-lora-classifier" in text, problems
    assert 'kind = "base"' in text and "kernels.inference.instances" in text, problems
    code, out = run_kit("validate", "--set", unmounted)
    assert code == 1 and "no base model" in out, out
    code, out = run_kit("push-kernel", "inference", "--dry-run", "--set", unmounted, "--set", "instances.peft-lora-classifier.version=1")
    assert code == 2 and "no base model" in out and 'kind = "base"' in out, out
    assert fake_kaggle.requests == []
    assert not any("no base model" in p for p in _problems(project))  # the project as it is mounts its base

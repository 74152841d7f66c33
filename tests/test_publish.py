"""`kit push-*`, `kit status`, `kit output` with the REAL kaggle client against a loopback fake
of the Kaggle API (tests/fake_kaggle.py). No test reaches the network."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fake_kaggle import BASE_HANDLE, COMPETITION, KEY, USER, assert_no_secret, fake_kaggle, kaggle_env, project, run_kit  # noqa: F401

ADAPTER = "peft-lora-classifier"
HANDLE = f"{USER}/gemma2-lmsys-adapter/transformers/{ADAPTER}"


def _tokens_and_names(server):
    starts = server.calls("StartBlobUpload")
    return {s.body["name"] for s in starts}


def _file_tokens(files):
    return sorted(f["token"] for f in files)


def test_push_dataset_creates_then_versions(project, fake_kaggle):
    code, out = run_kit("push-dataset")
    assert code == 0, out
    assert "Created: dataset kit-tester/kit-wheels-lmsys" in out
    rpcs = fake_kaggle.rpcs()
    assert rpcs[0] == "GetDatasetStatus" and "CreateDataset" in rpcs and "CreateDatasetVersion" not in rpcs
    create = fake_kaggle.calls("CreateDataset")[0].body
    assert create["ownerSlug"] == USER and create["slug"] == "kit-wheels-lmsys" and create["title"] == "kit-wheels-lmsys"
    assert create["isPrivate"] is True
    assert create["licenseName"] == "other"
    # every file named in the create call was uploaded by PUT, and only the dataset's files went
    assert _tokens_and_names(fake_kaggle) == {"bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl", "requirements.lock"}
    starts = {c.body["name"]: c for c in fake_kaggle.calls("StartBlobUpload")}
    assert all(s.body["type"] == "DATASET" for s in starts.values())
    tokens = _file_tokens(create["files"])
    assert tokens == sorted(fake_kaggle.blobs) and all(fake_kaggle.blobs[t]["data"] is not None for t in tokens)
    assert fake_kaggle.blobs[[t for t in tokens if t.endswith(".whl")][0]]["data"] == b"PK fake wheel bytes"
    auth = fake_kaggle.calls("CreateDataset")[0].headers.get("Authorization", "")
    assert auth.startswith("Basic ")  # the client authenticated with the fake kaggle.json

    code, out = run_kit("push-dataset", "-m", "add triton")
    assert code == 0, out
    assert "New version of: dataset" in out
    version = fake_kaggle.calls("CreateDatasetVersion")
    assert len(version) == 1 and len(fake_kaggle.calls("CreateDataset")) == 1
    assert version[0].body["ownerSlug"] == USER and version[0].body["datasetSlug"] == "kit-wheels-lmsys"
    assert version[0].body["body"]["versionNotes"] == "add triton"
    assert len(version[0].body["body"]["files"]) == 2
    assert fake_kaggle.datasets[f"{USER}/kit-wheels-lmsys"] == 2
    assert_no_secret(fake_kaggle)


def test_dry_runs_upload_nothing(project, fake_kaggle):
    code, out = run_kit("push-dataset", "--dry-run")
    assert code == 0, out
    assert "Dry run" in out and "Staged folder:" in out and '"isPrivate": true' in out
    code, out = run_kit("push-model", "--instance", ADAPTER, "--dry-run")
    assert code == 0, out
    assert '"framework": "transformers"' in out and '"licenseName": "Apache 2.0"' in out
    assert "adapter_config.json" in out and "checkpoint-5" not in out and "optimizer.pt" not in out
    staged = project / ".kit" / "stage" / "model" / ADAPTER / "instance"
    assert (staged / "adapter_model.safetensors").is_file() and (staged / "kit_manifest.json").is_file()
    assert not (staged / "optimizer.pt").exists() and not (staged / "checkpoint-5").exists()
    assert fake_kaggle.requests == []


def test_push_model_creates_model_and_instance_then_versions(project, fake_kaggle):
    code, out = run_kit("push-model", "--instance", ADAPTER)
    assert code == 0, out
    assert fake_kaggle.rpcs()[:2] == ["GetModel", "CreateModel"]
    model = fake_kaggle.calls("CreateModel")[0].body
    assert model["ownerSlug"] == USER and model["slug"] == "gemma2-lmsys-adapter" and model["isPrivate"] is True
    inst = fake_kaggle.calls("CreateModelInstance")[0].body
    assert inst["ownerSlug"] == USER and inst["modelSlug"] == "gemma2-lmsys-adapter"
    body = inst["body"]
    assert body["instanceSlug"] == ADAPTER and body["framework"] == "MODEL_FRAMEWORK_TRANSFORMERS"
    assert body["licenseName"] == "Apache 2.0"
    assert body.get("fineTunable", False) is False
    names = _tokens_and_names(fake_kaggle)
    assert {"adapter_config.json", "adapter_model.safetensors", "kit_manifest.json", "tokenizer.json"} <= names
    assert "plots.tar" in names  # sub-folders travel archived
    assert not any("checkpoint" in n or "optimizer" in n for n in names)
    assert all(c.body["type"] == "MODEL" for c in fake_kaggle.calls("StartBlobUpload"))
    assert _file_tokens(body["files"]) == sorted(fake_kaggle.blobs)
    assert all(b["data"] is not None for b in fake_kaggle.blobs.values())
    assert "(version 1)" in out
    published = json.loads((project / ".kit" / "published.json").read_text())
    assert published[HANDLE]["version"] == 1

    code, out = run_kit("push-model", "--instance", ADAPTER, "--version-notes", "fold 1")
    assert code == 0, out
    assert len(fake_kaggle.calls("CreateModel")) == 1 and len(fake_kaggle.calls("CreateModelInstance")) == 1
    ver = fake_kaggle.calls("CreateModelInstanceVersion")
    assert len(ver) == 1
    assert ver[0].body["framework"] == "MODEL_FRAMEWORK_TRANSFORMERS" and ver[0].body["instanceSlug"] == ADAPTER
    assert ver[0].body["body"]["versionNotes"] == "fold 1"
    assert "(version 2)" in out
    assert json.loads((project / ".kit" / "published.json").read_text())[HANDLE]["version"] == 2
    assert_no_secret(fake_kaggle)


def test_push_kernel_sends_resolved_sources_and_flags(project, fake_kaggle):
    fake_kaggle.add_dataset(f"{USER}/kit-wheels-lmsys")
    fake_kaggle.add_instance(HANDLE, version=3)  # 'latest' must resolve to 3, from Kaggle
    code, out = run_kit("push-kernel", "inference")
    assert code == 0, out
    save = fake_kaggle.calls("SaveKernel")
    assert len(save) == 1
    b = save[0].body
    assert b["slug"] == f"{USER}/{COMPETITION}-inference" and b["newTitle"] == f"{COMPETITION}-inference"
    assert b["isPrivate"] is True and b["enableGpu"] is True and b["enableInternet"] is False
    assert b["machineShape"] == "NvidiaTeslaT4"
    assert b["language"] == "python" and b["kernelType"] == "notebook"
    assert b["datasetDataSources"] == [f"{USER}/kit-wheels-lmsys"]
    assert b["competitionDataSources"] == [COMPETITION]
    assert b["modelDataSources"] == [f"{HANDLE}/3", f"{BASE_HANDLE}/1"]  # the adapter and the base it needs
    nb = json.loads(b["text"])
    on_disk = json.loads((project / "kernels" / "inference" / "inference.ipynb").read_text())
    assert len(nb["cells"]) == len(on_disk["cells"]) and nb["cells"]
    assert all(c.get("outputs", []) == [] for c in nb["cells"])  # outputs stripped
    assert nb["cells"][-1]["source"] == "".join(on_disk["cells"][-1]["source"])
    assert "GetModelInstance" in fake_kaggle.rpcs()
    assert "Pushed: kernel" in out
    assert_no_secret(fake_kaggle)

    code, out = run_kit("push-kernel", "inference", "--accelerator", "NvidiaL4")
    assert code == 0, out
    assert fake_kaggle.calls("SaveKernel")[1].body["machineShape"] == "NvidiaL4"

    code, out = run_kit("status", "inference")
    assert code == 0 and "complete" in out, out
    outdir = project / "out"
    code, out = run_kit("output", "inference", "--out", str(outdir))
    assert code == 0, out
    assert (outdir / "submission.csv").read_bytes() == fake_kaggle.outputs["submission.csv"]
    assert (outdir / f"{COMPETITION}-inference.log").is_file()


def test_full_journey_push_dataset_model_kernel(project, fake_kaggle):
    """Done-when: push-dataset, push-model --instance peft-lora-classifier, push-kernel inference."""
    for args in (["push-dataset"], ["push-model", "--instance", ADAPTER], ["push-kernel", "inference"]):
        code, out = run_kit(*args)
        assert code == 0, (args, out)
    b = fake_kaggle.calls("SaveKernel")[0].body
    assert b["modelDataSources"] == [f"{HANDLE}/1", f"{BASE_HANDLE}/1"]
    # the strict fake accepted every source (they were pushed before)
    assert "invalidModelSources" not in json.dumps(b)
    assert_no_secret(fake_kaggle)


def test_server_error_field_is_a_failure(project, fake_kaggle):
    fake_kaggle.errors["CreateModelInstance"] = "Quota exceeded for private models"
    code, out = run_kit("push-model", "--instance", ADAPTER)
    assert code != 0
    assert "Quota exceeded for private models" in out
    assert not (project / ".kit" / "published.json").exists()


def test_kernel_with_unknown_sources_fails(project, fake_kaggle):
    fake_kaggle.add_instance(HANDLE, version=1)  # instance exists, wheel dataset does not
    code, out = run_kit("push-kernel", "inference")
    assert code != 0
    assert "kit-wheels-lmsys" in out and "rejected sources" in out


def test_transient_errors_are_retried_and_bounded(project, fake_kaggle, monkeypatch):
    fake_kaggle.http_errors["GetDatasetStatus"] = [503, 502]
    code, out = run_kit("push-dataset")
    assert code == 0, out
    assert len(fake_kaggle.calls("GetDatasetStatus")) >= 3  # 2 failures, then the answer
    monkeypatch.setenv("KIT_RETRIES", "3")
    fake_kaggle.http_errors["GetModel"] = [503] * 10
    code, out = run_kit("push-model", "--instance", ADAPTER)
    assert code != 0 and "HTTP 503" in out
    assert len(fake_kaggle.calls("GetModel")) == 3


def test_credential_files_and_escaping_symlinks_are_refused(project, fake_kaggle, tmp_path):
    wheels = project / "wheels"
    (wheels / "kaggle.json").write_text(json.dumps({"username": USER, "key": KEY}))
    code, out = run_kit("push-dataset")
    assert code != 0 and "kaggle.json" in out and "refus" in out
    (wheels / "kaggle.json").unlink()
    (wheels / "notes.txt").write_text(f"my key is {KEY}\n")
    secret_outside = tmp_path / "id_rsa"
    secret_outside.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n")
    os.symlink(secret_outside, wheels / "link-to-outside")
    (wheels / ".env").write_text("HF_TOKEN=x\n")
    code, out = run_kit("push-dataset")
    assert code != 0
    assert "notes.txt" in out and "link-to-outside" in out and ".env" in out  # all refusals at once
    assert KEY not in out  # the key is never printed
    assert fake_kaggle.requests == []  # nothing reached the server


def test_key_in_notebook_is_refused(project, fake_kaggle, monkeypatch):
    import kaggle_kit.notebooks.render as render

    monkeypatch.setattr(render, "render_if_needed", lambda *a, **k: [])  # push the hand-made folder as it is
    nb = project / "kernels" / "inference" / "inference.ipynb"
    nb.write_text(nb.read_text().replace("hello from kit", f"KEY={KEY}"))
    fake_kaggle.add_dataset(f"{USER}/kit-wheels-lmsys")
    fake_kaggle.add_instance(HANDLE)
    code, out = run_kit("push-kernel", "inference")
    assert code != 0 and "Kaggle API key" in out
    assert fake_kaggle.calls("SaveKernel") == []


def test_missing_credentials_name_the_places(project, kaggle_env, fake_kaggle):
    kaggle_env["cred"].unlink()
    code, out = run_kit("push-dataset", "--set", "kaggle.username=kit-tester")
    assert code != 0
    assert "KAGGLE_API_TOKEN" in out and "kaggle.json" in out and str(kaggle_env["config_dir"]) in out
    assert fake_kaggle.requests == []


def test_world_readable_kaggle_json_warns(project, kaggle_env, fake_kaggle):
    kaggle_env["cred"].chmod(0o644)
    code, out = run_kit("push-dataset")
    assert code == 0, out
    assert "readable by other users" in out and "chmod 600" in out
    assert KEY not in out


def test_validation_runs_before_any_network_call(project, fake_kaggle):
    code, out = run_kit("push-model", "--instance", ADAPTER, "--set", "instances.peft-lora-classifier.framework=peft",
                        "--set", "instances.peft-lora-classifier.license=wtfpl")
    assert code != 0
    assert "peft" in out and "wtfpl" in out
    assert fake_kaggle.requests == []


def test_push_commands_do_not_import_torch(project, kaggle_env):
    code = (
        "import sys\n"
        "from kaggle_kit.cli import main\n"
        "for args in (['--help'], ['push-model', '--instance', 'peft-lora-classifier', '--dry-run'],"
        " ['push-dataset', '--dry-run'], ['validate'],"
        " ['push-kernel', 'inference', '--dry-run', '--set', 'instances.peft-lora-classifier.version=\\'2\\'']):\n"
        "    try:\n"
        "        main(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('TORCH_LOADED' if 'torch' in sys.modules else 'NO_TORCH')\n"
    )
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Dry run (nothing uploaded): kernel" in proc.stdout and "/peft-lora-classifier/2" in proc.stdout
    assert proc.stdout.strip().endswith("NO_TORCH"), proc.stdout[-2000:]


# --------------------------------------------------------------------------- issue 21 (8): a dry run is kit validate
PIN = "instances.peft-lora-classifier.version='2'"  # no 'latest' to resolve: nothing asks Kaggle


def _validate(*sets) -> list[str]:
    code, out = run_kit("validate", "--json", *[a for s in sets for a in ("--set", s)])
    problems = json.loads(out)["problems"]
    assert (code != 0) == bool(problems), out
    return problems


def _break_dataset_metadata(project):
    # build-wheels writes wheels/dataset-metadata.json; push-dataset sends it merged with kit.toml
    (project / "wheels" / "dataset-metadata.json").write_text(json.dumps({"subtitle": "too short"}))


@pytest.mark.parametrize("args, sets, breaks, expect", [
    # a wheel dataset never built: the kernel mounts it
    (["push-kernel", "inference"], [PIN], lambda p: shutil.rmtree(p / "wheels"), "run `kit build-wheels`"),
    # an adapter folder that does not exist: the kernel mounts that instance
    (["push-kernel", "inference"], [PIN, "train.output=runs/missing"], None, "runs/missing, does not exist"),
    (["push-kernel", "inference"], [PIN, "kernels.inference.template=nope"], None, "notebooks_src/nope.py not found"),
    (["push-model", "--instance", ADAPTER], ["train.output=runs/missing"], None, "runs/missing, does not exist"),
    (["push-model", "--instance", ADAPTER], [], lambda p: (p / "runs" / "adapter" / "kit_manifest.json").unlink(),
     "kit_manifest.json"),
    (["push-dataset"], [], _break_dataset_metadata, "subtitle must be 20-80 characters"),
    (["push-dataset"], ["wheels.dataset_title=Kit wheels for LMSYS"], None, "gives the slug 'kit-wheels-for-lmsys'"),
])
def test_dry_run_refuses_what_validate_reports(project, fake_kaggle, args, sets, breaks, expect):
    """Each push kind: a problem `kit validate` reports makes the dry run (and the push) exit
    non-zero naming it, before any network call."""
    if breaks:
        breaks(project)
    problems = _validate(*sets)
    assert any(expect in p for p in problems), problems
    setargs = [a for s in sets for a in ("--set", s)]
    for extra in (["--dry-run"], []):
        code, out = run_kit(*args, *extra, *setargs)
        assert code != 0, (extra, out)
        assert expect in out and "nothing was uploaded" in out, out
    assert fake_kaggle.requests == []
    assert not (project / ".kit" / "stage").exists()  # refused before staging


def test_clean_project_dry_runs_pass_for_every_kind(project, fake_kaggle):
    assert _validate(PIN) == []
    for args in (["push-dataset"], ["push-model", "--instance", ADAPTER], ["push-kernel", "inference", "--set", PIN]):
        code, out = run_kit(*args, "--dry-run")
        assert code == 0 and "Dry run (nothing uploaded)" in out, (args, out)
    assert fake_kaggle.requests == []


def test_push_kernel_notes_a_shortened_default_slug(project, fake_kaggle):
    """Issue 21 (10): a default slug over Kaggle's 50 characters is shortened, and the push says so."""
    long = "wsdm-cup-multilingual-chatbot-arena-and-more"  # + "-inference" = 54 characters
    code, out = run_kit("push-kernel", "inference", "--dry-run", "--set", PIN, "--set", f"kaggle.competition={long}")
    assert code == 0, out
    meta = json.loads((project / ".kit" / "stage" / "kernel" / "inference" / "kernel-metadata.json").read_text())
    assert meta["id"] == f"{USER}/wsdm-cup-multilingual-chatbot-arena-and-inference" and meta["title"] == meta["id"].split("/")[1]
    assert f"the default slug '{long}-inference' has 54 characters" in out and "kernels.inference.slug" in out, out
    assert fake_kaggle.requests == []

"""`kit build-wheels`: target profiles, the requirement set, resolution for a target that is not this
interpreter, download + lock/manifest/metadata, clear failures, and the offline check.

The network tests reach the package registry only (PyPI is reachable in CI) and use tiny pure
packages (six, python-dateutil, idna, requests' metadata)."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from kaggle_kit.wheels.build import build_wheels
from kaggle_kit.wheels.check import _check_closure, check_wheels
from kaggle_kit.wheels.errors import CheckError, ImageConflictError, MissingWheelError, WheelError
from kaggle_kit.wheels.image_env import find_python
from kaggle_kit.wheels.reference import image_profile_from_reference
from kaggle_kit.wheels.requirements import requirement_set
from kaggle_kit.wheels.target import DEFAULT_PROFILE, Profile, load_profile, manylinux_platforms
from kaggle_kit.config import KitConfig
from kaggle_kit.runtime.manifest import Manifest

LOCAL_PY = f"{sys.version_info.major}.{sys.version_info.minor}"
OTHER_PY = "3.12" if LOCAL_PY != "3.12" else "3.11"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "kit-cache"))
    monkeypatch.setenv("KAGGLE_USERNAME", "testuser")


def freeze(tmp_path: Path, text: str, name: str = "freeze.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def cfg_with(**wheels) -> KitConfig:
    cfg = KitConfig()
    for k, v in wheels.items():
        setattr(cfg.wheels, k, v)
    return cfg


# ----------------------------------------------------------------------------- profiles (no network)


def test_default_profile_is_kaggle_2026_gpu_image():
    p = load_profile()
    assert p.name == "kaggle-gpu-2026" == DEFAULT_PROFILE
    assert (p.python, p.implementation, p.abi) == ("3.12", "cp", "cp312")
    assert p.preinstalled["torch"].startswith("2.10.0")
    assert p.preinstalled["transformers"] == "5.0.0" and p.preinstalled["peft"] == "0.19.1"
    assert "bitsandbytes" not in p.preinstalled
    assert p.preinstalled["ipywidgets"] == "8.1.5"  # Kaggle's pin overrides Colab's 7.7.1
    assert {"manylinux_2_35_x86_64", "manylinux_2_24_x86_64", "manylinux2014_x86_64"} <= set(p.platforms)
    assert p.is_protected("torch") and p.is_protected("nvidia-cublas-cu12") and not p.is_protected("peft")


def test_lmsys_2024_profile():
    p = load_profile("kaggle-2024-lmsys")
    assert (p.python, p.abi) == ("3.10", "cp310")
    assert p.preinstalled["torch"] == "2.4.0"
    assert "peft" not in p.preinstalled and "bitsandbytes" not in p.preinstalled
    assert "transformers" in p.estimated


def test_unknown_target_lists_profiles():
    with pytest.raises(WheelError, match="kaggle-gpu-2026.*kaggle-2024-lmsys|kaggle-2024-lmsys.*kaggle-gpu-2026"):
        load_profile("kaggle-gpu-1999")


def test_parse_freeze_and_custom_profile(tmp_path):
    path = freeze(tmp_path, "# comment\nSix==1.16.0\ntyping_extensions==4.12.2\n"
                            "en_core_web_sm @ https://x/en_core_web_sm-3.8.0-py3-none-any.whl#sha256=00\n"
                            "google-colab @ file:///colabtools/dist/google_colab-1.0.0.tar.gz\n-e git+https://x/y#egg=y\n")
    p = load_profile(path, python="3.12")
    assert p.name == "freeze" and p.python == "3.12" and p.abi == "cp312"
    assert p.preinstalled == {"six": "1.16.0", "typing-extensions": "4.12.2", "en-core-web-sm": "3.8.0"}
    assert "google-colab" in p.unversioned
    assert p.platforms == load_profile().platforms  # the default's tags
    bad = freeze(tmp_path, "six==1.16.0\nthis is not a freeze line\n", "bad.txt")
    with pytest.raises(WheelError, match=r"bad.txt:2: cannot read"):
        load_profile(bad)


def test_shipped_profile_regenerates_from_reference_lists():
    ref = Path(__file__).resolve().parents[2] / "shared" / "reference" / "kaggle-image"
    if not ref.is_dir():
        pytest.skip("../shared/reference/kaggle-image is absent")
    fresh = image_profile_from_reference(ref).to_dict()
    shipped = load_profile("kaggle-gpu-2026").to_dict()
    assert fresh == shipped


def test_manylinux_expansion():
    tags = manylinux_platforms("2.28")
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in tags and tags[-1] == "manylinux1_x86_64"
    assert "manylinux_2_35_x86_64" not in tags


def _fake_wheel(folder: Path, name: str, version: str, requires: list) -> dict:
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{name}-{version}.dist-info/METADATA", meta)
    return {"file": path.name, "name": name, "version": version}


def test_closure_check_evaluates_markers_for_the_target(tmp_path):
    out = tmp_path / "w"
    data = {"wheels": [_fake_wheel(out, "alpha", "1.0", ["beta>=2", "gamma; python_version < '3.12'",
                                                          "six>=1.16; python_version >= '3.12'", "delta; extra == 'dev'"])]}
    p312 = Profile(name="t312", python="3.12", preinstalled={"six": "1.17.0"})
    with pytest.raises(CheckError, match=r"alpha 1.0 needs beta>=2 .*not in the set nor the image") as err:
        _check_closure(out, data, p312)
    assert "gamma" not in str(err.value) and "delta" not in str(err.value)  # 3.10-only / extra-only needs
    data["wheels"].append(_fake_wheel(out, "beta", "2.1", []))
    _check_closure(out, data, p312)
    p310 = Profile(name="t310", python="3.10", preinstalled={"six": "1.10.0"})
    with pytest.raises(CheckError, match=r"needs gamma; python_version < .3\.12. \(markers for Python 3\.10\)"):
        _check_closure(out, data, p310)  # gamma is needed on 3.10 only
    p312_old_six = Profile(name="t312b", python="3.12", preinstalled={"six": "1.10.0"})
    with pytest.raises(CheckError, match=r"needs six>=1.16; the image has 1.10.0"):
        _check_closure(out, data, p312_old_six)


# ----------------------------------------------------------------------------- the requirement set


def _manifest(folder: Path, versions: dict, quant: str = "4bit") -> Path:
    Manifest(task={"kind": "pairwise", "labels": ["a", "b", "tie"]}, prompt={}, base_model={"name": "tiny"},
             quantization={"mode": quant}, peft={"method": "lora"}, versions=versions).save(folder)
    return folder


def test_requirement_set_from_adapter_manifest(tmp_path):
    p = load_profile()
    run = _manifest(tmp_path / "run", {"python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "5.0.0",
                                       "peft": "0.21.2", "accelerate": None, "bitsandbytes": "0.50.2"})
    wants, skips = requirement_set(p, KitConfig(), adapter=run, extras=["sentencepiece==0.2.0"])
    got = {w.name: w.requirement for w in wants}
    assert got == {"bitsandbytes": "bitsandbytes==0.50.2", "peft": "peft==0.21.2", "sentencepiece": "sentencepiece==0.2.0"}
    assert "image has 0.19.1" in next(w.reason for w in wants if w.name == "peft")
    skipped = {s.name: s.reason for s in skips}
    assert "= training env" in skipped["transformers"]  # same version as the image: left out
    assert "accelerate" in skipped and "python" in skipped  # trained on 3.11, target 3.12
    assert "torch" not in got


def test_requirement_set_unquantized_adapter_skips_bitsandbytes(tmp_path):
    run = _manifest(tmp_path / "run", {"transformers": "5.0.0"}, quant="none")
    wants, skips = requirement_set(load_profile(), KitConfig(), adapter=run)
    assert "bitsandbytes" not in {w.name for w in wants}
    assert "not quantized" in {s.name: s.reason for s in skips}["bitsandbytes"]
    cfg = KitConfig()
    cfg.inference.quantization = "4bit"  # quantized at inference time: ship it after all
    wants, _ = requirement_set(load_profile(), cfg, adapter=run)
    assert "bitsandbytes" in {w.name for w in wants}


def test_requirement_set_from_fixture_adapter(untrained_adapter):
    wants, skips = requirement_set(load_profile(), KitConfig(), adapter=untrained_adapter)
    names = {w.name for w in wants} | {s.name for s in skips}
    assert {"transformers", "peft", "accelerate", "bitsandbytes"} <= names


def test_extra_naming_torch_is_refused():
    with pytest.raises(ImageConflictError, match="torch"):
        requirement_set(load_profile(), KitConfig(), extras=["torch==2.13.0"], versions={})


# ----------------------------------------------------------------------------- network: build + check


@pytest.mark.network
def test_build_for_other_python_skips_preinstalled_and_writes_files(tmp_path):
    prof = freeze(tmp_path, "six==1.16.0\n")
    out = tmp_path / "wheels"
    res = build_wheels(cfg_with(extra=["python-dateutil==2.9.0.post0"]), target=str(prof), out=out,
                       python=OTHER_PY, extras=["six>=1.10", "idna==3.7"], runtime=False, progress=False)
    names = {w.name: w for w in res.wheels}
    assert set(names) == {"python-dateutil", "idna"}  # six: the image has it
    assert any(s.name == "six" and "already satisfies" in s.reason for s in res.skipped)
    for w in res.wheels:
        path = out / w.file
        assert path.is_file() and path.stat().st_size == w.size
        assert hashlib.sha256(path.read_bytes()).hexdigest() == w.sha256
    assert "extra from kit.toml" in names["python-dateutil"].reason and names["idna"].reason == "--extra"
    # lock
    lock = (out / "requirements.lock").read_text()
    assert lock.startswith("# requirements.lock: GENERATED by kit build-wheels")
    assert f"idna==3.7 --hash=sha256:{names['idna'].sha256}" in lock
    # manifest: the exact schema the notebook installer reads
    man = json.loads((out / "kit-wheels-manifest.json").read_text())
    assert set(man) == {"generated_by", "target", "python", "platforms", "wheels"}
    assert man["generated_by"].startswith("kit build-wheels (kaggle-kit ") and man["python"] == OTHER_PY
    assert man["target"] == "freeze" and "manylinux_2_35_x86_64" in man["platforms"]
    assert {tuple(sorted(w)) for w in man["wheels"]} == {("file", "name", "reason", "sha256", "size", "version")}
    assert {w["file"] for w in man["wheels"]} == {p.name for p in out.glob("*.whl")}
    # dataset metadata from kit.toml
    meta = json.loads((out / "dataset-metadata.json").read_text())
    assert meta["id"] == "testuser/kit-wheels" and meta["title"] == "kit-wheels" and meta["licenses"] == [{"name": "other"}]
    # offline check passes; the real install needs a Python of the target's version on this machine
    check = check_wheels(out, res.profile)
    assert check.ok and set(check.resolved) == {"python-dateutil", "idna"}
    if find_python(OTHER_PY):
        assert check.installed and check.interpreter != sys.executable and "idna" in check.imported
    else:
        assert not check.installed and any("real install skipped" in n for n in check.notes)


@pytest.mark.network
def test_check_fails_on_a_hole(tmp_path):
    out = tmp_path / "wheels"
    res = build_wheels(KitConfig(), target=str(freeze(tmp_path, "idna==3.7\n")), out=out, python=OTHER_PY,
                       extras=["python-dateutil==2.9.0.post0"], runtime=False, progress=False)
    assert {w.name for w in res.wheels} == {"python-dateutil", "six"}
    assert "needed by python-dateutil" in next(w.reason for w in res.wheels if w.name == "six")
    check_wheels(out, res.profile)
    next(out.glob("six-*.whl")).unlink()
    with pytest.raises(CheckError, match=r"missing: six-"):
        check_wheels(out, res.profile)
    # a manifest that agrees with the holed folder: pip's --no-index resolution finds the hole
    man_path = out / "kit-wheels-manifest.json"
    man = json.loads(man_path.read_text())
    man["wheels"] = [w for w in man["wheels"] if w["name"] != "six"]
    man_path.write_text(json.dumps(man))
    with pytest.raises(CheckError, match=r"no wheel for six"):
        check_wheels(out, res.profile)


@pytest.mark.network
def test_missing_wheel_for_target_is_clear(tmp_path):
    with pytest.raises(MissingWheelError) as err:
        build_wheels(KitConfig(), target=str(freeze(tmp_path, "six==1.16.0\n")), out=tmp_path / "w", python="3.12",
                     extras=["pyyaml==5.4.1"], runtime=False, progress=False, dry_run=True)
    msg = str(err.value)
    assert "pyyaml==5.4.1" in msg and "cp312" in msg and "manylinux_2_35_x86_64" in msg
    assert "WITH a wheel for this target" in msg and "6.0" in msg  # versions that do have cp312 wheels


@pytest.mark.network
def test_conflict_with_image_pin_names_both_sides(tmp_path):
    profile = load_profile(freeze(tmp_path, "idna==2.4\n"), python="3.12")
    profile.protected.append("idna")
    with pytest.raises(ImageConflictError) as err:
        build_wheels(KitConfig(), target=profile, out=tmp_path / "w", extras=["requests==2.32.3"],
                     runtime=False, progress=False, dry_run=True)
    msg = str(err.value)
    assert "idna==2.4" in msg and "requests 2.32.3 depends on idna" in msg
    # --strict-image: every preinstalled package is pinned, not only the protected ones
    plain = load_profile(freeze(tmp_path, "idna==2.4\n", "plain.txt"), python="3.12")
    res = build_wheels(KitConfig(), target=plain, out=tmp_path / "w", extras=["requests==2.32.3"],
                       runtime=False, progress=False, dry_run=True)
    assert "idna" in {w.name for w in res.wheels} and ("idna", "2.4", next(w.version for w in res.wheels if w.name == "idna")) in res.upgrades
    with pytest.raises(ImageConflictError, match=r"the image pins idna==2.4.*requests 2.32.3 depends on idna"):
        build_wheels(KitConfig(), target=plain, out=tmp_path / "w", extras=["requests==2.32.3"],
                     runtime=False, progress=False, dry_run=True, strict=True)


@pytest.mark.network
def test_custom_profile_matching_this_interpreter_installs_and_imports(tmp_path):
    out = tmp_path / "wheels"
    path = freeze(tmp_path, "packaging==24.0\n", "kaggle-freeze.txt")
    res = build_wheels(KitConfig(), target=str(path), out=out, python=LOCAL_PY, extras=["python-dateutil==2.9.0.post0"],
                       runtime=False, progress=False, check=True)
    assert res.profile.name == "kaggle-freeze"
    assert res.check.installed and res.check.interpreter == sys.executable
    assert {"dateutil", "six"} <= set(res.check.imported)


@pytest.mark.network
def test_default_profile_dry_run_ships_bitsandbytes_not_torch(tmp_path):
    res = build_wheels(KitConfig(), out=tmp_path / "w", dry_run=True, progress=False,
                       versions={"transformers": "5.0.0", "peft": "0.19.1", "accelerate": "1.13.0", "bitsandbytes": None})
    names = {w.name: w for w in res.wheels}
    assert set(names) == {"bitsandbytes"}  # the image covers transformers / peft / accelerate at these versions
    assert "manylinux" in names["bitsandbytes"].file and not (tmp_path / "w").exists()
    assert not any(load_profile().is_protected(n) for n in names)


@pytest.mark.network
def test_cli_dry_run_and_missing_username(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from kaggle_kit.cli import main

    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    prof = freeze(tmp_path, "idna==3.7\n")
    r = CliRunner().invoke(main, ["build-wheels", "--target", str(prof), "--python-version", "3.12", "--extras-only",
                                  "--extra", "six==1.16.0", "--out", "w", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "six" in r.output and "total" in r.output
    assert "dataset-metadata.json not written: no Kaggle user name" in r.output
    assert (tmp_path / "w" / "kit-wheels-manifest.json").is_file() and not (tmp_path / "w" / "dataset-metadata.json").exists()
    r = CliRunner().invoke(main, ["build-wheels", "--target", str(prof), "--extras-only", "--extra", "pyyaml==5.4.1",
                                  "--python-version", "3.12", "--dry-run"])
    assert r.exit_code == 2 and "Error: no wheel of pyyaml==5.4.1" in r.output

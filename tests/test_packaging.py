"""The kit as an installable package (issue 13): a wheel that renders and validates without the
source tree, the pip `kit build-wheels` needs, the licence field, presets' Kaggle input layout."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from fake_kaggle import run_kit

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("notebooks_src", "metadata_templates")


def _run(cmd, cwd, env=None):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory) -> Path:
    """The wheel, built offline (--no-build-isolation: this venv's setuptools) from a copy of the
    files a source distribution holds, so the checkout stays clean."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("kaggle_kit",) + SHIPPED:
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    code, out = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                      "-w", work / "dist", "."], cwd=src)
    assert code == 0, out[-3000:]
    assert "BuildBackendWarning" not in out and "SetuptoolsDeprecationWarning" not in out, out[-3000:]
    (wheel,) = (work / "dist").glob("kaggle_kit-*.whl")
    return wheel


def test_wheel_ships_notebook_sources_and_templates(built_wheel):
    names = set(zipfile.ZipFile(built_wheel).namelist())
    for folder in SHIPPED:
        for path in (REPO / folder).iterdir():
            if path.is_file():
                assert f"kaggle_kit/{folder}/{path.name}" in names, path
    packages = {p.parent.relative_to(REPO).as_posix() for p in (REPO / "kaggle_kit").rglob("__init__.py")}
    for pkg in packages:  # a package added later cannot be left out of the wheel
        assert f"{pkg}/__init__.py" in names, pkg
    meta = zipfile.ZipFile(built_wheel).read(next(n for n in names if n.endswith("dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in meta and "Requires-Dist: pip>=23.3" in meta


def test_wheel_install_renders_and_validates_without_the_source_tree(built_wheel, untrained_adapter, tiny_base, tmp_path):
    """A fresh venv holding only the wheel (dependencies reached through a .pth to this venv's
    site-packages, which is not scanned for .pth files, so the editable install stays out)."""
    venv = tmp_path / "venv"
    code, out = _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    assert code == 0, out
    py = venv / "bin" / "python"
    site = Path(subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (site / "_kit_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code, out = _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", built_wheel], cwd=tmp_path)
    assert code == 0, out[-3000:]
    proj = tmp_path / "proj"
    proj.mkdir()
    kit = venv / "bin" / "kit"
    code, out = _run([py, "-c", "import kaggle_kit.templating as t; print(t.NOTEBOOK_SOURCES); print(t.METADATA_TEMPLATES)"], cwd=proj)
    assert code == 0 and all(str(site / "kaggle_kit" / f) in out for f in SHIPPED), out
    assert str(REPO) not in out
    code, out = _run([kit, "init", "--preset", "lmsys", "--username", "someone"], cwd=proj)
    assert code == 0, out
    # a project that is ready: the adapter run folder, a base snapshot, a wheel set, pinned versions
    shutil.copytree(untrained_adapter, proj / "runs" / "adapter")
    shutil.copytree(tiny_base, proj / "models" / "base")
    (proj / "wheels").mkdir()
    (proj / "wheels" / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl").write_bytes(b"PK fake")
    sets = ["--set", "train.output=runs/adapter", "--set", "model.path=models/base", "--set", "model.name=tiny",
            "--set", "instances.gemma2-base.version=1", "--set", "instances.peft-lora-classifier.version=1",
            "--set", "instances.gemma2-base.license=apache-2.0"]
    code, out = _run([kit, "render", "--all", *sets], cwd=proj)
    assert code == 0, out
    nb = proj / "kernels" / "inference" / "inference.ipynb"
    assert nb.is_file() and (proj / "kernels" / "inference" / "kernel-metadata.json").is_file()
    code, out = _run([kit, "validate", *sets], cwd=proj)
    assert code == 0 and "OK" in out, out
    # the same notebook as the source tree renders (one source of truth)
    here = tmp_path / "here"
    shutil.copytree(proj, here, ignore=shutil.ignore_patterns("kernels"))
    code, out = _run([Path(sys.executable).parent / "kit", "render", "--all", *sets], cwd=here)
    assert code == 0, out
    assert (here / "kernels" / "inference" / "inference.ipynb").read_bytes() == nb.read_bytes()


def test_build_wheels_names_the_pip_upgrade(monkeypatch):
    """pip < 23.3 refuses the cross-target options with no hint; the kit says what to upgrade."""
    import pip

    from kaggle_kit.wheels.errors import WheelError
    from kaggle_kit.wheels.image_env import check_pip

    monkeypatch.setattr(pip, "__version__", "23.2.1")
    with pytest.raises(WheelError) as err:
        check_pip()
    assert "pip 23.2.1" in str(err.value) and f"{sys.executable} -m pip install --upgrade 'pip>=23.3'" in str(err.value)
    code, out = run_kit("build-wheels", "--dry-run", "--quiet")
    assert code == 2 and "Error:" in out and "--upgrade 'pip>=23.3'" in out and "Traceback" not in out, out
    assert check_pip("23.3") == "23.3" and check_pip("26.0.1") == "26.0.1"


def _bundled_pip() -> str:
    import ensurepip

    return ensurepip.version()


@pytest.mark.skipif(not _bundled_pip() or tuple(int(x) for x in _bundled_pip().split(".")[:2]) >= (23, 3),
                    reason="this Python bundles pip >= 23.3")
def test_build_wheels_in_a_plain_venv_with_its_bundled_old_pip(built_wheel, tmp_path):
    """The reported set-up: `python3.11 -m venv` (pip 23.2.1 from ensurepip, offline) + the kit."""
    venv = tmp_path / "venv"
    code, out = _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)  # with the bundled pip
    assert code == 0, out
    py = venv / "bin" / "python"
    site = Path(subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (site / "_kit_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code, out = _run([py, "-m", "pip", "install", "--no-deps", "--no-index", built_wheel], cwd=tmp_path)
    assert code == 0, out[-2000:]
    code, out = _run([py, "-c", "import pip; print(pip.__version__)"], cwd=tmp_path)
    assert out.strip() == _bundled_pip()
    code, out = _run([venv / "bin" / "kit", "build-wheels", "--dry-run", "--quiet"], cwd=tmp_path)
    assert code == 2, out
    assert f"pip {_bundled_pip()}" in out and f"{py} -m pip install --upgrade 'pip>=23.3'" in out, out
    assert "Can not use any platform or abi specific options" not in out and "Traceback" not in out


def test_pyproject_uses_the_spdx_licence_and_declares_pip():
    import tomllib  # noqa: F401 (python >= 3.11 here)

    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert data["project"]["license"] == "Apache-2.0"
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in data["build-system"]["requires"])
    assert "pip>=23.3" in data["project"]["dependencies"]


@pytest.mark.parametrize("preset", ["lmsys", "wsdm", "misconceptions", "rules"])
def test_presets_write_the_current_kaggle_input_layout(preset, tmp_path):
    """README / runtime/kaggle_env.py: competition data is mounted at /kaggle/input/competitions/<slug>/."""
    from kaggle_kit.config import load_config, preset_values

    test = preset_values(preset)["data"]["test"]
    comp = preset_values(preset)["kaggle"]["competition"]
    assert test.startswith(f"/kaggle/input/competitions/{comp}/"), test
    code, out = run_kit("init", "--preset", preset, "--path", str(tmp_path / "kit.toml"))
    assert code == 0, out
    assert load_config(tmp_path / "kit.toml").data.test == test
    repo_cfg = load_config(REPO / "kit.toml")
    assert repo_cfg.data.test.startswith("/kaggle/input/competitions/")

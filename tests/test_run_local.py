"""`kit run-local`: real nbclient in a fresh kernel, the Kaggle layout mapped, the network cut."""
from __future__ import annotations

import csv
import json
import socket
import threading
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from nbformat import v4

from kaggle_kit.errors import KitError
from kaggle_kit.notebooks.run_local import netns_available, run_notebook

REPO = Path(__file__).resolve().parents[1]
NETNS_OK, NETNS_WHY = netns_available()


def _notebook(path: Path, *sources: str) -> Path:
    nb = v4.new_notebook()
    nb.cells = [v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, str(path))
    return path


def _outside_address() -> str:
    """A non-loopback address of this machine (no packet is sent), or skip."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET: only picks the outgoing interface
            addr = s.getsockname()[0]
        except OSError:
            pytest.skip("no non-loopback interface")
    if addr.startswith("127."):
        pytest.skip("no non-loopback interface")
    return addr


def test_failing_cell_exits_nonzero_with_source_and_traceback(tmp_path):
    from kaggle_kit.cli import main

    nb = _notebook(tmp_path / "fails.ipynb", "x = 1\nprint('first cell ran')", "def broken():\n    raise ValueError('boom-marker-42')\nbroken()", "print('never')")
    out = CliRunner().invoke(main, ["run-local", str(nb), "--out", str(tmp_path / "out"), "--network", "guard"])
    assert out.exit_code != 0, out.output
    assert "first cell ran" in out.output
    assert "cell 1 failed" in out.output
    assert "raise ValueError('boom-marker-42')" in out.output  # the cell's source
    assert "ValueError: boom-marker-42" in out.output and "Traceback" in out.output  # its traceback
    assert "never" not in out.output.split("cell 1 failed")[0].split("[cell  1]")[-1]
    executed = nbformat.read(str(tmp_path / "out" / "fails.ipynb"), as_version=4)
    assert any(o.get("output_type") == "error" for o in executed.cells[1].outputs)


MODES = [pytest.param("guard", id="guard"),
         pytest.param("netns", id="netns", marks=pytest.mark.skipif(not NETNS_OK, reason=f"no network namespace: {NETNS_WHY}"))]


@pytest.mark.parametrize("mode", MODES)
def test_network_is_cut_inside_the_kernel(tmp_path, mode):
    host = _outside_address()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, 0))
    server.listen(8)
    port = server.getsockname()[1]
    accepted = []

    def serve():
        server.settimeout(20)
        try:
            while True:
                conn, _ = server.accept()
                accepted.append(conn)
        except OSError:
            return

    threading.Thread(target=serve, daemon=True).start()
    with socket.create_connection((host, port), timeout=5):  # reachable from here: the test can fail
        pass
    import time

    deadline = time.monotonic() + 10
    while not accepted and time.monotonic() < deadline:  # let the server thread take that connection
        time.sleep(0.05)
    assert accepted
    code = f"""
import socket
try:
    socket.create_connection(({host!r}, {port}), timeout=5).close()
    print("OUTSIDE: CONNECTED")
except OSError as exc:
    print("OUTSIDE: BLOCKED", exc)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
socket.create_connection(srv.getsockname(), timeout=5).close()
print("LOOPBACK: OK")
"""
    nb = _notebook(tmp_path / "net.ipynb", code)
    lines = []
    before = len(accepted)
    result = run_notebook(nb, {}, tmp_path / "out", log=lines.append, network=mode)
    server.close()
    text = "\n".join(lines)
    assert result.network == mode
    assert "OUTSIDE: BLOCKED" in text and "OUTSIDE: CONNECTED" not in text, text
    assert "LOOPBACK: OK" in text
    assert len(accepted) == before  # the server never saw the kernel


def _render_project(tmp_path: Path) -> Path:
    from kaggle_kit.config import load_config
    from kaggle_kit.notebooks.render import render_kernel

    root = tmp_path / "project"
    root.mkdir()
    (root / "kit.toml").write_text(
        "[kaggle]\nusername = \"kit-demo\"\ncompetition = \"llm-classification-finetuning\"\n"
        "[data]\ntest = \"/kaggle/input/llm-classification-finetuning/test.csv\"\nformat = \"lmsys\"\n"
        "[inference]\ntta = \"none\"\nbatch_tokens = 4096\n"
        "[kernels.inference]\ntemplate = \"inference\"\ninstances = [\"tiny-base\", \"peft-lora-classifier\"]\n"
        "[instances.tiny-base]\nmodel_slug = \"tiny-base\"\nkind = \"base\"\nversion = \"1\"\n"
        "[instances.peft-lora-classifier]\nmodel_slug = \"tiny-adapter\"\nkind = \"adapter\"\nversion = \"1\"\n",
        encoding="utf-8",
    )
    return render_kernel(load_config(root / "kit.toml", required=True), "inference", root).notebook_path


def test_missing_input_names_kaggle_path_and_key(tmp_path):
    nb = _render_project(tmp_path)
    with pytest.raises(KitError) as exc:
        run_notebook(nb, {"adapter": str(tmp_path)}, tmp_path / "out", log=lambda s: None, network="guard")
    msg = str(exc.value)
    assert "/kaggle/input/competitions/llm-classification-finetuning/test.csv" in msg
    assert "kaggle.competition" in msg and "--inputs competition=DIR" in msg
    with pytest.raises(KitError, match="unknown input"):
        run_notebook(nb, {"adaptr": str(tmp_path)}, tmp_path / "out", log=lambda s: None, network="guard")


def test_adapter_without_manifest_is_said_first(tmp_path):
    """An adapter folder lacking kit_manifest.json: that comes first, before the base it would name."""
    nb = _render_project(tmp_path)
    adapter = tmp_path / "not-a-run"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(KitError) as exc:
        run_notebook(nb, {"adapter": str(adapter)}, tmp_path / "out", log=lambda s: None, network="guard")
    problems = [ln for ln in str(exc.value).splitlines() if ln.startswith("  - ")]
    assert problems[0].startswith("  - adapter:") and "kit_manifest.json" in problems[0] and str(adapter) in problems[0]
    assert any(p.startswith("  - base:") for p in problems[1:])  # the rest is still listed


@pytest.mark.skipif(not (REPO / "kaggle_kit/runtime/infer.py").exists(), reason="runtime.infer.predict_file not there yet")
def test_rendered_notebook_predicts_offline_on_cpu(tmp_path, untrained_adapter, lmsys_synth_test, tiny_base):
    from kaggle_kit.cli import main

    nb = _render_project(tmp_path)
    out_dir = tmp_path / "out"
    # no base given: it comes from the adapter manifest's base_model.path (the tiny base)
    result = CliRunner().invoke(main, [
        "run-local", str(nb), "--inputs", f"competition={lmsys_synth_test.parent}",
        "--inputs", f"adapter={untrained_adapter}", "--out", str(out_dir), "--json",
    ])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # --json: the result on stdout, the log on stderr
    assert data["inputs"]["base"] == str(Path(tiny_base).resolve())
    assert len(data["cells"]) >= 10 and all(c["seconds"] >= 0 for c in data["cells"])
    sub = out_dir / "submission.csv"
    assert data["submission"] == str(sub)
    with sub.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with lmsys_synth_test.open(newline="") as fh:
        test_ids = [r["id"] for r in csv.DictReader(fh)]
    assert [r["id"] for r in rows] == test_ids or sorted(r["id"] for r in rows) == sorted(test_ids)
    assert list(rows[0]) == ["id", "winner_model_a", "winner_model_b", "winner_tie"]
    for r in rows:
        probs = [float(r[k]) for k in ("winner_model_a", "winner_model_b", "winner_tie")]
        assert all(0 <= p <= 1 for p in probs) and abs(sum(probs) - 1) < 1e-4
    assert len({tuple(r.values())[1:] for r in rows}) > 1  # not a constant prediction
    executed = nbformat.read(str(out_dir / "inference.ipynb"), as_version=4)
    text = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "temp/kit-runtime" in text  # the embedded runtime ran, not the installed library
    assert "installing nothing" in text


def test_base_outside_the_root_fails_as_it_would_on_kaggle(tmp_path, untrained_adapter, lmsys_synth_test, tiny_base):
    """A notebook that mounts no base (as `kit render` wrote for the misconceptions and rules presets:
    ``BASE_DIR = None``): the adapter's manifest records the base's folder on this machine, which exists
    here. The local run must not load it from there: it fails where Kaggle would, with Kaggle's message."""
    from kaggle_kit.runtime import kaggle_env
    from kaggle_kit.runtime.manifest import Manifest

    nb_path = _render_project(tmp_path)
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if src.startswith("TEST_FILE = "):
            lines = src.splitlines()
            lines = [("BASE_DIR = None  # the base model named in the adapter's kit_manifest.json" if ln.startswith("BASE_DIR = ") else ln)
                     for ln in lines]
            cell["source"] = "\n".join(lines)
    inputs = nb["metadata"]["kaggle_kit"]["inputs"]
    del inputs["base"]
    nb_path.write_text(json.dumps(nb), encoding="utf-8")
    manifest = Manifest.load(untrained_adapter)
    assert Path(manifest.base_model["path"]).resolve() == Path(tiny_base).resolve()  # here, outside the root
    lines = []
    with pytest.raises(KitError) as exc:
        run_notebook(nb_path, {"competition": lmsys_synth_test.parent, "adapter": untrained_adapter}, tmp_path / "out",
                     log=lines.append, network="guard")
    on_kaggle = kaggle_env.base_not_mounted("/kaggle/" + inputs["adapter"]["paths"][0], manifest.base_model)
    assert on_kaggle in str(exc.value), str(exc.value)[-3000:]
    assert "predict_file(" in str(exc.value)  # it failed at the prediction, after the inputs cell printed base: None
    assert not (tmp_path / "out" / "submission.csv").exists()


@pytest.mark.slow
def test_training_notebook_trains_offline(tmp_path):
    """The train template: embedded kaggle_kit.train + config, run_training on the tiny model, offline."""
    from kaggle_kit.config import load_config
    from kaggle_kit.notebooks.render import render_kernel
    from kaggle_kit.data.synth import write_synth

    root = tmp_path / "project"
    root.mkdir()
    (root / "kit.toml").write_text(
        "[kaggle]\nusername = \"kit-demo\"\ncompetition = \"llm-classification-finetuning\"\n"
        "[model]\nname = \"tiny\"\n[data]\ntrain = \"data/train.csv\"\nformat = \"lmsys\"\nfolds = 4\n"
        "[prompt]\nmax_length = 64\n[train]\nmax_steps = 2\nbatch_size = 4\neval_batch_size = 16\n"
        "[kernels.train]\ntemplate = \"train\"\n",
        encoding="utf-8",
    )
    nb = render_kernel(load_config(root / "kit.toml", required=True), "train", root).notebook_path
    comp = tmp_path / "comp"
    write_synth("lmsys", 48, comp / "train.csv", seed=1)
    lines = []
    result = run_notebook(nb, {"competition": comp}, tmp_path / "out", log=lines.append, network="guard")
    run = tmp_path / "out" / "run"
    assert (run / "kit_manifest.json").is_file() and (run / "adapter_model.safetensors").is_file(), "\n".join(lines)
    manifest = json.loads((run / "kit_manifest.json").read_text())
    assert manifest["task"]["labels"] == ["winner_model_a", "winner_model_b", "winner_tie"]
    assert result.submission_path is None and any("run_training" in c.first_line for c in result.cell_times)


def test_notebook_install_goes_to_a_throwaway_folder(tmp_path):
    """Inside run-local the offline installer really runs pip, but never into this environment."""
    import importlib.util
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_render_install import _manifest, _wheel

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _manifest(wheels, [_wheel(wheels, "kitdemo_local", "0.3")])
    code_install = "from kaggle_kit.runtime.install import install_wheels\nimport os\ninstall_wheels(os.path.join(os.environ['KIT_KAGGLE_ROOT'], 'input', 'wheels'))"
    code_import = "import kitdemo_local\nprint('IMPORTED', kitdemo_local.VALUE, kitdemo_local.__file__)"
    nb = _notebook(tmp_path / "install.ipynb", code_install, code_import)
    lines = []
    run_notebook(nb, {"wheels": wheels}, tmp_path / "out", log=lines.append, network="guard")
    text = "\n".join(lines)
    assert "installed 1 wheel(s)" in text and "IMPORTED 0.3" in text, text
    assert "/temp/site-packages/kitdemo_local" in text
    assert importlib.util.find_spec("kitdemo_local") is None  # this environment is unchanged

"""`kit run-local`: execute a rendered notebook here as Kaggle would, with the network cut off.

The notebook's inputs (roles recorded by `kit render` in the notebook metadata: competition, adapter,
base, wheels, ...) are mapped to local folders by symbolic links under a temporary root laid out like
Kaggle's ``/kaggle`` (``input/...``, ``working``, ``temp``); ``KIT_KAGGLE_ROOT`` points the notebook
at it. ``working`` is the output folder, so ``submission.csv`` lands there, next to the executed notebook.

The notebook runs with nbclient in a fresh kernel of the current interpreter, driven by an executor
child process (:mod:`kaggle_kit.notebooks.kernel_exec`); its offline wheel install goes into a
throwaway folder the kernel imports first (``PIP_TARGET``), so a local run never changes this Python
environment. The network is cut:

- ``netns``: the executor and its kernel run in a new user + network namespace (``unshare -rn``)
  holding only a loopback interface, so no connection can leave the machine;
- ``guard`` (where namespaces are not allowed): a ``sitecustomize`` loaded into the kernel and every
  Python process it starts makes any non-loopback connection or name lookup fail. It guards Python
  code, not a sandbox for native programs.

``network="auto"`` picks ``netns`` when it works here, else ``guard``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from kaggle_kit.errors import KitError
from kaggle_kit.notebooks.kernel_exec import ROOT_ENV  # noqa: F401  (the child sets it; still importable from here)

NETWORK_MODES = ("auto", "netns", "guard")

GUARD_SOURCE = '''\
"""kit run-local network guard: any connection or name lookup off the loopback fails."""
import errno as _errno
import ipaddress as _ipaddress
import socket as _socket

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _local_host(host):
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).split("%", 1)[0]
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return _ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check(sock, address):
    if sock.family in (_socket.AF_INET, _socket.AF_INET6) and isinstance(address, tuple) and not _local_host(address[0]):
        raise OSError(_errno.ENETUNREACH, "kit run-local: the network is cut off (connection to %r blocked)" % (address[0],))


_connect, _connect_ex, _sendto = _socket.socket.connect, _socket.socket.connect_ex, _socket.socket.sendto
_getaddrinfo = _socket.getaddrinfo


def connect(self, address):
    _check(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


def sendto(self, data, *args):
    _check(self, args[-1])
    return _sendto(self, data, *args)


def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _local_host(host):
        raise _socket.gaierror(_socket.EAI_NONAME, "kit run-local: the network is cut off (lookup of %r blocked)" % (host,))
    return _getaddrinfo(host, *args, **kwargs)


_socket.socket.connect = connect
_socket.socket.connect_ex = connect_ex
_socket.socket.sendto = sendto
_socket.getaddrinfo = getaddrinfo
'''


@dataclass
class CellTime:
    index: int
    seconds: float
    first_line: str

    def to_dict(self) -> dict:
        return {"index": self.index, "seconds": round(self.seconds, 3), "first_line": self.first_line}


@dataclass
class RunResult:
    notebook_path: Path  # the executed notebook in out_dir
    out_dir: Path
    submission_path: Optional[Path]
    network: str  # "netns" or "guard"
    seconds: float
    cell_times: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)  # role -> local folder

    def to_dict(self) -> dict:
        return {
            "notebook": str(self.notebook_path),
            "out_dir": str(self.out_dir),
            "submission": str(self.submission_path) if self.submission_path else None,
            "network": self.network,
            "seconds": round(self.seconds, 2),
            "cells": [c.to_dict() for c in self.cell_times],
            "inputs": {k: str(v) for k, v in self.inputs.items()},
        }


class CellFailed(KitError):
    """A notebook cell raised; carries the cell's index, source and traceback."""

    def __init__(self, index: int, source: str, traceback: str, notebook_path: Optional[Path] = None):
        self.index, self.source, self.traceback, self.notebook_path = index, source, traceback, notebook_path
        where = f"\nThe partly executed notebook: {notebook_path}" if notebook_path else ""
        shown = source if len(source) < 4000 else source[:4000] + "\n... (cell truncated)"
        super().__init__(f"cell {index} failed.\n--- cell {index} source ---\n{shown}\n--- traceback ---\n{traceback}{where}")


# --------------------------------------------------------------------------- network modes


def netns_available() -> tuple:
    """(True, '') when `unshare -rn` can start this interpreter with a working loopback, else (False, why)."""
    unshare = shutil.which("unshare")
    if not unshare or not sys.platform.startswith("linux"):
        return False, "no `unshare` here (Linux util-linux)"
    probe = "import kaggle_kit.notebooks.kernel_exec as r; r._lo_up(); import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); c=socket.create_connection(s.getsockname()); print('ok')"
    try:
        proc = subprocess.run([unshare, "-rn", sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if proc.returncode == 0 and proc.stdout.strip().endswith("ok"):
        return True, ""
    why = (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
    return False, why


# --------------------------------------------------------------------------- the Kaggle-like root


def notebook_inputs(nb: dict) -> dict:
    """The input roles `kit render` recorded in a notebook's metadata (role -> spec)."""
    return dict(nb.get("metadata", {}).get("kaggle_kit", {}).get("inputs", {}))


def _default_inputs(specs: dict, given: dict, log) -> dict:
    given = {k: Path(v).expanduser() for k, v in given.items()}
    if "base" in specs and "base" not in given and "adapter" in given:
        manifest = given["adapter"] / "kit_manifest.json"
        try:
            base = json.loads(manifest.read_text(encoding="utf-8")).get("base_model", {}).get("path")
        except (OSError, ValueError):
            base = None
        if base and Path(base).is_dir():
            given["base"] = Path(base)
            log(f"inputs: base = {base} (base_model.path in {manifest})")
    return given


def prepare_root(specs: dict, given: dict, root: Path, out_dir: Path, log) -> dict:
    """Lay out ``root`` like /kaggle: inputs as symlinks, ``working`` -> out_dir. Returns role -> local path."""
    unknown = sorted(set(given) - set(specs))
    if unknown and specs:
        raise KitError(
            f"unknown input(s) {', '.join(unknown)}; this notebook takes: {', '.join(specs)} "
            "(as --inputs ROLE=DIR)"
        )
    mapped = {}
    (root / "input").mkdir(parents=True, exist_ok=True)
    (root / "temp").mkdir(parents=True, exist_ok=True)
    missing = []
    adapter = given.get("adapter")
    if adapter is not None and adapter.is_dir() and not (adapter / "kit_manifest.json").is_file():
        # listed first: the notebook cannot predict without it, and the base is found through it
        missing.append(f"  - adapter: {adapter} has no kit_manifest.json, so it is not a run folder of `kit train` "
                       f"(files: {sorted(p.name for p in adapter.iterdir())[:8]}); pass the folder `kit train` wrote "
                       f"(kit_manifest.json beside the adapter weights)")
    for role, spec in specs.items():
        rel = spec["paths"][0]
        target = root / rel
        if role not in given:
            if role == "wheels":
                target.mkdir(parents=True, exist_ok=True)
                log("inputs: wheels not given: an empty wheel folder (the installer installs nothing)")
                mapped[role] = target
                continue
            missing.append(f"  - {role}: the notebook expects /kaggle/{rel}"
                           f"{'/' + spec['file'] if spec.get('file') else ''} (set by {spec.get('key', '?')} in kit.toml); "
                           f"pass --inputs {role}=DIR")
            continue
        local = given[role].resolve()
        if not local.exists():
            raise KitError(f"--inputs {role}={given[role]}: not found (the notebook mounts it at /kaggle/{rel})")
        target.parent.mkdir(parents=True, exist_ok=True)
        if local.is_file():
            name = spec.get("file") or local.name
            target.mkdir(parents=True, exist_ok=True)
            (target / name).symlink_to(local)
        else:
            target.symlink_to(local, target_is_directory=True)
        mapped[role] = local
        log(f"inputs: {role:<12} /kaggle/{rel} -> {local}")
    if missing:
        raise KitError("missing or unusable input(s) for this notebook:\n" + "\n".join(missing))
    for role in sorted(set(given) - set(specs)):  # no recorded roles: mount as input/<role>
        local = given[role].resolve()
        (root / "input" / role).symlink_to(local, target_is_directory=local.is_dir())
        mapped[role] = local
    out_dir.mkdir(parents=True, exist_ok=True)
    (root / "working").symlink_to(out_dir.resolve(), target_is_directory=True)
    return mapped


# --------------------------------------------------------------------------- running


def run_notebook(
    notebook_path,
    inputs: dict,
    out_dir,
    log: Callable[[str], None] = print,
    network: str = "auto",
    timeout: Optional[float] = None,
    keep_root: bool = False,
) -> RunResult:
    """Execute ``notebook_path`` offline with ``inputs`` (role -> local folder or file) mapped into a
    Kaggle-like root; write the executed notebook and the notebook's outputs to ``out_dir``.

    Raises CellFailed (a KitError) naming the failing cell with its source and traceback.

    Example::

        run_notebook("kernels/inference/inference.ipynb",
                     {"competition": "data/", "adapter": "runs/tiny", "base": "models/tiny"}, "out")
    """
    started = time.monotonic()
    notebook_path, specs = _open_notebook(notebook_path, network)
    out_dir = Path(out_dir).resolve()
    given = _default_inputs(specs, dict(inputs or {}), log)
    mode = _network_mode(network, log)
    root = Path(tempfile.mkdtemp(prefix="kit-kaggle-"))
    try:
        mapped = prepare_root(specs, given, root, out_dir, log)
        old = out_dir / "submission.csv"
        if old.exists():  # /kaggle/working starts empty: never report a previous run's submission
            old.unlink()
            log(f"removed the previous {old}")
        executed = out_dir / notebook_path.name
        spec_path, spec = _write_spec(root, notebook_path, executed, mode, timeout)
        rc = _launch(spec_path, mode, notebook_path, root, log)
        times = _read_result(Path(spec["result"]), rc, executed)
        submission = out_dir / "submission.csv"
        log(f"done in {time.monotonic() - started:.1f}s: {executed}" + (f", {submission}" if submission.exists() else ""))
        return RunResult(
            notebook_path=executed,
            out_dir=out_dir,
            submission_path=submission if submission.exists() else None,
            network=mode,
            seconds=time.monotonic() - started,
            cell_times=times,
            inputs=mapped,
        )
    finally:
        if keep_root:
            log(f"kept the Kaggle-like root: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _open_notebook(notebook_path, network: str) -> tuple:
    """(path, input roles recorded by `kit render`), after checking the notebook exists and ``network``."""
    notebook_path = Path(notebook_path)
    if not notebook_path.is_file():
        raise KitError(f"{notebook_path}: no such notebook; render it first with `kit render`")
    if network not in NETWORK_MODES:
        raise KitError(f"network={network!r}: use one of {', '.join(NETWORK_MODES)}")
    nb = json.loads(notebook_path.read_text(encoding="utf-8"))
    return notebook_path, notebook_inputs(nb)


def _network_mode(network: str, log) -> str:
    """'netns' or 'guard' for ``network``: ``auto`` takes a namespace where one works here, else the guard."""
    if network not in ("auto", "netns"):
        return network
    ok, why = netns_available()
    if ok:
        return "netns"
    if network == "netns":
        raise KitError(f"network namespace unavailable here ({why}); use --network guard")
    log(f"network: no network namespace here ({why}); using the socket guard")
    return "guard"


def _write_spec(root: Path, notebook_path: Path, executed: Path, mode: str, timeout: Optional[float]) -> tuple:
    """Write ``root/run-spec.json`` for the executor child (and, in ``guard`` mode, the guard's
    ``sitecustomize`` it puts on the kernel's path); returns (its path, the spec)."""
    spec = {
        "notebook": str(notebook_path.resolve()),
        "executed": str(executed),
        "root": str(root),
        "mode": mode,
        "timeout": timeout,
        "result": str(root / "run-result.json"),
    }
    if mode == "guard":
        guard = root / "guard"
        guard.mkdir()
        (guard / "sitecustomize.py").write_text(GUARD_SOURCE, encoding="utf-8")
        spec["guard"] = str(guard)
    spec_path = root / "run-spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    return spec_path, spec


def _launch(spec_path: Path, mode: str, notebook_path: Path, root: Path, log) -> int:
    """Start the executor child (:mod:`kaggle_kit.notebooks.kernel_exec`, inside ``unshare -rn`` in
    ``netns`` mode), pass its lines to ``log`` as they come, and return its exit status."""
    cmd = [sys.executable, "-m", "kaggle_kit.notebooks.kernel_exec", str(spec_path)]
    if mode == "netns":
        cmd = [shutil.which("unshare"), "-rn"] + cmd
    log(f"network: {'cut off (new network namespace, loopback only)' if mode == 'netns' else 'guarded (non-loopback connections fail)'}")
    log(f"running {notebook_path} in a fresh kernel ({sys.executable})")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(root))
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Parent appears to have exited" in line:  # the kernel's notice when the executor stops it
            continue
        log(line.rstrip("\n"))
    return proc.wait()


def _read_result(result_path: Path, rc: int, executed: Path) -> list:
    """The cell times the executor reported; raises CellFailed (or a KitError) for the error it reported,
    and a KitError when it stopped before reporting anything."""
    if not result_path.is_file():
        raise KitError(f"the notebook executor exited with status {rc} before reporting a result (see the lines above)")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    if result.get("error"):
        err = result["error"]
        if err.get("cell") is not None:
            raise CellFailed(err["cell"], err.get("source", ""), err.get("traceback", ""), executed if executed.exists() else None)
        raise KitError(f"the notebook could not run: {err.get('message')}")
    return [CellTime(**c) for c in result.get("cells", [])]


# --------------------------------------------------------------------------- `kit demo` step

DEMO_TOML = """\
# kit.toml written by `kit demo`: the rendered notebook's view of the demo run.
[kaggle]
username = "kit-demo"
competition = "llm-classification-finetuning"

[data]
test = "/kaggle/input/llm-classification-finetuning/test.csv"
format = "lmsys"

[kernels.inference]
template = "inference"
accelerator = "NvidiaTeslaT4"
instances = ["tiny-base", "peft-lora-classifier"]

[instances.tiny-base]
model_slug = "tiny-base"
kind = "base"
license = "apache-2.0"
version = "1"

[instances.peft-lora-classifier]
model_slug = "tiny-lmsys-adapter"
kind = "adapter"
version = "1"
"""


def step_notebook(ctx) -> dict:
    """`kit demo` step: render the inference notebook into the workdir and run it offline on the
    demo's test data, run folder and tiny base. Reads ctx.artifacts: test_csv, base_model and the
    run folder (run_dir / adapter_dir / train_output)."""
    from kaggle_kit.config import load_config
    from kaggle_kit.notebooks.render import render_kernel

    art = ctx.artifacts
    run_dir = next((art[k] for k in ("run_dir", "adapter_dir", "train_output", "run") if k in art), None)
    if run_dir is None:
        raise KitError("demo: no run folder among the artifacts (run_dir); the training step must come first")
    workdir = Path(ctx.workdir)
    toml = workdir / "kit.toml"
    toml.write_text(DEMO_TOML, encoding="utf-8")
    rendered = render_kernel(load_config(toml, required=True), "inference", workdir)
    test_csv = Path(art["test_csv"])
    inputs = {"competition": test_csv, "adapter": run_dir}
    if art.get("base_model"):
        inputs["base"] = art["base_model"]
    result = run_notebook(rendered.notebook_path, inputs, workdir / "kaggle-working", log=lambda s: ctx.log("    " + s))
    out = {
        "kit_toml": str(toml),
        "notebook": str(rendered.notebook_path),
        "kernel_metadata": str(rendered.metadata_path),
        "executed_notebook": str(result.notebook_path),
    }
    if result.submission_path:
        out["notebook_submission_csv"] = str(result.submission_path)
    return out

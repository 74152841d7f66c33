"""The executor child of `kit run-local`: ``python -m kaggle_kit.notebooks.kernel_exec SPEC.json``.

:func:`kaggle_kit.notebooks.run_local.run_notebook` writes a run spec (notebook, executed copy,
Kaggle-like root, network mode, timeout, result file) and starts this module in a child process
(inside ``unshare -rn`` in ``netns`` mode). It sets the kernel's environment, executes the notebook
with nbclient in a fresh kernel of this interpreter, prints each code cell's start and time and its
printed lines, and writes the executed notebook and a result JSON (cell times, the error if any)
for the parent to read.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

ROOT_ENV = "KIT_KAGGLE_ROOT"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _lo_up() -> None:
    """Bring the loopback interface up (inside a fresh network namespace it starts down)."""
    import fcntl
    import socket
    import struct

    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, req)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:90]
    return ""


def _stream_text(text: str) -> list:
    lines = []
    for line in text.split("\n"):
        line = line.rsplit("\r", 1)[-1].rstrip()
        if line:
            lines.append(line)
    return lines


def _say(text: str) -> None:
    print(text, flush=True)


def execute(spec_path: str) -> int:
    """Run in the child: execute the notebook, print per-cell times, write the result JSON.

    Returns the child's exit status: 1 when the result holds an error, else 0."""
    import nbformat

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result: dict = {"cells": []}
    _prepare_environment(spec)
    nb = nbformat.read(spec["notebook"], as_version=4)
    client = _make_client(nb, spec, result)
    _say(f"executing {sum(1 for c in nb.cells if c.cell_type == 'code')} code cells")
    try:
        result.update(_run_cells(client, nb, result["cells"]))
    finally:
        Path(spec["executed"]).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, spec["executed"])
        Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 1 if result.get("error") else 0


def _prepare_environment(spec: dict) -> None:
    """The child's setting, inherited by the kernel: the loopback up (``netns``), the Kaggle-like root,
    offline Hugging Face, and the throwaway install folder (after the guard, if any) first on the import path."""
    if spec["mode"] == "netns":
        _lo_up()
    os.environ[ROOT_ENV] = spec["root"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The notebook's offline install goes into a throwaway folder that the kernel imports first:
    # a local run never changes this Python environment.
    site = Path(spec["root"]) / "temp" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    os.environ["PIP_TARGET"] = str(site)
    os.environ["KIT_LOCAL_RUN"] = "1"
    front = ([spec["guard"]] if spec.get("guard") else []) + [str(site)]
    os.environ["PYTHONPATH"] = os.pathsep.join(front + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def _timed_client_class(code_cells: int, cells: list):
    """An nbclient ``NotebookClient`` that prints each code cell's start and time (appending
    ``{index, seconds, first_line}`` to ``cells``) and the lines it prints (not those of embedded files)."""
    from nbclient import NotebookClient

    started = {"n": 0}

    class Client(NotebookClient):
        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            if cell.cell_type != "code":
                return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            t0 = time.monotonic()
            started["n"] += 1
            _say(f"[cell {cell_index:>2}] started ({started['n']}/{code_cells} code cells)  {_first_line(cell.source)}")
            try:
                return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            finally:
                dt = time.monotonic() - t0
                first = _first_line(cell.source)
                cells.append({"index": cell_index, "seconds": dt, "first_line": first})
                _say(f"[cell {cell_index:>2}] {dt:7.2f}s  {first}")

        def output(self, outs, msg, display_id, cell_index):
            embedded = self.nb.cells[cell_index].source.startswith("%%writefile")
            if msg.get("msg_type") == "stream" and not embedded:
                for line in _stream_text(msg["content"].get("text", "")):
                    _say(f"    | {line}")
            return super().output(outs, msg, display_id, cell_index)

    return Client


def _make_client(nb, spec: dict, result: dict):
    """The timed client on a kernel of this interpreter, talking over IPC sockets in the root."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    code_cells = sum(1 for c in nb.cells if c.cell_type == "code")
    Client = _timed_client_class(code_cells, result["cells"])
    kernel_name = _kernel_spec(Path(spec["root"]))
    ksm = KernelSpecManager(kernel_dirs=[str(Path(spec["root"]) / "kernels")])
    # IPC (Unix sockets in the root) rather than TCP: nothing listens on a port, even on the loopback
    km = KernelManager(kernel_name=kernel_name, kernel_spec_manager=ksm, transport="ipc", ip=str(Path(spec["root"]) / "kernel-ipc"))
    return Client(
        nb,
        km=km,
        timeout=spec.get("timeout"),
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(Path(spec["root"]) / "working")}},
        record_timing=True,
    )


def _run_cells(client, nb, cells: list) -> dict:
    """Execute every cell; ``{}`` when all ran, else ``{"error": ...}`` naming the failing cell (its
    index, source and traceback) or, when no cell is to blame, a message."""
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    try:
        client.execute()
    except CellExecutionError as exc:
        index = cells[-1]["index"] if cells else None
        tb = ""
        if index is not None:
            errors = [o for o in nb.cells[index].get("outputs", []) if o.get("output_type") == "error"]
            if errors:
                tb = "\n".join(errors[-1].get("traceback", [])) or f"{errors[-1].get('ename')}: {errors[-1].get('evalue')}"
        tb = _ANSI.sub("", tb or str(exc))
        return {"error": {"cell": index, "source": nb.cells[index].source if index is not None else "", "traceback": tb}}
    except DeadKernelError as exc:
        last = cells[-1]["index"] if cells else None
        return {"error": {"cell": last, "source": nb.cells[last].source if last is not None else "", "traceback": f"the kernel died: {exc}"}}
    except Exception as exc:  # kernel start-up problems and the like
        return {"error": {"cell": None, "message": f"{type(exc).__name__}: {exc}"}}
    return {}


def _kernel_spec(root: Path) -> str:
    """A kernelspec running ipykernel on this interpreter (not whatever `python3` points at)."""
    name = "kit-run-local"
    folder = root / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (kit run-local)",
        "language": "python",
    }), encoding="utf-8")
    return name


if __name__ == "__main__":  # the executor child: python -m kaggle_kit.notebooks.kernel_exec SPEC.json
    sys.exit(execute(sys.argv[1]))

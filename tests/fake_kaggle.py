"""A loopback fake of the Kaggle API for tests: the REAL kaggle client talks to it.

The client is pointed here with ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` (requests go to
``http://localhost/api/v1/<service>/<Method>``) and ``HTTP_PROXY=http://127.0.0.1:<port>``
(so they arrive here, in absolute form, whatever port we got). Every call is a JSON POST;
uploads are ``StartBlobUpload`` -> ``PUT`` of the bytes to the returned ``createUrl`` -> a create
call naming the blob tokens. Every request is recorded in ``server.requests``.

State is kept per server: datasets, models, instances (with version numbers), kernels and blobs.
``server.errors[Method] = "text"`` answers that method with ``{"error": "text"}`` (a server-side
refusal); ``server.http_errors[Method] = [503, ...]`` answers the next calls with those statuses.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import shutil
import tempfile
from pathlib import Path

import pytest


@dataclass
class Recorded:
    method: str
    url: str
    path: str
    service: str
    rpc: str
    headers: dict
    body: object  # parsed JSON for API calls, bytes for uploads
    raw: bytes = field(repr=False, default=b"")


class FakeKaggle:
    def __init__(self):
        self.requests: list[Recorded] = []
        self.datasets: dict[str, int] = {}  # "owner/slug" -> version
        self.models: dict[str, dict] = {}  # "owner/slug" -> create body
        self.instances: dict[str, int] = {}  # "owner/model/FRAMEWORK_ENUM/instance" -> version
        self.kernels: dict[str, int] = {}  # "owner/slug" -> version
        self.blobs: dict[str, dict] = {}  # token -> {"name", "type", "data"}
        self.errors: dict[str, str] = {}
        self.http_errors: dict[str, list] = {}
        self.outputs = {"submission.csv": b"id,winner_model_a,winner_model_b,winner_tie\n1,0.3,0.3,0.4\n"}
        self.log = '[{"stream_name":"stdout","time":1.0,"data":"done\\n"}]'
        self.strict_sources = True
        self._lock = threading.Lock()
        self._n = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeKaggle":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def env(self) -> dict:
        proxy = f"http://127.0.0.1:{self.port}"
        return {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "HTTP_PROXY": proxy, "http_proxy": proxy}

    # ------------------------------------------------------------------ helpers for tests
    def calls(self, rpc: str) -> list[Recorded]:
        return [r for r in self.requests if r.rpc == rpc]

    def rpcs(self) -> list[str]:
        return [r.rpc for r in self.requests]

    def uploaded_bytes(self) -> bytes:
        return b"".join(r.raw for r in self.requests)

    def add_dataset(self, ref: str, version: int = 1) -> None:
        self.datasets[ref] = version

    def add_instance(self, handle: str, version: int = 1) -> None:
        """handle: owner/model/framework/instance (framework as in handles, e.g. 'transformers')."""
        o, m, fw, i = handle.split("/")
        self.models.setdefault(f"{o}/{m}", {"slug": m})
        self.instances[f"{o}/{m}/{_fw_enum(fw)}/{i}"] = version

    # ------------------------------------------------------------------ dispatch
    def _token(self, name: str) -> str:
        with self._lock:
            self._n += 1
            return f"blob-{self._n}-{name}"

    def handle(self, rec: Recorded):
        """-> (status, payload dict | bytes)"""
        if rec.rpc in self.http_errors and self.http_errors[rec.rpc]:
            status = self.http_errors[rec.rpc].pop(0)
            return status, {"code": status, "message": f"fake HTTP {status}"}
        if rec.method == "PUT" and rec.path.startswith("/upload/"):
            token = rec.path.rsplit("/", 1)[1]
            if token not in self.blobs:
                return 404, {"code": 404, "message": "unknown upload"}
            self.blobs[token]["data"] = rec.raw
            return 200, {}
        if rec.method == "GET" and rec.path.startswith("/download/"):
            name = rec.path.rsplit("/", 1)[1]
            return (200, self.outputs[name]) if name in self.outputs else (404, {"code": 404, "message": "no such file"})
        if rec.method != "POST" or not rec.rpc:
            return 404, {"code": 404, "message": f"unknown path {rec.path}"}
        if rec.rpc in self.errors:
            return 200, {"error": self.errors[rec.rpc]}
        fn = getattr(self, f"rpc_{rec.rpc}", None)
        if fn is None:
            return 404, {"code": 404, "message": f"fake server does not implement {rec.rpc}"}
        return fn(rec.body or {})

    def _missing_files(self, files) -> list:
        return [f.get("token") for f in files or [] if self.blobs.get(f.get("token"), {}).get("data") is None]

    # blobs
    def rpc_StartBlobUpload(self, b):
        token = self._token(b.get("name", "file"))
        self.blobs[token] = {"name": b.get("name"), "type": b.get("type"), "data": None}
        return 200, {"token": token, "createUrl": f"http://localhost/upload/{token}"}

    # datasets
    def rpc_GetDatasetStatus(self, b):
        ref = f"{b.get('ownerSlug')}/{b.get('datasetSlug')}"
        if ref not in self.datasets:
            return 404, {"code": 404, "message": f"Dataset {ref} not found"}
        return 200, {"status": "READY"}

    def rpc_CreateDataset(self, b):
        ref = f"{b.get('ownerSlug')}/{b.get('slug')}"
        if ref in self.datasets:
            return 200, {"status": "error", "error": f"dataset {ref} exists"}
        if self._missing_files(b.get("files")):
            return 200, {"status": "error", "error": "files were not uploaded"}
        self.datasets[ref] = 1
        return 200, {"ref": f"/{ref}", "url": f"http://localhost/datasets/{ref}", "status": "ok"}

    def rpc_CreateDatasetVersion(self, b):
        ref = f"{b.get('ownerSlug')}/{b.get('datasetSlug')}"
        if ref not in self.datasets:
            return 404, {"code": 404, "message": f"Dataset {ref} not found"}
        if self._missing_files((b.get("body") or {}).get("files")):
            return 200, {"status": "error", "error": "files were not uploaded"}
        self.datasets[ref] += 1
        return 200, {"ref": f"/{ref}", "url": f"http://localhost/datasets/{ref}", "status": "ok"}

    # models
    def rpc_GetModel(self, b):
        ref = f"{b.get('ownerSlug')}/{b.get('modelSlug')}"
        if ref not in self.models:
            return 404, {"code": 404, "message": f"Model {ref} not found"}
        return 200, {"id": 7, "ref": ref, "slug": b.get("modelSlug"), "title": self.models[ref].get("title", "")}

    def rpc_CreateModel(self, b):
        ref = f"{b.get('ownerSlug')}/{b.get('slug')}"
        if ref in self.models:
            return 200, {"error": f"model {ref} exists"}
        self.models[ref] = b
        return 200, {"id": 7, "ref": ref, "url": f"http://localhost/models/{ref}"}

    def rpc_GetModelInstance(self, b):
        key = f"{b.get('ownerSlug')}/{b.get('modelSlug')}/{b.get('framework')}/{b.get('instanceSlug')}"
        if key not in self.instances:
            return 404, {"code": 404, "message": f"Instance {key} not found"}
        return 200, {"id": 9, "slug": b.get("instanceSlug"), "framework": b.get("framework"), "versionNumber": self.instances[key]}

    def rpc_CreateModelInstance(self, b):
        body = b.get("body") or {}
        model = f"{b.get('ownerSlug')}/{b.get('modelSlug')}"
        if model not in self.models:
            return 200, {"error": f"model {model} does not exist"}
        key = f"{model}/{body.get('framework')}/{body.get('instanceSlug')}"
        if key in self.instances:
            return 200, {"error": f"instance {key} exists"}
        if self._missing_files(body.get("files")):
            return 200, {"error": "files were not uploaded"}
        self.instances[key] = 1
        return 200, {"id": 9, "ref": key, "url": f"http://localhost/models/{model}"}

    def rpc_CreateModelInstanceVersion(self, b):
        key = f"{b.get('ownerSlug')}/{b.get('modelSlug')}/{b.get('framework')}/{b.get('instanceSlug')}"
        if key not in self.instances:
            return 200, {"error": f"instance {key} does not exist"}
        if self._missing_files((b.get("body") or {}).get("files")):
            return 200, {"error": "files were not uploaded"}
        self.instances[key] += 1
        return 200, {"id": 9, "ref": key, "url": f"http://localhost/models/{key}"}

    # kernels
    def rpc_SaveKernel(self, b):
        slug = b.get("slug", "")
        invalid_ds = [s for s in b.get("datasetDataSources", []) if self.strict_sources and "/".join(s.split("/")[:2]) not in self.datasets]
        invalid_models = []
        for s in b.get("modelDataSources", []):
            o, m, fw, i, v = (s.split("/") + [""] * 5)[:5]
            known = self.instances.get(f"{o}/{m}/{_fw_enum(fw)}/{i}")
            if self.strict_sources and (known is None or not v.isdigit() or int(v) > known):
                invalid_models.append(s)
        self.kernels[slug] = self.kernels.get(slug, 0) + 1
        out = {"ref": f"/code/{slug}", "url": f"http://localhost/code/{slug}", "versionNumber": self.kernels[slug]}
        if invalid_ds:
            out["invalidDatasetSources"] = invalid_ds
        if invalid_models:
            out["invalidModelSources"] = invalid_models
        return 200, out

    def rpc_GetKernelSessionStatus(self, b):
        ref = f"{b.get('userName')}/{b.get('kernelSlug')}"
        if ref not in self.kernels:
            return 404, {"code": 404, "message": f"Kernel {ref} not found"}
        return 200, {"status": "COMPLETE"}

    def rpc_ListKernelSessionOutput(self, b):
        ref = f"{b.get('userName')}/{b.get('kernelSlug')}"
        if ref not in self.kernels:
            return 404, {"code": 404, "message": f"Kernel {ref} not found"}
        files = [{"url": f"http://localhost/download/{n}", "fileName": n} for n in self.outputs]
        return 200, {"files": files, "log": self.log}

    # ------------------------------------------------------------------ HTTP
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    return data
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _serve(self):
                raw = self._body()
                url = self.path
                path = urlparse(url).path
                parts = path.strip("/").split("/")
                service = rpc = ""
                if len(parts) == 4 and parts[0] == "api" and parts[1] == "v1":
                    service, rpc = parts[2], parts[3]
                body: object = raw
                if self.command == "POST":
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        body = raw
                rec = Recorded(self.command, url, path, service, rpc, dict(self.headers), body, raw)
                with server._lock:
                    server.requests.append(rec)
                status, payload = server.handle(rec)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if isinstance(payload, bytes) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_GET = _serve

        return Handler


def _fw_enum(fw: str) -> str:
    """Framework as the client sends it (ModelFramework enum name), from a handle's spelling."""
    import re

    key = re.sub(r"[_\-]", "", fw).lower()
    names = {
        "transformers": "TRANSFORMERS", "pytorch": "PY_TORCH", "jax": "JAX", "flax": "FLAX", "keras": "KERAS",
        "tensorflow1": "TENSOR_FLOW_1", "tensorflow2": "TENSOR_FLOW_2", "tflite": "TF_LITE", "tfjs": "TF_JS",
        "other": "OTHER", "gguf": "GGUF", "onnx": "ONNX", "scikitlearn": "SCIKIT_LEARN",
    }
    return "MODEL_FRAMEWORK_" + names.get(key, key.upper())


# --------------------------------------------------------------------------- test helpers
# A throw-away kit project, fake credentials, and the server wired to the real kaggle client
# (each test its own HOME, TMPDIR and KAGGLE_CONFIG_DIR).

USER = "kit-tester"
KEY = "f4k3k3y0a1b2c3d4e5f60718293a4b5c"  # fake credentials: must never appear in an upload
COMPETITION = "llm-classification-finetuning"

KIT_TOML = """\
[kaggle]
competition = "{competition}"

[train]
output = "{adapter}"

[wheels]
dataset_slug = "kit-wheels-lmsys"
dataset_title = "kit-wheels-lmsys"

[kernels.inference]
template = "inference"
instances = ["peft-lora-classifier", "tiny-base"]

[instances.peft-lora-classifier]
model_slug = "gemma2-lmsys-adapter"
kind = "adapter"

[instances.tiny-base]
model_slug = "tiny-base"
kind = "base"
version = "1"
source = "models/tiny-base"
"""
# The base the kernel mounts (a copy of the adapter's own base, pushed before: `project` registers it).
BASE_HANDLE = f"{USER}/tiny-base/transformers/tiny-base"

NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [{"output_type": "stream", "name": "stdout", "text": ["old output\n"]}],
         "source": ["print('hello from kit')\n", "x = 1\n"]},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def make_project(root: Path, adapter: Path) -> Path:
    """kit.toml, a copy of the adapter run folder (plus training leftovers), a wheel folder,
    and a hand-made kernels/inference/ folder."""
    root.mkdir(parents=True, exist_ok=True)
    run = root / "runs" / "adapter"
    shutil.copytree(adapter, run)
    (run / "checkpoint-5").mkdir()
    (run / "checkpoint-5" / "optimizer.pt").write_bytes(b"0" * 64)
    (run / "optimizer.pt").write_bytes(b"0" * 64)
    (run / "plots").mkdir()
    (run / "plots" / "loss.png").write_bytes(b"\x89PNG fake")
    (root / "kit.toml").write_text(KIT_TOML.format(competition=COMPETITION, adapter="runs/adapter"))
    base = json.loads((adapter / "kit_manifest.json").read_text())["base_model"]["path"]
    shutil.copytree(base, root / "models" / "tiny-base")
    wheels = root / "wheels"
    wheels.mkdir()
    (wheels / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl").write_bytes(b"PK fake wheel bytes")
    (wheels / "requirements.lock").write_text("bitsandbytes==0.50.2\n")
    kdir = root / "kernels" / "inference"
    kdir.mkdir(parents=True)
    (kdir / "inference.ipynb").write_text(json.dumps(NOTEBOOK))
    (kdir / "kernel-metadata.json").write_text(json.dumps({
        "id": f"{USER}/{COMPETITION}-inference", "title": f"{COMPETITION}-inference", "code_file": "inference.ipynb",
        "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": True, "enable_internet": False,
        "machine_shape": "NvidiaTeslaT4", "dataset_sources": [], "competition_sources": [COMPETITION], "model_sources": [],
    }))
    return root


@pytest.fixture
def fake_kaggle():
    server = FakeKaggle().start()
    yield server
    server.stop()


@pytest.fixture
def kaggle_env(tmp_path, monkeypatch, fake_kaggle):
    """Fake credentials in a private KAGGLE_CONFIG_DIR, own HOME and TMPDIR, client -> fake server."""
    home, cfgdir, tmp = tmp_path / "home", tmp_path / "kaggle-config", tmp_path / "tmp"
    for d in (home, cfgdir, tmp):
        d.mkdir()
    cred = cfgdir / "kaggle.json"
    cred.write_text(json.dumps({"username": USER, "key": KEY}))
    cred.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(cfgdir))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    for k in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy",
              "ALL_PROXY", "all_proxy", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(k, raising=False)
    for k, v in fake_kaggle.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("KIT_RETRY_DELAY", "0.01")
    return {"home": home, "config_dir": cfgdir, "tmp": tmp, "cred": cred, "server": fake_kaggle}


@pytest.fixture
def project(tmp_path, untrained_adapter, kaggle_env, monkeypatch):
    root = make_project(tmp_path / "proj", untrained_adapter)
    kaggle_env["server"].add_instance(BASE_HANDLE, version=1)
    monkeypatch.chdir(root)
    return root


def run_kit(*args):
    from click.testing import CliRunner

    from kaggle_kit.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    text = result.output
    try:
        text += result.stderr
    except (ValueError, AttributeError):
        pass
    return result.exit_code, text


def assert_no_secret(server: FakeKaggle):
    """The key never appears in what was sent, except in the Authorization header."""
    for rec in server.requests:
        assert KEY.encode() not in rec.raw, f"key uploaded in {rec.method} {rec.path}"
        for name, value in rec.headers.items():
            if name.lower() != "authorization":
                assert KEY not in value, f"key sent in header {name}"

"""`kit fetch-base` against a loopback fake of the Hugging Face hub (HF_ENDPOINT), never the
real hub; then the base snapshot staged for `kit push-model` (dry run)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import pytest

REPO_ID = "fake-org/tiny-base"
SHA = "0123456789abcdef0123456789abcdef01234567"
FILES = {
    "model.safetensors": b"SAFETENSORS" * 20,
    "pytorch_model.bin": b"PICKLE" * 20,  # duplicate format: must not be fetched
    "model.gguf": b"GGUF" * 5,
    "original/consolidated.pth": b"PTH" * 5,
    "config.json": json.dumps({"model_type": "gemma2", "num_labels": 3}).encode(),
    "tokenizer.json": b'{"version": "1.0"}',
    "tokenizer_config.json": b'{"model_max_length": 1024}',
    "special_tokens_map.json": b"{}",
    "README.md": b"# tiny\n",
}


class FakeHub:
    def __init__(self):
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body: bytes, headers=None, head=False):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _serve(self, head=False):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path))
                prefix = f"/api/models/{REPO_ID}/"
                if path.startswith(prefix + "revision/"):
                    info = {"id": REPO_ID, "sha": SHA, "siblings": [{"rfilename": f} for f in FILES]}
                    return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
                if path.startswith(prefix + "tree/"):
                    tree = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()} for f, b in FILES.items()]
                    tree.append({"type": "directory", "path": "original", "size": 0, "oid": "0" * 40})
                    return self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, head)
                marker = f"/{REPO_ID}/resolve/"
                if path.startswith(marker):
                    name = path[len(marker):].split("/", 1)[1]
                    if name in FILES:
                        body = FILES[name]
                        headers = {"X-Repo-Commit": SHA, "ETag": f'"{hashlib.sha1(body).hexdigest()}"',
                                   "Content-Type": "application/octet-stream"}
                        return self._send(200, body, headers, head)
                return self._send(404, b'{"error": "not found"}', {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound"}, head)

            def do_GET(self):
                self._serve()

            def do_HEAD(self):
                self._serve(head=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub():
    server = FakeHub()
    yield server
    server.stop()


KIT_TOML = f"""\
[kaggle]
username = "kit-tester"

[model]
name = "{REPO_ID}"
path = "models/base"

[instances.gemma2-base]
model_slug = "gemma2-base"
kind = "base"
license = "gemma"
"""


def _kit(args, cwd, env):
    code = f"from kaggle_kit.cli import main; main({args!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def test_fetch_base_downloads_safetensors_config_tokenizer_only(hub, tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "kit.toml").write_text(KIT_TOML)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith(("HF_", "KAGGLE_"))}
    env.update({"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HOME": str(tmp_path / "home"),
                "TMPDIR": str(tmp_path), "HF_HUB_DISABLE_TELEMETRY": "1"})
    # HF_HUB_OFFLINE (set for the test session) is left out: this test downloads, from the loopback hub only.
    proc = _kit(["fetch-base", "--json"], proj, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout[proc.stdout.index("{"):])
    base = proj / "models" / "base"
    assert info["folder"] == str(base.resolve()) and info["weights"] == ["model.safetensors"]
    assert set(info["files"]) == {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert (base / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert not (base / "pytorch_model.bin").exists() and not (base / "original").exists() and not (base / "model.gguf").exists()
    fetched = {p for m, p in hub.requests if "/resolve/" in p and m == "GET"}
    assert not any(p.endswith((".bin", ".gguf", ".pth")) for p in fetched)

    # the snapshot is what the base instance publishes
    env["HOME"] = str(tmp_path / "home")
    proc = _kit(["push-model", "--instance", "gemma2-base", "--dry-run", "--json"], proj, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout[proc.stdout.index("{"):])
    staged = {f.split(" (")[0] for f in res["files"]}
    assert staged == {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
                      "special_tokens_map.json", "model-instance-metadata.json"}
    inst = res["metadata"]["model-instance-metadata.json"]
    assert inst["licenseName"] == "other" and "Gemma Terms of Use" in inst["overview"]
    assert inst["framework"] == "transformers"


def test_fetch_base_needs_a_folder(tmp_path, monkeypatch):
    from fake_kaggle import run_kit

    (tmp_path / "kit.toml").write_text(KIT_TOML.replace('path = "models/base"\n', ""))
    monkeypatch.chdir(tmp_path)
    code, out = run_kit("fetch-base")
    assert code != 0 and "model.path" in out

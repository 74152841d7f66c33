"""What an upload folder would send, and the one credential rule applied to it.

`kit validate` and every push (`push-dataset`, `push-model`, `push-kernel`) call the same
functions here, so a folder validate passes is a folder the push accepts, and the other way round:

- **selection** (`upload_files`): every file under the folder minus the always-excluded names
  (VCS, caches, the kit's own `.kit/`), minus the kind's exclusions (training leftovers of an
  adapter run folder, duplicate weight formats of a base snapshot); symlinks that leave the
  folder are refused;
- **credentials** (`credential_reason`): a file is refused when its *name* is that of a
  credential file (kaggle.json, access tokens, `.env`, private keys, ...) or when its *bytes*
  hold a private key, a Kaggle/Hugging Face access token, a kaggle.json-shaped object, or any key
  the kaggle client is configured with here (`kaggle_kit.publish.credentials.configured_secrets`). The
  whole file is read (in chunks), weights and wheels included.

Every refusal names the file, why, and the fix. Standard library only.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
from pathlib import Path
from typing import Iterable, Optional

ALWAYS_EXCLUDE = (".git", "__pycache__", ".ipynb_checkpoints", ".kit", ".cache", ".huggingface", "*.pyc", ".DS_Store")
# What a training run folder holds that does not belong in the published adapter; README.md is
# PEFT's boilerplate model card ("[More Information Needed]"): push-model writes the kit's card
# (from kit_manifest.json) in its place.
ADAPTER_EXCLUDE = ("checkpoint-*", "runs", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth",
                   "training_args.bin", "trainer_state.json", "README.md")
# Duplicate weight formats next to safetensors in a base snapshot.
BASE_EXCLUDE = ("original", "*.pth", "*.pt", "*.gguf", "*.h5", "*.msgpack", "*.onnx", "*.ot", "*.ckpt")
# Files the pushes write themselves into the staged folder (the source's copies are not sent).
METADATA_FILES = ("dataset-metadata.json", "model-metadata.json", "model-instance-metadata.json", "kernel-metadata.json")

CREDENTIAL_NAMES = (
    "kaggle.json", "access_token", "access_token.txt", ".env", ".env.*", "*.env", ".netrc", "_netrc",
    ".git-credentials", "credentials", "credentials.json", "id_rsa", "id_rsa.*", "id_dsa", "id_dsa.*",
    "id_ecdsa", "id_ecdsa.*", "id_ed25519", "id_ed25519.*", "*.pem", "*.key", "*.p12", "*.pfx", ".pypirc",
    "token", "hf_token", ".huggingface_token",
)
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
# Literal prefixes first, so the scan of multi-GB weights stays fast (re's literal-prefix search).
_TOKEN_PATTERNS = (
    re.compile(rb"hf_[A-Za-z0-9]{30,}"),  # Hugging Face access token
    re.compile(rb"KGAT_[A-Za-z0-9]{16,}"),  # Kaggle access token
)
_CHUNK = 8 << 20
_OVERLAP = 4096  # longer than any secret or pattern match, so none is split between two chunks


def is_credential_name(name: str) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatch(low, pat) for pat in CREDENTIAL_NAMES)


def _content_reason(chunk: bytes, secrets: list[bytes]) -> Optional[str]:
    if _PRIVATE_KEY.search(chunk):
        return "it holds a private key"
    for pat in _TOKEN_PATTERNS:
        if pat.search(chunk):
            return "it holds an access token"
    for secret in secrets:
        if secret in chunk:
            return "it contains your Kaggle API key (the one the kaggle client is configured with)"
    return None


def credential_reason(path: Path, secrets: Iterable[str] = ()) -> Optional[str]:
    """Why ``path`` must not be uploaded (its name or any of its bytes), or None.

    ``secrets``: the configured keys/tokens; those shorter than 8 characters are ignored (they
    would match by chance)."""
    path = Path(path)
    if is_credential_name(path.name):
        return f"its name ({path.name}) is that of a credential file"
    keys = [s.encode() for s in secrets if s and len(s) >= 8]
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            tail = b""
            while True:
                block = fh.read(_CHUNK)
                if not block:
                    break
                reason = _content_reason(tail + block, keys)
                if reason:
                    return reason
                tail = block[-_OVERLAP:]
            if path.suffix == ".json" and size < 4096:
                fh.seek(0)
                try:
                    data = json.loads(fh.read())
                except ValueError:
                    data = None
                if isinstance(data, dict) and {"username", "key"} <= set(data):
                    return "it looks like kaggle.json (username + key)"
    except OSError as exc:
        return f"it cannot be read ({exc.strerror}), so it cannot be checked"
    return None


def _excluded(rel: Path, patterns) -> bool:
    return any(fnmatch.fnmatch(part, pat) for part in rel.parts for pat in patterns)


def _inside(root: Path, target: Path) -> bool:
    return target == root or root in target.parents


def upload_files(src: Path, exclude: Iterable[str] = ()) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``([(file, path relative to src)], problems)``: what an upload of ``src`` sends.

    Symlinks inside ``src`` are followed (their targets are sent); symlinks leaving it are problems."""
    src = Path(src)
    root = src.resolve()
    patterns = tuple(ALWAYS_EXCLUDE) + tuple(exclude)
    chosen: list[tuple[Path, Path]] = []
    problems: list[str] = []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            rel = (here / d).relative_to(src)
            if _excluded(rel, patterns):
                dirnames.remove(d)
            elif (here / d).is_symlink():
                dirnames.remove(d)
                target = (here / d).resolve()
                if not _inside(root, target):
                    problems.append(f"{src}/{rel}: a symlink leaving the folder (-> {target}); copy it in or remove the link")
                else:
                    chosen += [(f, rel / f.relative_to(target)) for f in sorted(target.rglob("*")) if f.is_file()]
        for f in filenames:
            path = here / f
            rel = path.relative_to(src)
            if _excluded(rel, patterns):
                continue
            if path.is_symlink() and not _inside(root, path.resolve()):
                problems.append(f"{src}/{rel}: a symlink leaving the folder (-> {path.resolve()}); copy the file in or remove the link")
                continue
            chosen.append((path, rel))
    return chosen, problems


def check_upload(src: Path, exclude: Iterable[str] = (), secrets: Iterable[str] = ()) -> tuple[list[tuple[Path, Path]], list[str]]:
    """`upload_files` plus the credential rule on every selected file: ``(files, problems)``."""
    src = Path(src)
    if not src.is_dir():
        return [], [f"{src}: folder not found"]
    chosen, problems = upload_files(src, exclude)
    secrets = list(secrets)
    for path, rel in chosen:
        reason = credential_reason(path.resolve(), secrets)
        if reason:
            problems.append(f"{src}/{rel}: refused, {reason}; move it out of the folder (credentials are never uploaded)")
    return chosen, problems


def check_files(files: Iterable[Path], secrets: Iterable[str] = ()) -> list[str]:
    """The credential rule on single files (a kernel sends only its code file)."""
    secrets = list(secrets)
    out = []
    for path in files:
        reason = credential_reason(Path(path), secrets)
        if reason:
            out.append(f"{path}: refused, {reason}; remove it from the file (credentials are never uploaded)")
    return out


def instance_exclude(kind: str, src: Path) -> tuple[str, ...]:
    """What push-model leaves out of an instance folder of ``kind`` (adapter | base)."""
    exclude = (ADAPTER_EXCLUDE if kind == "adapter" else BASE_EXCLUDE) + METADATA_FILES
    if kind == "base" and any(Path(src).glob("*.safetensors")):
        exclude = exclude + ("pytorch_model*.bin", "tf_model*", "flax_model*")
    return exclude

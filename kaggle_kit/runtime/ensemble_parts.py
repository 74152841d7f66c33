"""Saved ensemble parts: each member's probabilities, written as it finishes, found again by a rerun.

A part (``parts/NN-name.npz``, written atomically) holds the member's probabilities, the test ids and a
content key (its manifest, adapter weights, the test file and the settings that change predictions; see
:func:`runtime.ensemble_members.file_members`). A rerun reuses parts whose key and ids match and ignores
stale ones (logged), so a crash or deadline keeps what was done.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

PARTS_VERSION = 1


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "member"


def part_path(parts_dir, index: int, name: str) -> Path:
    return Path(parts_dir) / f"{index:02d}-{_slug(name)}.npz"


def save_part(path, probs: np.ndarray, ids: Sequence, key: str, info: dict) -> Path:
    """Write a member's probabilities, ids, key and info atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, probs=np.asarray(probs, dtype=np.float32), ids=np.asarray([str(i) for i in ids]),
                 meta=np.asarray(json.dumps({"key": key, "version": PARTS_VERSION, **info}, default=str)))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_part(path, key: str, ids: Sequence) -> tuple:
    """(probs, info) of a saved part whose key and ids match; (None, why) otherwise."""
    path = Path(path)
    if not path.is_file():
        return None, "no part"
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            probs, saved_ids = z["probs"], [str(i) for i in z["ids"]]
    except (OSError, ValueError, KeyError) as exc:
        return None, f"unreadable ({exc})"
    if meta.get("key") != key:
        return None, f"stale: its key {str(meta.get('key'))[:12]}… is not {key[:12]}… (another adapter, test file or setting)"
    if saved_ids != [str(i) for i in ids]:
        return None, "stale: its ids differ from the test file's"
    return probs, meta


def reusable_parts(members, parts_dir, ids, decide) -> dict:
    """name -> (probs, info) of members whose saved part matches their key; stale parts are logged."""
    found = {}
    if not parts_dir:
        return found
    for i, m in enumerate(members):
        if not m.key:
            continue
        path = part_path(parts_dir, i, m.name)
        probs, info = load_part(path, m.key, ids)
        if probs is not None:
            found[m.name] = (probs, info)
            decide(f"member {m.name}: reusing its saved predictions {path} (key {m.key[:12]}…); it will not run again")
        elif info != "no part":
            decide(f"member {m.name}: ignoring {path}: {info}; it runs again")
    return found

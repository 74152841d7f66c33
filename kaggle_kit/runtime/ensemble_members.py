"""Ensemble members: who they are, whether they fit together, and how each loads.

- :func:`expand_members`: a run folder is one member; an ``--all-folds`` parent is one member per fold;
- :func:`check_members`: members must agree on the task kind and the label order;
- :func:`file_members`: for run folders, each member's manifest (read once and handed to its loader),
  base, content key (for its saved part), ``tokens_key`` (members with the same tokenizer, prompt
  settings and task encode rows once) and size (a cost proxy for the time budget).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from .engine import parse_tta
from .ensemble_combine import EnsembleError, parse_weights
from .ensemble_parts import PARTS_VERSION
from .manifest import MANIFEST_NAME, CompatibilityError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "spiece.model")


@dataclass
class EnsembleMember:
    """One member: ``load()`` → ([(model, device)], tokenizer); freed after it has predicted.

    ``tokens_key``: members with equal keys share one tokenization. ``key``: content key of its saved
    part ('' = never saved). ``size``: a cost proxy (bytes of weights) for estimating members not run yet.
    """

    name: str
    weight: float
    manifest: object
    load: Callable[[], tuple]
    tokens_key: str
    key: str = ""
    size: float = 1.0
    path: str = ""
    base: Optional[str] = None


def check_members(members: Sequence[EnsembleMember]) -> None:
    """Raise EnsembleError unless every member has the first member's task kind and label order."""
    first = members[0]
    for m in members[1:]:
        if m.manifest.kind != first.manifest.kind:
            raise EnsembleError(f"member {m.name} ({m.path or m.name}) is a {m.manifest.kind!r} model but {first.name} is "
                                f"{first.manifest.kind!r}; ensemble members must predict the same task")
        if list(m.manifest.labels) != list(first.manifest.labels):
            raise EnsembleError(f"member {m.name} ({m.path or m.name}) has labels {m.manifest.labels} but {first.name} has "
                                f"{first.manifest.labels}; members must share the label order (retrain it, or leave it out)")


def expand_members(paths: Sequence, weights: Sequence[float], names: Optional[Sequence[str]] = None) -> list:
    """[(name, folder, weight)]: a run folder is one member; an `--all-folds` parent (fold-*/ folders with a
    kit_manifest.json, none of its own) becomes one member per fold, sharing the parent's weight equally.
    Names: ``names`` (one per path; a parent's folds become NAME/fold-K), else folder names made unique."""
    out = []
    for n, (p, w) in enumerate(zip(paths, weights)):
        p = Path(p)
        given = names[n] if names else None
        if (p / MANIFEST_NAME).is_file() or not p.is_dir():
            out.append((given or p.name, p, w))
            continue
        folds = sorted(f for f in p.glob("fold-*") if (f / MANIFEST_NAME).is_file())
        if not folds:
            raise FileNotFoundError(f"{p}: no {MANIFEST_NAME} and no fold-*/ run folders; pass a run folder from `kit train` "
                                    f"or the --all-folds parent holding fold-0, fold-1, …")
        out += [(f"{given or p.name}/{f.name}", f, w / len(folds)) for f in folds]
    short = [name for name, _, _ in out]
    return [((f"{f.parent.name}/{f.name}" if short.count(name) > 1 else name), f, w) for name, f, w in out]


def file_sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def folder_fingerprint(folder, names: Sequence[str] = (), pattern: str = "") -> str:
    """sha256 over the named files (and files matching ``pattern``) present in ``folder``."""
    folder = Path(folder)
    files = [folder / n for n in names if (folder / n).is_file()]
    if pattern:
        files += sorted(p for p in folder.glob(pattern) if p.is_file() and p not in files)
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def tokens_key_for(tokenizer_dir, manifest) -> str:
    """Members with the same tokenizer files, prompt settings and task kind encode rows identically."""
    spec = json.dumps({"prompt": manifest.prompt, "kind": manifest.kind}, sort_keys=True)
    return hashlib.sha256((folder_fingerprint(tokenizer_dir, TOKENIZER_FILES) + spec).encode()).hexdigest()[:16]


def weights_fingerprint(folder) -> str:
    """Content key of a folder's weight files: sha256 of files up to 512 MB; size + first/last MiB of larger
    ones (a merged 9B model would take a minute to hash in full)."""
    h = hashlib.sha256()
    for f in sorted(p for pat in ("*.safetensors", "*.bin") for p in Path(folder).glob(pat) if p.is_file()):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        if size <= 512 << 20:
            h.update(file_sha256(f).encode())
        else:
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read(1 << 20))
    return h.hexdigest()


def pick_base(name: str, folder, manifest, base_path=None, bases: Sequence = ()):
    """The base folder for one member: None for a merged folder, ``base_path`` when given, else the mounted
    candidate (``bases``) its manifest accepts (config sha256, else architecture), else the manifest's path."""
    from .manifest import check_compatible
    from .modeling import is_merged_folder

    if is_merged_folder(folder):
        return None
    if base_path:
        return base_path
    bases = [b for b in (bases or ()) if b]
    if len(bases) == 1:
        return bases[0]
    for b in bases:
        try:
            check_compatible(manifest, b, None)
            return b
        except CompatibilityError:
            continue
    if bases:
        raise EnsembleError(f"member {name} ({folder}): none of the mounted bases {[str(b) for b in bases]} is its base "
                            f"({manifest.base_model.get('name') or manifest.base_model.get('path')}); mount that base's instance")
    return manifest.base_model.get("path")


def file_members(adapters: Sequence, weights, data_sha: str, *, base_path=None, bases: Sequence = (), devices=(),
                 quantization=None, tta=None, log: Optional[Callable] = None, names: Optional[Sequence[str]] = None,
                 manifests: Optional[dict] = None) -> list:
    """EnsembleMembers for run folders (an --all-folds parent expands into its folds), keys and loaders included.

    Each member's kit_manifest.json is read once — here, unless ``manifests`` ({run folder: Manifest}) already
    holds it — and handed to its loader (:func:`runtime.testfile.load_replicas`)."""
    from .testfile import load_replicas
    from .manifest import Manifest

    w = parse_weights(weights, len(adapters), [str(a) for a in adapters])
    known = {Path(folder): m for folder, m in (manifests or {}).items()}
    members = []
    for name, folder, weight in expand_members(adapters, w, names):
        manifest = known.get(Path(folder)) or Manifest.load(folder)
        base = pick_base(name, folder, manifest, base_path, bases)
        tok_dir = folder if (Path(folder) / "tokenizer_config.json").is_file() or base is None else base
        settings = {"tta": parse_tta(tta), "quantization": quantization or "", "kind": manifest.kind}
        key = hashlib.sha256(json.dumps({
            "manifest": file_sha256(Path(folder) / MANIFEST_NAME), "weights": weights_fingerprint(folder), "data": data_sha,
            "base": folder_fingerprint(base, ("config.json",)) if base else "", "settings": settings, "v": PARTS_VERSION,
        }, sort_keys=True).encode()).hexdigest()
        size = sum(p.stat().st_size for d in (folder, base) if d for pat in ("*.safetensors", "*.bin") for p in Path(d).glob(pat))
        load = (lambda f=folder, b=base, mf=manifest: load_replicas(f, list(devices), base_path=b, quantization=quantization,
                                                                    log=log, manifest=mf))
        members.append(EnsembleMember(name, weight, manifest, load, tokens_key_for(tok_dir, manifest), key, float(size or 1),
                                      str(folder), str(base) if base else None))
    return members

"""Ensemble members: who they are, whether they fit together, and how each loads.

- :func:`expand_members`: a run folder is one member; an ``--all-folds`` parent is one member per fold;
- :func:`check_members`: members must agree on the task kind and the label order;
- :func:`read_member_data`: each member reads the test file through its own manifest (format, id column,
  text columns or template fields) into ``member.rows``; members whose ids or row set differ are refused
  by name, before any weights load;
- :func:`file_members`: for run folders, each member's manifest (read once and handed to its loader),
  base, content key (for its saved part), ``tokens_key`` (members with the same tokenizer, prompt
  settings, reading of the test file and task encode rows once) and size (a cost proxy for the time budget).
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
    ``rows``: the test rows as this member's manifest reads them (:func:`read_member_data`; None: the rows
    handed to :func:`runtime.ensemble_run.run_members`).
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
    rows: Optional[list] = None


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


def read_member_data(members: Sequence[EnsembleMember], data_path, decide: Callable) -> list:
    """[Dataset per member]: the test file read through each member's own manifest (format, id column, text
    columns or template fields); ``member.rows`` set. Members with equal read settings share one reading.

    Raises EnsembleError naming the member when its reading fails (a column it needs is missing, …), and naming
    both members and what differs when a member's ids are not the first member's (other id column, other rows)."""
    from .problems import DataError
    from .testfile import read_settings, read_test_data

    readings: dict = {}  # read settings -> (Dataset, [member names])
    out = []
    for m in members:
        settings = read_settings(m.manifest)
        key = json.dumps(settings, sort_keys=True, default=str)
        if key not in readings:
            try:
                ds = read_test_data(m.manifest, data_path, decide,
                                    format_from=f"member {m.name}'s manifest ({Path(m.path or '.') / MANIFEST_NAME}, task.format)")
            except DataError as exc:
                raise EnsembleError(f"member {m.name} ({m.path or m.name}) cannot read the test file: {exc}") from None
            readings[key] = (ds, [])
        ds, who = readings[key]
        who.append(m.name)
        m.rows = ds.rows
        if out:
            _same_rows(members[0], out[0], m, ds, data_path)
        out.append(ds)
    if len(readings) > 1:
        for key, (ds, who) in readings.items():
            s = json.loads(key)
            cols = s.get("text_columns")
            decide(f"{', '.join(who)}: read {data_path} as {s['format']}, ids from {s['id_column']!r}"
                   + (f", text columns {cols}" if cols else "") + f" ({len(ds)} rows)")
    return out


def _same_rows(first: EnsembleMember, first_ds, m: EnsembleMember, ds, data_path) -> None:
    """EnsembleError unless member ``m`` read the same ids, in the same order, as the first member."""
    from .testfile import read_settings

    a, b = first_ds.ids, ds.ids
    if a == b:
        return
    sa, sb = read_settings(first.manifest), read_settings(m.manifest)
    differs = [f"{k} {sb[k]!r} (vs {sa[k]!r})" for k in ("format", "id_column") if sa[k] != sb[k]]
    if len(a) != len(b):
        what = f"{len(b)} rows where {first.name} reads {len(a)}"
    else:
        k = next(n for n, (x, y) in enumerate(zip(a, b)) if x != y)
        what = f"the id {b[k]!r} in row {k + 1}, where {first.name} reads {a[k]!r}"
    fix = "; ".join(f"data.{k} = {sa[k]!r}" for k in ("format", "id_column") if sa[k] != sb[k])
    raise EnsembleError(
        f"members {first.name} ({first.path or first.name}) and {m.name} ({m.path or m.name}) do not read the same rows of "
        f"{data_path}: {m.name} reads {what}" + (f"; its manifest has {', '.join(differs)}" if differs else "")
        + f". Members must predict the same test ids: leave {m.name} out"
        + (f", or retrain it with {fix}" if fix else "") + ".")


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
    """Members with the same tokenizer files, prompt settings, task kind and reading of the test file (format,
    id column, text columns or template fields: :func:`runtime.testfile.read_settings`) encode rows identically."""
    from .testfile import read_settings

    spec = json.dumps({"prompt": manifest.prompt, "kind": manifest.kind, "read": read_settings(manifest)}, sort_keys=True, default=str)
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
    from .kaggle_env import recorded_base
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
    return recorded_base(manifest.base_model, folder) or None  # outside a notebook only (kaggle_env.recorded_base)


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

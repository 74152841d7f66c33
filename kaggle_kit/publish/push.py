"""Publishing to Kaggle through the official `kaggle` library (imported lazily: importing it
authenticates and may print), never through the CLI or hand-written HTTP.

Each push:
1. builds the metadata from kit.toml (`kaggle_kit.publish.metadata`) and runs the checks `kit validate` runs
   for what it pushes (`kaggle_kit.publish.validate.push_report`; a kernel with the wheel set and the
   instances it mounts), reporting every problem at once, before any network call, with or without --dry-run;
2. stages a fresh folder under ``<root>/.kit/stage/<kind>/<name>/`` holding only what should go
   (no checkpoints, optimizer states or caches), refusing credential-looking files and symlinks
   that leave the source folder; sub-folders are uploaded as tar archives (``dir_mode="tar"``);
3. unless ``dry_run``: creates the dataset/model/instance when it is missing, else a new version.

A server error in a response's ``error`` field raises KitError (the kaggle CLI would exit 0).
Transient HTTP errors (connection errors, 429, 5xx) are retried with exponential backoff a bounded
number of times (``KIT_RETRIES``, default 4; first delay ``KIT_RETRY_DELAY`` seconds, default 2).
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from kaggle_kit.publish import handles as hd
from kaggle_kit.publish import metadata as md
from kaggle_kit.publish import model_card
from kaggle_kit.publish import uploads as up
from kaggle_kit.publish import validate as vd
from kaggle_kit.config import KitConfig
from kaggle_kit.publish.credentials import (  # noqa: F401  (re-exported: publish.find_credentials etc.)
    Credentials,
    client_config_dir,
    configured_secrets,
    credential_places,
    find_credentials,
)
from kaggle_kit.errors import KitError
from kaggle_kit.templating import read_json, write_json

STAGE_DIR = Path(".kit") / "stage"

TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)


def open_api(creds: Optional[Credentials] = None, warn: Callable[[str], None] = lambda m: print(f"Warning: {m}", file=sys.stderr)):
    """An authenticated `kaggle.api.kaggle_api_extended.KaggleApi` (the import happens here)."""
    creds = creds or find_credentials()
    for w in creds.warnings:
        warn(w)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        # The class reads KAGGLE_CONFIG_DIR / KAGGLE_API_ENVIRONMENT once, when kaggle is first
        # imported: follow the environment of this call instead.
        cdir = client_config_dir()
        api.config_dir = str(cdir)
        api.config = str(cdir / "kaggle.json")
        api.args = [a for a in KaggleApi.args if a != "--local"]
        if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST":
            api.args.append("--local")
        try:
            api.authenticate()
        except SystemExit:
            raise KitError("the kaggle client could not authenticate; it looks in: " + credential_places()) from None
    return api


# --------------------------------------------------------------------------- calls


def _retry_settings() -> tuple[int, float]:
    return max(1, int(os.environ.get("KIT_RETRIES", "4"))), float(os.environ.get("KIT_RETRY_DELAY", "2"))


def _server_message(exc) -> str:
    resp = getattr(exc, "response", None)
    if resp is not None:
        try:
            body = resp.json()
            if isinstance(body, dict):
                return str(body.get("message") or body.get("error") or body)
        except ValueError:
            pass
    return str(exc)


def call(what: str, fn, *args, missing_ok: bool = False, **kwargs):
    """Run one client method: bounded retries of transient errors; other failures -> KitError.
    With ``missing_ok``, a 404 returns None (used for "does it exist?")."""
    import requests

    attempts, delay = _retry_settings()
    for i in range(attempts):
        last = i == attempts - 1
        try:
            return fn(*args, **kwargs)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if missing_ok and status == 404:
                return None
            if status in TRANSIENT_STATUS and not last:
                time.sleep(delay * 2**i)
                continue
            raise KitError(f"{what}: Kaggle answered HTTP {status}: {_server_message(exc)}") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            if not last:
                time.sleep(delay * 2**i)
                continue
            raise KitError(f"{what}: cannot reach Kaggle after {attempts} tries ({type(exc).__name__}); check the network and retry") from None
        except ValueError as exc:  # the client's own local checks
            raise KitError(f"{what}: the kaggle client refused it: {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def check_response(what: str, resp) -> None:
    """An ``error`` in the response (or invalid sources of a kernel) is a failure."""
    if resp is None:
        raise KitError(f"{what}: no response from Kaggle")
    err = getattr(resp, "error", None)
    if err:
        raise KitError(f"{what}: Kaggle reported an error: {err}")
    status = getattr(resp, "status", None)
    if isinstance(status, str) and status.lower() == "error":
        raise KitError(f"{what}: Kaggle reported status 'error'")
    bad = []
    for attr in ("invalid_dataset_sources", "invalid_competition_sources", "invalid_kernel_sources", "invalid_model_sources"):
        values = getattr(resp, attr, None)
        if values:
            bad.append(f"{attr.replace('invalid_', '').replace('_', ' ')}: {', '.join(values)}")
    if bad:
        raise KitError(f"{what}: Kaggle rejected sources ({'; '.join(bad)}); push them first or fix their names")


# --------------------------------------------------------------------------- staging


@dataclass
class PushResult:
    kind: str  # dataset | model | kernel
    name: str
    action: str  # dry-run | create | version | push | staged
    ref: str
    staged: Path
    metadata: dict  # file name -> dict
    files: list  # staged files, relative, with sizes
    url: str = ""
    version: Optional[int] = None
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "name": self.name, "action": self.action, "ref": self.ref, "staged": str(self.staged),
            "files": self.files, "metadata": self.metadata, "url": self.url, "version": self.version, "notes": self.notes,
        }


def fresh_stage(root: Path, kind: str, name: str) -> Path:
    path = Path(root) / STAGE_DIR / kind / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _copy_files(chosen, dest: Path) -> list[str]:
    out = []
    for path, rel in chosen:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:  # a hard link costs no space (multi-GB weights); the client only reads
            os.link(path.resolve(), target)
        except OSError:
            shutil.copy2(path.resolve(), target)
        out.append(str(rel))
    return sorted(out)


def _listing(folder: Path) -> list[str]:
    rows = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            rows.append(f"{p.relative_to(folder)} ({_size(p.stat().st_size)})")
    return rows


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _raise_problems(problems: list[str], what: str) -> None:
    if problems:
        raise KitError(f"{what}: {len(problems)} problem(s), nothing was uploaded:\n  - " + "\n  - ".join(problems))


def _secrets() -> list[str]:
    return configured_secrets()


# --------------------------------------------------------------------------- datasets


def push_dataset(cfg: KitConfig, folder: Optional[str] = None, root: str | os.PathLike = ".", version_notes: str = "",
                 dry_run: bool = False, api=None) -> PushResult:
    """Create the dataset in ``folder`` (default: the wheel set, wheels.out), or a new version when it exists.
    Refuses, before staging, on every problem `kit validate` reports for it (`validate.push_report`)."""
    root = Path(root)
    report = vd.push_report(cfg, "dataset", root=root, folder=folder)
    _raise_problems(report.problems, "push-dataset")
    src = md.dataset_folder(cfg, folder, root)
    meta = md.dataset_upload_metadata(cfg, folder, root)
    slug = hd.parse_dataset_handle(meta["id"], versioned=False).slug  # checked by push_report
    staged = fresh_stage(root, "dataset", slug)
    _copy_files(up.upload_files(src, ("dataset-metadata.json",))[0], staged)  # the upload rule passed in push_report
    write_json(staged / "dataset-metadata.json", meta)
    result = PushResult("dataset", slug, "dry-run", meta["id"], staged, {"dataset-metadata.json": meta}, _listing(staged),
                        notes=[f"warning: {w}" for w in report.warnings])
    if dry_run:
        return result
    api = api or open_api()
    exists = call(f"dataset {meta['id']}", api.dataset_status, meta["id"], missing_ok=True) is not None
    if not exists:
        resp = call(f"create dataset {meta['id']}", api.dataset_create_new, str(staged),
                    public=not meta.get("isPrivate", True), quiet=True, dir_mode="tar")
        result.action = "create"
    else:
        resp = call(f"new version of dataset {meta['id']}", api.dataset_create_version, str(staged),
                    version_notes or "kit push-dataset", quiet=True, dir_mode="tar")
        result.action = "version"
    check_response(f"push-dataset {meta['id']}", resp)
    result.url = getattr(resp, "url", "") or ""
    if getattr(resp, "invalid_tags", None):
        result.notes.append(f"Kaggle ignored unknown tags: {resp.invalid_tags}")
    return result


# --------------------------------------------------------------------------- models


def push_model(cfg: KitConfig, instance: str, root: str | os.PathLike = ".", version_notes: str = "",
               dry_run: bool = False, api=None) -> PushResult:
    """Publish instance ``instance`` of kit.toml: create the model and the instance when missing,
    else a new instance version. Records the pushed version in .kit/published.json."""
    root = Path(root)
    inst = md.instance_config(cfg, instance)
    # every problem `kit validate` reports for this instance: metadata, framework, the folder and the upload rule
    report = vd.push_report(cfg, "model", instance, root)
    _raise_problems(report.problems, "push-model")
    notes = report.warnings
    src = md.instance_source(cfg, instance, root)
    manifest = model_card.read_manifest(src)[0] if inst.kind == "adapter" else None
    model_meta = md.model_metadata(cfg, instance, root, manifest)
    inst_meta = md.instance_metadata(cfg, instance, manifest)
    stage = fresh_stage(root, "model", instance)
    files_dir, model_dir = stage / "instance", stage / "model"
    files_dir.mkdir()
    model_dir.mkdir()
    _copy_files(up.upload_files(src, up.instance_exclude(inst.kind, src))[0], files_dir)
    if manifest:  # the kit's card replaces PEFT's boilerplate README.md (left out by ADAPTER_EXCLUDE)
        (files_dir / "README.md").write_text(model_meta["description"], encoding="utf-8")
    write_json(files_dir / "model-instance-metadata.json", inst_meta)
    write_json(model_dir / "model-metadata.json", model_meta)
    handle = md.instance_handle(cfg, instance)  # owner/model/framework/instance, no version
    result = PushResult("model", instance, "dry-run", str(handle), stage,
                        {"model-metadata.json": model_meta, "model-instance-metadata.json": inst_meta}, _listing(files_dir),
                        notes=[f"warning: {n}" for n in notes])
    if dry_run:
        return result
    api = api or open_api()
    model_ref = str(handle.model_handle)  # the ownerSlug/slug of model-metadata.json
    if call(f"model {model_ref}", api.model_get, model_ref, missing_ok=True) is None:
        check_response(f"create model {model_ref}", call(f"create model {model_ref}", api.model_create_new, str(model_dir)))
        result.notes.append(f"created model {model_ref}")
    before = call(f"model instance {handle}", api.model_instance_get, str(handle), missing_ok=True)
    if before is None:
        resp = call(f"create instance {handle}", api.model_instance_create, str(files_dir), quiet=True, dir_mode="tar")
        result.action = "create"
    else:
        resp = call(f"new version of {handle}", api.model_instance_version_create, str(handle), str(files_dir),
                    version_notes=version_notes or "kit push-model", quiet=True, dir_mode="tar")
        result.action = "version"
    check_response(f"push-model {handle}", resp)
    result.url = getattr(resp, "url", "") or ""
    after = call(f"model instance {handle}", api.model_instance_get, str(handle), missing_ok=True)
    version = getattr(after, "version_number", 0) or 0
    if not version:
        version = 1 if before is None else (getattr(before, "version_number", 0) or 0) + 1
    result.version = int(version)
    md.record_published(root, handle, result.version, url=result.url)
    return result


def kaggle_resolver(api) -> md.Resolver:
    """Resolve 'latest' to the instance's current version number on Kaggle."""

    def resolve(who: str, model_slug: str, framework: str, slug: str) -> int:
        handle = str(hd.ModelInstanceHandle(who, model_slug, framework, slug))
        got = call(f"model instance {handle}", api.model_instance_get, handle, missing_ok=True)
        if got is None or not getattr(got, "version_number", 0):
            raise KitError(f"{handle} is not on Kaggle; push it first with `kit push-model --instance {slug}`")
        return int(got.version_number)

    return resolve


# --------------------------------------------------------------------------- kernels


def push_kernel(cfg: KitConfig, name: str, root: str | os.PathLike = ".", accelerator: Optional[str] = None,
                dry_run: bool = False, no_run: bool = False, api=None, render: Optional[Callable] = None) -> PushResult:
    """Render kernels/<name>/ if stale (``render(cfg, name, root, resolve) -> notes``, given by the
    caller: `kaggle_kit.notebooks.render.render_if_needed` sits above this package), rebuild its kernel-metadata.json from kit.toml (model
    versions 'latest' resolved from Kaggle; offline runs use .kit/published.json first), stage the
    notebook and the metadata, and push (Kaggle runs every pushed version)."""
    root = Path(root)
    md.kernel_config(cfg, name)
    # before any network call: what `kit validate` checks for this kernel and what it mounts ('latest' versions
    # stand in as 1 here); the rendered folder is checked below, once rendered
    report = vd.push_report(cfg, "kernel", name, root, accelerator=accelerator)
    _raise_problems(report.problems, "push-kernel")
    warnings: list[str] = list(report.warnings)
    extra = cfg.kaggle.extra_machine_shapes
    offline = dry_run or no_run
    state = {"api": api}

    def online(*handle):
        state["api"] = state["api"] or open_api()
        return kaggle_resolver(state["api"])(*handle)

    if offline:
        recorded = md.published_resolver(root)

        def resolve(*handle):
            try:
                return recorded(*handle)
            except KitError:
                return online(*handle)
    else:
        resolve = online
    notes = render(cfg, name, root, resolve) if render else []
    folder = root / "kernels" / name
    meta_path = folder / "kernel-metadata.json"
    if not meta_path.is_file():
        raise KitError(f"{meta_path} not found; run `kit render {name}`")
    on_disk = read_json(meta_path)
    code_file = on_disk.get("code_file") or f"{name}.ipynb"
    meta = md.kernel_metadata(cfg, name, code_file, resolve=resolve, accelerator=accelerator)
    problems = vd.check_kernel_metadata(meta, str(meta_path), folder, warnings=warnings, extra_shapes=extra)
    # a kernel push sends only the code file: the same upload rule as `kit validate`
    _raise_problems(problems + up.check_files([folder / code_file], _secrets()), "push-kernel")
    staged = fresh_stage(root, "kernel", name)
    shutil.copy2(folder / code_file, staged / Path(code_file).name)
    meta["code_file"] = Path(code_file).name
    write_json(staged / "kernel-metadata.json", meta)
    notes += [f"warning: {w}" for w in dict.fromkeys(warnings)]
    result = PushResult("kernel", name, "dry-run" if dry_run else "staged", meta["id"], staged,
                        {"kernel-metadata.json": meta}, _listing(staged), notes=notes)
    if offline:
        if no_run and not dry_run:
            result.notes.append("--no-run: rendered, checked and staged, not pushed (Kaggle runs every pushed kernel "
                                "version; the kaggle client has no save-without-run)")
        return result
    api = state["api"] or open_api()
    resp = call(f"push kernel {meta['id']}", api.kernels_push, str(staged))
    check_response(f"push-kernel {meta['id']}", resp)
    result.action = "push"
    result.url = getattr(resp, "url", "") or ""
    result.version = getattr(resp, "version_number", None)
    return result


def kernel_status(cfg: KitConfig, name: str, api=None) -> dict:
    ref = str(md.kernel_ref(cfg, name))
    api = api or open_api()
    resp = call(f"status of {ref}", api.kernels_status, ref)
    status = getattr(resp, "status", "")
    status = getattr(status, "name", str(status)).lower()
    return {"kernel": ref, "status": status, "failure_message": getattr(resp, "failure_message", None) or ""}


def kernel_output(cfg: KitConfig, name: str, out: Optional[str] = None, root: str | os.PathLike = ".", api=None) -> dict:
    """Download the kernel's output files (the submission) and its log into ``out``
    (default ``<root>/outputs/<name>``)."""
    ref = str(md.kernel_ref(cfg, name))
    folder = Path(out) if out else Path(root) / "outputs" / name
    folder.mkdir(parents=True, exist_ok=True)
    api = api or open_api()
    files, _ = call(f"output of {ref}", api.kernels_output, ref, str(folder), force=True, quiet=True)
    files = [str(f) for f in files]
    submission = next((f for f in files if Path(f).name == "submission.csv"), "")
    log = next((f for f in files if f.endswith(".log")), "")
    return {"kernel": ref, "folder": str(folder), "files": files, "submission": submission, "log": log}


# --------------------------------------------------------------------------- base model


BASE_PATTERNS = (
    "*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json", "tokenizer.json",
    "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "vocab.txt", "merges.txt", "chat_template.jinja", "chat_template.json", "spiece.model", "sentencepiece.bpe.model",
)


def base_instance(cfg: KitConfig, instance: Optional[str] = None) -> str:
    if instance:
        md.instance_config(cfg, instance)
        return instance
    bases = [n for n, i in cfg.instances.items() if i.kind == "base"]
    if not bases:
        raise KitError("no base-model instance in kit.toml; add [instances.NAME] with kind = \"base\" (see `kit init --preset lmsys`)")
    return bases[0]


def fetch_base(cfg: KitConfig, instance: Optional[str] = None, root: str | os.PathLike = ".", revision: Optional[str] = None) -> dict:
    """Download the base model (model.name) with huggingface_hub.snapshot_download into the folder
    the base instance publishes: safetensors weights, config and tokenizer only (no .bin/.pth/.gguf
    duplicates, no `original/` folder)."""
    name = base_instance(cfg, instance)
    repo = cfg.model.name
    if "/" not in repo:
        raise KitError(f"model.name = {repo!r} is not a hub id like 'google/gemma-2-9b-it'")
    dest = md.instance_source(cfg, name, root)
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id=repo, revision=revision, local_dir=str(dest), allow_patterns=list(BASE_PATTERNS),
                          ignore_patterns=["original/*", "*/original/*"])
    except Exception as exc:  # network, auth, missing repo: one message
        raise KitError(f"fetch-base: downloading {repo} failed: {type(exc).__name__}: {exc}") from None
    weights = sorted(p.name for p in dest.glob("*.safetensors"))
    if not weights:
        raise KitError(f"fetch-base: {repo} has no safetensors weights; convert it first (only safetensors are published)")
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and ".cache" not in p.parts)
    return {"instance": name, "repo": repo, "folder": str(dest.resolve()), "files": files, "weights": weights}

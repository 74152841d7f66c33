"""`kit render`: notebooks_src/ + kit.toml + the runtime → kernels/<name>/<name>.ipynb and kernel-metadata.json.

A notebook source is a py:percent file with Jinja2 placeholders (StrictUndefined: a missing variable is
an error naming it). Rendering fills it from `kit.toml`, turns it into notebook cells and replaces the
``# %% [kit:embed]`` cell with one ``%%writefile`` cell per embedded module, each carrying the library's
source verbatim, so the code that runs on Kaggle is the code tested here.

The output is deterministic (no timestamps; cell ids derived from the index and the content; nbformat
4.5 written with sorted keys), so ``render(check=True)`` can compare a fresh render with the files on
disk and report stale or hand-edited ones.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kaggle_kit.config import KitConfig
from kaggle_kit.errors import KitError
from kaggle_kit.publish.handles import CompetitionHandle, parse_dataset_handle, parse_model_instance_handle

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # kaggle_kit/
PACKAGE = "kaggle_kit"
EMBED_MARKER = "kit:embed"
NOTEBOOK_KEY = "kaggle_kit"  # notebook metadata section written by kit render
WRITEFILE_PREFIX = "%%writefile {RUNTIME_DIR}/"

# Inputs each notebook source needs, and how to provide a missing one.
REQUIRED_INPUTS = {
    "inference": ("competition", "adapter", "wheels"),
    "train": ("competition", "wheels"),
    "train-predict": ("competition", "wheels"),
    "generate": ("adapter",),
}
INPUT_FIX = {
    "competition": "set kaggle.competition (or data.test to a /kaggle/input/... path)",
    "adapter": "add a model instance with kind = \"adapter\" to kernels.{name}.instances (an [instances.NAME] table)",
    "base": "add a model instance with kind = \"base\" to kernels.{name}.instances",
    "wheels": "set wheels.dataset_slug",
}

# What each notebook source embeds: module names (packages embed every module inside) plus, always,
# every kaggle_kit module those import (followed through the source's import statements).
EMBED = {
    "inference": ["kaggle_kit.runtime"],
    "train": ["kaggle_kit.runtime", "kaggle_kit.train", "kaggle_kit.config"],
    "train-predict": ["kaggle_kit.runtime", "kaggle_kit.train", "kaggle_kit.config", "kaggle_kit.data.mine"],
}
# A template name may hold '-' (kit.toml's `template = "train-predict"`); its source file uses '_'.
TEMPLATE_FILES = {"train-predict": "train_predict"}


@dataclass
class RenderResult:
    name: str
    folder: Path
    notebook_path: Path
    metadata_path: Path
    changed: bool  # render: files were (re)written; check: a file differs from a fresh render
    stale_files: list = field(default_factory=list)  # files on disk that differ from a fresh render (or are missing)
    embedded: list = field(default_factory=list)  # package-relative paths of the embedded modules
    inputs: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # decisions taken for the user (e.g. a default slug shortened to fit)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "folder": str(self.folder),
            "notebook": str(self.notebook_path),
            "metadata": str(self.metadata_path),
            "changed": self.changed,
            "stale_files": [str(p) for p in self.stale_files],
            "embedded": self.embedded,
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- embedded modules


def _module_file(module: str) -> Optional[Path]:
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    parts = module.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*parts) if parts else PACKAGE_DIR
    if base.is_dir() and (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR).with_suffix("")
    parts = [PACKAGE] + list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set:
    """kaggle_kit modules ``path`` imports (absolute or relative; ``from x import y`` also tries x.y)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            for alias in node.names:
                found.add(f"{base}.{alias.name}")
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def embedded_files(entries: list) -> list:
    """Package-relative paths (e.g. 'runtime/formats.py') of every module a notebook must carry."""
    todo, seen = [], set()

    def add(path: Path):
        if path not in seen:
            seen.add(path)
            todo.append(path)

    for entry in entries:
        path = _module_file(entry)
        if path is None:
            raise KitError(f"cannot embed {entry!r}: no such module in {PACKAGE_DIR}")
        if path.name == "__init__.py":
            for child in sorted(path.parent.glob("*.py")):
                add(child)
        else:
            add(path)
    while todo:
        path = todo.pop()
        # parent packages' __init__ files, so that the embedded tree is importable
        for parent in path.relative_to(PACKAGE_DIR).parents:
            init = PACKAGE_DIR / parent / "__init__.py"
            if init.is_file():
                add(init)
        for module in _imports(path):
            target = _module_file(module)
            if target is not None:
                add(target)
    rels = [p.relative_to(PACKAGE_DIR).as_posix() for p in seen]
    # package __init__ files first (shallowest first), then modules by path
    return sorted(rels, key=lambda r: (not r.endswith("__init__.py"), r.count("/"), r))


def embed_cells(files: list) -> list:
    """One ``%%writefile`` code cell per embedded file, the source after the magic line verbatim."""
    cells = []
    for rel in files:
        source = (PACKAGE_DIR / rel).read_text(encoding="utf-8")
        if not source.endswith("\n"):
            raise KitError(f"{PACKAGE_DIR / rel}: the file must end with a newline to be embedded byte for byte")
        cells.append({"cell_type": "code", "source": f"{WRITEFILE_PREFIX}{PACKAGE}/{rel}\n{source}", "kit_embed": rel})
    return cells


def embedded_folders(files: list) -> list:
    folders = {PACKAGE}
    for rel in files:
        parent = Path(PACKAGE, rel).parent.as_posix()
        folders.add(parent)
    return sorted(folders)


# --------------------------------------------------------------------------- py:percent


_CELL_RE = re.compile(r"^# %%(?P<rest>.*)$")


def parse_percent(text: str, origin: str = "<template>") -> list:
    """py:percent text → cells (dicts with cell_type and source). ``# %% [markdown]`` cells have their
    ``# `` comment prefix removed; ``# %% [kit:embed]`` marks where the embedded modules go."""
    cells, current = [], None
    for line in text.splitlines():
        m = _CELL_RE.match(line)
        if m:
            rest = m.group("rest").strip()
            tag = re.search(r"\[([^\]]+)\]", rest)
            kind = tag.group(1) if tag else "code"
            if kind not in ("markdown", "code", EMBED_MARKER):
                raise KitError(f"{origin}: unknown cell type [{kind}] in line {line!r}; use [markdown], [{EMBED_MARKER}] or none")
            current = {"cell_type": kind, "lines": []}
            cells.append(current)
            continue
        if current is None:
            if line.strip():  # text before the first cell marker: a code cell
                current = {"cell_type": "code", "lines": []}
                cells.append(current)
            else:
                continue
        current["lines"].append(line)
    out = []
    for cell in cells:
        lines = cell["lines"]
        if cell["cell_type"] == "markdown":
            lines = [l[2:] if l.startswith("# ") else (l[1:] if l.startswith("#") else l) for l in lines]
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if cell["cell_type"] == EMBED_MARKER:
            out.append({"cell_type": EMBED_MARKER, "source": ""})
        elif lines:
            out.append({"cell_type": cell["cell_type"], "source": "\n".join(lines)})
    return out


def notebook_json(cells: list, metadata: dict) -> str:
    """A deterministic nbformat 4.5 document (ids from index + content; sorted keys as nbformat writes)."""
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook()
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata = nbformat.from_dict(metadata)
    for i, cell in enumerate(cells):
        digest = hashlib.sha256(cell["source"].encode("utf-8")).hexdigest()[:8]
        cid = f"c{i:03d}-{digest}"
        if cell["cell_type"] == "markdown":
            node = v4.new_markdown_cell(cell["source"], id=cid)
        else:
            node = v4.new_code_cell(cell["source"], id=cid)
        nb.cells.append(node)
    nbformat.validate(nb)
    return nbformat.writes(nb, version=4) + "\n"


# --------------------------------------------------------------------------- Kaggle inputs


def _rel_under_kaggle(path: str) -> Optional[str]:
    if path.startswith("/kaggle/"):
        return path[len("/kaggle/"):].strip("/")
    return None


def kernel_inputs(cfg: KitConfig, name: str, metadata: dict) -> dict:
    """role -> {paths (relative to /kaggle, current layout first), key (kit.toml), file, file_key}."""
    inputs: dict = {}
    comp = cfg.kaggle.competition
    test = cfg.data.test or ""
    test_rel = _rel_under_kaggle(test)
    mounts = CompetitionHandle(comp).mount_paths() if comp else []
    if test_rel and test_rel.startswith("input/"):
        folder, _, file = test_rel.rpartition("/")
        paths = mounts if folder in mounts else [folder]
        inputs["competition"] = {"paths": paths, "key": "kaggle.competition" if comp else "data.test", "file": file, "file_key": "data.test"}
    elif comp:
        file = Path(test).name if test else "test.csv"
        inputs["competition"] = {"paths": mounts, "key": "kaggle.competition", "file": file, "file_key": "data.test"}
    inputs.update(_model_inputs(cfg, name, metadata))
    for source in metadata.get("dataset_sources", []):
        # the shape only (a malformed source is an error naming it); `kit validate` checks Kaggle's naming rules
        dataset = parse_dataset_handle(source, strict=False, where=f"kernels.{name}.dataset_sources")
        is_wheels = dataset.slug == cfg.wheels.dataset_slug
        role = "wheels" if is_wheels else dataset.slug
        inputs[role] = {
            "paths": dataset.mount_paths(),
            "key": "wheels.dataset_slug" if is_wheels else f"kernels.{name}.dataset_sources",
            "file": "",
            "file_key": "",
        }
    return inputs


def _model_inputs(cfg: KitConfig, name: str, metadata: dict) -> dict:
    """The inputs of the kernel's model sources: role (adapter/base, else the instance) -> mount paths."""
    from kaggle_kit.publish.metadata import instance_handle

    instances = {instance_handle(cfg, iname): iname for iname in cfg.kernels[name].instances}
    inputs: dict = {}
    seen: set = set()
    for source in metadata.get("model_sources", []):
        handle = parse_model_instance_handle(source, versioned=True, strict=False, where=f"kernels.{name}.model_sources")
        iname = instances.get(handle.without_version())
        inst = cfg.instances.get(iname) if iname else None
        role = {"adapter": "adapter", "base": "base"}.get(getattr(inst, "kind", ""), iname or handle.instance)
        if role in seen:  # a second adapter/base: name it by its instance
            role = iname or handle.instance
        seen.add(role)
        inputs[role] = {
            "paths": handle.mount_paths(),
            "key": f"instances.{iname}" if iname else f"kernels.{name}.model_sources",
            "file": "",
            "file_key": "",
        }
    return inputs


# --------------------------------------------------------------------------- rendering


def _template_path(root: Path, template: str) -> tuple:
    from kaggle_kit.templating import NOTEBOOK_SOURCES

    for folder in (root / "notebooks_src", NOTEBOOK_SOURCES):
        path = folder / f"{TEMPLATE_FILES.get(template, template)}.py"
        if path.is_file():
            try:
                shown = path.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                shown = f"kaggle-kit:notebooks_src/{path.name}"
            return path, shown
    raise KitError(
        f"notebook source {template}.py not found in {root / 'notebooks_src'} or {NOTEBOOK_SOURCES}; "
        f"set kernels.<name>.template to one of: {', '.join(sorted({v: k for k, v in TEMPLATE_FILES.items()}.get(p.stem, p.stem) for p in NOTEBOOK_SOURCES.glob('*.py')))}"
    )


def _py(value) -> str:
    return repr(value)


def _config_shown(cfg: KitConfig, root: Path) -> str:
    source = getattr(cfg, "_source", None)
    if not source:
        return "(defaults: no kit.toml)"
    try:
        return Path(source).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(source).name


def build(cfg: KitConfig, name: str, root=".", resolve=None) -> dict:
    """Everything `render_kernel` writes, in memory: notebook text, metadata dict, inputs, embedded files."""
    from kaggle_kit import __version__
    from kaggle_kit.publish.metadata import kernel_config, kernel_metadata, published_resolver
    from kaggle_kit.templating import render as render_template

    root = Path(root)
    kernel = kernel_config(cfg, name)
    code_file = f"{name}.ipynb"
    metadata = kernel_metadata(cfg, name, code_file, resolve=resolve or published_resolver(root))
    template_path, template_shown = _template_path(root, kernel.template)
    entries = EMBED.get(kernel.template, ["kaggle_kit.runtime"])
    files = embedded_files(entries)
    inputs = kernel_inputs(cfg, name, metadata)
    check_inputs(cfg, name, inputs, root)
    inf = cfg.inference
    settings = {
        "tta": inf.tta if inf.tta != "none" else None,
        "budget_minutes": inf.budget_minutes or None,
        "batch_tokens": inf.batch_tokens or None,
        "max_batch_rows": inf.max_batch_rows or None,
        "devices": list(inf.devices) or None,
        "quantization": inf.quantization or None,
        "max_unpredicted_share": inf.max_unpredicted_share,
    }
    context = {
        "ensemble": ensemble_context(cfg, name, inputs),
        "name": name,
        "title": metadata.get("title") or name,
        "kernel_id": metadata.get("id", ""),
        "kit_version": __version__,
        "template_file": template_shown,
        "config_file": _config_shown(cfg, root),
        "inputs": inputs,
        "embedded_files": [f"{PACKAGE}/{r}" for r in files],
        "embedded_folders": embedded_folders(files),
        "settings": settings,
        "py": {k: _py(v) for k, v in settings.items()},
        "competition": cfg.kaggle.competition,
        "config_toml": _config_toml(cfg),
        "train_file": Path(cfg.data.train).name if cfg.data.train else "train.csv",
        "accelerator": metadata.get("machine_shape", ""),
    }
    text = render_template(template_path.parent, template_path.name, context)
    cells = []
    for cell in parse_percent(text, origin=str(template_path)):
        if cell["cell_type"] == EMBED_MARKER:
            cells.extend(embed_cells(files))
        else:
            cells.append(cell)
    if not any(c.get("kit_embed") for c in cells):
        raise KitError(f"{template_path}: no '# %% [{EMBED_MARKER}]' cell; the notebook must embed the runtime")
    nb_meta = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        NOTEBOOK_KEY: {
            "generator": f"kit render (kaggle-kit {__version__})",
            "kernel": name,
            "template": template_shown,
            "config": context["config_file"],
            "inputs": inputs,
            "embedded": context["embedded_files"],
        },
    }
    return {
        "notebook": notebook_json(cells, nb_meta),
        "metadata": metadata,
        "metadata_text": json.dumps(metadata, indent=2, ensure_ascii=False) + "\n",
        "inputs": inputs,
        "embedded": context["embedded_files"],
    }


def check_inputs(cfg: KitConfig, name: str, inputs: dict, root: Path) -> None:
    """KitError when kernel ``name`` lacks an input its template needs, or its notebook would load a model from
    outside /kaggle/input (`kaggle_kit.publish.kernel_checks.kernel_model_problems`: `kit validate` and every
    push run the same check)."""
    from kaggle_kit.publish.kernel_checks import kernel_model_problems

    template = cfg.kernels[name].template
    missing = [r for r in REQUIRED_INPUTS.get(template, ()) if r not in inputs]
    if missing:
        fixes = "; ".join(f"{r}: {INPUT_FIX[r].format(name=name)}" for r in missing)
        raise KitError(f"kernels.{name} (template {template!r}) needs input(s) {', '.join(missing)} that kit.toml does not provide: {fixes}")
    problems = kernel_model_problems(cfg, name, root)
    if problems:
        raise KitError("\n".join(problems))


def _same_path(a: str, b: str) -> bool:
    return bool(a) and bool(b) and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def ensemble_context(cfg: KitConfig, name: str, inputs: dict) -> Optional[dict]:
    """The ensemble a kernel runs when it mounts several adapter instances, else None.

    {members: [{role, instance, spec, weight}], bases: [base roles], combine}. A member's weight comes from
    [ensemble]: the weight of the member that names the instance, its source folder, or that folder's
    --all-folds parent; else, with as many weights as adapters, by order; else equal weights.
    """
    roles = {spec["key"].split(".", 1)[1]: role for role, spec in inputs.items() if spec.get("key", "").startswith("instances.")}
    adapters = [i for i in cfg.kernels[name].instances if cfg.instances[i].kind == "adapter" and i in roles]
    if len(adapters) < 2:
        return None
    ens = cfg.ensemble
    members, weights = [str(m) for m in ens.members], list(ens.weights)

    def weight_of(inst: str):
        source = cfg.instances[inst].source or cfg.train.output or ""  # as publishing resolves it (metadata.instance_source)
        for m, w in zip(members, weights):
            if m == inst or _same_path(m, source) or (source and _same_path(m, str(Path(source).parent))):
                return float(w)
        return None

    found = [weight_of(i) for i in adapters]
    if weights and all(w is not None for w in found):
        chosen = found
    elif weights and len(weights) == len(adapters):
        chosen = [float(w) for w in weights]
    elif weights:
        raise KitError(f"kernels.{name} mounts {len(adapters)} adapter instances ({', '.join(adapters)}) but [ensemble] has "
                       f"{len(weights)} weight(s) for members {members} that do not name them; list one member per instance "
                       f"(its name or source folder) or give exactly {len(adapters)} weights in instance order")
    else:
        chosen = [1.0 / len(adapters)] * len(adapters)
    bases = [roles[i] for i in cfg.kernels[name].instances if cfg.instances[i].kind == "base" and i in roles]
    return {
        "members": [{"role": roles[i], "instance": i, "spec": inputs[roles[i]], "weight": w} for i, w in zip(adapters, chosen)],
        "bases": bases,
        "combine": ens.combine,
        # [ensemble] cascade: the first adapter instance on every row, the later ones on the uncertain rows (runtime.cascade)
        "cascade": {"share": float(ens.cascade_share), "by": ens.cascade_by, "threshold": float(ens.cascade_threshold),
                    "combine": ens.cascade_combine} if ens.cascade else None,
    }


def _config_toml(cfg: KitConfig) -> str:
    """The merged configuration as TOML (for notebooks that rebuild the config on Kaggle)."""
    from kaggle_kit.config import render_toml

    return render_toml(cfg)


def render_kernel(cfg: KitConfig, name: str, root=".", check: bool = False, resolve=None) -> RenderResult:
    """Render `kernels/<name>/<name>.ipynb` and `kernel-metadata.json` under ``root``.

    Instance versions given as 'latest' are resolved by ``resolve`` (see kaggle_kit.publish.metadata), by
    default from what `kit push-model` recorded in ``<root>/.kit/published.json``.

    With ``check``, nothing is written: ``stale_files`` lists files that differ from a fresh render
    (stale, or edited by hand) or are missing, and ``changed`` says whether there are any.
    """
    root = Path(root)
    built = build(cfg, name, root, resolve=resolve)
    folder = root / "kernels" / name
    nb_path = folder / f"{name}.ipynb"
    meta_path = folder / "kernel-metadata.json"
    wanted = {nb_path: built["notebook"], meta_path: built["metadata_text"]}
    stale = []
    for path, text in wanted.items():
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            stale.append(path)
    if not check:
        folder.mkdir(parents=True, exist_ok=True)
        for path in stale:
            path.write_text(wanted[path], encoding="utf-8")
    return RenderResult(
        name=name,
        folder=folder,
        notebook_path=nb_path,
        metadata_path=meta_path,
        changed=bool(stale),
        stale_files=stale,
        embedded=built["embedded"],
        inputs=built["inputs"],
        notes=_kernel_notes(cfg, name),
    )


def _kernel_notes(cfg: KitConfig, name: str) -> list:
    """What rendering decided for the user (a default slug shortened to Kaggle's 50 characters, …)."""
    from kaggle_kit.publish.metadata import kernel_names

    return list(kernel_names(cfg, name).notes)


def render_all(cfg: KitConfig, root=".", check: bool = False, resolve=None) -> list:
    if not cfg.kernels:
        raise KitError("kit.toml has no [kernels.NAME] tables; add one, e.g. [kernels.inference] template = \"inference\"")
    return [render_kernel(cfg, name, root, check=check, resolve=resolve) for name in sorted(cfg.kernels)]


def embedded_sources(notebook_path) -> dict:
    """package path (e.g. 'kaggle_kit/runtime/formats.py') -> the source a rendered notebook carries."""
    data = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    out = {}
    for cell in data["cells"]:
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if cell["cell_type"] == "code" and src.startswith(WRITEFILE_PREFIX):
            head, _, body = src.partition("\n")
            out[head[len(WRITEFILE_PREFIX):].strip()] = body
    return out


def render_if_needed(cfg: KitConfig, name: str, root: Path, resolve=None) -> list[str]:
    """Render kernels/<name>/ through :func:`render_kernel` (it rewrites only stale files) before a
    push; returns the notes for the push's log (`kaggle_kit.publish.push.push_kernel(render=…)`)."""
    result = render_kernel(cfg, name, root=str(root), resolve=resolve)
    return [f"rendered {result.folder} (it was stale)"] if getattr(result, "changed", False) else []

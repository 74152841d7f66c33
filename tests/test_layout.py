"""The house rules of kaggle_kit's layout, measured from the source (AST only, nothing imported).

- no import cycles between files (in-function imports included);
- packages in levels, imports pointing down only, never sideways between packages of one level
  (README "Layout" draws the same levels);
- at most a handful of modules loose at the top of kaggle_kit/;
- no file over 600 lines, no function over 80;
- no rendered notebook embeds command-line code (cli/, click) or the synthetic-data generators.
"""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "kaggle_kit"
# Top to bottom. A module may import its own package, or a package on a lower level; `kaggle_kit`
# itself (the version) is below everything.
LEVELS = [
    {"cli"},
    {"demo", "benchmarks"},
    {"notebooks", "wheels", "train"},
    {"publish", "data"},
    {"models", "ensemble", "templating"},
    {"errors"},
    {"config", "runtime"},
]
MAX_LOOSE, MAX_FILE_LINES, MAX_FUNCTION_LINES = 8, 600, 80
NOT_IN_NOTEBOOKS = ("cli/", "data/synth", "demo.py", "benchmarks/")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict:
    """{module: {kaggle_kit modules it imports}} for every .py under ``root`` (a package folder).

    ``from a import b`` counts as an import of ``a.b`` when that is a module, else of ``a``; a
    package's ``__init__`` is not counted as imported by its own children (Python runs it first anyway,
    and re-exports there are not cycles)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}

    def known(name: str):
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for me, path in files.items():
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {known(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in files else known(base))
        graph[me] = {m for m in found if m and m != me and not (files[m].name == "__init__.py" and me.startswith(m + "."))}
    return graph


def cycles(graph: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _level(module: str):
    parts = module.split(".")
    if len(parts) == 1:
        return len(LEVELS), None  # kaggle_kit/__init__.py: the version, below everything
    top = parts[1]
    for i, names in enumerate(LEVELS):
        if top in names:
            return i, top
    return None, top


def arrows_against_levels(graph: dict) -> list:
    """'a -> b' for every import that points up a level or sideways into another package of its level,
    and every package missing from LEVELS."""
    bad = []
    for a, deps in sorted(graph.items()):
        la, pa = _level(a)
        if la is None:
            bad.append(f"{a}: package {pa!r} is in no level of LEVELS (tests/test_layout.py, README Layout)")
            continue
        for b in sorted(deps):
            lb, pb = _level(b)
            if lb is None or pa == pb:
                continue
            if lb < la:
                bad.append(f"{a} -> {b}: points up (level {la} imports level {lb})")
            elif lb == la:
                bad.append(f"{a} -> {b}: sideways within level {la}")
    return bad


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> list:
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit:
                out.append(f"{path.relative_to(root.parent)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    return out


def long_files(root: Path, limit: int = MAX_FILE_LINES) -> list:
    return [f"{p.relative_to(root.parent)} ({n} lines)" for p in sorted(root.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > limit]


def embedded_modules(notebook: Path) -> dict:
    """{package-relative path: source} of the modules a rendered notebook writes with %%writefile."""
    out = {}
    for cell in json.loads(notebook.read_text(encoding="utf-8")).get("cells", []):
        src = "".join(cell.get("source", []))
        head, _, body = src.partition("\n")
        if head.startswith("%%writefile") and "kaggle_kit/" in head:
            out[head.split("kaggle_kit/", 1)[1].strip()] = body
    return out


def notebook_problems(notebook: Path) -> list:
    bad = []
    for rel, body in embedded_modules(notebook).items():
        if rel.startswith(NOT_IN_NOTEBOOKS):
            bad.append(f"{notebook.name} embeds {rel}")
        tree = ast.parse(body)
        roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        roots |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        if "click" in roots:
            bad.append(f"{notebook.name}: embedded {rel} imports click")
    return bad


# --------------------------------------------------------------------------- the rules, on kaggle_kit


def test_no_import_cycles():
    assert cycles(import_graph(PACKAGE)) == []


def test_imports_point_down_the_levels():
    assert arrows_against_levels(import_graph(PACKAGE)) == []


def test_few_loose_modules():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= MAX_LOOSE, loose


def test_no_long_files_or_functions():
    assert long_files(PACKAGE) == [] and long_functions(PACKAGE) == []


@pytest.mark.parametrize("notebook", sorted((REPO / "kernels").glob("*/*.ipynb")), ids=lambda p: p.parent.name)
def test_rendered_notebooks_carry_no_cli_or_synthetic_data_code(notebook):
    assert embedded_modules(notebook), f"{notebook}: embeds nothing (is it rendered?)"
    assert notebook_problems(notebook) == []


# --------------------------------------------------------------------------- the checks can fail


def _write(root: Path, files: dict) -> Path:
    for rel, src in files.items():
        path = root / "kaggle_kit" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(src, encoding="utf-8")
    return root / "kaggle_kit"


def test_checks_catch_cycles_up_arrows_and_sideways_imports(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "runtime/__init__.py": "",
        "runtime/a.py": "def f():\n    from . import b\n",  # in-function import: still an edge
        "runtime/b.py": "from .a import f\n",
        "config.py": "from kaggle_kit.cli import main\n",  # up
        "train/__init__.py": "",
        "train/x.py": "from kaggle_kit.wheels import build\n",  # sideways
        "wheels/__init__.py": "",
        "wheels/build.py": "import kaggle_kit.runtime.a\n",
        "cli/__init__.py": "main = 1\n",
        "odd/__init__.py": "",
    })
    graph = import_graph(pkg)
    assert cycles(graph) == [["kaggle_kit.runtime.a", "kaggle_kit.runtime.b"]]
    bad = arrows_against_levels(graph)
    assert "kaggle_kit.config -> kaggle_kit.cli: points up (level 6 imports level 0)" in bad
    assert "kaggle_kit.train.x -> kaggle_kit.wheels.build: sideways within level 2" in bad
    assert any(b.startswith("kaggle_kit.odd: package 'odd'") for b in bad)
    assert not any("wheels.build ->" in b for b in bad)  # down is fine


def test_checks_catch_long_code_and_cli_in_notebooks(tmp_path):
    pkg = _write(tmp_path, {"__init__.py": "", "big.py": "def f():\n" + "    x = 1\n" * 85 + "\n" * 600})
    assert long_functions(pkg) == ["kaggle_kit/big.py:f (86 lines)"] and long_files(pkg) == ["kaggle_kit/big.py (686 lines)"]
    nb = tmp_path / "k.ipynb"
    cells = [{"cell_type": "code", "source": ["%%writefile {RUNTIME_DIR}/kaggle_kit/train/__main__.py\n", "import click\n"]},
             {"cell_type": "code", "source": ["%%writefile {RUNTIME_DIR}/kaggle_kit/cli/train.py\n", "x = 1\n"]}]
    nb.write_text(json.dumps({"cells": cells}), encoding="utf-8")
    assert notebook_problems(nb) == ["k.ipynb: embedded train/__main__.py imports click", "k.ipynb embeds cli/train.py"]

"""The embeddable runtime: only allowed imports, Python 3.10 grammar, heavy imports inside functions."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[1] / "kaggle_kit" / "runtime"
# tqdm: a hard dependency of transformers (so on Kaggle's image); runtime/progress.py draws its bars
# with it, on a terminal only, imported inside the function that draws one
ALLOWED_THIRD_PARTY = {"numpy", "pandas", "sklearn", "torch", "transformers", "peft", "bitsandbytes", "tqdm"}
HEAVY = {"torch", "transformers", "peft", "bitsandbytes", "sklearn"}
NEWER_THAN_310 = {"tomllib", "wsgiref.types"}  # standard library only from Python 3.11
STDLIB = set(getattr(sys, "stdlib_module_names", ())) - NEWER_THAN_310

MODULES = sorted(RUNTIME.glob("*.py"))


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name.split(".")[0], 0
        elif isinstance(node, ast.ImportFrom):
            yield node, (node.module or "").split(".")[0], node.level


def test_runtime_modules_found():
    names = {p.stem for p in MODULES}
    assert {"formats", "prompting", "problems", "manifest", "modeling"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_runtime_module_imports_and_grammar(path):
    src = path.read_text(encoding="utf-8")
    tree = ast.parse(src, filename=str(path), feature_version=(3, 10))  # must parse as Python 3.10
    compile(src, str(path), "exec")
    top_level = {id(n) for n in tree.body}
    bad = []
    for node, root, level in _imports(tree):
        if level > 0:
            continue  # relative: a sibling runtime module
        if root == "kaggle_kit":
            bad.append(f"line {node.lineno}: absolute import of kaggle_kit (use a relative import)")
        elif root == "__future__" or root in STDLIB:
            continue
        elif root not in ALLOWED_THIRD_PARTY:
            bad.append(f"line {node.lineno}: imports {root!r}")
        elif root in HEAVY and id(node) in top_level:
            bad.append(f"line {node.lineno}: {root} imported at module level (import it inside the function)")
    assert not bad, f"{path.name}: " + "; ".join(bad)
    if "from __future__ import annotations" not in src and path.name != "__init__.py":
        pytest.fail(f"{path.name}: add `from __future__ import annotations` (Python 3.10 annotations)")


def test_checker_catches_violations(tmp_path):
    """The check above can fail: a module importing click, or using 3.12-only syntax, is rejected."""
    with pytest.raises(SyntaxError):
        ast.parse("type Alias = int\n", feature_version=(3, 10))
    tree = ast.parse("import click\nfrom kaggle_kit import config\nimport torch\n", feature_version=(3, 10))
    roots = [root for _, root, _ in _imports(tree)]
    assert "click" not in ALLOWED_THIRD_PARTY | STDLIB and "kaggle_kit" in roots and "torch" in HEAVY

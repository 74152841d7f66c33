"""Jinja2 rendering shared by metadata templates and notebook sources.

StrictUndefined everywhere: a missing variable is an error naming it, never an empty string.
The `json` filter writes values as JSON (booleans stay booleans, strings are escaped).
"""
from __future__ import annotations

import json
from pathlib import Path

from kaggle_kit.errors import KitError

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    """``notebooks_src`` / ``metadata_templates``: inside the installed package (a wheel or
    ``pip install .``; pyproject maps the top-level folders there), else the source tree's
    top-level folder (a checkout or an editable install)."""
    inside = PACKAGE_DIR / name
    return inside if inside.is_dir() else REPO_ROOT / name


METADATA_TEMPLATES = _shipped("metadata_templates")
NOTEBOOK_SOURCES = _shipped("notebooks_src")


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def environment(folder: Path):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(folder), str(NOTEBOOK_SOURCES)]),  # shared partials
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["json"] = _json
    return env


def render(folder: Path, name: str, context: dict) -> str:
    """Render template ``name`` from ``folder``; a missing variable or template is a KitError naming it."""
    import jinja2

    try:
        return environment(folder).get_template(name).render(**context)
    except jinja2.UndefinedError as exc:
        raise KitError(f"{Path(folder) / name}: template variable missing: {exc.message}; pass it in the template context") from None
    except jinja2.TemplateNotFound:
        raise KitError(f"template {name!r} not found in {folder}") from None


def render_metadata(name: str, context: dict, folder: Path = METADATA_TEMPLATES) -> dict:
    """Render `metadata_templates/<name>.j2` and parse it; the result is checked to be JSON."""
    text = render(folder, f"{name}.j2", context)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise KitError(f"{folder / (name + '.j2')}: rendered text is not valid JSON ({exc})") from None


def read_json(path: Path, error: type = KitError, fix: str = ""):
    """Parse a JSON file; invalid JSON raises ``error`` naming the file, the parser's complaint and ``fix``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise error(f"{path}: not valid JSON ({exc})" + (f"; {fix}" if fix else "")) from None


def write_json(path: Path, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path

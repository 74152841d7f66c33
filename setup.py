"""setuptools hook (everything else is in pyproject.toml): the package list.

`notebooks_src/` and `metadata_templates/` stay at the top of the repository as their one source
of truth; pyproject's [tool.setuptools.package-dir] maps them to the packages
`kaggle_kit.notebooks_src` and `kaggle_kit.metadata_templates`, and they are listed here next to
the packages found under kaggle_kit/, so a wheel (or `pip install .`) carries them inside the
package. pyproject's `packages.find` cannot list packages that live outside the folders it
searches, hence this file.
"""
from setuptools import find_namespace_packages, setup

FOUND = find_namespace_packages(include=["kaggle_kit", "kaggle_kit.*"], exclude=["*.__pycache__"])  # profiles/ has no __init__
setup(packages=FOUND + ["kaggle_kit.notebooks_src", "kaggle_kit.metadata_templates"])

"""Notebooks: `kit render` (notebooks_src/ + kit.toml → kernels/) and `kit run-local`."""

"""`kit build-wheels`: the offline wheel dataset for a target Kaggle image."""
from __future__ import annotations

import click

from kaggle_kit.cli.options import config_options, echo_json, friendly_errors, load


@click.command("build-wheels")
@click.option("--target", default=None, metavar="PROFILE|FREEZE.txt",
              help="Target runtime: a profile name (kaggle-gpu-2026, kaggle-2024-lmsys), a profile JSON, or a "
                   "`pip freeze` text taken in a Kaggle notebook. Default: [wheels] target.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Output folder (default: [wheels] out).")
@click.option("--adapter", default=None, type=click.Path(exists=True),
              help="Run folder whose kit_manifest.json gives the training versions (default: this environment's).")
@click.option("--extra", "extras", multiple=True, metavar="REQ", help="Extra requirement to ship (repeatable), e.g. --extra sentencepiece==0.2.0.")
@click.option("--python-version", "python", default=None, metavar="X.Y", help="Target Python for a freeze file (default 3.12) or to override a profile.")
@click.option("--platform", "platforms", multiple=True, metavar="TAG", help="Target platform tag(s) (repeatable; default: the profile's manylinux x86_64 tags).")
@click.option("--extras-only", is_flag=True, help="Ship only the --extra / [wheels] extra requirements (no bitsandbytes/transformers/peft/accelerate).")
@click.option("--strict-image", is_flag=True, help="Never replace a package the image preinstalls (by default only torch, numpy, the CUDA stack… are fixed).")
@click.option("--check", is_flag=True, help="Prove the set installs offline for the target (and, where the target is this interpreter, install + import it).")
@click.option("--dry-run", is_flag=True, help="Resolve and show the table; download and write nothing.")
@click.option("--list-targets", is_flag=True, help="List the shipped target profiles and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@config_options
@friendly_errors
def build_wheels(target, out, adapter, extras, python, platforms, extras_only, strict_image, check, dry_run, list_targets, as_json, quiet, config_path, overrides):
    """Build the offline wheel set for a target Kaggle image.

    Resolves what the notebook's runtime needs (bitsandbytes; transformers / peft / accelerate
    pinned to the training versions where they differ from the image's; [wheels] extra) FOR
    THE TARGET's Python and platform with real pip, leaves out what the image already has
    (never torch), downloads the wheels (cached), and writes requirements.lock,
    kit-wheels-manifest.json and dataset-metadata.json.

    \b
    Examples:
      kit build-wheels --check                        # default: Kaggle GPU image 2026 (Python 3.12)
      kit build-wheels --adapter runs/gemma2-lmsys --check
      kit build-wheels --target kaggle-2024-lmsys --adapter runs/lmsys-2024 --out wheels-2024
      kit build-wheels --target freeze.txt --python-version 3.12 --extra sentencepiece==0.2.0
      kit build-wheels --dry-run
    """
    from kaggle_kit.wheels import build_wheels as build, list_profiles, load_profile

    if list_targets:
        for name in list_profiles():
            p = load_profile(name)
            click.echo(f"{name:22} Python {p.python}  {p.platforms[0]}  {len(p.preinstalled)} preinstalled  {p.description[:70]}…")
        return
    cfg = load(config_path, overrides)
    result = build(cfg, target=target, out=out, adapter=adapter, extras=extras, check=check,
                   dry_run=dry_run, python=python, platforms=platforms or None, progress=not quiet,
                   runtime=not extras_only, strict=strict_image)
    if as_json:
        echo_json(result.to_dict())
        return
    p = result.profile
    click.echo(f"Target {p.name}: Python {p.python} ({p.abi}), {p.platforms[0]} … {p.platforms[-1]}; "
               f"{len(p.preinstalled)} packages preinstalled")
    rows = [(w.name, w.version, format_size(w.size), w.reason) for w in result.wheels]
    head = ("package", "version", "size", "why")
    widths = [max([len(head[i])] + [len(r[i]) for r in rows]) for i in range(3)]
    click.echo("  ".join(h.ljust(widths[i]) if i < 3 else h for i, h in enumerate(head)))
    for r in rows:
        click.echo("  ".join(c.ljust(widths[i]) if i < 3 else c for i, c in enumerate(r)))
    total = format_size(result.total_size) if result.total_size else "?"
    click.echo(f"{len(rows)} wheel(s), total {total}{' (sizes of files not yet downloaded: ?)' if dry_run else ''}")
    if result.upgrades:
        ups = ", ".join(f"{n} {a} -> {b}" for n, a, b in result.upgrades)
        click.echo(f"Replaces image packages: {ups} (other preinstalled packages that depend on them are not "
                   f"checked: the profile lists versions, not dependencies)")
    if result.skipped:
        click.echo("Left out:")
        for s in result.skipped:
            click.echo(f"  {s.name}: {s.reason}")
    if dry_run:
        click.echo("Dry run: nothing downloaded or written.")
        return
    if result.removed:
        click.echo(f"Removed stale wheel(s): {', '.join(result.removed)}")
    click.echo(f"Wrote {result.lock}, {result.manifest}" + (f", {result.metadata}" if result.metadata else ""))
    if result.metadata_error:
        click.echo(f"Warning: {result.metadata_error}", err=True)
    if result.check:
        c = result.check
        click.echo(f"Check passed: {len(c.resolved)} wheel(s) resolve offline (--no-index --find-links {result.out}) "
                   f"for {p.name}" + (f"; installed into a fresh venv ({c.interpreter}) and imported {', '.join(c.imported) or 'no module standalone'}"
                                      if c.installed else ""))
        for note in c.notes:
            click.echo(f"  note: {note}")


def format_size(n: int) -> str:
    """A file size for the table: 12.3 MB; "?" for a size not known (a wheel not downloaded yet)."""
    if not n:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"

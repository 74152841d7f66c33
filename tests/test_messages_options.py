"""Messages only suggest options that exist (issue 13: an error told `kit train` users to pass
`--format`, which `kit train` does not have)."""
from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from fake_kaggle import run_kit
from kaggle_kit.cli import main

REPO = Path(__file__).resolve().parents[1]
# `kit CMD [SUB] ... --opt ...` written inside backticks in the kit's sources and README
SNIPPET = re.compile(r"`(kit [^`\n]+)`")


def _command(words: list[str]):
    """The click command a `kit ...` snippet runs, and the words after its name."""
    ctx = click.Context(main)
    cmd, rest = main, words[1:]
    # placeholders (`kit COMMAND --help`, `kit push-*`, `kit data …`) stop the walk
    while isinstance(cmd, click.Group) and rest and re.fullmatch(r"[a-z][a-z0-9-]*", rest[0]):
        sub = cmd.get_command(ctx, rest[0])
        if sub is None:
            return None, rest
        cmd, rest = sub, rest[1:]
    return cmd, rest


def _options(cmd) -> set[str]:
    return {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])} | {"--help"}


def _snippets():
    files = sorted((REPO / "kaggle_kit").rglob("*.py")) + [REPO / "README.md"]
    for path in files:
        for match in SNIPPET.finditer(path.read_text(encoding="utf-8")):
            yield path.relative_to(REPO).as_posix(), match.group(1)


def test_every_kit_command_in_messages_and_docs_has_its_options():
    bad = []
    for where, snippet in _snippets():
        words = snippet.replace("{", " ").replace("}", " ").split()
        cmd, rest = _command(words)
        if cmd is None:
            bad.append(f"{where}: `{snippet}`: no such command")
            continue
        for word in rest:
            opt = word.split("=")[0]
            if re.fullmatch(r"--[a-z][a-z0-9-]*", opt) and opt not in _options(cmd):
                bad.append(f"{where}: `{snippet}`: {opt} is not an option of `{cmd.name}`")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("command", [["train", "--max-steps", "1", "--model", "tiny"], ["data", "inspect"], ["data", "prepare"]])
def test_wrong_columns_error_suggests_options_of_the_command_that_failed(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text_a,text_b\n1,x,y\n")
    args = command + (["--data", str(bad), "--output", str(tmp_path / "run")] if command[0] == "train" else [str(bad), "--format", "lmsys"])
    if command[:2] == ["data", "prepare"]:
        args += ["--tokenizer", "tiny", "--out", str(tmp_path / "e.jsonl")]
    code, out = run_kit(*args)
    assert code == 2 and "missing column" in out, out
    cmd, _ = _command(["kit"] + command[:2] if command[0] == "data" else ["kit", "train"])
    for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out):
        assert opt in _options(cmd), f"{opt} suggested by `kit {' '.join(command)}`, which has no such option:\n{out}"

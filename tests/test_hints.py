"""Every command a message names exists: each backticked `sora-search ...` in the package's strings is checked
against the click CLI (the subcommand, then each option it names)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from sora_search.cli import cli

PACKAGE = Path(__file__).resolve().parent.parent / "sora_search"
# A hint is backticked (`...` in messages, ``...`` in docstrings); an f-string's fields read as "{}".
HINT = re.compile(r"`(sora-search\b[^`]*)`")


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal in a module, with its line; implicitly joined pieces come as one string."""
    found = []
    pieces: set[int] = set()  # the literal parts of f-strings, read with their f-string
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values)
            found.append((node.lineno, text))
            pieces.update(id(v) for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in pieces:
            found.append((node.lineno, node.value))
    return found


def hints() -> list[tuple[str, str]]:
    """(where, hint) for every backticked `sora-search ...` in the package's source."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, text in _strings(ast.parse(path.read_text(), filename=str(path))):
            out += [(f"{path.relative_to(PACKAGE.parent)}:{line}", m) for m in HINT.findall(text)]
    return out


def _options(command: click.Command) -> set[str]:
    params = command.get_params(click.Context(command))
    return {name for p in params if isinstance(p, click.Option) for name in [*p.opts, *p.secondary_opts]}


def hint_problems(hint: str) -> list[str]:
    """What in ``hint`` (``sora-search [group options] [command [words...]]``) the CLI does not have."""
    words = hint.split()[1:]
    problems: list[str] = []
    command: click.Command = cli
    for word in words:
        if word == "|":  # the rest is another program (`... --json | jq`)
            break
        if word.startswith("-"):
            option = word.split("=", 1)[0]
            if option not in _options(command):
                problems.append(f"{option} is not an option of `{command.name}`")
        elif command is cli:
            if word not in cli.commands:  # type: ignore[attr-defined]
                problems.append(f"no command {word!r}")
                break
            command = cli.commands[word]  # type: ignore[attr-defined]
        # other words are arguments or placeholders (PATH, {})
    return problems


def test_hints_are_found_in_messages_and_docstrings():
    found = {hint for _, hint in hints()}
    assert "sora-search check --repair" in found
    assert "sora-search upgrade --index {}" in found
    assert "sora-search upgrade" in found  # errors.py docstring


@pytest.mark.parametrize("hint, problems", [
    ("sora-search index --rebuild", ["--rebuild is not an option of `index`"]),
    ("sora-search rebuild", ["no command 'rebuild'"]),
    ("sora-search --index info", ["--index is not an option of `cli`"]),
    ("sora-search query CLIP --min-score=0 --json | jq --raw", []),
    ("sora-search -q index PATH --index {}", []),
    ("sora-search check --repair", []),
])
def test_the_check_itself(hint, problems):
    assert hint_problems(hint) == problems


def test_every_hint_names_a_command_and_options_that_exist():
    bad = [f"{where}: `{hint}`: {'; '.join(problems)}" for where, hint in hints()
           if (problems := hint_problems(hint))]
    assert not bad, "\n".join(bad)

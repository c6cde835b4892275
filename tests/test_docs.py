"""The documents stay true: docs/cli.md matches --help, the README's test command is what CI runs, its library
example runs and its demo gives the output it describes, and links between the documents resolve.

``python -m tests.test_docs`` rewrites the CLI reference in docs/cli.md from the current --help.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

from sora_search.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CLI_DOC = ROOT / "docs" / "cli.md"
# The documents a user reads; their relative links must resolve.
DOCUMENTS = [README, ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = ["index", "query", "dupes", "info", "remove", "check", "upgrade", "serve"]
BEGIN, END = "<!-- cli-reference:begin -->", "<!-- cli-reference:end -->"


def cli_reference() -> str:
    runner = CliRunner()
    blocks = []
    for command in [None, *COMMANDS]:
        args = [command, "--help"] if command else ["--help"]
        text = runner.invoke(cli, args, prog_name="sora-search", terminal_width=100).output.rstrip()
        blocks.append(f"```text\n$ sora-search {' '.join(a for a in args)}\n{text}\n```")
    return "\n\n".join(blocks)


def _section(text: str) -> re.Match[str]:
    match = re.search(re.escape(BEGIN) + r"\n(.*)\n" + re.escape(END), text, re.S)
    assert match, f"docs/cli.md lacks the {BEGIN} ... {END} section"
    return match


def test_cli_reference_matches_help():
    assert _section(CLI_DOC.read_text()).group(1) == cli_reference(), \
        "run `python -m tests.test_docs` to refresh docs/cli.md"


def test_readme_links_the_cli_reference():
    assert "(docs/cli.md)" in README.read_text()


def test_relative_links_in_documents_resolve():
    broken = []
    for doc in DOCUMENTS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            path = target.split("#", 1)[0]
            if path and not re.match(r"[a-z]+:", path) and not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_documents_hold_no_development_journal():
    journal = re.compile(r"\bsession \d|/work/|today's machine|lent to this work", re.I)
    lines = [f"{doc.relative_to(ROOT)}:{n}: {line}" for doc in DOCUMENTS
             for n, line in enumerate(doc.read_text().splitlines(), 1) if journal.search(line)]
    assert not lines, lines


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    ci_command = re.search(r"# README test command \(begin\)\n(.*)\n# README test command \(end\)", ci, re.S).group(1)
    assert ci_command.strip() in README.read_text()


def test_readme_library_example_runs(tmp_path, media_dir):
    import shutil
    import subprocess

    code = re.search(r"## Library\n.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    shutil.copytree(media_dir / "library", tmp_path / "library")
    shutil.copy(media_dir / "probe_a.mp4", tmp_path / "clip.mp4")
    script = tmp_path / "example.py"
    script.write_text(code)  # as written: no __main__ guard, relative paths
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"{tmp_path / 'library' / 'pan_a.mp4'}" in out.stdout


def test_readme_demo_finds_the_clip_and_nothing_for_the_unrelated_probe(tmp_path):
    import subprocess

    demo = tmp_path / "demo"
    subprocess.run([sys.executable, str(ROOT / "examples" / "make_demo.py"), str(demo)], check=True,
                   capture_output=True, timeout=600)
    runner = CliRunner()
    index_dir = str(tmp_path / "index")
    result = runner.invoke(cli, ["index", str(demo / "library"), "--index", index_dir])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["query", str(demo / "clip.mp4"), "--index", index_dir])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].endswith("mandelbrot.mp4"), result.output
    assert "00:00-00:10    00:1" in lines[1]  # library span starts at 00:1x (the clip is seconds 12-22)
    result = runner.invoke(cli, ["query", str(demo / "unrelated.mp4"), "--index", index_dir])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"no match for {demo / 'unrelated.mp4'}", result.output
    # ... because it is unlike the library, not because there is nothing in it to search (blank frames are skipped):
    # looked at through every view, with no floor, it lists weak chains.
    result = runner.invoke(cli, ["query", str(demo / "unrelated.mp4"), "--index", index_dir, "--min-score=-1",
                                 "--views", "thorough"])
    assert result.exit_code == 0 and result.output.startswith(" score"), result.output


if __name__ == "__main__" and sys.argv[1:] != ["--check"]:
    text = CLI_DOC.read_text()
    m = _section(text)
    CLI_DOC.write_text(text[:m.start(1)] + cli_reference() + text[m.end(1):])
    print("docs/cli.md CLI reference refreshed")

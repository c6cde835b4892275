"""Nothing a user supplies is executed or unpickled: hostile file names are just names; no shell, no pickle."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from sora_search import Library

PACKAGE = Path(__file__).resolve().parent.parent / "sora_search"


def test_a_file_named_like_a_shell_command_is_just_a_file(tmp_path, media_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a command that ran would create ./canary here
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    canary = tmp_path / "canary"
    hostile = lib_dir / "$(touch canary); `touch canary` | touch canary.mp4"
    shutil.copy(media_dir / "library" / "bars.mp4", hostile)
    with Library.open(tmp_path / "idx", encoder="tiny") as lib:
        summary = lib.index([lib_dir])
        assert summary.added == (str(hostile),)
        probe = tmp_path / "`touch canary`; $(touch canary) copy.mp4"  # not indexed: decoded under its own name
        shutil.copy(hostile, probe)
        assert lib.query(probe, min_score=0).matches[0].path == str(hostile)
    assert not canary.exists()


def test_no_shell_and_no_unpickling_in_the_package():
    banned = {
        r"shell\s*=\s*True": "a shell",
        r"\bos\.system\(": "a shell",
        r"\bos\.popen\(": "a shell",
        r"\bpickle\.loads?\(": "unpickling",
        r"allow_pickle\s*=\s*True": "unpickling",
        r"weights_only\s*=\s*False": "unpickling weights",
        r"(?<![.\w])(eval|exec)\(": "evaluating text",
    }
    found = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for pattern, what in banned.items():
            for m in re.finditer(pattern, text):
                found.append(f"{path.relative_to(PACKAGE)}:{text[:m.start()].count(chr(10)) + 1}: {what}")
    assert not found, found
    assert "weights_only=True" in (PACKAGE / "encoder" / "efficientnet.py").read_text()

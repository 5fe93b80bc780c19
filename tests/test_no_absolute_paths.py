"""Committed results, documents and notebooks carry relative paths only: no absolute path of the
machine that produced them (a home, a work or temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("benchmarks/results", "docs", "notebooks", "xsnn/models", "README.md")

# a path that starts at the root of a machine's file system and enters a personal, work or temporary
# folder; placeholders such as /path/to/mnist are not of this kind
ABSOLUTE = re.compile(rb"(?<![\w.~-])/(?:work|tmp|home|root|Users|scratch|mnt|private/var)/|[A-Za-z]:\\\\?Users\\")


def absolute_paths(data: bytes) -> list[str]:
    """The absolute paths in ``data`` (each shown with a little context)."""
    return [data[max(0, m.start() - 20) : m.end() + 40].decode(errors="replace") for m in ABSOLUTE.finditer(data)]


def committed_files() -> list[Path]:
    out = []
    for name in CHECKED:
        path = ROOT / name
        out += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix != ".npz")
    return out


@pytest.mark.parametrize(
    "text, found",
    [
        (b'"data": "/work/shared/data/mnist"', True),
        (b"written to /tmp/xyz/results.json", True),
        (b"cd /home/someone/xsnn", True),
        (b"C:\\Users\\someone\\xsnn", True),
        (b"export XSNN_DATA=/path/to/mnist", False),
        (b"benchmarks/results/tmp/out.json", False),
        (b"see docs/work/notes.md and ~/tmp/x", False),
    ],
)
def test_the_pattern(text, found):
    assert bool(absolute_paths(text)) is found


def test_results_and_documents_have_no_absolute_paths():
    files = committed_files()
    assert any(p.parent.name == "results" for p in files) and any(p.parent.name == "docs" for p in files)
    bad = {str(p.relative_to(ROOT)): hits[:3] for p in files if (hits := absolute_paths(p.read_bytes()))}
    assert not bad, f"absolute paths (use paths relative to the repository): {bad}"

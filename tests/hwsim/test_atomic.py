"""hwsim.atomic (and hwsim.output's directories): files and directories appear whole, no leftovers."""

from __future__ import annotations

import os
from pathlib import Path

from hwsim.atomic import usual_mode, write_atomic
from hwsim.output import VECTORS, publish_directory


def test_write_atomic_replaces_the_file_with_the_usual_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    write_atomic(target, "old")
    write_atomic(target, b"new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_publish_directory_swaps_the_whole_directory(tmp_path: Path) -> None:
    dest = tmp_path / "bundle"
    for content in ("first", "second"):
        with publish_directory(dest, VECTORS) as staged:
            assert staged.parent == dest.parent and not any(staged.iterdir())
            assert staged.stat().st_mode & 0o777 == usual_mode(0o777)
            (staged / "graph.yaml").write_text(content)
        assert (dest / "graph.yaml").read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # nothing old or staged left

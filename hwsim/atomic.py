"""Atomic writes: a file or a whole directory appears in one rename, never half-written.

Place in the flow: every command that writes results (reports, bundles, checkpoints, test
vectors, the demo) goes through here, so an interrupted run leaves the old output or none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file in the same directory, then
    rename it, so a reader sees the old file or the whole new one. The file gets the usual
    permissions (``0o666`` less the umask). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def staging_directory(dest: str | os.PathLike[str]) -> Path:
    """A new empty directory beside ``dest`` (same file system) to build its replacement in."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))


def replace_directory(staged: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Move the complete directory ``staged`` to ``dest``, replacing what was there.

    The old ``dest`` is first renamed aside and deleted only after the new one is in place.
    """
    staged, dest = Path(staged), Path(dest)
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
        os.replace(dest, old / dest.name)
        os.replace(staged, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, dest)
    return dest

"""Atomic file writes: a file appears in one rename, never half-written.

Place in the flow: the low-level writes under hwsim.output (the output policy, which every
command that writes results goes through) and of checkpoints, so an interrupted run leaves the old
output or none. Whole directories are published by hwsim.output.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def usual_mode(mode: int) -> int:
    """``mode`` less the process's umask: the permissions a new file (0o666) or directory (0o777) gets."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


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
        os.chmod(tmp, usual_mode(0o666))  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

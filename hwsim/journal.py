"""The task journal: every finished task of a run kept on disk, so that ``--resume`` runs only the rest.

Place in the flow: a command whose work is many independent tasks (``hwsim sweep``, ``hwsim
simulate`` on several arrays, ``hwsim demo``) opens a journal beside its output
(:func:`journal_for`) and hands it to :func:`hwsim.execute.run_tasks`, which records each task's
result as it arrives and, with ``--resume``, takes the recorded ones instead of running them
again. The journal is the hidden directory ``.<output name>.tasks`` next to the output:

- ``.hwsim-output`` (the output policy's marker, kind ``task journal``) and ``run.json``: the
  run's fingerprint (:func:`digest` of everything the tasks' results depend on: the bundle, the
  input codes, the options). ``--resume`` with another fingerprint is
  refused (the results would be another run's);
- ``task-<key>.npz``, one per finished task, written atomically (a run killed at any moment leaves
  whole files only): the result's structure as JSON plus its arrays, read back with
  ``allow_pickle=False`` (a journal is data, never code). Results are plain data: dicts, lists,
  tuples, str, int, float, bool, None, bytes, numpy arrays and scalars; each comes back with its
  type and value (floats exactly, NaN and infinities included).

When the command has published its output the journal is deleted; when it stops early (an error,
SIGINT, SIGTERM, a dead worker) the journal stays and the command says how to resume. A run
without ``--resume`` replaces an earlier journal (it is this tool's own); a directory at that path
that is not a journal is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import shutil
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from hwsim.atomic import write_atomic
from hwsim.errors import UserError
from hwsim.output import MARKER, Output, OutputError, is_output_of, register_kind

JOURNAL = register_kind("task journal")
"""The output kind of a journal directory (hwsim.output)."""

FORMAT = 1  # the layout of run.json and the task files


def journal_path(out: Path) -> Path:
    """Where the journal of the output ``out`` lives: ``.<name>.tasks`` beside it."""
    return out.parent / f".{out.name}.tasks"


# ----------------------------------------------------------------------------------------------
# Fingerprints
# ----------------------------------------------------------------------------------------------


def _feed(h: Any, value: Any) -> None:
    """Feed ``value`` into the hash ``h`` by its structure (type tags, then content)."""
    if isinstance(value, np.ndarray):
        h.update(f"A{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, np.generic):
        _feed(h, np.asarray(value))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"D{type(value).__qualname__}".encode())
        for f in dataclasses.fields(value):
            h.update(f.name.encode())
            _feed(h, getattr(value, f.name))
    elif isinstance(value, dict):
        h.update(f"M{len(value)}".encode())
        for k, v in value.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, (bytes, bytearray)):
        h.update(b"B%d:" % len(value) + bytes(value))
    elif isinstance(value, (str, PurePath)):
        text = str(value).encode()
        h.update(b"S%d:" % len(text) + text)
    elif value is None or isinstance(value, (bool, int, float)):
        h.update(f"V{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def digest(*values: Any) -> str:
    """A SHA-256 hex digest of ``values`` by structure and content: dataclasses (a bundle, a
    hardware configuration) field by field, arrays by dtype, shape and bytes."""
    h = hashlib.sha256()
    for v in values:
        _feed(h, v)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# Results as JSON + arrays
# ----------------------------------------------------------------------------------------------


def _encode(value: Any, arrays: list[np.ndarray]) -> Any:
    def array(a: np.ndarray) -> int:
        arrays.append(a)
        return len(arrays) - 1

    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("an object array cannot be journaled")
        return {"__array__": array(value)}
    if isinstance(value, np.generic):
        return {"__scalar__": array(np.asarray(value))}
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": array(np.frombuffer(bytes(value), dtype=np.uint8))}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    raise TypeError(f"a task result holds a {type(value).__name__}; expected plain data")


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    ((tag, body),) = value.items()
    if tag == "__float__":
        return float(body)
    if tag == "__array__":
        return arrays[f"a{body}"]
    if tag == "__scalar__":
        return arrays[f"a{body}"][()]
    if tag == "__bytes__":
        return arrays[f"a{body}"].tobytes()
    if tag == "__tuple__":
        return tuple(_decode(v, arrays) for v in body)
    if tag == "__dict__":
        return {_decode(k, arrays): _decode(v, arrays) for k, v in body}
    raise ValueError(f"unknown tag {tag!r}")


def encode_result(task: Any, result: Any) -> bytes:
    """The bytes of one task file: ``task`` and ``result`` (plain data) as JSON plus npz arrays."""
    arrays: list[np.ndarray] = []
    meta = json.dumps({"task": _encode(task, arrays), "result": _encode(result, arrays)}, allow_nan=False)
    buf = io.BytesIO()
    members = {f"a{i}": a for i, a in enumerate(arrays)}
    np.savez(buf, __json__=np.frombuffer(meta.encode(), dtype=np.uint8), **members)
    return buf.getvalue()


def decode_result(data: bytes | Path) -> tuple[Any, Any]:
    """``(task, result)`` from the bytes (or file) :func:`encode_result` wrote."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with np.load(source, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    meta = json.loads(arrays.pop("__json__").tobytes().decode())
    return _decode(meta["task"], arrays), _decode(meta["result"], arrays)


def task_key(task: Any) -> str:
    """The file-name key of a task (plain data): a digest of it."""
    return digest(task)[:24]


# ----------------------------------------------------------------------------------------------
# The journal
# ----------------------------------------------------------------------------------------------


class Journal:
    """The finished tasks of one run (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tasks = 0  # tasks of the run (hwsim.execute.run_tasks says)

    def load(self) -> dict[str, Any]:
        """Task key -> result of every task already recorded (by an earlier run being resumed)."""
        done: dict[str, Any] = {}
        for file in sorted(self.path.glob("task-*.npz")):
            key = file.name[len("task-") : -len(".npz")]
            try:
                task, result = decode_result(file)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
                raise UserError(
                    f"{file}: not a task file of this tool ({err}); delete the journal {self.path} "
                    "and run again without --resume"
                ) from None
            if task_key(task) != key:
                raise UserError(f"{file}: holds another task than its name says; run again without --resume")
            done[key] = result
        return done

    def record(self, task: Any, result: Any) -> None:
        """Keep one finished task (atomically: a reader sees the whole file or none)."""
        try:
            write_atomic(self.path / f"task-{task_key(task)}.npz", encode_result(task, result))
        except OSError as err:
            raise OutputError(f"{self.path}: cannot record a finished task ({err.strerror or err})") from None


def _start(path: Path, fingerprint: str, what: str) -> None:
    if path.exists() or path.is_symlink():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    write_atomic(path / MARKER, JOURNAL.name + "\n")
    write_atomic(
        path / "run.json",
        json.dumps({"format": FORMAT, "what": what, "fingerprint": fingerprint}) + "\n",
    )


@contextmanager
def journal_for(out: Output, fingerprint: str, *, resume: bool, what: str) -> Iterator[Journal]:
    """``with journal_for(out, fp, resume=..., what="hwsim sweep") as journal:`` the journal of the
    output ``out`` (claimed already), for a run fingerprinted ``fingerprint``.

    ``resume``: continue the journal of an earlier run with the same fingerprint (none there: start
    one, and say so). When the block ends normally the journal is deleted; when it raises, the
    journal stays and a line on stderr says how many tasks it holds and how to resume.
    """
    path = journal_path(out.path)
    ours = path.is_dir() and not path.is_symlink() and is_output_of(path, JOURNAL)
    if (path.exists() or path.is_symlink()) and not ours:
        raise OutputError(
            f"{path}: the task journal of {out.flag} {out.path} would go here, but this is not a journal "
            "this tool wrote; move it away"
        )
    previous = None
    if resume and path.is_dir():
        try:
            previous = json.loads((path / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict) or previous.get("format") != FORMAT:
            raise UserError(f"{path}/run.json: unreadable; run again without --resume (starts afresh)")
        if previous.get("fingerprint") != fingerprint:
            raise UserError(
                f"--resume: the journal {path} is of another run ({previous.get('what')}: other inputs, "
                "bundle or options); rerun with the same command, or drop --resume to start afresh"
            )
    elif resume:
        print(f"hwsim: --resume: no journal at {path}; running every task", file=sys.stderr)
    try:
        if previous is None:
            _start(path, fingerprint, what)
    except OSError as err:
        raise OutputError(f"{path}: cannot write the task journal ({err.strerror or err})") from None
    journal = Journal(path)
    try:
        yield journal
    except BaseException:
        kept = len(list(path.glob("task-*.npz"))) if path.is_dir() else 0
        if kept:
            print(
                f"hwsim: {kept} of {journal.tasks or '?'} tasks finished and are kept in {path}; the "
                "same command with --resume runs only the rest",
                file=sys.stderr,
            )
        else:
            shutil.rmtree(path, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)

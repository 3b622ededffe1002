"""The output policy: what a command may write, replace or delete, checked before any work starts.

Place in the flow: every command that writes (``hwsim compare | simulate | sweep | vectors | demo |
emulate | import-qonnx | export-qonnx``, ``qat export | train``) claims its output path here first
(:func:`claim`) and publishes through here at the end (:func:`publish_directory`,
:func:`publish_file`); :mod:`hwsim.atomic` does the low-level renames. The rules
(docs/reliability.md, "Output policy and atomicity"):

- a command never deletes or replaces anything it did not create: an existing output directory is
  replaced only when it is empty or a previous output of the same kind (it holds :data:`MARKER`
  naming the kind, or the kind's ``recognize`` function knows it, e.g. a bundle written before the
  marker existed); an existing output file only when ``recognize`` knows it as this kind's output;
  anything else is refused unless ``--force`` is given;
- an output that is, contains or lies inside an input is refused, ``--force`` or not;
- an output that is a file where a directory is wanted (or the reverse), lies below a file, is
  under ``/proc`` or ``/sys``, or is not writable is refused before any work;
- directories are published as a whole: every file is written into a staging directory beside
  the destination, which then replaces it in two renames with SIGINT and SIGTERM held off, so a
  reader, a concurrent run or an interrupt sees the old output or the new one, never a mix;
- an ``OSError`` while writing an output becomes an :class:`OutputError` naming the path;
- names taken from files (a hardware ``name:``, a bundle or layer name) become file names only
  through :func:`safe_name`.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hwsim import interrupts
from hwsim.atomic import usual_mode, write_atomic
from hwsim.errors import UserError

MARKER = ".hwsim-output"
"""The file in an output directory that names the kind of output it is (one line)."""

KERNEL_FILE_SYSTEMS = ("/proc", "/sys")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
NAME_MAX = 100
SWAP_ATTEMPTS = 8


class OutputError(UserError):
    """An output path that the policy refuses, or that could not be written."""


class UnsafeNameError(UserError):
    """A name read from a file that cannot serve as a file name."""


@dataclass(frozen=True)
class OutputKind:
    """One kind of output: its name (written into :data:`MARKER`), whether it is a directory, and
    ``recognize(path) -> bool``, which knows an existing output of this kind without a marker (a
    file's format, or a directory written before markers existed)."""

    name: str
    directory: bool = True
    recognize: Callable[[Path], bool] | None = None
    in_place: bool = False  # written file by file into the directory (a training run), never replaced


KINDS: dict[str, OutputKind] = {}


def register_kind(
    name: str,
    *,
    directory: bool = True,
    recognize: Callable[[Path], bool] | None = None,
    in_place: bool = False,
) -> OutputKind:
    """Register (or look up, when registered the same way before) the output kind ``name``."""
    kind = OutputKind(name, directory, recognize, in_place)
    known = KINDS.get(name)
    if known is not None and known != kind:
        raise ValueError(f"output kind {name!r} is registered twice, differently")
    KINDS[name] = kind
    return kind


def _looks_like_report(path: Path) -> bool:
    """A report directory of hwsim.report written before the marker: report.json in its format."""
    import json

    try:
        doc = json.loads((path / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(doc, dict)
        and set(doc) == {"title", "meta", "layers", "totals", "notes"}
        and str(doc["title"]).startswith("hwsim ")
    )


REPORT = register_kind("report", recognize=_looks_like_report)
DESIGN_SPACE_REPORT = register_kind("design-space report")
VECTORS = register_kind("vectors")
TRAINING_RUN = register_kind(
    "training run", recognize=lambda path: (path / "checkpoint.pt").is_file(), in_place=True
)


@dataclass(frozen=True)
class Output:
    """A checked output path (from :func:`claim`): where, what kind, which flag named it, whether
    ``--force`` was given and the inputs it must never touch."""

    path: Path
    kind: OutputKind
    flag: str = "--out"
    force: bool = False
    inputs: tuple[Path, ...] = field(default=())

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _fail(out: Output, problem: str, fix: str) -> OutputError:
    return OutputError(f"{out.flag} {out.path}: {problem}; {fix}")


def _marker_kind(path: Path) -> str | None:
    try:
        return (path / MARKER).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def is_output_of(path: Path, kind: OutputKind) -> bool:
    """Whether ``path`` is a previous output of ``kind`` (by its marker, else ``kind.recognize``)."""
    if kind.directory:
        if not path.is_dir() or path.is_symlink():
            return False
        held = _marker_kind(path)
        if held is not None:  # the marker decides; ``recognize`` is for outputs without one
            return held == kind.name
    elif not path.is_file() or path.is_symlink():
        return False
    return kind.recognize is not None and kind.recognize(path)


def _replaceable(out: Output) -> bool:
    """Whether what is at ``out.path`` now may be replaced (nothing, an empty directory, a previous
    output of the kind, or anything with ``--force``)."""
    path = out.path
    if not os.path.lexists(path):
        return True
    if out.kind.directory and path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return True
    return out.force or is_output_of(path, out.kind)


def _check(out: Output) -> None:
    """Raise :class:`OutputError` if the policy refuses ``out`` as it is now."""
    try:
        _check_now(out)
    except OSError as err:  # e.g. a directory on the way that cannot be read
        raise _fail(
            out,
            f"cannot inspect {err.filename or out.path} ({err.strerror or err})",
            "pick a path you can write",
        ) from None


def _check_now(out: Output) -> None:
    path, kind = out.path, out.kind
    real = _real(path)
    for root in KERNEL_FILE_SYSTEMS:
        if _within(real, Path(root)):
            raise _fail(out, f"lies under {root}, a kernel file system", "pick a path on a disk")
    for inp in out.inputs:
        src = _real(inp)
        if real == src:
            raise _fail(out, f"is the input {inp}", "write the output somewhere else")
        if _within(src, real):
            raise _fail(out, f"contains the input {inp}", "write the output somewhere else")
        if _within(real, src):
            raise _fail(out, f"lies inside the input {inp}", "write the output somewhere else")
    ancestor = path.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise _fail(out, f"{ancestor} is a file, not a directory", "pick a path in a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise _fail(out, f"{ancestor} is not writable", "pick a writable directory")
    if os.path.lexists(path):
        if kind.directory and not path.is_dir():
            raise _fail(
                out, "exists and is not a directory", "choose a directory (a new or empty one) for the output"
            )
        if not kind.directory and path.is_dir():
            raise _fail(out, "is a directory", f"expected a file name such as {path / 'out'}")
        if path.is_symlink():
            raise _fail(out, "is a symbolic link", "name the real path, or choose a new one")
    if not _replaceable(out):
        what = "directory" if kind.directory else "file"
        held = _marker_kind(path) if kind.directory else None
        found = f"a {held} output, not a {kind.name}" if held else f"not a previous {kind.name} output"
        if kind.in_place:
            raise _fail(
                out,
                f"the {what} exists, holds files and is {found}; the command writes its files into it",
                "choose a new or empty directory",
            )
        raise _fail(
            out,
            f"the {what} exists and is {found}; the command replaces its {out.flag} {what} as a whole",
            "choose a new or empty path, or pass --force to replace it (its contents are lost)",
        )


def claim(
    path: str | os.PathLike[str] | Output,
    kind: OutputKind,
    *,
    flag: str = "--out",
    force: bool = False,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
) -> Output:
    """Check ``path`` as an output of ``kind`` before any work (see the module docstring); returns
    the claim that the writers take. ``inputs`` (None entries skipped) are never written or
    deleted. Raises :class:`OutputError`."""
    if isinstance(path, Output):
        return path
    out = Output(
        Path(path), kind, flag, force, tuple(Path(p) for p in inputs if p is not None and str(p) != "")
    )
    _check(out)
    return out


def _as_output(dest: str | os.PathLike[str] | Output, kind: OutputKind) -> Output:
    if isinstance(dest, Output):
        if dest.kind != kind:
            raise ValueError(f"{dest.path}: claimed as a {dest.kind.name}, written as a {kind.name}")
        return dest
    return claim(dest, kind)


def _cannot_write(out: Output, err: OSError) -> OutputError:
    where = err.filename or out.path
    return _fail(
        out,
        f"cannot write {where} ({err.strerror or err})",
        "pick a writable path on a file system with free space",
    )


def _is_output_error(err: BaseException, places: Iterable[Path]) -> bool:
    """Whether ``err`` is an OSError about a file under one of ``places`` (an output's)."""
    if not isinstance(err, OSError) or err.filename is None:
        return False
    name = Path(os.fsdecode(err.filename))
    return any(_within(name, p) or _within(_real(name), _real(p)) for p in places)


def _swap(staged: Path, out: Output) -> None:
    """Put ``staged`` at ``out.path``; the old one goes aside, then is deleted. A concurrent run of
    the same kind may publish at the same time: then the last one to rename wins, whole."""
    dest = out.path
    aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
    try:
        for attempt in range(SWAP_ATTEMPTS):
            if not _replaceable(out):
                raise _fail(
                    out,
                    "was replaced by something else while the command ran",
                    "run it again, or choose another path",
                )
            interrupts.check()
            with interrupts.held():
                moved = None
                if os.path.lexists(dest):
                    try:
                        moved = aside / str(attempt)
                        os.replace(dest, moved)
                    except FileNotFoundError:  # another run moved it aside first
                        continue
                try:
                    os.replace(staged, dest)
                    return
                except OSError as err:
                    if moved is not None and not os.path.lexists(dest):
                        os.replace(moved, dest)  # the old one back: nothing lost
                    # another run put its own output in between the two renames: go again
                    if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == SWAP_ATTEMPTS - 1:
                        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    raise _fail(out, "kept changing while being replaced", "run the command again")


@contextmanager
def publish_directory(dest: str | os.PathLike[str] | Output, kind: OutputKind) -> Iterator[Path]:
    """``with publish_directory(out, kind) as tmp:`` write every file under ``tmp`` (an empty staging
    directory beside the destination); when the block ends normally, the marker goes in and ``tmp``
    replaces the destination whole; when it raises (an error, SIGINT, SIGTERM) ``tmp`` is deleted
    and the destination is as it was."""
    out = _as_output(dest, kind)
    _check(out)
    try:
        staged = Path(tempfile.mkdtemp(prefix=f".{out.path.name}.", dir=_ensure_parent(out)))
        os.chmod(staged, usual_mode(0o777))  # mkdtemp creates 0700
    except OSError as err:
        raise _cannot_write(out, err) from None
    try:
        yield staged
        interrupts.check()  # a signal whose exception was swallowed still stops the publishing
        write_atomic(staged / MARKER, kind.name + "\n")
        _swap(staged, out)
    except BaseException as err:
        shutil.rmtree(staged, ignore_errors=True)
        if _is_output_error(err, (staged, out.path)):
            assert isinstance(err, OSError)
            raise _cannot_write(out, err) from None
        raise


def _ensure_parent(out: Output) -> Path:
    parent = out.path.parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def publish_file(dest: str | os.PathLike[str] | Output, kind: OutputKind, data: str | bytes) -> Path:
    """Write ``data`` to the file output ``dest`` atomically (checked by the policy first)."""
    out = _as_output(dest, kind)
    _check(out)
    interrupts.check()
    try:
        _ensure_parent(out)
        return write_atomic(out.path, data)
    except OSError as err:
        raise _cannot_write(out, err) from None


@contextmanager
def writing_into(out: Output) -> Iterator[None]:
    """``with writing_into(run):`` an ``OSError`` about a file under the in-place output ``out`` (no
    space left, a read-only file system) becomes an :class:`OutputError` naming the path."""
    try:
        yield
    except OSError as err:
        if _is_output_error(err, (out.path,)):
            raise _cannot_write(out, err) from None
        raise


def prepare_directory(dest: Output) -> Path:
    """Create the output directory written in place (a training run), with its marker; returns it."""
    _check(dest)
    try:
        dest.path.mkdir(parents=True, exist_ok=True)
        if _marker_kind(dest.path) is None:
            write_atomic(dest.path / MARKER, dest.kind.name + "\n")
    except OSError as err:
        raise _cannot_write(dest, err) from None
    return dest.path


def safe_name(name: object, where: str) -> str:
    """``name`` if it can be one file name: ``[A-Za-z0-9._-]``, not starting with ``.`` or ``-``,
    no ``..``, at most :data:`NAME_MAX` characters; else :class:`UnsafeNameError` naming ``where``
    (the file and field it came from)."""
    if isinstance(name, str) and len(name) <= NAME_MAX and NAME_PATTERN.fullmatch(name) and ".." not in name:
        return name
    shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
    raise UnsafeNameError(
        f"{where}: {shown} cannot be used as a file name; expected 1 to {NAME_MAX} characters from "
        "A-Z a-z 0-9 . _ - , not starting with '.' or '-', without '..' (e.g. ws_16x16)"
    )


def add_output_arguments(
    parser: argparse.ArgumentParser,
    kind: OutputKind,
    what: str,
    *,
    flag: str = "--out",
    metavar: str = "DIR",
    default: Path | None = None,
    required: bool = True,
) -> None:
    """A command's output flag (``flag``) and its ``--force``: one spelling of the policy's rules in
    every command's help. ``what`` says what the output is."""
    if kind.directory:
        rule = f"replaced as a whole only when it is empty or an earlier {kind.name} output"
    else:
        rule = f"replaced only when it is an earlier {kind.name} file"
    shown = f" (default: {default})" if default is not None else ""
    parser.add_argument(
        flag,
        type=Path,
        required=required and default is None,
        default=default,
        metavar=metavar,
        help=f"{what}; {rule}{shown}",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"replace {flag} even when it is not an earlier {kind.name} output (its contents are "
        "lost; an input is never replaced)",
    )

"""The one output policy every command follows.

Before any work starts, :func:`check_output` validates where a command will write:

- an output is never one of the inputs (paths are resolved, so ``./x.h5`` and ``x.h5`` are the
  same file, and a symlink is its target), never inside an input folder (a model directory) and
  never a folder that holds an input;
- an existing file or non-empty folder is replaced only with ``force`` (``--force``);
- a file output is not a folder and a folder output is not a file; the nearest existing parent is
  a folder this process can write in;

and :func:`writing` then holds an exclusive lock (``.NAME.lock`` beside the output) for the whole
run, so two runs cannot write one place, and, when the command fails, removes what the run
created: the parent folders it made, an empty ``.NAME.parts/`` and, for a folder output that did
not exist before, the folder. Resume data (a non-empty parts or checkpoint folder) is kept.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import InputError, OutputError

__all__ = ["OutputError", "check_output", "output_lock", "writing", "lock_path"]

_MODEL_MANIFEST = "manifest.json"


def _resolve(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.expanduser(os.fspath(path))).resolve()


def _is_model_dir(p: Path) -> bool:
    return p.is_dir() and (p / _MODEL_MANIFEST).is_file()


def _nearest_existing(p: Path) -> Path:
    anc = p
    while not (anc.exists() or anc.is_symlink()):
        if anc.parent == anc:
            break
        anc = anc.parent
    return anc


def _unwritable(folder: Path) -> str:
    """Why nothing can be created in ``folder`` ("" when it can): a real probe, not os.access,
    so read-only mounts and ACLs count too."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=".hepad-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or exc.__class__.__name__
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return ""


def check_output(
    path: str | os.PathLike[str],
    *,
    kind: str = "file",
    inputs: Iterable[str | os.PathLike[str]] = (),
    force: bool = False,
    what: str = "output",
    model: bool = False,
) -> Path:
    """Validate an output location before any work; return it as a Path.

    Parameters
    ----------
    path : path-like
        Where the command will write.
    kind : {"file", "dir"}
        A file output (scores, events, ONNX, HTML) or a folder output (model, evaluation,
        trigger, hls4ml project).
    inputs : iterable of path-like
        Every file or folder the command reads (model folders included).
    force : bool
        Allow replacing an existing file or writing into an existing non-empty folder.
    what : str
        Name of the output in messages ("scores file", "model folder").
    model : bool
        The output is a hepad model folder (replaced whole with ``force``); any other folder
        output refuses to write into a model folder, even with ``force``.

    Raises
    ------
    OutputError
        One line naming the path and what to do.
    """
    if kind not in ("file", "dir"):  # pragma: no cover - programming error
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    p = Path(os.path.expanduser(os.fspath(path)))
    if not os.fspath(path) or p.name in ("", ".", ".."):
        if kind == "file":
            raise OutputError(f"{path!s}: is not a file name; give the {what} a name such as out.h5.")
    out = p.resolve()
    resolved = [(raw, _resolve(raw)) for raw in inputs]
    for raw, inp in resolved:
        if inp == out:
            raise OutputError(f"{p}: is also an input of this command; write the {what} to another path.")
    if kind == "file" and p.is_dir():
        raise OutputError(f"{p}: is a folder; the {what} is a file, give a file name in it or elsewhere.")
    if kind == "dir" and (p.exists() or p.is_symlink()) and not p.is_dir():
        raise OutputError(f"{p}: is a file; the {what} is a folder, give a folder name.")
    for raw, inp in resolved:
        if out in inp.parents:
            raise OutputError(f"{p}: holds the input {raw}; write the {what} to a folder without inputs in it.")
        if inp.is_dir() and inp in out.parents:
            raise OutputError(
                f"{p}: is inside the input folder {raw}; write the {what} outside it."
            )
    anc = _nearest_existing(p.parent if p.name else p)
    if not anc.is_dir():
        raise OutputError(f"{p}: {anc} is a file, not a folder; choose a {what} path inside a folder.")
    why = _unwritable(anc)
    if why:
        raise OutputError(f"{p}: cannot write in {anc} ({why}); choose a writable folder.")
    if p.exists() or p.is_symlink():
        if kind == "dir" and _is_model_dir(p) and not model:
            raise OutputError(f"{p}: is a hepad model folder; write the {what} to another folder.")
        non_empty = kind == "file" or any(p.iterdir())
        if non_empty and not force:
            verb = "replace it" if kind == "file" or model else "write into it"
            raise OutputError(f"{p}: exists; pass --force (force=True in Python) to {verb}.")
        why = _unwritable(p if kind == "dir" else p.parent)
        if why:
            raise OutputError(f"{p}: cannot be written ({why}); choose a writable path.")
    return p


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file of an output: ``.NAME.lock`` beside it."""
    p = Path(path)
    return p.parent / f".{p.name}.lock"


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on an output for the duration of the block.

    The lock is an advisory ``flock`` on ``.NAME.lock`` beside the output, so it is released by
    the kernel when a process dies (a SIGKILL leaves no stale lock that blocks the next run).
    The file holds the owner's pid and host, quoted in the error a second run gets.
    """
    lock = lock_path(path)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking, as before
        yield lock
        return
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"{path}: cannot create the lock file {lock} ({exc.strerror}); choose a writable folder.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputError(f"{path}: cannot lock {lock} ({exc.strerror}).") from None
            try:
                owner = lock.read_text().strip() or "another process"
            except OSError:
                owner = "another process"
            raise OutputError(
                f"{path}: another hepad run ({owner}) is writing it; wait for it to finish or choose another output."
            ) from None
        # The holder before us may have unlinked the file between our open and our lock: then
        # we hold a lock on a file nobody else can see. Retry on the current file.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        os.close(fd)


def _make_parents(p: Path) -> list[Path]:
    """Create the missing parents of ``p``; return those created, outermost first."""
    missing = []
    d = p.parent
    while not d.exists():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    missing.reverse()
    for d in missing:
        try:
            d.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            raise OutputError(f"{p}: cannot create the folder {d} ({exc.strerror}).") from None
    return missing


@contextlib.contextmanager
def writing(
    path: str | os.PathLike[str],
    *,
    kind: str = "file",
    inputs: Iterable[str | os.PathLike[str]] = (),
    force: bool = False,
    what: str = "output",
    model: bool = False,
    leftovers: Iterable[str | os.PathLike[str]] = (),
    lock: bool = True,
    keep_partial: bool = False,
) -> Iterator[Path]:
    """Check an output (:func:`check_output`), lock it, and clean up after a failure.

    ``leftovers`` are folders the work may create beside the output (``.NAME.parts/``); after a
    failure each is removed when empty, kept (for a resume) otherwise; after an
    :class:`~hepad.errors.InputError` (bad input: a re-run fails the same way) it is removed. A folder output that did
    not exist before is removed after a failure, or, with ``keep_partial`` (its content is
    resume data or already-delivered results), only when empty.
    """
    p = check_output(path, kind=kind, inputs=inputs, force=force, what=what, model=model)
    existed = p.exists()
    created = _make_parents(p)
    extra = [Path(x) for x in leftovers]
    try:
        with output_lock(p) if lock else contextlib.nullcontext():
            yield p
    except BaseException:
        if kind == "dir" and not existed and p.is_dir():
            if keep_partial:
                with contextlib.suppress(OSError):
                    p.rmdir()
            else:
                shutil.rmtree(p, ignore_errors=True)
        bad_input = isinstance(sys.exc_info()[1], InputError)
        for d in extra:
            if bad_input:  # a re-run fails the same way until the input changes: nothing to resume
                shutil.rmtree(d, ignore_errors=True)
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty: a non-empty one is resume data
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def check_inputs_exist(paths: Iterable[str | os.PathLike[str]], *, what: str = "input") -> None:
    """A folder where a file is expected gets its own message (not "no such file")."""
    from .errors import InputError

    for raw in paths:
        text = os.fspath(raw)
        p = Path(os.path.expanduser(text))
        if p.is_dir():
            raise InputError(
                f"{p}: is a folder; give the event files in it (e.g. '{p / '*.h5'}')."
            )

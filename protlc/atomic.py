"""Atomic output: write to a temporary sibling, then rename, so a crash never leaves half a file.

An OSError while an output is written (a full disk, a file-size limit, a read-only directory) removes
the temporary file or directory, keeps an earlier output, and is re-raised naming the output's path
(``exc.filename``), which the CLI prints as one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _umask_mode(base: int) -> int:
    """``base`` permissions minus the process umask: what a plain ``open``/``mkdir`` would give.

    mkstemp/mkdtemp create owner-only (0600/0700) entries; outputs should not stay that private.
    """
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def name_output(exc: BaseException, target: Path) -> None:
    """Make an OSError raised while ``target`` was being written name ``target``: not its hidden temporary
    file, and not nothing (a full disk raises ENOSPC from a plain write, which names no file), so that
    the CLI's one line says which output could not be written. A writer that holds several outputs open
    calls it where a write fails, before the error passes the other outputs' contexts."""
    if not isinstance(exc, OSError) or exc.errno is None:
        return
    name = None if exc.filename is None else str(exc.filename)
    if name is None or name.startswith(str(target.parent / f".{target.name}.")):  # ours: see mkstemp/mkdtemp
        exc.filename, exc.filename2 = str(target), None


def fsync_file(path: str | os.PathLike) -> None:
    """Flush ``path``'s data to the disk (so that a rename of it is never visible before its content)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside directory ``path`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``.

    On any exception the temporary file is removed and ``target`` is left untouched. ``durable``
    also fsyncs the file before the rename and the directory after it (checkpoints, metrics).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        name_output(exc, target)
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, _umask_mode(0o666))
            if durable:
                fsync_file(tmp_path)
        os.replace(tmp_path, target)
        if durable:
            fsync_dir(target.parent)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        name_output(exc, target)
        raise


def atomic_write_text(target: str | os.PathLike, text: str, durable: bool = False) -> None:
    with atomic_path(target, durable=durable) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``target`` as a whole.

    On failure the temporary directory is deleted and no ``target`` is created (an existing one is
    kept). With ``overwrite=False`` an existing non-empty ``target`` is an error raised by the caller.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        name_output(exc, target)
        raise
    try:
        yield tmp
        os.chmod(tmp, _umask_mode(0o777))
        if target.exists():
            if not overwrite:
                raise FileExistsError(target)
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        name_output(exc, target)
        raise

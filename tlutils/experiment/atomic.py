"""Writes that a crash, a full disk or a second process never leave half done, and the locks around them.

Every file of a run is written to a side name, flushed to disk (``fsync``) and renamed into place, so
a reader sees the old file or the new one, never a mix. Folders are committed the same way: filled
under a side name, then renamed. A side file or folder left by a killed process starts with
:data:`SIDE_PREFIX` and is removed by :func:`remove_stale`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path
from typing import Callable, Iterator

#: Names of files and folders being written; never read as results.
SIDE_PREFIX = ".tmp."
#: Seconds a process waits for another one's lock before it says so (and keeps waiting).
LOCK_NOTICE_SECONDS = 10.0


def side_path(path: Path) -> Path:
    """A side name beside ``path`` unique to this process and thread (keeps the suffix: Keras needs it)."""
    return path.with_name(f"{SIDE_PREFIX}{os.getpid()}-{threading.get_ident()}.{path.name}")


def fsync_path(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:  # folders cannot be opened on every platform: nothing more to flush there
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_file(path: Path, write: Callable[[Path], object]) -> None:
    """``write(side_path)``, flush it, then rename it over ``path``; on failure the side file is removed."""
    side = side_path(path)
    try:
        write(side)
        fsync_path(side)
        os.replace(side, path)
    except BaseException:
        side.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def write_text(path: Path, text: str) -> None:
    """:func:`write_file` for a text file."""
    write_file(path, lambda side: side.write_text(text))


def commit_folder(side: Path, final: Path) -> None:
    """Rename the filled folder ``side`` to ``final`` (which must not exist), flushing every file first."""
    for child in side.iterdir():
        fsync_path(child)
    os.replace(side, final)
    fsync_path(final.parent)


def remove_stale(folder: Path) -> None:
    """Remove the side files and folders (:data:`SIDE_PREFIX`) that killed writers left in ``folder``.

    Call it only while holding the lock of whatever writes into ``folder``.
    """
    if not folder.is_dir():
        return
    for child in folder.glob(f"{SIDE_PREFIX}*"):
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(path: Path, what: str, verbose: int = 0) -> Iterator[None]:
    """Hold the inter-process lock file ``path`` (``filelock``) while the block runs.

    Another process holding it makes this one wait; with ``verbose`` it says whom it waits for.
    """
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=LOCK_NOTICE_SECONDS)
    except Timeout:
        if verbose:
            print(f"waiting for another process that is writing {what} ({path})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()

"""One way to replace a file on disk: a temporary file beside it, fsync, rename over the
old one, fsync of the folder. A reader sees the old bytes or the new ones, never half of
each; a crash leaves at most a ``.NAME.tmp`` file, which the next write replaces.

A failed write (ENOSPC, EIO, EACCES) raises :class:`OSError` naming the file: ``os.write``
names none, and "No space left on device" alone does not tell an operator which disk."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

__all__ = ["write_atomic"]

log = logging.getLogger(__name__)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, what: str = "file") -> None:
    """Replace *path* with *data* (see the module docstring). *what* names the file's role
    in the error message (``the checkpoint``, ``the CDI spec``)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    except OSError as e:
        raise OSError(e.errno, f"cannot write {what}: {e.strerror}", str(path)) from e
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OSError(e.errno, f"cannot write {what}: {e.strerror}", str(path)) from e
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    log.debug("%s written (%d bytes)", path, len(data))

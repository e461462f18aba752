"""The ``cpu_manager_state`` checkpoint file: crash-safe reads and writes (adapter).

Writes are atomic: a temp file in the same directory, ``fsync``, ``rename`` over the
checkpoint, ``fsync`` of the directory. A kill -9 at any point leaves either the old or
the new complete file (plus, at worst, a stray temp file that the next save replaces).
One process at a time owns the file, through ``fcntl.flock`` on a lock file beside it;
the lock is never made by deleting and recreating anything.

The format (byte-exact with kubelet's, checksum included) is in
:mod:`cpumanager.checkpoint_format`.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from cpumanager.checkpoint_format import (
    CheckpointError,
    CPUManagerCheckpoint,
    LegacyCheckpoint,
    decode,
    encode,
)
from cpumanager.errors import CPUManagerError, StateValidationError

__all__ = ["CheckpointLockedError", "CheckpointStore", "StateCorruptedError"]

log = logging.getLogger(__name__)


class StateCorruptedError(StateValidationError):
    """The checkpoint file cannot be trusted; the message says how to recover."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        super().__init__(
            f"CPU manager checkpoint {path} is unusable: {detail}",
            checkpoint=str(path),
        )


class CheckpointLockedError(StateValidationError):
    """Another process holds the checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        CPUManagerError.__init__(
            self,
            f"CPU manager checkpoint {path} is in use by another process (lock {path}.lock held)",
            "stop the other topolet node agent, or point this one at another state directory",
        )


class CheckpointStore:
    """Load and save one checkpoint file, holding its lock while open.

    >>> store = CheckpointStore(Path("/var/lib/topolet/cpu_manager_state"), policy_name="static")
    >>> store.open()                    # doctest: +SKIP
    >>> cp = store.load()               # None when there is no file yet  # doctest: +SKIP
    """

    def __init__(self, path: Path | str, *, policy_name: str) -> None:
        self.path = Path(path)
        self.policy_name = policy_name
        self._lock: IO[bytes] | None = None

    # --------------------------------------------------------------- locking
    def open(self, *, wait: bool = False) -> None:
        """Create the directory if needed and take the exclusive lock; with *wait*, block
        until another holder lets go (short transactions such as ``topolet run``)."""
        if self._lock is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(f"{self.path}.lock", "ab")  # noqa: SIM115 - held for the store's lifetime
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            lock.close()
            raise CheckpointLockedError(self.path) from None
        self._lock = lock

    def close(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> CheckpointStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------- I/O
    def load(self) -> CPUManagerCheckpoint | LegacyCheckpoint | None:
        """The checkpoint, or None when there is none yet. A corrupt file, a wrong
        checksum or another policy's file raise :class:`StateCorruptedError`."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return decode(data, policy_name=self.policy_name)
        except CheckpointError as e:
            raise StateCorruptedError(self.path, e.detail) from e

    def save(self, checkpoint: CPUManagerCheckpoint) -> None:
        """Atomically replace the file with *checkpoint*."""
        if self._lock is None:
            self.open()
        data = encode(checkpoint).encode()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as e:  # ENOSPC, EIO: say which file (os.write names none)
            raise OSError(e.errno, f"cannot write the checkpoint: {e.strerror}", str(tmp)) from e
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        log.debug("checkpoint %s written (%d bytes)", self.path, len(data))

"""The ``cpu_manager_state`` checkpoint file and its owner records: crash-safe I/O (adapter).

Writes are atomic: a temp file in the same directory, ``fsync``, ``rename`` over the
target, ``fsync`` of the directory. A kill -9 at any point leaves either the old or
the new complete file (plus, at worst, a stray temp file that the next save replaces).
One process at a time owns the files, through ``fcntl.flock`` on a lock file beside them;
the lock is never made by deleting and recreating anything.

The owner records (:mod:`cpumanager.owners`) live in ``<checkpoint>.owners`` (JSON). That
file is the commit point of a save: it holds the whole new state (shared pool, entries,
owners) and the digests of the checkpoint bytes before and after. It is renamed first,
the kubelet-format checkpoint second. :meth:`CheckpointStore.load_state` therefore always
finds one of three cases: both files agree; the checkpoint is the one before (a kill
between the two renames: the save is rolled forward); or the checkpoint was changed by
someone else (its entries win, their owners are kept where the CPUs match and recovered
from the entry keys otherwise, with a warning naming the file).

The format (byte-exact with kubelet's, checksum included) is in
:mod:`cpumanager.checkpoint_format`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cpumanager.atomic_file import write_atomic
from cpumanager.checkpoint_format import (
    CheckpointError,
    CPUManagerCheckpoint,
    LegacyCheckpoint,
    decode,
    encode,
)
from cpumanager.errors import CPUManagerError, StateValidationError
from cpumanager.owners import Owner, OwnerRecordError
from topology.cpuset import CPUSet

__all__ = ["CheckpointLockedError", "CheckpointStore", "Owners", "StateCorruptedError", "StoredState"]

#: (pod UID, container name) → owner record.
Owners = Mapping[tuple[str, str], Owner]
#: Largest checkpoint or owners file read (a node has at most a few thousand entries).
MAX_FILE_BYTES = 16 << 20

log = logging.getLogger(__name__)


class StateCorruptedError(StateValidationError):
    """The checkpoint file cannot be trusted; the message says how to recover."""

    def __init__(self, path: Path, detail: str, hint: str | None = None) -> None:
        self.path = path
        super().__init__(
            f"CPU manager checkpoint {path} is unusable: {detail}", checkpoint=str(path), hint=hint
        )


@dataclass(frozen=True, slots=True)
class StoredState:
    """What :meth:`CheckpointStore.load_state` found: the checkpoint and its owners (None
    when there is no checkpoint yet; ``owners`` may miss entries, see ``recovered``)."""

    checkpoint: CPUManagerCheckpoint | LegacyCheckpoint | None
    owners: dict[tuple[str, str], Owner]
    recovered: str = ""


class CheckpointLockedError(CPUManagerError):
    """Another process holds the checkpoint's lock. Nothing is wrong with the state
    itself, so this is not a :class:`StateValidationError`: the remedy is to stop the
    other process, not to delete the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
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
        data = _read(self.path)
        return None if data is None else self._decode(data)

    def _decode(self, data: bytes) -> CPUManagerCheckpoint | LegacyCheckpoint:
        try:
            cp = decode(data, policy_name=self.policy_name)
        except CheckpointError as e:
            raise StateCorruptedError(self.path, e.detail) from e
        if isinstance(cp, CPUManagerCheckpoint):
            _check_disjoint(self.path, cp)
        return cp

    @property
    def owners_path(self) -> Path:
        return self.path.with_name(f"{self.path.name}.owners")

    def fingerprint(self) -> tuple[str | None, str | None]:
        """Digests of both files' contents: changes whenever another process saved. (Not
        their stat: a rename may reuse an inode with the same size within one mtime tick.)"""
        return _digest(_read(self.path)), _digest(_read(self.owners_path))

    def load_state(self, *, repair: bool = True) -> StoredState:
        """The checkpoint and its owner records (see the module docstring for the cases).
        A corrupt owners file raises :class:`StateCorruptedError` naming it and the fix.
        Without *repair* (readers that hold no lock) a save is rolled forward in memory only."""
        data = _read(self.path)
        cp = None if data is None else self._decode(data)
        doc = self._read_owners()
        if doc is None:
            return StoredState(cp, {}, "no owner records" if cp is not None and _entries(cp) else "")
        digest = _digest(data)
        if digest == doc["after"]:
            return StoredState(cp, doc["owners"])
        if digest == doc["before"]:
            rolled = doc["state"]
            log.warning(
                "checkpoint %s is one save behind %s (a writer was killed between them); rolled forward",
                self.path,
                self.owners_path,
            )
            if repair:
                self._write(self.path, encode(rolled).encode())
            return StoredState(rolled, doc["owners"], "rolled forward")
        owners = {
            key: o
            for key, o in doc["owners"].items()
            if cp is not None
            and _entries(cp).get(key[0], {}).get(key[1]) == _entries(doc["state"]).get(key[0], {}).get(key[1])
        }
        log.warning(
            "checkpoint %s was changed outside topolet; owners of changed entries recovered from their keys",
            self.path,
        )
        return StoredState(cp, owners, "checkpoint changed outside topolet")

    def _read_owners(self) -> dict[str, Any] | None:
        raw = _read(self.owners_path)
        if raw is None:
            return None
        fix = f"delete {self.owners_path} (the owners are then recovered from the checkpoint's entries)"
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("version") != 1:
                raise ValueError("expected an object with version 1")
            state = decode(json.dumps(doc["state"]), policy_name=None)
            if not isinstance(state, CPUManagerCheckpoint):
                raise ValueError("state: expected the current checkpoint layout")
            owners: dict[tuple[str, str], Owner] = {}
            for row in doc["owners"]:
                owners[(str(row["podUID"]), str(row["container"]))] = Owner.from_json(row)
            return {"before": doc["before"], "after": doc["after"], "state": state, "owners": owners}
        except (ValueError, KeyError, TypeError, CheckpointError, OwnerRecordError) as e:
            raise StateCorruptedError(self.owners_path, f"{e}; {fix}") from e

    def save(self, checkpoint: CPUManagerCheckpoint, owners: Owners | None = None) -> None:
        """Atomically replace the checkpoint with *checkpoint*; with *owners*, the owner
        records first, in the same save (see the module docstring)."""
        if self._lock is None:
            self.open()
        data = encode(checkpoint).encode()
        if owners is not None:
            doc = {
                "version": 1,
                "before": _digest(_read(self.path)),
                "after": _digest(data),
                "state": json.loads(data),
                "owners": [
                    {"podUID": pod, "container": name, **o.to_json()}
                    for (pod, name), o in sorted(owners.items())
                ],
            }
            self._write(self.owners_path, json.dumps(doc, indent=1).encode())
        self._write(self.path, data)

    def _write(self, path: Path, data: bytes) -> None:
        write_atomic(path, data, what="the checkpoint")


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(data) > MAX_FILE_BYTES:
        raise StateCorruptedError(path, f"larger than {MAX_FILE_BYTES} bytes; it is not a checkpoint")
    return data


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _entries(cp: CPUManagerCheckpoint | LegacyCheckpoint) -> Mapping[str, Mapping[str, CPUSet]]:
    return cp.entries if isinstance(cp, CPUManagerCheckpoint) else {}


def _check_disjoint(path: Path, cp: CPUManagerCheckpoint) -> None:
    """Two pods holding one CPU is a broken promise, never repaired silently (within one
    pod, kubelet lets an app container reuse a finished init container's CPUs)."""
    seen: dict[int, tuple[str, str]] = {}
    for pod, containers in sorted(cp.entries.items()):
        for name, cpus in sorted(containers.items()):
            for cpu in cpus:
                other = seen.setdefault(cpu, (pod, name))
                if other[0] != pod:  # within one pod, an app container reuses its init's CPUs
                    raise StateCorruptedError(
                        path,
                        f"CPU {cpu} is exclusive to both pod {other[0]} container {other[1]} and pod {pod} "
                        f"container {name}",
                        f"stop the workload that should not hold CPU {cpu} and remove its entry from {path}, "
                        f"or drain this node and delete {path} and {path}.owners; then restart",
                    )

"""The object store protocol every backend implements.

Writes are streaming: a writer takes chunks and keeps memory bounded; the object
becomes visible at its key only on ``commit()``. ``abort()`` leaves nothing behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class StorageError(Exception):
    """A transient or permanent failure of the object store."""


class ObjectTooLarge(StorageError):
    """A streamed upload exceeded its size limit; nothing was stored."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    sha256: str


class ObjectWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self) -> StoredObject:
        """Publish the object at its key; until now nothing is visible."""
        ...

    def abort(self) -> None:
        """Discard what was written; safe to call after a failure or twice."""
        ...


class ObjectStore(Protocol):
    name: str

    def ensure_ready(self) -> None:
        """Create what the backend needs (directory, bucket); idempotent."""
        ...

    def check(self) -> None:
        """Raise StorageError if the store cannot be reached (readiness probe)."""
        ...

    def open_writer(self, key: str, *, content_type: str, max_size: int | None = None) -> ObjectWriter: ...

    def presigned_get_url(
        self, key: str, *, expires_at: datetime, filename: str | None = None, content_type: str | None = None
    ) -> str:
        """A URL that downloads ``key`` without credentials until ``expires_at``."""
        ...

    def open_read(self, key: str) -> Iterator[bytes]:
        """Stream the object's bytes (used by tests, checks and re-hashing)."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list_keys(self, prefix: str) -> Iterator[str]:
        """The logical keys of every committed object under ``prefix``."""
        ...

    def sweep_temporaries(self, older_than_seconds: float) -> int:
        """Remove what interrupted writes left behind (a killed process) and has not been
        touched for ``older_than_seconds``; returns how many were removed."""
        ...

    def delete_prefix(self, prefix: str, *, keep: str | None = None) -> int:
        """Delete every object under ``prefix`` except ``keep``; returns how many."""
        ...


class HashingCounter:
    """Tracks size and SHA-256 of a stream as it is written."""

    __slots__ = ("_hash", "max_size", "size")

    def __init__(self, max_size: int | None = None) -> None:
        self._hash = hashlib.sha256()
        self.size = 0
        self.max_size = max_size

    def update(self, data: bytes) -> None:
        self.size += len(data)
        if self.max_size is not None and self.size > self.max_size:
            raise ObjectTooLarge(f"object exceeds the limit of {self.max_size} bytes")
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

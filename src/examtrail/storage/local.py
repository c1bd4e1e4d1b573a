"""Object store on a local directory, for the embedded single-process deployment.

Objects are written to a temporary file beside the target and renamed into place on
commit, so a reader never sees a partial file. Download links are HMAC-signed URLs
served by the app itself (``examtrail.storage.api``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

from examtrail.storage import signing
from examtrail.storage.base import HashingCounter, StorageError, StoredObject

_CHUNK = 1024 * 1024
# Large files are written back to disk on the way (see ``LocalObjectWriter._start_writeback``).
_WRITEBACK_BYTES = 16 * 1024 * 1024
_FADVISE: int | None = getattr(os, "POSIX_FADV_DONTNEED", None) if hasattr(os, "posix_fadvise") else None
_TMP = ".tmp"

log = logging.getLogger(__name__)


class LocalObjectWriter:
    def __init__(self, root: Path, key: str, target: Path, max_size: int | None) -> None:
        self._key = key
        self._target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root / ".tmp", prefix="upload-")
        self._tmp = Path(tmp)
        self._file: IO[bytes] | None = os.fdopen(fd, "wb", buffering=_CHUNK)
        self._counter = HashingCounter(max_size)
        self._written_back = 0

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise StorageError("writer is closed")
        self._counter.update(data)
        self._file.write(data)
        if self._counter.size - self._written_back >= _WRITEBACK_BYTES:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Start writing what is written so far to disk without waiting for it, so that
        ``commit()``'s fsync finds little left to do (Linux: ``POSIX_FADV_DONTNEED`` starts
        the writeback of dirty pages; elsewhere this does nothing)."""
        assert self._file is not None
        if _FADVISE is None:
            return
        self._file.flush()
        end = self._counter.size
        with contextlib.suppress(OSError):
            os.posix_fadvise(self._file.fileno(), self._written_back, end - self._written_back, _FADVISE)
        self._written_back = end

    def commit(self) -> StoredObject:
        if self._file is None:
            raise StorageError("writer is closed")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self._tmp, self._target)
        return StoredObject(key=self._key, size=self._counter.size, sha256=self._counter.hexdigest())

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)


class LocalObjectStore:
    name = "local"

    def __init__(self, root: Path, public_url: str, signing_keys: bytes | Sequence[bytes]) -> None:
        self.root = root.resolve()
        self._public_url = public_url
        # Newest first: links are signed with the first and verified against each.
        self._signing_keys = [signing_keys] if isinstance(signing_keys, bytes) else list(signing_keys)

    def path_for(self, key: str) -> Path:
        """The file behind ``key``; refuses keys that would escape the root or reach into
        the temporaries (checked on the normalised path: ``./.tmp/x``, ``a/../.tmp/x``)."""
        path = (self.root / key).resolve()
        if self.root not in path.parents or path.relative_to(self.root).parts[0] == _TMP:
            raise StorageError(f"invalid object key {key!r}")
        return path

    def ensure_ready(self) -> None:
        (self.root / ".tmp").mkdir(parents=True, exist_ok=True)

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"object store directory {self.root} is not writable")

    def open_writer(self, key: str, *, content_type: str, max_size: int | None = None) -> LocalObjectWriter:
        self.ensure_ready()
        return LocalObjectWriter(self.root, key, self.path_for(key), max_size)

    def presigned_get_url(
        self, key: str, *, expires_at: datetime, filename: str | None = None, content_type: str | None = None
    ) -> str:
        return signing.sign(
            self._public_url,
            self._signing_keys[0],
            key,
            int(expires_at.timestamp()),
            filename or "",
            content_type or "",
        )

    def verify_signature(
        self, key: str, expires: int, filename: str, signature: str, content_type: str = ""
    ) -> bool:
        return signing.verify(self._signing_keys, key, expires, filename, signature, content_type)

    def open_read(self, key: str) -> Iterator[bytes]:
        try:
            with self.path_for(key).open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk
        except FileNotFoundError as exc:
            raise StorageError(f"no object at {key!r}") from exc

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def list_keys(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        directory = base if base.is_dir() else base.parent
        if not directory.is_dir():
            return
        for path in sorted(directory.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not key.startswith(_TMP):
                yield key

    def sweep_temporaries(self, older_than_seconds: float) -> int:
        """Delete temporary files (uploads and exports a killed process left in ``.tmp/``)
        not written to for ``older_than_seconds``; a write in progress keeps its file fresh."""
        directory = self.root / _TMP
        if not directory.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in directory.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("removed %d stale temporary files from %s", removed, directory)
        return removed

    def delete_prefix(self, prefix: str, *, keep: str | None = None) -> int:
        base = self.root / prefix
        directory = base if base.is_dir() else base.parent
        if not directory.is_dir():
            return 0
        removed = 0
        for path in directory.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and key != keep:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

"""Whether a token's client has been revoked, checked on every authenticated request.

A token stays cryptographically valid until it expires, so revoking a client must be
looked up: ``revoked_at`` of the token's client is read from the database at most once
per ``EXAMTRAIL_REVOCATION_CHECK_SECONDS`` (default 5) per client and process. A revoked
client's tokens are refused within that bound on every process; 0 checks every request.
"""

from __future__ import annotations

import threading
import time
import weakref

from sqlalchemy import Engine

from examtrail.auth import repository
from examtrail.runtime import Runtime

# Clients remembered per process; an old entry is simply read again.
_MAX_ENTRIES = 10_000


class RevocationCache:
    """client id → (monotonic time of the last read, revoked?)."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def get(self, client_id: str, now: float) -> bool | None:
        with self._lock:
            entry = self._entries.get(client_id)
        if entry is None or now - entry[0] >= self.ttl:
            return None
        return entry[1]

    def put(self, client_id: str, revoked: bool, now: float) -> None:
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[client_id] = (now, revoked)


_caches: weakref.WeakKeyDictionary[Engine, RevocationCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache(runtime: Runtime) -> RevocationCache:
    with _caches_lock:
        cache = _caches.get(runtime.engine)
        if cache is None:
            cache = _caches[runtime.engine] = RevocationCache(runtime.settings.revocation_check_seconds)
        return cache


def known_revocation(runtime: Runtime, client_id: str) -> bool | None:
    """:func:`is_revoked` when it needs no database read (read recently), else None."""
    return _cache(runtime).get(client_id, time.monotonic())


def is_revoked(runtime: Runtime, client_id: str) -> bool:
    """True when the client is revoked or no longer exists (read at most every few seconds)."""
    cache = _cache(runtime)
    now = time.monotonic()
    known = cache.get(client_id, now)
    if known is not None:
        return known
    with runtime.sessions() as session:
        revoked = repository.client_is_revoked(session, client_id)
        session.rollback()
    cache.put(client_id, revoked, now)
    return revoked

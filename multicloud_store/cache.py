"""The dispatcher's per-process read cache.

Reads are lock-free: entries are immutable tuples in a dict, and a dict lookup is atomic in CPython. Writers
(fill, invalidate, evict) take one lock. A fill that raced with an invalidation is dropped, so a reader can never
re-insert a value that this store has just replaced or deleted.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["ReadCache"]


class _Entry(NamedTuple):
    values: dict[str, str] | None  # None: a remembered "not found"
    expires: float
    stale_until: float


class ReadCache:
    """A bounded TTL cache with jitter, negative entries and bounded stale serving.

    Args:
        ttl: Seconds an entry is fresh.
        max_entries: Most entries held; the oldest are evicted first.
        jitter: Fraction of ``ttl`` by which an entry's life is randomly shortened, so that replicas started
            together do not all refresh in the same second.
        negative_ttl: Seconds a "not found" is remembered.
        stale_seconds: Seconds after expiry during which `stale` may still return a value.
        clock: Monotonic clock; tests pass a fake one.
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        jitter: float = 0.1,
        negative_ttl: float = 5.0,
        stale_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.jitter = jitter
        self.negative_ttl = min(negative_ttl, ttl)
        self.stale_seconds = stale_seconds
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._generation = 0
        # Statistics for the cache instruments (multicloud_store.observability): plain counters, since a racy
        # increment only loses a count and a lock would cost more than the hit itself. Hits are counted by the
        # store, and only while telemetry is on: the hit path is the one that must cost nothing extra.
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.stale_serves = 0
        # Not for secrets: spreads expiry times.
        self._random = random.Random()  # noqa: S311

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ReadCache(ttl={self.ttl}, entries={len(self._entries)})"

    def lookup(self, key: str) -> tuple[bool, dict[str, str] | None]:
        """Look a key up without taking the lock.

        Args:
            key: Cache key.

        Returns:
            ``(hit, values)``: on a hit, a copy of the values, or None for a remembered "not found".
        """
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return False, None
        if self._clock() >= entry.expires:
            self.misses += 1
            if self._clock() >= entry.stale_until:
                self._drop_if_same(key, entry)
            return False, None
        return True, (dict(entry.values) if entry.values is not None else None)

    def stale(self, key: str) -> dict[str, str] | None:
        """Return an expired value still inside its stale window, for use when the backend is unavailable.

        Args:
            key: Cache key.

        Returns:
            A copy of the values, or None.
        """
        entry = self._entries.get(key)
        if entry is None or entry.values is None or self._clock() >= entry.stale_until:
            return None
        self.stale_serves += 1
        return dict(entry.values)

    def generation(self) -> int:
        """Return a token to pass to `fill` after reading the backend.

        Returns:
            The invalidation counter.
        """
        return self._generation

    def fill(self, key: str, values: dict[str, str] | None, generation: int) -> None:
        """Remember a backend read, unless an invalidation happened since ``generation`` was taken.

        Args:
            key: Cache key.
            values: What the backend returned, or None for "not found".
            generation: The token from `generation`, taken before the read.
        """
        now = self._clock()
        if values is None:
            life = self.negative_ttl
            stale_until = now + life
        else:
            life = self.ttl * (1 - self.jitter * self._random.random())
            stale_until = now + life + self.stale_seconds
        if life <= 0:
            return
        entry = _Entry(dict(values) if values is not None else None, now + life, stale_until)
        with self._lock:
            if generation != self._generation:
                return
            self._entries.pop(key, None)
            self._entries[key] = entry
            if len(self._entries) > self.max_entries:
                self._evict(now)

    def invalidate(self, key: str) -> None:
        """Forget a key, and make any read in flight unable to re-insert it.

        Args:
            key: Cache key.
        """
        with self._lock:
            self._generation += 1
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def _drop_if_same(self, key: str, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(key) is entry:
                del self._entries[key]

    def _evict(self, now: float) -> None:
        # First whatever is past its stale window, then the oldest insertions down to 90 % of the bound, so
        # that a full cache does not scan on every fill.
        before = len(self._entries)
        for key in [k for k, e in self._entries.items() if now >= e.stale_until]:
            del self._entries[key]
        target = self.max_entries - self.max_entries // 10 if len(self._entries) > self.max_entries else None
        while target is not None and len(self._entries) > target:
            del self._entries[next(iter(self._entries))]
        self.evictions += before - len(self._entries)

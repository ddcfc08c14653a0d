"""The read cache: TTL with a fake clock, jitter, invalidation, negative entries, stale-on-error, bounds."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest

from multicloud_store.cache import ReadCache
from multicloud_store.drivers.memory import MemoryDriver
from multicloud_store.errors import BackendUnavailableError, SecretNotFoundError
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def cached_store(clock: Clock, driver: MemoryDriver, **settings: float) -> SecretsStore:
    store = SecretsStore(
        StoreSettings(backend="memory", cache_ttl_seconds=settings.pop("ttl", 10), **settings),  # type: ignore[arg-type]
        driver=driver,
    )
    assert store.cache is not None
    store.cache._clock = clock
    return store


def test_cache_is_off_by_default() -> None:
    store = SecretsStore(StoreSettings(backend="memory"))
    assert store.cache is None


def test_hits_skip_the_backend_until_the_ttl(clock: Clock) -> None:
    driver = MemoryDriver()
    store = cached_store(clock, driver, cache_jitter=0)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    driver.calls.clear()
    for _ in range(5):
        assert store.get_secret_values(sid) == {"a": "1"}
    assert driver.calls["read"] == 1
    clock.now += 9.9
    store.get_secret_values(sid)
    assert driver.calls["read"] == 1
    clock.now += 0.2
    store.get_secret_values(sid)
    assert driver.calls["read"] == 2


def test_jitter_shortens_lifetimes_within_bounds(clock: Clock) -> None:
    cache = ReadCache(100, jitter=0.2, clock=clock)
    for i in range(200):
        cache.fill(f"k{i}", {"v": "x"}, cache.generation())
    lifetimes = [e.expires - clock.now for e in cache._entries.values()]
    assert min(lifetimes) >= 80 and max(lifetimes) <= 100
    assert max(lifetimes) - min(lifetimes) > 5  # spread, so replicas do not refresh in step


def test_own_writes_invalidate(clock: Clock) -> None:
    driver = MemoryDriver()
    store = cached_store(clock, driver)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    store.get_secret_values(sid)
    store.update_secret_values(sid, {"a": "2"})
    assert store.get_secret_values(sid) == {"a": "2"}
    store.delete_secret_values(sid)
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)


def test_not_found_is_cached_briefly_and_store_clears_it(clock: Clock) -> None:
    driver = MemoryDriver()
    store = cached_store(clock, driver, cache_negative_ttl_seconds=2)
    sid = uuid.uuid4()
    for _ in range(3):
        with pytest.raises(SecretNotFoundError):
            store.get_secret_values(sid)
    assert driver.calls["read"] == 1
    clock.now += 2.1
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(sid)
    assert driver.calls["read"] == 2
    store.store_secret_values(sid, {"now": "here"})
    assert store.get_secret_values(sid) == {"now": "here"}


def test_cached_values_are_copies(clock: Clock) -> None:
    store = cached_store(clock, MemoryDriver())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    store.get_secret_values(sid)["a"] = "mutated"
    assert store.get_secret_values(sid) == {"a": "1"}


def test_stale_served_only_within_the_window_and_logged(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    driver = MemoryDriver()
    store = cached_store(clock, driver, cache_jitter=0, cache_stale_seconds=30)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    store.get_secret_values(sid)
    clock.now += 15
    driver.fail_next(lambda: BackendUnavailableError("down"), times=100, operations={"read"})
    with caplog.at_level(logging.WARNING):
        assert store.get_secret_values(sid) == {"a": "1"}
    assert "past its TTL" in caplog.text and "'1'" not in caplog.text
    clock.now += 30
    with pytest.raises(BackendUnavailableError):
        store.get_secret_values(sid)


def test_stale_is_off_by_default(clock: Clock) -> None:
    driver = MemoryDriver()
    store = cached_store(clock, driver, cache_jitter=0)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "1"})
    store.get_secret_values(sid)
    clock.now += 11
    driver.fail_next(lambda: BackendUnavailableError("down"), operations={"read"})
    with pytest.raises(BackendUnavailableError):
        store.get_secret_values(sid)


def test_expired_entries_are_dropped_from_memory(clock: Clock) -> None:
    cache = ReadCache(10, jitter=0, clock=clock)
    cache.fill("k", {"v": "secret"}, cache.generation())
    clock.now += 11
    assert cache.lookup("k") == (False, None)
    assert len(cache) == 0


def test_size_is_bounded(clock: Clock) -> None:
    cache = ReadCache(1000, max_entries=100, clock=clock)
    for i in range(1000):
        cache.fill(f"k{i}", {"v": str(i)}, cache.generation())
        assert len(cache) <= 100
    assert cache.lookup("k999")[0]


def test_a_fill_racing_an_invalidation_is_dropped(clock: Clock) -> None:
    cache = ReadCache(100, clock=clock)
    token = cache.generation()  # a reader starts reading the old value...
    cache.invalidate("k")  # ...a writer replaces it...
    cache.fill("k", {"v": "old"}, token)  # ...the reader's fill must not resurrect the old value
    assert cache.lookup("k") == (False, None)


def test_concurrent_readers_and_writers(clock: Clock) -> None:
    store = cached_store(clock, MemoryDriver())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "0"})
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(500):
                assert store.get_secret_values(sid)["v"].isdigit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for thread in threads:
        thread.start()
    for i in range(50):
        store.update_secret_values(sid, {"v": str(i)})
    for thread in threads:
        thread.join()
    assert not errors
    assert store.get_secret_values(sid) == {"v": "49"}


def test_get_many_uses_and_fills_the_cache(clock: Clock) -> None:
    driver = MemoryDriver()
    store = cached_store(clock, driver)
    ids = [uuid.uuid4() for _ in range(5)]
    for sid in ids:
        store.store_secret_values(sid, {"id": str(sid)})
    driver.calls.clear()
    first = store.get_many(ids)
    second = store.get_many(ids)
    assert driver.calls["read"] == 5
    assert all(first[s].values == second[s].values == {"id": str(s)} for s in ids)

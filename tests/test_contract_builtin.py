"""The contract suite against the built-in backends: memory and local."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from multicloud_store.driver import StoredSecret
from multicloud_store.drivers.local import LocalDriver, LocalSettings
from multicloud_store.drivers.memory import MemoryDriver, MemorySettings
from multicloud_store.errors import BackendPermissionError, BackendUnavailableError
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store.testing import StoreContract


class MemoryFaults:
    """Fault injection for the memory driver: every operation fails until cleared."""

    def __init__(self, driver: MemoryDriver) -> None:
        self.driver = driver

    def unavailable(self) -> None:
        self.driver.fail_next(lambda: BackendUnavailableError("injected: backend down"), times=10_000)

    def permission_denied(self) -> None:
        self.driver.fail_next(lambda: BackendPermissionError("injected: access denied"), times=10_000)

    def clear(self) -> None:
        self.driver.clear_faults()


class MemoryLostAnswers:
    """Lost answers for the memory driver: every matching write commits, then fails as unavailable."""

    def __init__(self, driver: MemoryDriver) -> None:
        self.driver = driver

    def lose_answers(self, operation: str) -> None:
        self.driver.lose_next_answers(times=10_000, operations={operation})

    def clear(self) -> None:
        self.driver.clear_faults()


class TestMemoryContract(StoreContract):
    capabilities = frozenset({"faults", "lost_answers"})

    @pytest.fixture
    def shared(self) -> dict[str, StoredSecret]:
        return {}

    @pytest.fixture
    def driver(self, shared: dict[str, StoredSecret]) -> MemoryDriver:
        return MemoryDriver(MemorySettings(page_size=40), data=shared)

    @pytest.fixture
    def make_store(self, driver: MemoryDriver) -> Callable[[str], SecretsStore]:
        return lambda deployment: SecretsStore(
            StoreSettings(backend="memory", deployment_id=deployment), driver=driver
        )

    @pytest.fixture
    def faults(self, driver: MemoryDriver) -> MemoryFaults:
        return MemoryFaults(driver)

    @pytest.fixture
    def lost_answers(self, driver: MemoryDriver) -> MemoryLostAnswers:
        return MemoryLostAnswers(driver)


class TestMemoryCachedContract(TestMemoryContract):
    """Lost answers with the read cache on: a verified write must leave no stale cached read behind."""

    @pytest.fixture
    def make_store(self, driver: MemoryDriver) -> Callable[[str], SecretsStore]:
        return lambda deployment: SecretsStore(
            StoreSettings(backend="memory", deployment_id=deployment, cache_ttl_seconds=30), driver=driver
        )


class _LaggingDriver(MemoryDriver):
    """A memory backend whose listing lags: a new name shows up, and a deleted one goes away, two listings late."""

    LAG = 2

    def __init__(self) -> None:
        super().__init__(MemorySettings(page_size=40))
        self._listings = 0
        self._appeared: dict[tuple[tuple[tuple[str, str], ...], str], int] = {}
        self._vanished: dict[tuple[tuple[tuple[str, str], ...], str], int] = {}

    def list_names(self, labels: Mapping[str, str]) -> Iterator[str]:
        self._listings += 1
        now, scope = self._listings, tuple(sorted(labels.items()))
        current = {(scope, name) for name in super().list_names(labels)}
        for key in current:
            self._appeared.setdefault(key, now)
            self._vanished.pop(key, None)
        for key in [k for k in self._appeared if k[0] == scope and k not in current]:
            del self._appeared[key]
            self._vanished[key] = now
        shown = [k[1] for k, since in self._appeared.items() if k[0] == scope and now - since >= self.LAG]
        shown += [k[1] for k, since in self._vanished.items() if k[0] == scope and now - since < self.LAG]
        return iter(sorted(shown))


class TestLaggingListingContract(StoreContract):
    """A driver declaring ``listing_lag`` passes the listing cases by re-listing within its bound."""

    capabilities = frozenset({"listing_lag"})
    listing_lag_seconds = 30.0

    @pytest.fixture
    def make_store(self) -> Callable[[str], SecretsStore]:
        driver = _LaggingDriver()
        return lambda deployment: SecretsStore(
            StoreSettings(backend="memory", deployment_id=deployment), driver=driver
        )


class TestLocalContract(StoreContract):
    """Through `SecretsStore.from_env`, as a user configures it."""

    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Iterator[Callable[[str], SecretsStore]]:
        stores: list[SecretsStore] = []

        def make(deployment: str) -> SecretsStore:
            store = SecretsStore.from_env(
                {
                    "MULTICLOUD_STORE_BACKEND": "local",
                    "MULTICLOUD_STORE_DEPLOYMENT_ID": deployment,
                    "MULTICLOUD_STORE_LOCAL_PATH": str(tmp_path / "secrets.db"),
                    "MULTICLOUD_STORE_LOCAL_PAGE_SIZE": "64",
                }
            )
            stores.append(store)
            return store

        yield make
        for store in stores:
            store.close()


class TestLocalCachedContract(StoreContract):
    """The same contract with the read cache on: caching must not change behaviour."""

    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Iterator[Callable[[str], SecretsStore]]:
        driver = LocalDriver(LocalSettings(path=tmp_path / "cached.db"))
        yield lambda deployment: SecretsStore(
            StoreSettings(backend="local", deployment_id=deployment, cache_ttl_seconds=30), driver=driver
        )
        driver.close()

"""The contract suite against the built-in backends: memory and local."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
        self.driver._faults.clear()


class TestMemoryContract(StoreContract):
    capabilities = frozenset({"faults"})

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

"""The shared contract suite against the Key Vault emulator: over HTTPS, and through the in-process transport."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store.testing import StoreContract, StoreFactory
from multicloud_store_azure.driver import AzureDriver
from multicloud_store_azure.testing import KeyVaultEmulator


class TestAzureOverHttps(StoreContract):
    """Configured only through ``MULTICLOUD_STORE_*`` variables, as a deployment would be: real sockets and TLS."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"faults", "lost_answers"})

    @pytest.fixture
    def make_store(self, https_env: Callable[..., dict[str, str]]) -> Iterator[StoreFactory]:
        stores: list[SecretsStore] = []

        def make(deployment: str) -> SecretsStore:
            store = SecretsStore.from_env(https_env(MULTICLOUD_STORE_DEPLOYMENT_ID=deployment))
            stores.append(store)
            return store

        yield make
        for store in stores:
            store.close()

    def test_configured_from_the_environment(self, store: SecretsStore, emulator: KeyVaultEmulator) -> None:
        driver = store.driver
        assert isinstance(driver, AzureDriver)
        assert driver.settings.resolved_vault_url() == emulator.vault_url
        assert driver.settings.resolved_credential() == "access_token"
        assert str(driver.settings.ca_bundle) == emulator.ca_cert_path


class TestAzureInProcess(StoreContract):
    """An `AzureDriver` given a ready ``SecretClient`` on the emulator's in-process transport, shared by all."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"faults", "lost_answers"})

    @pytest.fixture
    def make_store(self, make_driver: Callable[..., AzureDriver]) -> StoreFactory:
        driver = make_driver()
        return lambda deployment: SecretsStore(
            StoreSettings(backend="azure", deployment_id=deployment), driver=driver
        )

"""The shared contract suite against the Secret Manager emulator, over gRPC and over REST."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest
from gcp_helpers import EmulatorFaults, EmulatorLostAnswers, grpc_settings, rest_env

from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store.testing import StoreContract, StoreFactory
from multicloud_store_gcp.driver import GcpDriver
from multicloud_store_gcp.testing import SecretManagerEmulator


class TestGcpOverGrpc(StoreContract):
    """Built from `GcpSettings` directly; one driver shared by every deployment's store."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"faults", "lost_answers"})

    @pytest.fixture
    def make_store(self, emulator: SecretManagerEmulator) -> Iterator[StoreFactory]:
        driver = GcpDriver(grpc_settings(emulator))
        yield lambda deployment: SecretsStore(
            StoreSettings(backend="gcp", deployment_id=deployment), driver=driver
        )
        driver.close()

    @pytest.fixture
    def faults(self, emulator: SecretManagerEmulator) -> EmulatorFaults:
        return EmulatorFaults(emulator)

    @pytest.fixture
    def lost_answers(self, emulator: SecretManagerEmulator) -> EmulatorLostAnswers:
        return EmulatorLostAnswers(emulator)


class TestGcpOverRest(StoreContract):
    """Configured only through ``MULTICLOUD_STORE_*`` variables, as a deployment would be."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"faults", "lost_answers"})

    @pytest.fixture
    def make_store(self, emulator: SecretManagerEmulator) -> Iterator[StoreFactory]:
        stores: list[SecretsStore] = []

        def make(deployment: str) -> SecretsStore:
            store = SecretsStore.from_env(rest_env(emulator, MULTICLOUD_STORE_DEPLOYMENT_ID=deployment))
            stores.append(store)
            return store

        yield make
        for store in stores:
            store.close()

    @pytest.fixture
    def faults(self, emulator: SecretManagerEmulator) -> EmulatorFaults:
        return EmulatorFaults(emulator)

    @pytest.fixture
    def lost_answers(self, emulator: SecretManagerEmulator) -> EmulatorLostAnswers:
        return EmulatorLostAnswers(emulator)

    def test_configured_from_the_environment(self, store: SecretsStore) -> None:
        assert isinstance(store.driver, GcpDriver)
        assert store.driver.settings.transport == "rest"
        assert store.driver.settings.anonymous

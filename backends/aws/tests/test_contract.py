"""The shared contract suite, against moto in-process and against a moto server reached as a user would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store.testing import StoreContract, StoreFactory
from multicloud_store_aws import AwsDriver
from multicloud_store_aws.testing import LostAnswers


class TestAwsInProcess(StoreContract):
    """moto's in-process mock; the stores of all deployments share one driver, as replicas share an account."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"faults", "lost_answers"})

    @pytest.fixture
    def faults(self, shared_moto_driver: tuple[AwsDriver, Any]) -> Any:
        return shared_moto_driver[1]

    @pytest.fixture
    def lost_answers(self, shared_lost_answers: LostAnswers) -> LostAnswers:
        return shared_lost_answers

    @pytest.fixture
    def make_store(self, shared_moto_driver: tuple[AwsDriver, Any]) -> StoreFactory:
        driver = shared_moto_driver[0]
        return lambda deployment_id: SecretsStore(
            StoreSettings(backend="aws", deployment_id=deployment_id), driver=driver
        )


class TestAwsServer(StoreContract):
    """A ThreadedMotoServer on 127.0.0.1, configured only through ``MULTICLOUD_STORE_*`` variables."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"faults", "lost_answers"})

    @pytest.fixture
    def make_store(
        self, server_environ: Callable[..., dict[str, str]], faults: Any, lost_answers: LostAnswers
    ) -> Iterator[StoreFactory]:
        stores: list[SecretsStore] = []

        def make(deployment_id: str) -> SecretsStore:
            store = SecretsStore.from_env(server_environ(deployment_id))
            assert isinstance(store.driver, AwsDriver)
            faults.attach(store.driver.client)
            lost_answers.attach(store.driver.client)
            stores.append(store)
            return store

        yield make
        for store in stores:
            store.close()

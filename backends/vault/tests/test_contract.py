"""The shared contract suite against a real OpenBao server: token auth, and AppRole auth with short-lived tokens."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import ClassVar

import pytest
from vault_helpers import FAST, FAST_ENV, VaultFaults, new_policy

from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store.testing import StoreContract, StoreFactory
from multicloud_store_vault import VaultDriver, VaultSettings
from multicloud_store_vault.testing import LostAnswers, OpenBaoServer


@pytest.fixture(scope="module")
def token_policy(bao: OpenBaoServer) -> str:
    """The policy of the token-auth run's token."""
    return new_policy(bao)


@pytest.fixture(scope="module")
def token_driver(bao: OpenBaoServer, token_policy: str) -> Iterator[tuple[VaultDriver, LostAnswers]]:
    """One driver with a token of the store's policy only, and a lost-answer injector on its session."""
    token = bao.create_token([token_policy])
    driver = VaultDriver(VaultSettings(url=bao.url, token=token, **FAST))
    losing = LostAnswers()
    losing.attach(driver)
    yield driver, losing
    driver.close()


@pytest.fixture(scope="module")
def approle_policy(bao: OpenBaoServer) -> str:
    """The policy of the AppRole run's role."""
    return new_policy(bao)


@pytest.fixture(scope="module")
def approle_credentials(bao: OpenBaoServer, approle_policy: str) -> tuple[str, str]:
    """A role whose tokens live 6 seconds, renewable up to 20: many tokens expire during one run."""
    return bao.approle(
        f"contract-{uuid.uuid4().hex[:8]}", policies=[approle_policy], token_ttl="6s", token_max_ttl="20s"
    )


class TestVaultToken(StoreContract):
    """Token auth; all deployments share one driver, as the replicas of a service share one Vault."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"faults", "lost_answers"})

    @pytest.fixture
    def faults(self, bao: OpenBaoServer, token_policy: str) -> VaultFaults:
        return VaultFaults(bao, token_policy)

    @pytest.fixture
    def lost_answers(self, token_driver: tuple[VaultDriver, LostAnswers]) -> LostAnswers:
        return token_driver[1]

    @pytest.fixture
    def make_store(self, token_driver: tuple[VaultDriver, LostAnswers]) -> StoreFactory:
        driver = token_driver[0]
        return lambda deployment_id: SecretsStore(
            StoreSettings(backend="vault", deployment_id=deployment_id), driver=driver
        )


class TestVaultAppRole(StoreContract):
    """AppRole auth configured only through variables (``VAULT_ADDR`` and ``MULTICLOUD_STORE_VAULT_*``), with
    tokens of a 6-second TTL and a 20-second maximum: renewals and new logins happen in the middle of the run."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"faults", "lost_answers"})

    @pytest.fixture
    def faults(self, bao: OpenBaoServer, approle_policy: str) -> VaultFaults:
        return VaultFaults(bao, approle_policy)

    @pytest.fixture
    def lost_answers(self) -> LostAnswers:
        return LostAnswers()

    @pytest.fixture
    def make_store(
        self, bao: OpenBaoServer, approle_credentials: tuple[str, str], lost_answers: LostAnswers
    ) -> Iterator[StoreFactory]:
        stores: list[SecretsStore] = []
        role_id, secret_id = approle_credentials

        def make(deployment_id: str) -> SecretsStore:
            store = SecretsStore.from_env(
                {
                    "MULTICLOUD_STORE_BACKEND": "vault",
                    "MULTICLOUD_STORE_DEPLOYMENT_ID": deployment_id,
                    "VAULT_ADDR": bao.url,
                    "MULTICLOUD_STORE_VAULT_AUTH_METHOD": "approle",
                    "MULTICLOUD_STORE_VAULT_ROLE_ID": role_id,
                    "MULTICLOUD_STORE_VAULT_SECRET_ID": secret_id,
                    **FAST_ENV,
                }
            )
            assert isinstance(store.driver, VaultDriver)
            lost_answers.attach(store.driver)
            stores.append(store)
            return store

        yield make
        for store in stores:
            store.close()

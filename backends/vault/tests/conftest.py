"""Fixtures for the Vault backend tests: one real OpenBao dev server (HTTP and HTTPS) for the session.

Faults are real server states: "unavailable" seals the server (every call answers 503, which urllib3 retries),
"permission denied" replaces the store's policy with one that denies everything (403).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("hvac")

from vault_helpers import FAST

from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store_vault import VaultDriver, VaultSettings
from multicloud_store_vault.testing import OpenBaoServer

# Never let a developer's own configuration leak into the tests.
for _name in [n for n in os.environ if n.startswith(("MULTICLOUD_STORE_", "VAULT_"))]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def bao() -> Iterator[OpenBaoServer]:
    """The session's OpenBao dev server, with a TLS listener signed by a CA generated for it."""
    with OpenBaoServer(tls=True) as server:
        yield server


@pytest.fixture
def vault_settings(bao: OpenBaoServer) -> Callable[..., VaultSettings]:
    """``vault_settings(**overrides)``: root-token settings on the HTTP listener, fast retries."""

    def make(**overrides: Any) -> VaultSettings:
        values: dict[str, Any] = {"url": bao.url, "token": bao.root_token, **FAST}
        values.update(overrides)
        return VaultSettings(**values)

    return make


StoreMaker = Callable[..., SecretsStore]


@pytest.fixture
def make_vault_store(vault_settings: Callable[..., VaultSettings]) -> Iterator[StoreMaker]:
    """``make(deployment_id="...", **settings)``: a store on a new driver of its own."""
    stores: list[SecretsStore] = []

    def make(deployment_id: str = "tests", **overrides: Any) -> SecretsStore:
        store = SecretsStore(
            StoreSettings(backend="vault", deployment_id=deployment_id),
            driver=VaultDriver(vault_settings(**overrides)),
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()

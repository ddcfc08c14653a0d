"""Shared pieces of the Vault backend's tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import uuid
from typing import Any

from multicloud_store_vault.testing import STORE_POLICY, OpenBaoServer

# Retries stay on (their behaviour is under test) but their pauses are kept tiny.
FAST: dict[str, Any] = {
    "max_retries": 2,
    "backoff_factor": 0.01,
    # Generous: no call here is meant to time out (a loaded machine is slow, not broken).
    "connect_timeout": 60.0,
    "read_timeout": 60.0,
}
FAST_ENV = {
    "MULTICLOUD_STORE_VAULT_MAX_RETRIES": "2",
    "MULTICLOUD_STORE_VAULT_BACKOFF_FACTOR": "0.01",
    "MULTICLOUD_STORE_VAULT_READ_TIMEOUT": "60",
    "MULTICLOUD_STORE_VAULT_CONNECT_TIMEOUT": "60",
}


class VaultFaults:
    """The contract suite's `FaultInjector`, on a real server: seal it, or deny everything in one policy."""

    def __init__(self, server: OpenBaoServer, policy: str) -> None:
        self.server = server
        self.policy = policy
        self._sealed = False

    def unavailable(self) -> None:
        self.server.seal()
        self._sealed = True

    def permission_denied(self) -> None:
        self.server.deny(self.policy)

    def clear(self) -> None:
        if self._sealed:
            self.server.unseal()
            self._sealed = False
        self.server.write_policy(self.policy, STORE_POLICY)


def new_policy(server: OpenBaoServer) -> str:
    """A fresh copy of the store's policy, so that denying it touches no other test's token."""
    name = f"mcs-{uuid.uuid4().hex[:8]}"
    server.write_policy(name, STORE_POLICY)
    return name

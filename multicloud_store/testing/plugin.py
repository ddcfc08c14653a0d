"""The pytest plugin registered by the wheel (entry point ``pytest11``).

It adds two fixtures for anyone testing code that uses the store. It imports nothing heavy at collection time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from multicloud_store.store import SecretsStore


@pytest.fixture
def secret_id() -> uuid.UUID:
    """A fresh random secret id."""
    return uuid.uuid4()


@pytest.fixture
def memory_secrets_store() -> Iterator[SecretsStore]:
    """A `SecretsStore` on the in-process ``memory`` backend, closed after the test."""
    from multicloud_store.settings import StoreSettings
    from multicloud_store.store import SecretsStore

    store = SecretsStore(StoreSettings(backend="memory"))
    yield store
    store.close()

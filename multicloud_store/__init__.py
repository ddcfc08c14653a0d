"""multicloud-store: one secrets store for AWS, GCP, Azure and an embedded local backend.

``from multicloud_store import SecretsStore`` and ``SecretsStore.from_env()``; the backend is chosen by
``MULTICLOUD_STORE_BACKEND``. Importing the package is cheap: names are loaded on first access, and no cloud SDK
is imported until its backend is selected.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from multicloud_store.driver import DriverLimits, SecretsDriver, StoredSecret
    from multicloud_store.errors import (
        BackendError,
        BackendNotInstalledError,
        BackendPermissionError,
        BackendUnavailableError,
        ConfigurationError,
        InvalidSecretError,
        MultiCloudStoreError,
        SecretCorruptedError,
        SecretExistsError,
        SecretNotFoundError,
        SecretStateError,
    )
    from multicloud_store.interface import SecretsStoreInterface
    from multicloud_store.settings import EnvSettings, StoreSettings
    from multicloud_store.store import ReadOutcome, SecretsStore

_EXPORTS = {
    "SecretsStore": "multicloud_store.store",
    "ReadOutcome": "multicloud_store.store",
    "StoreSettings": "multicloud_store.settings",
    "EnvSettings": "multicloud_store.settings",
    "SecretsStoreInterface": "multicloud_store.interface",
    "SecretsDriver": "multicloud_store.driver",
    "DriverLimits": "multicloud_store.driver",
    "StoredSecret": "multicloud_store.driver",
    **{
        name: "multicloud_store.errors"
        for name in (
            "BackendError",
            "BackendNotInstalledError",
            "BackendPermissionError",
            "BackendUnavailableError",
            "ConfigurationError",
            "InvalidSecretError",
            "MultiCloudStoreError",
            "SecretCorruptedError",
            "SecretExistsError",
            "SecretNotFoundError",
            "SecretStateError",
        )
    },
}

__all__ = [
    "BackendError",
    "BackendNotInstalledError",
    "BackendPermissionError",
    "BackendUnavailableError",
    "ConfigurationError",
    "DriverLimits",
    "EnvSettings",
    "InvalidSecretError",
    "MultiCloudStoreError",
    "ReadOutcome",
    "SecretCorruptedError",
    "SecretExistsError",
    "SecretNotFoundError",
    "SecretStateError",
    "SecretsDriver",
    "SecretsStore",
    "SecretsStoreInterface",
    "StoreSettings",
    "StoredSecret",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'multicloud_store' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

"""multicloud-store's HashiCorp Vault / OpenBao backend (``MULTICLOUD_STORE_BACKEND=vault``), KV version 2.

Installed as the distribution ``multicloud-store-vault`` (or ``multicloud-store[vault]``); the core finds
`VaultDriver` through the ``multicloud_store.backends`` entry point. The driver and its settings are imported on
first use, so importing this package (for example for `multicloud_store_vault.testing`) loads no part of hvac.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multicloud_store_vault.driver import VaultDriver
    from multicloud_store_vault.settings import VaultSettings

__all__ = ["VaultDriver", "VaultSettings", "__version__"]

__version__ = "0.1.0"

_LAZY = {"VaultDriver": "multicloud_store_vault.driver", "VaultSettings": "multicloud_store_vault.settings"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'multicloud_store_vault' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

"""multicloud-store's SQL backend (``MULTICLOUD_STORE_BACKEND=sql``): PostgreSQL, MySQL, MariaDB or SQLite.

Installed as the distribution ``multicloud-store-sql`` (or ``multicloud-store[sql]``); the core finds `SqlDriver`
through the ``multicloud_store.backends`` entry point. The driver and its settings are imported on first use, so
importing this package (for example for `multicloud_store_sql.testing`) loads no part of SQLAlchemy by itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multicloud_store_sql.driver import SqlDriver
    from multicloud_store_sql.settings import SqlSettings

__all__ = ["SqlDriver", "SqlSettings", "__version__"]

__version__ = "0.1.0"

_LAZY = {"SqlDriver": "multicloud_store_sql.driver", "SqlSettings": "multicloud_store_sql.settings"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'multicloud_store_sql' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

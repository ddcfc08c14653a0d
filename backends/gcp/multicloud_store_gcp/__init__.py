"""Google Cloud Secret Manager backend of multicloud-store (``MULTICLOUD_STORE_BACKEND=gcp``).

The driver and its settings are imported on first use, so importing this package loads no part of the Google
client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multicloud_store_gcp.driver import GcpDriver
    from multicloud_store_gcp.settings import GcpSettings

__all__ = ["GcpDriver", "GcpSettings", "__version__"]

__version__ = "0.1.0"

_LAZY = {"GcpDriver": "multicloud_store_gcp.driver", "GcpSettings": "multicloud_store_gcp.settings"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'multicloud_store_gcp' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

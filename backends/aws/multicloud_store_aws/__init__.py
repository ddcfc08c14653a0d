"""multicloud-store's AWS Secrets Manager backend (``MULTICLOUD_STORE_BACKEND=aws``).

Installed as the distribution ``multicloud-store-aws`` (or ``multicloud-store[aws]``); the core finds `AwsDriver`
through the ``multicloud_store.backends`` entry point. The driver and its settings are imported on first use, so
importing this package (for example for `multicloud_store_aws.testing`) loads no part of boto3 by itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multicloud_store_aws.driver import AwsDriver
    from multicloud_store_aws.settings import AwsSettings

__all__ = ["AwsDriver", "AwsSettings", "__version__"]

__version__ = "0.1.0"

_LAZY = {"AwsDriver": "multicloud_store_aws.driver", "AwsSettings": "multicloud_store_aws.settings"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'multicloud_store_aws' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

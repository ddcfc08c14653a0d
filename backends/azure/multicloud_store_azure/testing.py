"""An Azure Key Vault (secrets) emulator for tests; see `multicloud_store_azure.emulator`.

This module keeps the public names where they have always been (``KeyVaultEmulator``, ``StaticTokenCredential``,
``IN_PROCESS_VAULT_URL`` ...); the emulator itself lives in the ``multicloud_store_azure.emulator`` package.

Run ``python -m multicloud_store_azure.testing --port 8443`` to serve one in the foreground.
"""

from __future__ import annotations

import sys

from multicloud_store_azure.emulator import (
    DEFAULT_TOKEN,
    EMULATOR_TENANT_ID,
    IN_PROCESS_VAULT_URL,
    MAX_VALUE_BYTES,
    KeyVaultEmulator,
    StaticTokenCredential,
    main,
)

__all__ = [
    "DEFAULT_TOKEN",
    "EMULATOR_TENANT_ID",
    "IN_PROCESS_VAULT_URL",
    "MAX_VALUE_BYTES",
    "KeyVaultEmulator",
    "StaticTokenCredential",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())

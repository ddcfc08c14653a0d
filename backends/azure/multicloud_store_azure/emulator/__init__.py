"""An Azure Key Vault (secrets) emulator for tests, served over HTTPS or in-process.

The emulator speaks the Key Vault secrets REST API the way ``azure-keyvault-secrets`` uses it, so tests can
drive the real :class:`azure.keyvault.secrets.SecretClient` against it, much as moto serves AWS::

    from azure.keyvault.secrets import SecretClient
    from multicloud_store_azure.testing import IN_PROCESS_VAULT_URL, KeyVaultEmulator, StaticTokenCredential

    with KeyVaultEmulator() as emu:  # HTTPS on 127.0.0.1, a fresh self-signed CA
        client = SecretClient(emu.vault_url, StaticTokenCredential(), connection_verify=emu.ca_cert_path)
        client.set_secret("db-password", "hunter2")

    emu = KeyVaultEmulator()  # no sockets at all: hand the vault logic to the SDK as its transport
    client = SecretClient(IN_PROCESS_VAULT_URL, StaticTokenCredential(), transport=emu.transport())

Authentication follows the service's challenge protocol: an unauthenticated request gets ``401`` with a
``WWW-Authenticate: Bearer authorization=..., resource=...`` challenge. The SDK only accepts a challenge
whose resource is a parent domain of the vault host, so the emulator answers with the vault host minus its
first label: ``https://0.0.1:PORT`` for ``https://127.0.0.1:PORT`` (the SDK then asks the credential for the
scope ``https://0.0.1:PORT/.default``) and ``https://emulator.test`` for :data:`IN_PROCESS_VAULT_URL` (scope
``https://emulator.test/.default``). A host without a dot (``localhost``) cannot satisfy that check; clients
of such a URL must pass ``verify_challenge_resource=False``.

Run ``python -m multicloud_store_azure.testing --port 8443`` to serve one in the foreground.

The package follows moto's layout: `model` (the in-memory vault and its REST operations), `server` (the HTTPS
front end), `certs` (the throwaway CA), `transport` (the in-process azure-core transport), `credential` (a static
token credential), `vault` (`KeyVaultEmulator`, which ties them together) and `cli`.
"""

from __future__ import annotations

from multicloud_store_azure.emulator.cli import main
from multicloud_store_azure.emulator.credential import StaticTokenCredential
from multicloud_store_azure.emulator.model import (
    DEFAULT_TOKEN,
    EMULATOR_TENANT_ID,
    IN_PROCESS_VAULT_URL,
    MAX_VALUE_BYTES,
    VaultModel,
)
from multicloud_store_azure.emulator.vault import KeyVaultEmulator

__all__ = [
    "DEFAULT_TOKEN",
    "EMULATOR_TENANT_ID",
    "IN_PROCESS_VAULT_URL",
    "MAX_VALUE_BYTES",
    "KeyVaultEmulator",
    "StaticTokenCredential",
    "VaultModel",
    "main",
]

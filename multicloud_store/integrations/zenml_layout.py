"""Read the secrets of ZenML's built-in AWS, GCP, Azure and HashiCorp Vault secrets stores, for ``multicloud-store migrate``.

ZenML's own stores keep one cloud secret per ZenML secret: AWS ``zenml/<uuid>``, GCP and Azure ``zenml-<uuid>``,
the values as a flat JSON object, and the owner in the ``zenml`` (server id) and ``zenml_secret_id`` tags or labels.
ZenML's HashiCorp Vault store (``HashiCorpVaultSecretsStore``) writes a KV v2 secret at ``zenml/<uuid>`` on its
``mount_point`` (default ``secret``; set ``MULTICLOUD_STORE_VAULT_MOUNT`` to the same), whose data is
``{"zenml_secret_values": {...}, "zenml_secret_metadata": {"zenml": <server id>, "zenml_secret_id": <uuid>}}``:
Vault has no tags, so the owner is read from the data, and a listing reads every secret under ``zenml/``.
This source lists them through our own drivers (same settings, same error mapping) and hands their values to the
migration, which writes them under the same UUIDs, so ZenML's database rows keep pointing at the right secrets.
ZenML itself is not imported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable
from uuid import UUID

from multicloud_store.errors import ConfigurationError, SecretCorruptedError, SecretNotFoundError
from multicloud_store.settings import EnvSettings, Field, SettingsConfigDict, StoreSettings

if TYPE_CHECKING:
    from multicloud_store.driver import SecretsDriver

__all__ = ["ZENML_NAME_PREFIXES", "KvDocuments", "ZenmlLayoutSettings", "ZenmlLayoutSource"]

# ZenML 0.98: AWS_ZENML_SECRET_NAME_PREFIX + "/", GCP/AZURE_ZENML_SECRET_NAME_PREFIX + "-",
# HVAC_ZENML_SECRET_NAME_PREFIX + "/".
ZENML_NAME_PREFIXES = {"aws": "zenml/", "gcp": "zenml-", "azure": "zenml-", "vault": "zenml/"}
ZENML_SERVER_LABEL = "zenml"
ZENML_SECRET_ID_LABEL = "zenml_secret_id"
# ZenML's HashiCorpVaultSecretsStore: ZENML_VAULT_SECRET_VALUES_KEY and ZENML_VAULT_SECRET_METADATA_KEY.
ZENML_VAULT_VALUES_KEY = "zenml_secret_values"
ZENML_VAULT_METADATA_KEY = "zenml_secret_metadata"


@runtime_checkable
class KvDocuments(Protocol):
    """What a driver of a KV store offers beyond `SecretsDriver` (the ``vault`` driver): whole documents by path."""

    def read_document(self, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return a secret's data and its version metadata."""
        ...

    def list_keys(self, folder: str = "") -> Iterator[str]:
        """Yield the keys directly below a folder."""
        ...


class ZenmlLayoutSettings(EnvSettings):
    """Which ZenML server's secrets to read (``MULTICLOUD_STORE_ZENML_*``).

    Attributes:
        server_id: The ZenML server (zen store) id that ZenML wrote into the ``zenml`` tag or label of each
            secret; ``zenml status`` or the server's ``/api/v1/info`` shows it.
    """

    model_config = SettingsConfigDict(env_prefix="MULTICLOUD_STORE_ZENML_")

    server_id: UUID = Field(description="the ZenML server id")


class ZenmlLayoutSource:
    """A migration source over ZenML's built-in layout on one cloud.

    Args:
        backend: ``aws``, ``gcp`` or ``azure``.
        driver: Our driver for that cloud, configured for the account ZenML used.
        server_id: The ZenML server id whose secrets to read.
    """

    supported: ClassVar[tuple[str, ...]] = tuple(ZENML_NAME_PREFIXES)

    def __init__(self, backend: str, driver: SecretsDriver, server_id: UUID) -> None:
        if backend not in ZENML_NAME_PREFIXES:
            raise ConfigurationError(
                f"MULTICLOUD_STORE_BACKEND={backend!r}: ZenML's built-in layout exists on aws, gcp, azure and vault "
                "only",
                variable="MULTICLOUD_STORE_BACKEND",
            )
        if backend == "vault" and not isinstance(driver, KvDocuments):
            raise ConfigurationError(
                "ZenML's Vault layout needs a driver that reads KV documents (multicloud_store_vault's VaultDriver)",
                variable="MULTICLOUD_STORE_BACKEND",
            )
        self.backend = backend
        self.driver = driver
        self.server_id = server_id
        self.prefix = ZENML_NAME_PREFIXES[backend]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ZenmlLayoutSource:
        """Build the source from ``MULTICLOUD_STORE_BACKEND``, ``MULTICLOUD_STORE_ZENML_SERVER_ID`` and the cloud's settings.

        Args:
            environ: Variables to read instead of the process environment.

        Returns:
            The source.
        """
        from multicloud_store.registry import driver_from_environ

        settings = StoreSettings.from_environ(environ)
        layout = ZenmlLayoutSettings.from_environ(environ)
        return cls(settings.backend, driver_from_environ(settings.backend, environ), layout.server_id)

    def __repr__(self) -> str:
        return f"ZenmlLayoutSource(backend={self.backend!r}, server_id='{self.server_id}')"

    def _name(self, secret_id: UUID) -> str:
        return f"{self.prefix}{secret_id}"

    def list_secret_ids(self) -> Iterator[UUID]:
        """Yield the ids of the server's secrets, lazily.

        Yields:
            Secret ids.
        """
        if isinstance(self.driver, KvDocuments) and self.backend == "vault":
            yield from self._list_vault(self.driver)
            return
        for name in self.driver.list_names({ZENML_SERVER_LABEL: str(self.server_id)}):
            if name.startswith(self.prefix):
                try:
                    yield UUID(name[len(self.prefix) :])
                except ValueError:
                    continue

    def get_secret_values(self, secret_id: UUID) -> dict[str, str]:
        """Read one secret's values from ZenML's layout.

        Args:
            secret_id: The id.

        Returns:
            The values.

        Raises:
            SecretNotFoundError: No such secret, or it belongs to another ZenML server.
            SecretCorruptedError: The value is not ZenML's flat JSON object of strings.
        """
        if isinstance(self.driver, KvDocuments) and self.backend == "vault":
            return self._read_vault(self.driver, secret_id)
        stored = self.driver.read(self._name(secret_id))
        labels = stored.labels
        # Drivers that return tags with the read let us check ownership; the listing already filtered by them.
        if labels and (
            labels.get(ZENML_SERVER_LABEL) != str(self.server_id)
            or labels.get(ZENML_SECRET_ID_LABEL, str(secret_id)) != str(secret_id)
        ):
            raise SecretNotFoundError(
                f"ZenML secret {secret_id} belongs to another ZenML server", secret_id=secret_id
            )
        try:
            values = json.loads(stored.payload) if stored.payload else {}
        except ValueError:
            values = None
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise SecretCorruptedError(
                f"ZenML secret {secret_id} is not a JSON object of strings", secret_id=secret_id
            )
        return values

    def _list_vault(self, driver: KvDocuments) -> Iterator[UUID]:
        # KV v2 cannot filter a LIST: read each secret's metadata key (one request per secret under zenml/).
        for key in driver.list_keys(self.prefix.rstrip("/")):
            try:
                secret_id = UUID(key)
            except ValueError:
                continue
            try:
                self._read_vault(driver, secret_id)
            except (SecretNotFoundError, SecretCorruptedError):
                continue  # another server's, deleted meanwhile, or not ZenML's format
            yield secret_id

    def _read_vault(self, driver: KvDocuments, secret_id: UUID) -> dict[str, str]:
        data, _ = driver.read_document(self._name(secret_id))
        metadata = data.get(ZENML_VAULT_METADATA_KEY)
        values = data.get(ZENML_VAULT_VALUES_KEY)
        if not isinstance(metadata, dict) or metadata.get(ZENML_SERVER_LABEL) != str(self.server_id):
            raise SecretNotFoundError(
                f"ZenML secret {secret_id} belongs to another ZenML server", secret_id=secret_id
            )
        if metadata.get(ZENML_SECRET_ID_LABEL) != str(secret_id):
            raise SecretNotFoundError(
                f"ZenML secret {secret_id}: its metadata names another id", secret_id=secret_id
            )
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise SecretCorruptedError(
                f"ZenML secret {secret_id} is not a JSON object of strings", secret_id=secret_id
            )
        return dict(values)

    def delete_secret_values(self, secret_id: UUID) -> None:
        """Delete one secret from ZenML's layout.

        Args:
            secret_id: The id.
        """
        self.driver.delete(self._name(secret_id))

    def close(self) -> None:
        """Close the driver."""
        self.driver.close()

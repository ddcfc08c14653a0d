"""ZenML's secrets-store interface, method for method.

This mirrors ``zenml.zen_stores.secrets_stores.secrets_store_interface.SecretsStoreInterface`` so that the
library can be used, type-checked and tested without ZenML installed. `multicloud_store.integrations.zenml`
plugs the same implementation into ZenML's own base class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from uuid import UUID

__all__ = ["SecretsStoreInterface"]


class SecretsStoreInterface(ABC):
    """The four calls ZenML makes on a secrets store, keyed by the secret's UUID."""

    @abstractmethod
    def _initialize(self) -> None:
        """Initialize the secrets store: build clients and check the configuration, before the first call."""

    @abstractmethod
    def store_secret_values(self, secret_id: UUID, secret_values: dict[str, str]) -> None:
        """Store secret values for a new secret.

        Args:
            secret_id: ID of the secret.
            secret_values: Secret values to store.

        Raises:
            SecretExistsError: Values for this id already exist (never a `KeyError`).
        """

    @abstractmethod
    def get_secret_values(self, secret_id: UUID) -> dict[str, str]:
        """Get the secret values for an existing secret.

        Args:
            secret_id: ID of the secret.

        Returns:
            The secret values.

        Raises:
            KeyError: No values exist for this id (`SecretNotFoundError` is a `KeyError`).
        """

    @abstractmethod
    def update_secret_values(self, secret_id: UUID, secret_values: dict[str, str]) -> None:
        """Replace the secret values of an existing secret.

        Args:
            secret_id: ID of the secret.
            secret_values: The new secret values, replacing the old ones entirely.

        Raises:
            KeyError: No values exist for this id.
        """

    @abstractmethod
    def delete_secret_values(self, secret_id: UUID) -> None:
        """Delete the secret values of an existing secret.

        Args:
            secret_id: ID of the secret.

        Raises:
            KeyError: No values exist for this id.
        """

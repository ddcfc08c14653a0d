"""multicloud-store as a ZenML server's custom secrets store.

Select it with::

    ZENML_SECRETS_STORE_TYPE=custom
    ZENML_SECRETS_STORE_CLASS_PATH=multicloud_store.integrations.zenml.MultiCloudSecretsStore
    ZENML_SECRETS_STORE_BACKEND=aws            # or gcp, azure, vault, sql, local
    ZENML_SECRETS_STORE_AWS_REGION=eu-west-1   # any MULTICLOUD_STORE_<OPTION> as ZENML_SECRETS_STORE_<OPTION>

ZenML hands a custom store a plain ``SecretsStoreConfiguration`` whose extra options arrive lower-cased, as strings;
`MultiCloudSecretsStoreConfiguration` rebuilds a typed configuration from them. Options not given that way are
read from the ``MULTICLOUD_STORE_*`` variables. This module imports ZenML; nothing else in the library imports it.

``local`` is one SQLite file for a single-replica server; a server with several replicas needs ``sql`` or
``vault`` (or a cloud), which every replica reaches.
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar
from uuid import UUID

from pydantic import ConfigDict, model_validator
from zenml.config.secrets_store_config import SecretsStoreConfiguration
from zenml.enums import SecretsStoreType
from zenml.exceptions import EntityExistsError
from zenml.zen_stores.secrets_stores.base_secrets_store import BaseSecretsStore

from multicloud_store.errors import MultiCloudStoreError, SecretExistsError
from multicloud_store.settings import ENV_PREFIX, StoreSettings, warn_unknown_variables
from multicloud_store.store import SecretsStore

__all__ = ["MultiCloudSecretsStore", "MultiCloudSecretsStoreConfiguration"]

_CLASS_PATH = "multicloud_store.integrations.zenml.MultiCloudSecretsStore"
_ZENML_PREFIX = "ZENML_SECRETS_STORE_"
# Read by ZenML itself, not by the store.
_ZENML_OWN_OPTIONS = ("TYPE", "CLASS_PATH")


class MultiCloudSecretsStoreConfiguration(SecretsStoreConfiguration):  # type: ignore[misc]
    """The custom store's configuration: ``backend`` plus any store option, as ZenML passes them.

    Attributes:
        backend: ``local``, ``aws``, ``gcp``, ``azure``, ``vault``, ``sql`` or a third-party backend; default from
            ``MULTICLOUD_STORE_BACKEND``, else ``local``.
        deployment_id: Overrides the ZenML server id as the owner of the secrets (rarely needed).
    """

    type: SecretsStoreType = SecretsStoreType.CUSTOM
    class_path: str | None = _CLASS_PATH
    backend: str | None = None
    deployment_id: str | None = None

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    def environ(self) -> dict[str, str]:
        """Return ``MULTICLOUD_STORE_*`` variables: the process environment overlaid with this configuration.

        Returns:
            The variables to build the store from.
        """
        # The owner is the ZenML server, not whatever MULTICLOUD_STORE_DEPLOYMENT_ID says for other apps.
        environ = {
            k: v
            for k, v in os.environ.items()
            if k.startswith(ENV_PREFIX) and k != f"{ENV_PREFIX}DEPLOYMENT_ID"
        }
        options: dict[str, Any] = {**(self.model_extra or {})}
        if self.backend:
            options["backend"] = self.backend
        if self.deployment_id:
            options["deployment_id"] = self.deployment_id
        for key, value in options.items():
            if value is None:
                continue
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            environ[f"{ENV_PREFIX}{key.upper()}"] = str(value)
        return environ


class MultiCloudSecretsStore(BaseSecretsStore):  # type: ignore[misc]
    """ZenML's secrets-store interface, delegated to `multicloud_store.SecretsStore`.

    The owner of every secret is the ZenML server id (``get_store_info().id``), fetched once, on the first call
    (at ``_initialize`` time the server's database may not be migrated yet). Configuration errors are raised by
    ``_initialize``, so the server refuses to start with a message that names the variable.
    """

    config: MultiCloudSecretsStoreConfiguration
    TYPE: ClassVar[SecretsStoreType] = SecretsStoreType.CUSTOM
    CONFIG_TYPE: ClassVar[type[SecretsStoreConfiguration]] = MultiCloudSecretsStoreConfiguration

    @model_validator(mode="before")
    @classmethod
    def _typed_config(cls, data: Any) -> Any:
        # ZenML passes its generic configuration; rebuild ours from its fields and lower-cased extras.
        if isinstance(data, dict):
            config = data.get("config")
            if isinstance(config, SecretsStoreConfiguration) and not isinstance(
                config, MultiCloudSecretsStoreConfiguration
            ):
                values = {**config.model_dump(exclude_none=True), **(config.model_extra or {})}
                values["type"] = SecretsStoreType.CUSTOM
                data = {**data, "config": MultiCloudSecretsStoreConfiguration(**values)}
        return data

    def _initialize(self) -> None:
        """Validate the whole configuration and build the driver; no network call, no database query.

        Raises:
            RuntimeError: Through ZenML, wrapping a message that names the variable at fault.
        """
        self._lock = threading.Lock()
        self._store: SecretsStore | None = None
        self._warn_unknown_options()
        environ = self.config.environ()
        try:
            # Build once now so every setting and naming rule is checked at server start.
            probe = SecretsStore.from_env(environ)
        except MultiCloudStoreError as exc:
            variable = getattr(exc, "variable", None)
            hint = f" (ZENML_SECRETS_STORE_{variable[len(ENV_PREFIX) :]} or {variable})" if variable else ""
            raise ValueError(f"multicloud-store secrets store: {exc}{hint}") from exc
        self._settings = probe.settings
        self._driver = probe.driver
        if self.config.deployment_id:
            self._store = probe

    def _warn_unknown_options(self) -> None:
        """Warn (never fail) about ``ZENML_SECRETS_STORE_*`` options that no setting reads.

        A typo there would otherwise silently select the defaults (the local backend inside the server's container).
        """
        options = {k: v for k, v in os.environ.items() if k.upper().startswith(_ZENML_PREFIX)}
        for key in self.config.model_extra or {}:
            options.setdefault(f"{_ZENML_PREFIX}{key.upper()}", "")
        warn_unknown_variables(options, prefix=_ZENML_PREFIX, also_known=_ZENML_OWN_OPTIONS)

    @property
    def store(self) -> SecretsStore:
        """The underlying store, built on first use with the ZenML server id as owner."""
        store = self._store
        if store is not None:
            return store
        with self._lock:
            if self._store is None:
                server_id: UUID = self.zen_store.get_store_info().id
                settings = StoreSettings.model_validate(
                    {**self._settings.model_dump(), "deployment_id": str(server_id)}
                )
                self._store = SecretsStore(settings, driver=self._driver)
            return self._store

    def store_secret_values(self, secret_id: UUID, secret_values: dict[str, str]) -> None:
        """Store a new secret's values.

        Raises:
            EntityExistsError: Values for this id exist already (ZenML's own type; never a KeyError).
        """
        try:
            self.store.store_secret_values(secret_id, secret_values)
        except SecretExistsError as exc:
            raise EntityExistsError(str(exc)) from exc

    def get_secret_values(self, secret_id: UUID) -> dict[str, str]:
        """Get a secret's values; `KeyError` when missing."""
        return self.store.get_secret_values(secret_id)

    def update_secret_values(self, secret_id: UUID, secret_values: dict[str, str]) -> None:
        """Replace a secret's values; `KeyError` when missing."""
        self.store.update_secret_values(secret_id, secret_values)

    def delete_secret_values(self, secret_id: UUID) -> None:
        """Delete a secret's values; `KeyError` when missing."""
        self.store.delete_secret_values(secret_id)

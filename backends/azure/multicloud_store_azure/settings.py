"""Settings of the ``azure`` backend, read from ``MULTICLOUD_STORE_AZURE_*``.

Everything here is checked without network I/O and without importing azure-identity. Which credential is used is
decided here too (`AzureSettings.resolved_credential`), so a contradictory combination fails when the store is
built, naming the variable, rather than on the first call.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal, NoReturn

from multicloud_store.errors import ConfigurationError
from multicloud_store.settings import (
    AliasChoices,
    EnvSettings,
    Field,
    SecretStr,
    SettingsConfigDict,
    field_validator,
    model_validator,
)

__all__ = ["AzureSettings", "CredentialKind"]

CredentialKind = Literal[
    "auto", "default", "client_secret", "managed_identity", "workload_identity", "azure_cli", "access_token"
]

# Vault names: 3-24 characters, letters, digits and dashes, starting with a letter, no trailing dash.
_VAULT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$")
_VAULT_URL_RE = re.compile(r"^https://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?/?$")
_DNS_SUFFIX_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
_GUID_OR_DOMAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# RFC 6750's b64token: what a bearer token may contain (JWTs from Entra ID are a subset).
_BEARER_TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_AUTHORITY_RE = re.compile(r"^(?:https://)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?/?$")

# In ``auto`` mode, the setting that is present decides the credential (checked in this order).
_AUTO_KINDS: dict[str, CredentialKind] = {
    "access_token": "access_token",
    "client_secret": "client_secret",
    "token_file_path": "workload_identity",
    "managed_identity_client_id": "managed_identity",
}


class AzureSettings(EnvSettings):
    """Settings of the ``azure`` backend (``MULTICLOUD_STORE_AZURE_*``).

    Attributes:
        vault_url: The vault, ``https://NAME.vault.azure.net`` (or a sovereign cloud's, a private endpoint's
            name, an emulator's ``https://127.0.0.1:PORT``). Exactly one of ``vault_url`` and ``vault_name``.
        vault_name: The vault's name; the URL is then ``https://NAME.{vault_dns_suffix}``.
        vault_dns_suffix: DNS suffix for ``vault_name``: ``vault.azure.net`` (default), ``vault.azure.cn``,
            ``vault.usgovcloudapi.net``.
        credential: How to authenticate: ``auto`` (default: decided by which settings are set), ``default``
            (DefaultAzureCredential), ``client_secret``, ``managed_identity``, ``workload_identity``,
            ``azure_cli``, or ``access_token``.
        tenant_id: Microsoft Entra tenant (directory) id, for client secrets and workload identity.
        client_id: Application (client) id of a service principal or of the workload identity's app.
        client_secret: The service principal's client secret (with ``client_id`` and ``tenant_id``).
        managed_identity_client_id: Client id of a user-assigned managed identity; unset with
            ``credential=managed_identity`` uses the system-assigned one.
        token_file_path: The federated token file of workload identity (on AKS the webhook sets
            ``AZURE_FEDERATED_TOKEN_FILE``, which is used when this is unset).
        authority_host: Entra ID authority for sovereign clouds, such as ``login.microsoftonline.us``.
        access_token: A static bearer token sent as is: for short jobs that are handed a token, and emulators.
            Nothing refreshes it.
        ca_bundle: PEM file of the CAs to trust for the vault's certificate (private endpoints behind a
            TLS-inspecting proxy, emulators). Replaces the default trust store for Key Vault calls.
        verify_challenge_resource: Check that the resource named in the vault's authentication challenge
            belongs to the vault's domain (the SDK's default). Turn off only for a vault host without a dot.
        purge_on_delete: Purge a secret after deleting it, so that its id can be stored again at once and no
            copy stays recoverable. Where purging is refused (purge protection, no purge permission) the
            secret stays soft-deleted and a later store of the same id recovers and overwrites it.
        enforce_expiry: Refuse to return a secret whose expiry date has passed or whose activation date has
            not come (Key Vault itself still serves them). Off: serve them, treating the dates as reminders.
        retry_total: Retries of a failed call (throttled, 5xx, connection errors), by azure-core's policy.
        retry_backoff_factor: Seconds of the first backoff; it doubles with every retry, with jitter.
        retry_backoff_max: Longest backoff, in seconds. A ``Retry-After`` longer than this is not waited for:
            the call fails at once with `BackendUnavailableError`.
        connection_timeout: Seconds to establish a connection.
        read_timeout: Seconds to wait for a response (azure-core's default, 300 s, is too long for a secret).
        operation_timeout: Seconds to wait for Key Vault to finish a deletion, purge or recovery.
        max_connections: Connections kept open to the vault, at most (the HTTP connection pool's size). Unset:
            ``MULTICLOUD_STORE_MAX_WORKERS`` (at least 10, the SDK's default), so that a store shared by that many
            threads reuses its connections instead of opening and discarding one per call.
        store_max_workers: ``MULTICLOUD_STORE_MAX_WORKERS``, read for the pool's default size.
        clock_skew: Whole seconds by which the vault's clocks (the one stamping versions' creation times and the
            one writing ``Date`` headers) may disagree. A create waits until the second of its version is this
            much past on the service's clock (docs/backends/azure.md, "Concurrent creates"); 0 suits an emulator,
            which has one clock.
    """

    model_config = SettingsConfigDict(env_prefix="MULTICLOUD_STORE_AZURE_", hide_input_in_errors=True)

    secret_fields = ("client_secret", "access_token")

    # vault_name comes first: vault_url's validator reads it.
    vault_name: str | None = None
    vault_url: str | None = None
    vault_dns_suffix: str = "vault.azure.net"
    credential: CredentialKind = "auto"
    tenant_id: str | None = Field(default=None, pattern=_GUID_OR_DOMAIN_RE.pattern)
    client_id: str | None = Field(default=None, pattern=_GUID_OR_DOMAIN_RE.pattern)
    client_secret: SecretStr | None = None
    managed_identity_client_id: str | None = Field(default=None, pattern=_GUID_OR_DOMAIN_RE.pattern)
    token_file_path: Path | None = None
    authority_host: str | None = None
    access_token: SecretStr | None = None
    ca_bundle: Path | None = None
    verify_challenge_resource: bool = True
    purge_on_delete: bool = True
    enforce_expiry: bool = True
    retry_total: int = Field(default=3, ge=0, le=10)
    retry_backoff_factor: float = Field(default=0.8, ge=0, le=60)
    retry_backoff_max: float = Field(default=30.0, gt=0, le=600)
    connection_timeout: float = Field(default=5.0, gt=0, le=300)
    read_timeout: float = Field(default=10.0, gt=0, le=600)
    operation_timeout: float = Field(default=60.0, gt=0, le=3600)
    clock_skew: int = Field(default=1, ge=0, le=30)
    max_connections: int | None = Field(default=None, ge=1, le=1000)
    # The store's own MULTICLOUD_STORE_MAX_WORKERS (read here too, without the prefix): the default pool size.
    store_max_workers: int = Field(
        default=8,
        ge=1,
        le=1000,
        validation_alias=AliasChoices("MULTICLOUD_STORE_MAX_WORKERS", "store_max_workers"),
    )

    # -- single fields ------------------------------------------------------------------------------------

    @field_validator(
        "vault_name",
        "vault_url",
        "tenant_id",
        "client_id",
        "managed_identity_client_id",
        "authority_host",
        "token_file_path",
        "ca_bundle",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @field_validator("client_secret", "access_token", mode="before")
    @classmethod
    def _clean_secret(cls, value: object) -> object:
        # Surrounding whitespace is never part of a credential: a Kubernetes secret made from a file ends with
        # a newline. An empty variable (a template left unfilled) means "not set", not an empty credential.
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            # The messages below never include the value: it is a credential.
            if _CONTROL_RE.search(value):
                raise ValueError(
                    "contains a control character (a line break, a tab, ...); it cannot be a credential"
                )
        return value

    @field_validator("access_token")
    @classmethod
    def _bearer_token_ok(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _BEARER_TOKEN_RE.fullmatch(value.get_secret_value()):
            raise ValueError(
                "is not a bearer token (RFC 6750: letters, digits and -._~+/, then optional '=' padding)"
            )
        return value

    @field_validator("credential", mode="before")
    @classmethod
    def _normalise_credential(cls, value: object) -> object:
        return value.strip().lower().replace("-", "_") if isinstance(value, str) else value

    @field_validator("vault_name")
    @classmethod
    def _vault_name_ok(cls, value: str | None) -> str | None:
        if value is not None and not _VAULT_NAME_RE.fullmatch(value):
            raise ValueError(
                "must be a Key Vault name: 3-24 letters, digits and dashes, starting with a letter "
                "(for a full URL use MULTICLOUD_STORE_AZURE_VAULT_URL)"
            )
        return value

    @field_validator("vault_url")
    @classmethod
    def _vault_url_ok(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _VAULT_URL_RE.fullmatch(value):
            hint = " (Key Vault is only reachable over https)" if value.startswith("http://") else ""
            raise ValueError(f"must be https://HOST[:PORT], such as https://NAME.vault.azure.net{hint}")
        return value.rstrip("/")

    @field_validator("vault_dns_suffix", mode="before")
    @classmethod
    def _suffix_ok(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().strip(".").lower()
            if not _DNS_SUFFIX_RE.fullmatch(value):
                raise ValueError("must be a DNS suffix such as vault.azure.net")
        return value

    @field_validator("authority_host")
    @classmethod
    def _authority_ok(cls, value: str | None) -> str | None:
        if value is not None and not _AUTHORITY_RE.fullmatch(value):
            raise ValueError("must be a host such as login.microsoftonline.com (https only)")
        return value

    @field_validator("ca_bundle", "token_file_path")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    # -- across fields ------------------------------------------------------------------------------------

    @model_validator(mode="after")
    def _consistent(self) -> AzureSettings:
        # ConfigurationError passes through pydantic unchanged, so each problem names its own variable.
        if self.vault_url is None and self.vault_name is None:
            self._fail(
                "vault_url",
                "is required: the vault's URL (https://NAME.vault.azure.net), or its name in "
                "MULTICLOUD_STORE_AZURE_VAULT_NAME",
            )
        if self.vault_url is not None and self.vault_name is not None:
            self._fail("vault_url", "set either it or MULTICLOUD_STORE_AZURE_VAULT_NAME, not both")
        self.resolved_credential()  # raises on a contradictory combination
        return self

    @classmethod
    def _fail(cls, field: str, problem: str) -> NoReturn:
        variable = cls.env_name(field)
        raise ConfigurationError(
            f"invalid configuration: {variable}: {problem}", variable=variable, backend="azure"
        )

    # -- derived ------------------------------------------------------------------------------------------

    def resolved_vault_url(self) -> str:
        """Return the vault URL, built from ``vault_name`` when ``vault_url`` is not set.

        Returns:
            ``https://...`` without a trailing slash.
        """
        if self.vault_url is not None:
            return self.vault_url
        return f"https://{self.vault_name}.{self.vault_dns_suffix}"

    def redacted(self) -> dict[str, str]:
        """Return the settings as ``{VARIABLE: text}``, credentials masked; see `EnvSettings.redacted`.

        Returns:
            A mapping safe to print, without the store's own ``MULTICLOUD_STORE_MAX_WORKERS`` (the store lists it).
        """
        out = super().redacted()
        out.pop(self.env_name("store_max_workers"), None)
        return out

    def pool_size(self) -> int:
        """Return the size of the HTTP connection pool: ``max_connections``, else the store's worker count.

        Returns:
            At least 10, azure-core's own default.
        """
        return self.max_connections or max(10, self.store_max_workers)

    def resolved_credential(self) -> CredentialKind:
        """Decide which credential to build; ``auto`` becomes the one the other settings point at.

        In ``auto`` mode: ``access_token`` -> a static token; ``client_secret`` -> a service principal;
        ``token_file_path`` -> workload identity; ``managed_identity_client_id`` -> that managed identity;
        otherwise DefaultAzureCredential (environment, workload identity, managed identity, Azure CLI, ...).

        Returns:
            The credential kind, never ``auto``.

        Raises:
            ConfigurationError: Two ways to authenticate are set, or one lacks a setting it needs.
        """
        kind = self.credential
        if kind == "auto":
            chosen = [field for field in _AUTO_KINDS if getattr(self, field) is not None]
            if len(chosen) > 1:
                self._fail(
                    chosen[1],
                    f"conflicts with {self.env_name(chosen[0])}: set one way to authenticate (or choose one "
                    "with MULTICLOUD_STORE_AZURE_CREDENTIAL)",
                )
            kind = _AUTO_KINDS[chosen[0]] if chosen else "default"
        if kind == "access_token" and self.access_token is None:
            self._fail("access_token", "is required with MULTICLOUD_STORE_AZURE_CREDENTIAL=access_token")
        if kind == "client_secret":
            for field in ("client_secret", "client_id", "tenant_id"):
                if getattr(self, field) is None:
                    self._fail(field, "is required to authenticate with a client secret")
        if kind == "workload_identity":
            # azure-identity falls back to the variables the AKS workload identity webhook injects.
            for field, fallback in (
                ("tenant_id", "AZURE_TENANT_ID"),
                ("client_id", "AZURE_CLIENT_ID"),
                ("token_file_path", "AZURE_FEDERATED_TOKEN_FILE"),
            ):
                if getattr(self, field) is None and not os.environ.get(fallback):
                    self._fail(field, f"is required for workload identity (or set {fallback})")
        if kind != "client_secret" and self.client_secret is not None:
            self._fail("client_secret", f"is only used with a client secret credential, not {kind!r}")
        if kind != "access_token" and self.access_token is not None:
            self._fail("access_token", f"is only used with a static token credential, not {kind!r}")
        return kind

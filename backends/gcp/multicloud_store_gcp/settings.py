"""Settings of the ``gcp`` backend, read from ``MULTICLOUD_STORE_GCP_*``.

Everything here is checked without network I/O. What can only be learnt from Google's credential discovery
(the project of Application Default Credentials) is resolved by the driver when it builds its client.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

from multicloud_store.errors import ConfigurationError
from multicloud_store.settings import (
    AliasChoices,
    EnvSettings,
    Field,
    NoDecode,
    SecretStr,
    SettingsConfigDict,
    field_validator,
    model_validator,
)

__all__ = ["GcpSettings", "mask_url"]

_GRPC_ENDPOINT_RE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?$")
_REST_ENDPOINT_RE = re.compile(r"^https?://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?/?$")
_KMS_KEY_RE = re.compile(r"^projects/[^/]+/locations/(?:[^/]+|\{location\})/keyRings/[^/]+/cryptoKeys/[^/]+$")
_LOCATION_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
# Everything up to the last "@" before the host: "user:password@" with or without a scheme.
_USER_INFO_RE = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?[^/?#]*@")


def mask_url(url: str) -> str:
    """Return ``url`` with any user-info (``user:password@``) replaced by ``***@``, for messages and logs.

    Args:
        url: A URL, or a ``host:port`` endpoint.

    Returns:
        The same text without the user-info.
    """
    return _USER_INFO_RE.sub(lambda match: (match.group(1) or "") + "***@", url)


class GcpSettings(EnvSettings):
    """Settings of the ``gcp`` backend (``MULTICLOUD_STORE_GCP_*``).

    Attributes:
        project_id: The project that holds the secrets. Default: the project of the Application Default
            Credentials (or of the credentials file); required when nothing provides one.
        credentials_file: A credentials JSON file (service account key, workload identity federation, or
            authorized user). Default: Application Default Credentials.
        credentials_json: The same JSON inline, for platforms that hand secrets over as variables.
        impersonate_service_account: Act as this service account (e-mail), using the other credentials to
            obtain short-lived tokens for it (they need ``roles/iam.serviceAccountTokenCreator`` on it).
        anonymous: Send no credentials at all: for an emulator only. Requires ``endpoint`` and ``project_id``.
        transport: ``grpc`` (default) or ``rest`` (HTTP/1.1 with JSON, for networks that block HTTP/2).
        endpoint: Override the service endpoint: ``host[:port]`` for gRPC, ``http(s)://host[:port]`` for REST.
            Regional endpoints such as ``secretmanager.europe-west1.rep.googleapis.com`` go here. With
            ``anonymous``, gRPC uses a plaintext channel; plain ``http://`` is only allowed with
            ``anonymous``.
        location: Store regional secrets in this location (``projects/P/locations/L/secrets/S``) instead of
            global ones; the endpoint then defaults to ``secretmanager.L.rep.googleapis.com``. Regional
            secrets have no replication policy, so this excludes ``replication_locations``.
        replication_locations: Comma-separated locations for user-managed replication (``europe-west1,
            europe-west4``); empty for automatic replication.
        kms_key_name: A Cloud KMS key to encrypt payloads with (CMEK). With ``replication_locations``, write
            ``{location}`` in place of the location and one key per replica location is used.
        keep_versions: How many enabled or disabled versions each secret keeps; older ones are destroyed by
            a later update once ``prune_grace_seconds`` have passed since they were superseded. Every active
            version is billed.
        prune_grace_seconds: How long a superseded version is kept before an update may destroy it. The
            ``latest`` alias is eventually consistent ("typically converge within minutes, but may take a few
            hours"), so a reader may still be sent to it; 0 destroys it at once (readers are then served by
            the slower fallback that lists the versions).
        max_connections: Connections the REST transport keeps open to the service (its pool size); default
            ``MULTICLOUD_STORE_MAX_WORKERS``, at least 10. Set it to the number of threads that share one
            store, or the pool discards and reopens connections. gRPC multiplexes every call on one channel.
        timeout: Seconds one call may take before it is abandoned (and retried, if time remains).
        retry_deadline: Seconds within which failed calls (unavailable, throttled, 5xx, timeouts) are retried;
            0 turns retries off.
        retry_initial_backoff: The first pause between retries, in seconds; it doubles up to
            ``retry_max_backoff``, with jitter.
        retry_max_backoff: The longest pause between retries, in seconds.
    """

    # Inputs stay out of pydantic's own messages too (direct construction): one of them is a credential.
    model_config = SettingsConfigDict(
        env_prefix="MULTICLOUD_STORE_GCP_", hide_input_in_errors=True, populate_by_name=True
    )

    secret_fields = ("credentials_json",)

    project_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,127}$")
    credentials_file: Path | None = None
    credentials_json: SecretStr | None = None
    impersonate_service_account: str | None = Field(default=None, pattern=r"^[^@\s/]+@[^@\s/]+$")
    anonymous: bool = False
    transport: Literal["grpc", "rest"] = "grpc"
    endpoint: str | None = None
    location: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,62}$")
    replication_locations: Annotated[tuple[str, ...], NoDecode] = ()
    kms_key_name: str | None = None
    keep_versions: int = Field(default=1, ge=1, le=1000)
    timeout: float = Field(default=10.0, gt=0, le=600)
    retry_deadline: float = Field(default=30.0, ge=0, le=3600)
    retry_initial_backoff: float = Field(default=0.25, gt=0, le=60)
    retry_max_backoff: float = Field(default=5.0, gt=0, le=600)
    prune_grace_seconds: float = Field(default=21600.0, ge=0, le=30 * 86400)
    max_connections: int = Field(
        default=10,
        ge=1,
        le=1024,
        # Its own variable first, then the store's thread count (read from the same environment).
        validation_alias=AliasChoices(
            "MULTICLOUD_STORE_GCP_MAX_CONNECTIONS", "MULTICLOUD_STORE_MAX_WORKERS", "max_connections"
        ),
    )

    # -- single fields ------------------------------------------------------------------------------------

    @field_validator(
        "project_id", "impersonate_service_account", "endpoint", "location", "kms_key_name", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @field_validator("endpoint")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        # The REST transport appends "/v1/...": "https://host/" would give "https://host//v1/...".
        return value.rstrip("/") if value is not None and "://" in value else value

    @field_validator("transport", mode="before")
    @classmethod
    def _normalise_transport(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("credentials_json", "credentials_file", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        # A value made from a file (a Kubernetes secret) often ends in a newline; it is no part of it.
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("credentials_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("credentials_json")
    @classmethod
    def _is_credentials_json(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            info = json.loads(value.get_secret_value())
        except ValueError:
            # Never quote the input: it is a credential.
            raise ValueError(
                "is not valid JSON (expected the content of a Google credentials file)"
            ) from None
        if not isinstance(info, dict) or not isinstance(info.get("type"), str):
            raise ValueError('must be a JSON object with a "type" field (a Google credentials file)')
        return value

    @field_validator("replication_locations", mode="before")
    @classmethod
    def _split_locations(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            return tuple(str(item).strip() for item in value if str(item).strip())
        return value

    @field_validator("replication_locations")
    @classmethod
    def _locations_ok(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for location in value:
            if not _LOCATION_RE.fullmatch(location):
                raise ValueError(f"{location!r} is not a location such as europe-west1")
        if len(set(value)) != len(value):
            raise ValueError("names a location twice")
        return value

    @field_validator("kms_key_name")
    @classmethod
    def _kms_key_ok(cls, value: str | None) -> str | None:
        if value is not None and not _KMS_KEY_RE.fullmatch(value):
            raise ValueError("must be projects/P/locations/L/keyRings/R/cryptoKeys/K")
        return value

    # -- across fields ------------------------------------------------------------------------------------

    @model_validator(mode="after")
    def _consistent(self) -> GcpSettings:
        # ConfigurationError passes through pydantic unchanged, so each problem names its own variable.
        endpoint = self.endpoint
        if endpoint is not None:
            # Shown masked: a URL's user-info may hold a password, and neither transport sends it anyway.
            shown = mask_url(endpoint)
            if shown != endpoint:
                self._fail(
                    "endpoint",
                    f"must not carry user-info (user:password@), got {shown!r}; Google credentials go in "
                    "MULTICLOUD_STORE_GCP_CREDENTIALS_FILE or _CREDENTIALS_JSON",
                )
            if self.transport == "grpc" and not _GRPC_ENDPOINT_RE.fullmatch(endpoint):
                self._fail(
                    "endpoint",
                    f"must be host[:port] for MULTICLOUD_STORE_GCP_TRANSPORT=grpc, got {shown!r}"
                    + (" (a URL is for the rest transport)" if "://" in endpoint else ""),
                )
            if self.transport == "rest" and not _REST_ENDPOINT_RE.fullmatch(endpoint):
                self._fail(
                    "endpoint",
                    f"must be http(s)://host[:port] for MULTICLOUD_STORE_GCP_TRANSPORT=rest, got {shown!r}",
                )
            if endpoint.startswith("http://") and not self.anonymous:
                self._fail(
                    "endpoint",
                    "a plain http:// endpoint would send credentials unencrypted; use https:// or, for an "
                    "emulator, MULTICLOUD_STORE_GCP_ANONYMOUS=true",
                )
        if self.anonymous:
            if endpoint is None:
                self._fail("anonymous", "is for emulators only: also set MULTICLOUD_STORE_GCP_ENDPOINT")
            if self.project_id is None:
                self._fail("project_id", "is required with MULTICLOUD_STORE_GCP_ANONYMOUS=true")
            for field in ("credentials_file", "credentials_json", "impersonate_service_account"):
                if getattr(self, field) is not None:
                    self._fail(field, "cannot be combined with MULTICLOUD_STORE_GCP_ANONYMOUS=true")
        if self.location is not None and self.replication_locations:
            self._fail(
                "replication_locations",
                "regional secrets (MULTICLOUD_STORE_GCP_LOCATION) have no replication policy; set one or the "
                "other",
            )
        if self.credentials_file is not None and self.credentials_json is not None:
            self._fail("credentials_json", "set either it or MULTICLOUD_STORE_GCP_CREDENTIALS_FILE, not both")
        if (
            self.kms_key_name is not None
            and "{location}" in self.kms_key_name
            and not (self.replication_locations or self.location)
        ):
            self._fail(
                "kms_key_name",
                "uses {location}, which needs MULTICLOUD_STORE_GCP_REPLICATION_LOCATIONS or "
                "MULTICLOUD_STORE_GCP_LOCATION",
            )
        if (
            self.kms_key_name is not None
            and len(self.replication_locations) > 1
            and "{location}" not in self.kms_key_name
        ):
            self._fail(
                "kms_key_name",
                "a key lives in one location, but several replication locations are set: write {location} "
                "in place of the location to use one key per replica",
            )
        if self.retry_max_backoff < self.retry_initial_backoff:
            self._fail(
                "retry_max_backoff", "must not be smaller than MULTICLOUD_STORE_GCP_RETRY_INITIAL_BACKOFF"
            )
        return self

    @classmethod
    def _fail(cls, field: str, problem: str) -> None:
        variable = cls.env_name(field)
        raise ConfigurationError(
            f"invalid configuration: {variable}: {problem}", variable=variable, backend="gcp"
        )

    # -- derived ------------------------------------------------------------------------------------------

    def resolved_endpoint(self) -> str | None:
        """Return the endpoint to use: the configured one, else the regional one for ``location``, else None.

        Returns:
            ``host[:port]`` (gRPC) or ``https://host`` (REST), or None for the global default.
        """
        if self.endpoint is not None or self.location is None:
            return self.endpoint
        host = f"secretmanager.{self.location}.rep.googleapis.com"
        return host if self.transport == "grpc" else f"https://{host}"

    def kms_key_for(self, location: str | None) -> str | None:
        """Return the CMEK key for a replica location (or for automatic replication when None).

        Args:
            location: The replica's location; None for automatic replication or a regional secret.

        Returns:
            The key name, or None without CMEK.
        """
        if self.kms_key_name is None:
            return None
        if location is None:
            location = self.location
        if location is None:
            return self.kms_key_name
        return self.kms_key_name.replace("{location}", location)

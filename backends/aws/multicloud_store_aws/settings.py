"""Settings of the ``aws`` backend, read from ``MULTICLOUD_STORE_AWS_*``.

Everything here is checked without network I/O or boto3. What only botocore can resolve (the region from
``AWS_REGION`` or a profile, credentials from the default chain) is resolved by the driver.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal, NoReturn
from urllib.parse import urlsplit

from multicloud_store.errors import ConfigurationError
from multicloud_store.settings import (
    EnvSettings,
    Field,
    SecretStr,
    SettingsConfigDict,
    field_validator,
    model_validator,
)

__all__ = ["AwsSettings", "mask_url"]

# Commercial, GovCloud, China and ISO partitions: us-east-1, us-gov-west-1, cn-north-1, us-isob-east-1.
_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}$")
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$")
# AWS: 2 to 64 characters of [\w+=,.@-] for a role session name, 2 to 1224 of [\w+=,.@:/-] for an external id.
_SESSION_NAME_RE = re.compile(r"^[\w+=,.@-]{2,64}$")
_EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# The user-info of a URL ("user:password@"), wherever a typo put it: after "//", or at the start.
_USERINFO_RE = re.compile(r"[^/@]*@")
_BOTOCORE_POOL = 10  # botocore's default max_pool_connections


def mask_url(url: str) -> str:
    """Return a URL fit to show: any user-info (``user:password@``) is replaced by ``***@``.

    Args:
        url: A URL as the user wrote it, possibly malformed.

    Returns:
        The URL with every ``...@`` run (up to a slash) masked.
    """
    return _USERINFO_RE.sub("***@", url)


class _Workers(EnvSettings):
    """The dispatcher's thread count, read here only to size the connection pool."""

    model_config = SettingsConfigDict(env_prefix="MULTICLOUD_STORE_")

    max_workers: int = Field(default=8, ge=1, le=64)


class AwsSettings(EnvSettings):
    """Settings of the ``aws`` backend (``MULTICLOUD_STORE_AWS_*``).

    Credentials are taken, in this order, from: the static keys (``access_key_id`` with ``secret_access_key``
    and optionally ``session_token``), else ``profile``, else botocore's default chain (``AWS_*`` variables,
    web identity / IRSA, ECS and EKS pod identity, instance profile). With ``role_arn``, those credentials are
    only the source for assuming that role, and the role's credentials are refreshed before they expire.

    Attributes:
        region: The AWS region. Default: botocore's own resolution (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the
            profile's ``region``); a `ConfigurationError` when nothing provides one.
        endpoint_url: Override the Secrets Manager endpoint: a VPC endpoint, or an emulator such as moto.
        profile: A named profile of the shared AWS config files.
        role_arn: An IAM role to assume for every call.
        role_external_id: The external id the role's trust policy requires.
        role_session_name: The session name of the assumed role (shows up in CloudTrail).
        access_key_id: A static access key id.
        secret_access_key: The secret access key that goes with ``access_key_id``.
        session_token: A session token, for temporary static credentials.
        kms_key_id: A customer-managed KMS key (id, ARN, alias name or alias ARN) to encrypt new secrets with.
            Default: the account's ``aws/secretsmanager`` key.
        recovery_window_days: When set (7 to 30), deleted secrets are recoverable for that many days, and their
            ids cannot be stored again until then. Default: delete at once, without recovery.
        retry_mode: botocore's retry mode: ``standard`` (default), ``adaptive`` (also rate-limits the client
            when throttled) or ``legacy``.
        max_attempts: Attempts per call, the first one included, before a failure is reported.
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for a response once connected.
        recreate_wait_seconds: How long a store of an id whose forced deletion AWS is still finishing in the
            background keeps retrying (jittered backoff) before it fails with `SecretStateError`. 0: do not wait.
        max_pool_connections: Connections botocore keeps open for reuse. Default: ``MULTICLOUD_STORE_MAX_WORKERS``
            (at least botocore's own 10), so that as many threads as the store is sized for reuse connections.
    """

    model_config = SettingsConfigDict(env_prefix="MULTICLOUD_STORE_AWS_")

    secret_fields: ClassVar[tuple[str, ...]] = ("secret_access_key", "session_token")

    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    role_external_id: str | None = None
    role_session_name: str = "multicloud-store"
    access_key_id: str | None = Field(default=None, max_length=128)
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    kms_key_id: str | None = Field(default=None, max_length=2048)
    recovery_window_days: int | None = Field(default=None, ge=7, le=30)
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    max_attempts: int = Field(default=5, ge=1, le=20)
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    read_timeout: float = Field(default=10.0, gt=0, le=300)
    recreate_wait_seconds: float = Field(default=30.0, ge=0, le=900)
    max_pool_connections: int | None = Field(default=None, ge=1, le=1000)

    # -- single fields ------------------------------------------------------------------------------------

    @field_validator(
        "region",
        "endpoint_url",
        "profile",
        "role_arn",
        "role_external_id",
        "access_key_id",
        "kms_key_id",
        "recovery_window_days",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # An empty variable (``X=`` in a compose file) means "not set", not "set to nothing".
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("secret_access_key", "session_token", mode="before")
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        # A value read from a file (a Kubernetes secret) often ends in a newline: strip what surrounds it.
        if isinstance(value, SecretStr):
            text = value.get_secret_value().strip()
            return SecretStr(text) if text else None
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("access_key_id", "secret_access_key", "session_token", "role_external_id")
    @classmethod
    def _no_control_characters(cls, value: str | SecretStr | None) -> str | SecretStr | None:
        # A control character inside a credential would end up in an HTTP header (and in the SDK's error text).
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is not None and _CONTROL_RE.search(text):
            raise ValueError(
                "contains a control character (a newline or a tab inside the value); the value is not shown"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _pool_from_workers(cls, data: Any) -> Any:
        # Unset: size the pool for the threads the store is configured for (MULTICLOUD_STORE_MAX_WORKERS).
        if isinstance(data, dict) and data.get("max_pool_connections") in (None, ""):
            workers = _Workers.from_environ().max_workers
            data = {**data, "max_pool_connections": max(_BOTOCORE_POOL, workers)}
        return data

    @field_validator("retry_mode", mode="before")
    @classmethod
    def _normalise_retry_mode(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("region")
    @classmethod
    def _region_ok(cls, value: str | None) -> str | None:
        if value is not None and not _REGION_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an AWS region such as eu-west-1")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_ok(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an http(s):// URL such as https://secretsmanager.eu-west-1.amazonaws.com, got "
                f"{mask_url(value)!r}"
            )
        if parts.username or parts.password:
            # Never echo it: the URL itself may carry a password.
            raise ValueError("must not contain a user name or password")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role_arn_ok(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an IAM role ARN such as arn:aws:iam::123456789012:role/name")
        return value

    @field_validator("role_session_name")
    @classmethod
    def _session_name_ok(cls, value: str) -> str:
        if not _SESSION_NAME_RE.fullmatch(value):
            raise ValueError("must be 2 to 64 characters of letters, digits and +=,.@_-")
        return value

    @field_validator("role_external_id")
    @classmethod
    def _external_id_ok(cls, value: str | None) -> str | None:
        if value is not None and not _EXTERNAL_ID_RE.fullmatch(value):
            raise ValueError("must be 2 to 1224 characters of letters, digits and +=,.@:/_-")
        return value

    # -- across fields ------------------------------------------------------------------------------------

    @model_validator(mode="after")
    def _consistent(self) -> AwsSettings:
        # ConfigurationError passes through pydantic unchanged, so each problem names its own variables.
        key_id, secret = self.env_name("access_key_id"), self.env_name("secret_access_key")
        if self.secret_access_key is not None and self.access_key_id is None:
            self._fail("access_key_id", f"{secret} is set but {key_id} is not: set both, or neither")
        if self.access_key_id is not None and self.secret_access_key is None:
            self._fail("secret_access_key", f"{key_id} is set but {secret} is not: set both, or neither")
        if self.session_token is not None and self.access_key_id is None:
            self._fail(
                "session_token",
                f"{self.env_name('session_token')} needs {key_id} and {secret} (the temporary credentials it "
                "belongs to)",
            )
        if self.profile is not None and self.access_key_id is not None:
            self._fail(
                "profile",
                f"{self.env_name('profile')} and {key_id} both select credentials: set only one of them",
            )
        if self.role_external_id is not None and self.role_arn is None:
            self._fail(
                "role_arn",
                f"{self.env_name('role_external_id')} is set but {self.env_name('role_arn')} is not: the "
                "external id is only sent when assuming a role",
            )
        return self

    @classmethod
    def _fail(cls, field: str, problem: str) -> NoReturn:
        variable = cls.env_name(field)
        raise ConfigurationError(f"invalid configuration: {problem}", variable=variable, backend="aws")

    # -- derived ------------------------------------------------------------------------------------------

    def uses_static_keys(self) -> bool:
        """Tell whether static keys are configured.

        Returns:
            True when ``access_key_id`` and ``secret_access_key`` are set.
        """
        return self.access_key_id is not None and self.secret_access_key is not None

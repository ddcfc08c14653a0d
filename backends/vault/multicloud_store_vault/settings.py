"""Settings of the ``vault`` backend, read from ``MULTICLOUD_STORE_VAULT_*``.

Like the ``vault`` CLI, the address, token, namespace and CA bundle fall back to Vault's own variables
(``VAULT_ADDR``, ``VAULT_TOKEN``, ``VAULT_NAMESPACE``, ``VAULT_CACERT``) when the ``MULTICLOUD_STORE_VAULT_*`` ones
are not set. Everything here is checked without network I/O; credential files (``SECRET_ID_FILE``, the Kubernetes
service-account token) are read at each login, so a rotated file is picked up.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal, NoReturn
from urllib.parse import urlsplit

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

__all__ = ["DEFAULT_KUBERNETES_TOKEN_FILE", "VaultSettings", "read_credential_file"]

DEFAULT_KUBERNETES_TOKEN_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")

# Control characters (C0, DEL, C1): never part of a token, and a sign of a pasted or badly quoted value.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A mount or auth mount path: segments of letters, digits and ._- separated by "/".
_MOUNT_RE = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")
_ROLE_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*/?$")

_PREFIX = "MULTICLOUD_STORE_VAULT_"
_FALLBACKS = {
    "url": "VAULT_ADDR",
    "token": "VAULT_TOKEN",
    "namespace": "VAULT_NAMESPACE",
    "ca_bundle": "VAULT_CACERT",
}


def _env(field: str, *fallbacks: str) -> AliasChoices:
    # Our own variable first, then Vault's; validation_alias bypasses env_prefix, so spell both out.
    return AliasChoices(f"{_PREFIX}{field.upper()}", field, *fallbacks)


def read_credential_file(path: Path, variable: str) -> str:
    """Read a credential from a file: stripped, refused when empty or holding control characters.

    Args:
        path: The file.
        variable: The variable that named the file, for the error message.

    Returns:
        The credential.

    Raises:
        ConfigurationError: The file cannot be read, is empty or holds control characters. The message names the
            variable and the path, never the content.
    """
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"cannot read the credential file {str(path)!r} named by {variable} ({type(exc).__name__})",
            variable=variable,
            backend="vault",
        ) from None
    if not text:
        raise ConfigurationError(
            f"the credential file {str(path)!r} named by {variable} is empty",
            variable=variable,
            backend="vault",
        )
    if _CONTROL.search(text):
        raise ConfigurationError(
            f"the credential file {str(path)!r} named by {variable} holds control characters",
            variable=variable,
            backend="vault",
        )
    return text


class VaultSettings(EnvSettings):
    """Settings of the ``vault`` backend (``MULTICLOUD_STORE_VAULT_*``).

    Attributes:
        url: The server's address, ``https://vault.example:8200`` (fallback ``VAULT_ADDR``). Required.
        auth_method: ``token`` (default), ``approle`` or ``kubernetes``.
        token: The token for ``auth_method=token`` (fallback ``VAULT_TOKEN``). It is used as given, never renewed
            by this store: give it a TTL long enough, or a periodic token renewed by an agent.
        role_id: The AppRole role id (``auth_method=approle``).
        secret_id: The AppRole secret id. Leave unset for a role created with ``bind_secret_id=false``.
        secret_id_file: A file holding the secret id instead (read at every login, so it may be rotated).
        approle_mount: Where the AppRole auth method is mounted. Default ``approle``.
        kubernetes_role: The Vault role for ``auth_method=kubernetes``.
        kubernetes_token_file: The pod's service-account token, read at every login (projected tokens rotate).
        kubernetes_mount: Where the Kubernetes auth method is mounted. Default ``kubernetes``.
        mount: The KV version 2 secrets engine's mount. Default ``secret``.
        namespace: A Vault Enterprise / OpenBao namespace (fallback ``VAULT_NAMESPACE``).
        ca_bundle: A PEM file (or directory) of CA certificates to verify the server with (fallback
            ``VAULT_CACERT``). Default: the system's trust store (through requests/certifi).
        max_versions: Versions of each secret Vault keeps (set on each secret's metadata when it is created).
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for an answer once connected.
        max_retries: Retries after the first attempt, by urllib3, on connection errors, 429 and 5xx (a sealed
            or standby Vault answers 503).
        backoff_factor: urllib3's exponential backoff between retries, in seconds.
    """

    model_config = SettingsConfigDict(env_prefix=_PREFIX, populate_by_name=True)

    secret_fields: ClassVar[tuple[str, ...]] = ("token", "role_id", "secret_id")
    _credential_fields: ClassVar[tuple[str, ...]] = ("token", "role_id", "secret_id")

    url: str | None = Field(default=None, validation_alias=_env("url", "VAULT_ADDR"))
    auth_method: Literal["token", "approle", "kubernetes"] = "token"
    token: SecretStr | None = Field(default=None, validation_alias=_env("token", "VAULT_TOKEN"))
    role_id: SecretStr | None = None
    secret_id: SecretStr | None = None
    secret_id_file: Path | None = None
    approle_mount: str = "approle"
    kubernetes_role: str | None = None
    kubernetes_token_file: Path = DEFAULT_KUBERNETES_TOKEN_FILE
    kubernetes_mount: str = "kubernetes"
    mount: str = "secret"
    namespace: str | None = Field(default=None, validation_alias=_env("namespace", "VAULT_NAMESPACE"))
    ca_bundle: Path | None = Field(default=None, validation_alias=_env("ca_bundle", "VAULT_CACERT"))
    max_versions: int = Field(default=5, ge=1, le=1000)
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    read_timeout: float = Field(default=10.0, gt=0, le=300)
    max_retries: int = Field(default=3, ge=0, le=20)
    backoff_factor: float = Field(default=0.2, ge=0, le=30)

    # -- single fields ------------------------------------------------------------------------------------

    @field_validator(
        "url",
        "secret_id_file",
        "kubernetes_role",
        "namespace",
        "ca_bundle",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # An empty variable (``X=`` in a compose file) means "not set", not "set to nothing".
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("auth_method", mode="before")
    @classmethod
    def _normalise_method(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("token", "role_id", "secret_id", mode="before")
    @classmethod
    def _credential(cls, value: object) -> object:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            return value
        text = text.strip()
        if not text:
            return None
        if _CONTROL.search(text):
            # The message names the variable (added by EnvSettings), never the value.
            raise ValueError("holds control characters")
        return SecretStr(text)

    @field_validator("url")
    @classmethod
    def _url_ok(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.username or parts.password:
            # Never echo it: the URL itself may carry a password.
            raise ValueError("must not contain a user name or password")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s):// URL such as https://vault.example:8200, got {value!r}")
        if parts.query or parts.fragment:
            raise ValueError("must be the server's address only, without a query or fragment")
        return value.rstrip("/")

    @field_validator("mount", "approle_mount", "kubernetes_mount", mode="before")
    @classmethod
    def _mount_ok(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        mount = value.strip().strip("/")
        if not _MOUNT_RE.fullmatch(mount):
            raise ValueError("must be a mount path such as secret or team/kv (letters, digits, ._- and /)")
        return mount

    @field_validator("kubernetes_role")
    @classmethod
    def _role_ok(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_RE.fullmatch(value):
            raise ValueError("must be a Vault role name (1 to 128 letters, digits and ._@-)")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace_ok(cls, value: str | None) -> str | None:
        if value is not None and not _NAMESPACE_RE.fullmatch(value):
            raise ValueError("must be a namespace path such as team-a or org/team-a")
        return value

    # -- across fields ------------------------------------------------------------------------------------

    @model_validator(mode="after")
    def _consistent(self) -> VaultSettings:
        # ConfigurationError passes through pydantic unchanged, so each problem names its own variables.
        if self.url is None:
            self._fail(
                "url", f"{self.env_name('url')} (or VAULT_ADDR) is required: the Vault server's address"
            )
        method = self.env_name("auth_method")
        if self.auth_method == "token" and self.token is None:
            self._fail("token", f"{method}=token needs {self.env_name('token')} (or VAULT_TOKEN)")
        if self.auth_method == "approle" and self.role_id is None:
            self._fail("role_id", f"{method}=approle needs {self.env_name('role_id')}")
        if self.secret_id is not None and self.secret_id_file is not None:
            self._fail(
                "secret_id",
                f"{self.env_name('secret_id')} and {self.env_name('secret_id_file')} are both set: set one",
            )
        if self.auth_method == "kubernetes" and self.kubernetes_role is None:
            self._fail("kubernetes_role", f"{method}=kubernetes needs {self.env_name('kubernetes_role')}")
        if self.auth_method == "kubernetes" and not self.kubernetes_token_file.is_file():
            # Outside a pod (or without automountServiceAccountToken) there is no token to log in with.
            self._fail(
                "kubernetes_token_file",
                f"{method}=kubernetes needs the service-account token file "
                f"{self.env_name('kubernetes_token_file')}: no such file: {self.kubernetes_token_file}",
            )
        if self.ca_bundle is not None and not self.ca_bundle.exists():
            self._fail(
                "ca_bundle", f"{self.env_name('ca_bundle')}: no such file or directory: {self.ca_bundle}"
            )
        if self.secret_id_file is not None and not self.secret_id_file.is_file():
            self._fail(
                "secret_id_file", f"{self.env_name('secret_id_file')}: no such file: {self.secret_id_file}"
            )
        return self

    @classmethod
    def _fail(cls, field: str, problem: str) -> NoReturn:
        raise ConfigurationError(
            f"invalid configuration: {problem}", variable=cls.env_name(field), backend="vault"
        )

    @classmethod
    def _configuration_error(cls, exc: object) -> ConfigurationError:
        # Aliases make pydantic report "multicloud_store_vault_token" or "vault_token": name our variable.
        error = super()._configuration_error(exc)  # type: ignore[arg-type]
        text = str(error)
        for name in cls.model_fields:
            for alias in (f"{_PREFIX}{name}".lower(), f"{_PREFIX}{name}".upper()):
                text = text.replace(alias.upper() if alias.isupper() else alias, cls.env_name(name))
        for fallback in ("vault_addr", "vault_token", "vault_namespace", "vault_cacert"):
            text = text.replace(fallback, fallback.upper())
        for field, fallback in _FALLBACKS.items():
            # The value may have come from Vault's own variable: name both.
            ours = cls.env_name(field)
            if ours in text and f"(or {fallback})" not in text:
                text = text.replace(ours, f"{ours} (or {fallback})", 1)
        variable = error.variable
        if variable is not None and variable.upper().startswith(_PREFIX):
            variable = variable.upper()
        return ConfigurationError(text, variable=variable, backend="vault")

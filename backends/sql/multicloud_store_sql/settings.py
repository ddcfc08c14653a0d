"""Settings of the ``sql`` backend, read from ``MULTICLOUD_STORE_SQL_*``.

Everything here is checked without connecting: the URL is parsed by SQLAlchemy (never echoed back in an error),
the key text is parsed by the shared keyring. The database driver named by the URL (psycopg, PyMySQL, ...) is
loaded by the driver, on first use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NoReturn

from multicloud_store.errors import ConfigurationError
from multicloud_store.keyfiles import read_key_file
from multicloud_store.sealing import KeyFormatError, Keyring
from multicloud_store.settings import (
    EnvSettings,
    Field,
    SecretStr,
    SettingsConfigDict,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["SqlSettings", "masked_url"]

BACKEND_NAME = "sql"
_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,50}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def masked_url(url: URL) -> str:
    """Render a URL with its password replaced by ``***``.

    Args:
        url: A SQLAlchemy URL.

    Returns:
        The text, safe to show.
    """
    return url.render_as_string(hide_password=True)


def _parse_url(text: str) -> URL:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(text)
    except (ArgumentError, ValueError):
        # SQLAlchemy's own message quotes the whole text, password included: never pass it on.
        raise ValueError(
            "is not a SQLAlchemy URL such as postgresql+psycopg://user:password@host:5432/db, "
            "mysql+pymysql://user:password@host:3306/db or sqlite:////path/to/file.db"
        ) from None


class SqlSettings(EnvSettings):
    """Settings of the ``sql`` backend (``MULTICLOUD_STORE_SQL_*``).

    Attributes:
        url: The database, as a SQLAlchemy URL: ``postgresql+psycopg://``, ``mysql+pymysql://`` (MySQL and
            MariaDB) or ``sqlite:///``. Its password is never shown (``info``, reprs and errors mask it).
        key: The keyring that seals every row: one or more ``<id>:<base64 of 32 bytes>`` entries (or bare base64
            keys), newest first, separated by commas or newlines. Writes use the newest key; reads use the key
            whose id the row records.
        key_file: A file holding the keyring in the same format, instead of ``key``.
        table: The table of secrets; created on first use, with ``<table>_meta`` beside it.
        pool_size: Connections kept open per process.
        max_overflow: Connections opened beyond ``pool_size`` under load (closed again when returned).
        pool_timeout: Seconds a call waits for a free connection from the pool.
        pool_recycle: Seconds after which a pooled connection is replaced (before servers or proxies drop it).
        connect_timeout: Seconds to wait for a new connection.
        statement_timeout: Seconds one statement may run (PostgreSQL ``statement_timeout``; MySQL and MariaDB
            read and write timeouts of the client; SQLite's busy timeout).
        max_retries: Extra attempts for a statement that failed on a deadlock or a serialization failure.
        page_size: Rows per page when listing.
        batch_size: Names per ``SELECT ... WHERE name IN (...)`` in a batch read.
    """

    model_config = SettingsConfigDict(env_prefix="MULTICLOUD_STORE_SQL_")

    secret_fields: ClassVar[tuple[str, ...]] = ("url", "key")

    url: SecretStr
    key: SecretStr | None = None
    key_file: Path | None = None
    table: str = "multicloud_store_secrets"
    pool_size: int = Field(default=5, ge=1, le=200)
    max_overflow: int = Field(default=10, ge=0, le=1000)
    pool_timeout: float = Field(default=30.0, gt=0, le=3600)
    pool_recycle: int = Field(default=1800, ge=-1, le=86400)
    connect_timeout: float = Field(default=10.0, gt=0, le=600)
    statement_timeout: float = Field(default=30.0, gt=0, le=3600)
    max_retries: int = Field(default=3, ge=0, le=20)
    page_size: int = Field(default=500, ge=1, le=10_000)
    batch_size: int = Field(default=100, ge=1, le=1000)

    @field_validator("url", "key", mode="before")
    @classmethod
    def _strip_credential(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str):
            raw = raw.strip()
            if not raw:
                return None
            if _CONTROL_RE.search(raw.replace("\n", "").replace("\r", "")):
                raise ValueError("contains control characters")
            return SecretStr(raw)
        return value

    @field_validator("key_file", mode="before")
    @classmethod
    def _blank_path_is_unset(cls, value: object) -> object:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url_ok(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if "\n" in text or "\r" in text:
            raise ValueError("contains control characters")
        url = _parse_url(text)
        if not url.drivername:
            raise ValueError("names no database dialect")
        return value

    @field_validator("key")
    @classmethod
    def _key_ok(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                Keyring.parse(value.get_secret_value())
            except KeyFormatError as exc:
                raise ValueError(str(exc)) from None  # names the entry by position, never its content
        return value

    @field_validator("table")
    @classmethod
    def _table_ok(cls, value: str) -> str:
        value = value.strip()
        if not _TABLE_RE.fullmatch(value):
            raise ValueError("must be 1 to 51 letters, digits or '_', not starting with a digit")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> SqlSettings:
        if self.key is not None and self.key_file is not None:
            self._fail(
                "key_file",
                f"{self.env_name('key')} and {self.env_name('key_file')} are both set: set only one of them",
            )
        if self.key is None and self.key_file is None:
            self._fail(
                "key",
                f"no encryption key: set {self.env_name('key')} (for example "
                f"k1:$(openssl rand -base64 32)) or {self.env_name('key_file')}; every replica needs the same keys",
            )
        return self

    @classmethod
    def _fail(cls, field: str, problem: str) -> NoReturn:
        raise ConfigurationError(
            f"invalid configuration: {problem}", variable=cls.env_name(field), backend="sql"
        )

    # -- derived ------------------------------------------------------------------------------------------

    def sqlalchemy_url(self) -> URL:
        """Return the parsed URL (it holds the password: never print it; see `masked_url`).

        Returns:
            The URL.
        """
        return _parse_url(self.url.get_secret_value())

    def display_url(self) -> str:
        """Return the URL with its password masked.

        Returns:
            Text safe to show.
        """
        return masked_url(self.sqlalchemy_url())

    def keyring(self) -> Keyring:
        """Load the keyring from ``key`` or from ``key_file``.

        Returns:
            The keyring.

        Raises:
            ConfigurationError: The key file cannot be read or does not hold a keyring (the message names the
                variable and the file, never key material).
        """
        if self.key is not None:
            return Keyring.parse(self.key.get_secret_value())
        assert self.key_file is not None
        variable = self.env_name("key_file")
        path = self.key_file.expanduser()
        # The shared reader refuses a key file that group or others may read, like ssh does.
        keyring = read_key_file(path, variable=variable)
        if keyring is None:
            raise ConfigurationError(
                f"the key file {path} does not exist; check {variable} (the SQL backend never creates a key: "
                "every replica must be given the same one)",
                variable=variable,
                backend=BACKEND_NAME,
            )
        return keyring

    def redacted(self) -> dict[str, str]:
        """Return the settings as ``{VARIABLE: text}``, the URL shown with its password masked.

        Returns:
            A mapping safe to print.
        """
        out = super().redacted()
        out[self.env_name("url")] = self.display_url()
        return out

"""The ``local`` backend, the embedded default: one SQLite file, every payload sealed with AES-256-GCM.

- The file lives in the user data directory (platformdirs) unless ``MULTICLOUD_STORE_LOCAL_PATH`` says
  otherwise; it and its key file are created with mode 0600, in a directory created with mode 0700.
- The key comes from ``MULTICLOUD_STORE_LOCAL_KEY`` (base64 of 32 bytes) or from a key file created on first use.
  A check value in the database tells a wrong key apart from a tampered row.
- Each row is encrypted with a fresh 96-bit nonce and the secret's name and labels as associated data, so a row
  copied onto another name, or relabelled, fails to decrypt instead of returning another secret's values.
- WAL mode and a busy timeout let several processes use one file at once; every write is one statement.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from multicloud_store.driver import DriverLimits, StoredSecret, read_many_sequential
from multicloud_store.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    SecretCorruptedError,
    SecretExistsError,
    SecretNotFoundError,
)
from multicloud_store.settings import EnvSettings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["LocalDriver", "LocalSettings", "default_path"]

_KEY_CHECK_PLAINTEXT = b"multicloud-store key check v1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    labels TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
"""


def default_path() -> Path:
    """Return the default database path: ``<user data dir>/multicloud-store/secrets.db``.

    Returns:
        The path (not created).
    """
    from platformdirs import user_data_path

    return user_data_path("multicloud-store", appauthor=False) / "secrets.db"


class LocalSettings(EnvSettings):
    """Settings of the ``local`` backend (``MULTICLOUD_STORE_LOCAL_*``).

    Attributes:
        path: The SQLite file. Default: ``secrets.db`` in the user data directory.
        key: The encryption key, base64 of 32 random bytes. Default: read from (or created in) ``key_file``.
        key_file: Where the key is kept when ``key`` is not set. Default: ``<path>.key``.
        busy_timeout_seconds: How long a write waits for another process's write before failing.
        page_size: Rows read per page when listing.
    """

    model_config = SettingsConfigDict(env_prefix="MULTICLOUD_STORE_LOCAL_")

    path: Path | None = None
    key: SecretStr | None = None
    key_file: Path | None = None
    busy_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    page_size: int = Field(default=100, ge=1, le=10_000)

    @field_validator("key")
    @classmethod
    def _key_is_32_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            raw = base64.b64decode(value.get_secret_value().strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64 (for example: openssl rand -base64 32)") from None
        if len(raw) != 32:
            raise ValueError(f"must decode to 32 bytes for AES-256, got {len(raw)}")
        return value

    def resolved_path(self) -> Path:
        """Return the database path, applying the default.

        Returns:
            The path.
        """
        return (self.path or default_path()).expanduser()

    def resolved_key_file(self) -> Path:
        """Return the key file path, applying the default.

        Returns:
            The path.
        """
        if self.key_file is not None:
            return self.key_file.expanduser()
        database = self.resolved_path()
        return database.with_name(database.name + ".key")


class LocalDriver:
    """The embedded backend. Opens the database on first use, one connection per thread.

    Args:
        settings: Its settings; read from the environment when omitted.
    """

    backend_name: ClassVar[str] = "local"
    settings_class: ClassVar[type[EnvSettings]] = LocalSettings
    # The cloud backends' common ceiling, so a secret that works locally also fits AWS and GCP.
    _LIMITS = DriverLimits(max_payload_bytes=65_536)

    def __init__(self, settings: LocalSettings | None = None) -> None:
        self.settings = settings or LocalSettings.from_environ()
        self.path = self.settings.resolved_path()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._aead: AESGCM | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"LocalDriver(path={str(self.path)!r})"

    @property
    def limits(self) -> DriverLimits:
        """What this backend accepts."""
        return self._LIMITS

    # -- setup --------------------------------------------------------------------------------------------

    def _key_source(self) -> str:
        if self.settings.key is not None:
            return "MULTICLOUD_STORE_LOCAL_KEY"
        return f"key file {self.settings.resolved_key_file()}"

    def _load_key(self) -> bytes:
        if self.settings.key is not None:
            return base64.b64decode(self.settings.key.get_secret_value().strip())
        key_file = self.settings.resolved_key_file()
        try:
            key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not key_file.exists():
                _create_exclusive(key_file, base64.b64encode(secrets.token_bytes(32)) + b"\n")
            text = key_file.read_bytes().strip()
        except PermissionError as exc:
            raise BackendPermissionError(
                f"cannot read or create the key file {key_file}: permission denied"
            ) from exc
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read or create the key file {key_file} ({exc.strerror}); set MULTICLOUD_STORE_LOCAL_KEY "
                "or MULTICLOUD_STORE_LOCAL_KEY_FILE",
                variable="MULTICLOUD_STORE_LOCAL_KEY_FILE",
            ) from exc
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ConfigurationError(
                f"the key file {key_file} does not hold base64 of 32 bytes",
                variable="MULTICLOUD_STORE_LOCAL_KEY_FILE",
            )
        return key

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        if self._closed:
            raise BackendError(f"the local store {self.path} is closed")
        with self._lock:
            if self._aead is None:
                from cryptography.hazmat.primitives.ciphers.aead import AESGCM

                self._aead = AESGCM(self._load_key())
            connection = self._open()
            self._connections.append(connection)
        self._local.connection = connection
        return connection

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Create the file ourselves so it is born 0600; SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            connection = sqlite3.connect(
                self.path,
                timeout=self.settings.busy_timeout_seconds,
                isolation_level=None,  # autocommit: every write below is a single atomic statement
                check_same_thread=False,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            # One connection per thread: cap each page cache (default 2 MiB) so memory does not grow with the
            # number of threads times the database size; reads are by primary key and the OS caches the file.
            connection.execute("PRAGMA cache_size=-512")
            connection.executescript(_SCHEMA)
            self._check_key(connection)
        except PermissionError as exc:
            raise BackendPermissionError(
                f"cannot open the local store {self.path}: permission denied"
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, f"cannot open the local store {self.path}") from exc
        except OSError as exc:
            raise ConfigurationError(
                f"cannot open the local store {self.path} ({exc.strerror}); check MULTICLOUD_STORE_LOCAL_PATH",
                variable="MULTICLOUD_STORE_LOCAL_PATH",
            ) from exc
        return connection

    def _check_key(self, connection: sqlite3.Connection) -> None:
        assert self._aead is not None
        nonce = secrets.token_bytes(12)
        check = nonce + self._aead.encrypt(nonce, _KEY_CHECK_PLAINTEXT, b"key-check")
        connection.execute("INSERT OR IGNORE INTO meta (k, v) VALUES ('key_check', ?)", (check,))
        stored = connection.execute("SELECT v FROM meta WHERE k = 'key_check'").fetchone()[0]
        from cryptography.exceptions import InvalidTag

        try:
            self._aead.decrypt(stored[:12], stored[12:], b"key-check")
        except InvalidTag:
            raise ConfigurationError(
                f"the encryption key ({self._key_source()}) is not the key the local store {self.path} was "
                "created with",
                variable="MULTICLOUD_STORE_LOCAL_KEY",
                backend="local",
            ) from None

    # -- crypto -------------------------------------------------------------------------------------------

    @staticmethod
    def _aad(name: str, labels_text: str) -> bytes:
        return name.encode() + b"\x00" + labels_text.encode()

    def _seal(self, name: str, payload: str, labels_text: str) -> tuple[bytes, bytes]:
        assert self._aead is not None
        nonce = secrets.token_bytes(12)
        return nonce, self._aead.encrypt(nonce, payload.encode("utf-8"), self._aad(name, labels_text))

    def _unseal(self, name: str, nonce: bytes, ciphertext: bytes, labels_text: str) -> str:
        assert self._aead is not None
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(nonce, ciphertext, self._aad(name, labels_text)).decode("utf-8")
        except (InvalidTag, ValueError, UnicodeDecodeError):
            raise SecretCorruptedError(
                f"secret {name!r} in {self.path} fails its integrity check: the row was modified or copied "
                "from another secret"
            ) from None

    # -- the protocol -------------------------------------------------------------------------------------

    def create(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Create a secret; see `SecretsDriver.create`."""
        connection = self._connection()
        labels_text = _labels_text(labels)
        nonce, ciphertext = self._seal(name, payload, labels_text)
        now = time.time()
        try:
            connection.execute(
                "INSERT INTO secrets (name, nonce, ciphertext, labels, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
                (name, nonce, ciphertext, labels_text, now, now),
            )
        except sqlite3.IntegrityError:
            raise SecretExistsError(f"secret {name!r} already exists") from None
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, f"storing {name!r} failed") from exc

    def read(self, name: str) -> StoredSecret:
        """Read and decrypt a secret; see `SecretsDriver.read`."""
        connection = self._connection()
        try:
            row = connection.execute(
                "SELECT nonce, ciphertext, labels FROM secrets WHERE name = ?", (name,)
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, f"reading {name!r} failed") from exc
        if row is None:
            raise SecretNotFoundError(f"secret {name!r} not found")
        nonce, ciphertext, labels_text = row
        payload = self._unseal(name, nonce, ciphertext, labels_text)
        return StoredSecret(name, payload, _parse_labels(labels_text))

    def replace(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Replace a secret's payload in one statement; see `SecretsDriver.replace`."""
        connection = self._connection()
        labels_text = _labels_text(labels)
        nonce, ciphertext = self._seal(name, payload, labels_text)
        try:
            cursor = connection.execute(
                "UPDATE secrets SET nonce = ?, ciphertext = ?, labels = ?, updated = ? WHERE name = ?",
                (nonce, ciphertext, labels_text, time.time(), name),
            )
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, f"updating {name!r} failed") from exc
        if cursor.rowcount == 0:
            raise SecretNotFoundError(f"secret {name!r} not found")

    def delete(self, name: str) -> None:
        """Delete a row; see `SecretsDriver.delete`."""
        connection = self._connection()
        try:
            cursor = connection.execute("DELETE FROM secrets WHERE name = ?", (name,))
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, f"deleting {name!r} failed") from exc
        if cursor.rowcount == 0:
            raise SecretNotFoundError(f"secret {name!r} not found")

    def list_names(self, labels: Mapping[str, str]) -> Iterator[str]:
        """List names by labels with keyset paging; see `SecretsDriver.list_names`."""
        size = self.settings.page_size
        after = ""
        while True:
            try:
                rows = (
                    self._connection()
                    .execute(
                        "SELECT name, labels FROM secrets WHERE name > ? ORDER BY name LIMIT ?", (after, size)
                    )
                    .fetchall()
                )
            except sqlite3.DatabaseError as exc:
                raise _translate(exc, "listing secrets failed") from exc
            for name, labels_text in rows:
                stored = _parse_labels(labels_text)
                if all(stored.get(k) == v for k, v in labels.items()):
                    yield name
            if len(rows) < size:
                return
            after = rows[-1][0]

    def read_many(self, names: list[str]) -> Mapping[str, StoredSecret | Exception]:
        """Read several secrets; see `SecretsDriver.read_many`."""
        return read_many_sequential(self, names)

    def health_check(self) -> None:
        """Open the database, check the key and run a query."""
        try:
            self._connection().execute("SELECT count(*) FROM secrets").fetchone()
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, "health check failed") from exc

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()


def _create_exclusive(path: Path, content: bytes) -> None:
    """Write a new file atomically with mode 0600; if another process won the race, keep theirs."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails if the file exists: never overwrite a key in use (another process won the race).
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _labels_text(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def _parse_labels(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _translate(exc: sqlite3.DatabaseError, what: str) -> BackendError:
    message = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return BackendUnavailableError(f"{what}: the local store is locked by another writer")
    if "readonly" in message or "read-only" in message or "permission" in message:
        return BackendPermissionError(f"{what}: the local store is read-only")
    if isinstance(exc, sqlite3.OperationalError) and ("disk" in message or "unable to open" in message):
        return BackendUnavailableError(f"{what}: {exc}")
    return SecretCorruptedError(f"{what}: the local store is damaged ({type(exc).__name__})")

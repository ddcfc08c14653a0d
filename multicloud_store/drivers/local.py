"""The ``local`` backend, the embedded default: one SQLite file, every payload sealed with AES-256-GCM.

- The file lives in the user data directory (platformdirs) unless ``MULTICLOUD_STORE_LOCAL_PATH`` says
  otherwise; it and its key file are created with mode 0600, in a directory created with mode 0700. Existing
  database files that group or others may read are tightened to 0600; a key file they may read is refused.
- Nothing is created until the first write: reading or listing a store that does not exist finds nothing.
- The keys come from ``MULTICLOUD_STORE_LOCAL_KEY`` or from a key file made together with a new database (never
  for a database that already holds data). Several keys may be given, newest first (`multicloud_store.sealing`):
  every row records the id of its key, reads use it, writes use the newest, and `LocalDriver.rotate_keys`
  re-encrypts the rest row by row while other processes keep working.
- One key check per key id in the database tells a wrong key apart from a tampered row; a database whose checks
  were removed is only adopted by a key that opens its rows.
- Each row is encrypted with a fresh 96-bit nonce and the secret's name and labels as associated data, so a row
  copied onto another name, or relabelled, fails to decrypt instead of returning another secret's values.
- WAL mode and a busy timeout let several processes use one file at once; every write is one statement, and
  setting a database up (schema, key checks, upgrades) happens under one write lock (``BEGIN IMMEDIATE``).
- A bounded pool of connections serves every thread; `LocalDriver.close` waits for calls in flight.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

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
from multicloud_store.keyfiles import (
    RotationReport,
    create_key_file,
    missing_key_file_error,
    read_key_file,
    write_key_file,
)
from multicloud_store.sealing import (
    IntegrityError,
    KeyFormatError,
    Keyring,
    Sealed,
    UnknownKeyError,
    key_check_opens,
    row_aad,
    seal_key_check,
)
from multicloud_store.settings import (
    _ENVIRON,
    EnvSettings,
    Field,
    SecretStr,
    SettingsConfigDict,
    field_validator,
)

__all__ = ["LocalDriver", "LocalSettings", "RotationReport", "default_path"]

logger = logging.getLogger("multicloud_store")

_SCHEMA_VERSION = 2  # 0: rows without a key id (one key); 2: a key id on every row, one key check per key id
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    labels TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
"""
_LEGACY_CHECK = "key_check"  # the single key check of schema 0, sealed with associated data b"key-check"
_CHECK_PREFIX = "key_check:"
_PROOF_ROWS = 8  # rows a key must open to be adopted by a database whose key checks are gone
_FD_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM}  # out of descriptors or memory: not a setting
_warned_modes: set[str] = set()
_warned_lock = threading.Lock()
_OWNED_ATTEMPTS = 5  # rounds of read, check and compare-and-swap write before an owned write gives up
_READ_ROW = "SELECT key_id, nonce, ciphertext, labels FROM secrets WHERE name = ?"


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
        key: The encryption keys, newest first: base64 of 32 random bytes, or ``<id>:<base64>`` entries separated
            by commas. Default: read from ``key_file``.
        key_file: Where the keys are kept when ``key`` is not set. Default: ``<path>.key``.
        busy_timeout_seconds: How long a write waits for another process's write before failing.
        page_size: Rows read per page when listing.
        pool_size: Most SQLite connections open at once (each is a file descriptor or three). Default:
            ``MULTICLOUD_STORE_MAX_WORKERS`` (8), the size of the store's thread pool.
    """

    model_config = SettingsConfigDict(env_prefix="MULTICLOUD_STORE_LOCAL_")

    path: Path | None = None
    key: SecretStr | None = None
    key_file: Path | None = None
    busy_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    page_size: int = Field(default=100, ge=1, le=10_000)
    pool_size: int | None = Field(default=None, ge=1, le=256)

    @field_validator("key")
    @classmethod
    def _key_is_a_keyring(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            Keyring.parse(value.get_secret_value())
        except KeyFormatError as exc:
            raise ValueError(
                f"must be base64 of 32 bytes (for example: openssl rand -base64 32), or <id>:<base64> entries "
                f"separated by commas, newest first ({exc})"
            ) from None
        return value

    @field_validator("pool_size")
    @classmethod
    def _default_pool_size(cls, value: int | None) -> int:
        if value is not None:
            return value
        # Sized to the store's worker pool, read from the same environment the settings come from.
        scoped = _ENVIRON.get()
        environ = scoped if scoped is not None else os.environ
        text = environ.get("MULTICLOUD_STORE_MAX_WORKERS", "")
        try:
            return min(max(int(text), 1), 64)
        except ValueError:
            return 8

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


class _State:
    """What a look at a database found (read inside the transaction that may change it)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        self.checks: dict[str, bytes] = {}
        self.legacy_check: bytes | None = None
        self.any_row = False
        self.has_key_id = False
        if "meta" in tables:
            for k, v in connection.execute("SELECT k, v FROM meta WHERE k LIKE 'key_check%'"):
                if k == _LEGACY_CHECK:
                    self.legacy_check = bytes(v)
                elif k.startswith(_CHECK_PREFIX):
                    self.checks[k[len(_CHECK_PREFIX) :]] = bytes(v)
        if "secrets" in tables:
            columns = {row[1] for row in connection.execute("PRAGMA table_info(secrets)")}
            self.has_key_id = "key_id" in columns
            self.any_row = connection.execute("SELECT 1 FROM secrets LIMIT 1").fetchone() is not None

    @property
    def fresh(self) -> bool:
        return not self.checks and self.legacy_check is None and not self.any_row


class LocalDriver:
    """The embedded backend. Opens the database on first use; a bounded pool of connections serves every thread.

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
        self._pool_size: int = self.settings.pool_size or 8
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # shares the lock: the fast paths take only the lock
        self._idle: list[sqlite3.Connection] = []
        self._open_count = 0  # connections open: idle plus in use (plus being opened)
        self._waiters = 0
        self._closed = False
        self._ready = False  # the database exists, is set up and the keys are verified
        self._setup_lock = threading.Lock()
        self._keyring: Keyring | None = None

    def __repr__(self) -> str:
        return f"LocalDriver(path={str(self.path)!r})"

    @property
    def limits(self) -> DriverLimits:
        """What this backend accepts."""
        return self._LIMITS

    def location(self) -> tuple[str, ...]:
        """Identify the store for `SecretsStore.store_identity`: the database file, with symlinks and ``..`` resolved.

        Returns:
            ``(resolved path,)``.
        """
        return (os.path.realpath(self.path),)

    # -- keys ---------------------------------------------------------------------------------------------

    def _key_source(self) -> str:
        if self.settings.key is not None:
            return "MULTICLOUD_STORE_LOCAL_KEY"
        return f"key file {self.settings.resolved_key_file()}"

    def _key_variable(self) -> str:
        return (
            "MULTICLOUD_STORE_LOCAL_KEY"
            if self.settings.key is not None
            else "MULTICLOUD_STORE_LOCAL_KEY_FILE"
        )

    def _configured_keyring(self) -> Keyring | None:
        """The configured keys, or None when the key file does not exist (yet)."""
        if self.settings.key is not None:
            return Keyring.parse(self.settings.key.get_secret_value())
        return read_key_file(self.settings.resolved_key_file(), variable="MULTICLOUD_STORE_LOCAL_KEY_FILE")

    def _wrong_key(self, detail: str = "") -> ConfigurationError:
        return ConfigurationError(
            f"the encryption key ({self._key_source()}) is not the key the local store {self.path} was "
            f"created with{detail}",
            variable=self._key_variable(),
            backend="local",
        )

    # -- connections --------------------------------------------------------------------------------------

    def _closed_error(self) -> BackendError:
        return BackendError(f"the local store {self.path} is closed", backend="local")

    def _acquire(self, create: bool) -> sqlite3.Connection | None:
        """Check a connection out of the pool; None when the database does not exist and ``create`` is False."""
        with self._lock:
            if self._idle and not self._closed:
                return self._idle.pop()
        with self._cond:
            while True:
                if self._closed:
                    raise self._closed_error()
                if self._idle:
                    return self._idle.pop()
                if self._open_count < self._pool_size:
                    self._open_count += 1
                    break
                self._waiters += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiters -= 1
        try:
            connection = self._new_connection(create)
        except BaseException:
            self._forget_one()
            raise
        if connection is None:
            self._forget_one()
        return connection

    def _forget_one(self) -> None:
        with self._cond:
            self._open_count -= 1
            if self._waiters or self._closed:
                self._cond.notify_all()

    def _release(self, connection: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(connection)
                if self._waiters:
                    self._cond.notify()
                return
            self._open_count -= 1
            self._cond.notify_all()
        # Closed while this call was in flight (and close() gave up waiting): the last user closes it.
        connection.close()

    def _new_connection(self, create: bool) -> sqlite3.Connection | None:
        if self._ready:
            return self._connect(create=False)
        with self._setup_lock:
            # Another thread may have set it up while this one waited for the lock.
            return self._connect(create=False) if self._is_ready() else self._set_up(create)

    def _is_ready(self) -> bool:
        return self._ready

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        mode = "rwc" if create else "rw"
        try:
            connection = sqlite3.connect(
                f"file:{quote(str(self.path))}?mode={mode}",
                uri=True,
                timeout=self.settings.busy_timeout_seconds,
                isolation_level=None,  # autocommit: every write below is a single atomic statement
                check_same_thread=False,
            )
            try:
                connection.execute("PRAGMA synchronous=NORMAL")
                # Cap each page cache (default 2 MiB): reads are by primary key and the OS caches the file.
                connection.execute("PRAGMA cache_size=-512")
            except BaseException:
                connection.close()
                raise
        except sqlite3.OperationalError as exc:
            raise self._open_error(exc) from exc
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, f"cannot open the local store {self.path}") from exc
        return connection

    def _open_error(self, exc: sqlite3.OperationalError) -> BackendError | ConfigurationError:
        """SQLite says only "unable to open": ask the OS what it was (too many open files, permissions, ...)."""
        try:
            os.close(os.open(self.path, os.O_RDWR))
        except OSError as os_exc:
            return self._os_error(os_exc)
        return _translate(exc, f"cannot open the local store {self.path}")

    def _os_error(self, exc: OSError) -> BackendError | ConfigurationError:
        if isinstance(exc, PermissionError):
            return BackendPermissionError(f"cannot open the local store {self.path}: permission denied")
        if exc.errno in _FD_ERRNOS:
            # Out of descriptors or memory: a resource problem of this process, not a wrong setting.
            return BackendUnavailableError(f"cannot open the local store {self.path}: {exc.strerror}")
        return ConfigurationError(
            f"cannot open the local store {self.path} ({exc.strerror}); check MULTICLOUD_STORE_LOCAL_PATH",
            variable="MULTICLOUD_STORE_LOCAL_PATH",
        )

    # -- setting a database up -------------------------------------------------------------------------------

    def _set_up(self, create: bool) -> sqlite3.Connection | None:
        """Open the database for the first time; None when it does not exist (or is empty) and not ``create``."""
        keyring = self._configured_keyring()  # a bad or too-open key file fails here, before anything is made
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            size = -1
        except OSError as exc:
            raise self._os_error(exc) from exc
        if size <= 0 and not create:
            return None
        if size < 0:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                # Create the file ourselves so it is born 0600; SQLite gives its -wal and -shm files the same mode.
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            except OSError as exc:
                raise self._os_error(exc) from exc
        connection = self._connect(create=False)
        try:
            self._tighten_modes()
            self._enable_wal(connection)
            state = _State(connection)
            if state.fresh and not create:
                connection.close()
                return None
            if keyring is None and not state.fresh:
                # Another process made the database (and, before committing it, its key file) meanwhile.
                keyring = self._configured_keyring()
            if not self._verify(connection, state, keyring, create, write=False):
                # Setting up, upgrading or restoring a check: one writer at a time, waiting out the busy timeout.
                connection.execute("BEGIN IMMEDIATE")
                try:
                    if keyring is None:
                        keyring = self._configured_keyring()  # another process may have made it meanwhile
                    self._verify(connection, _State(connection), keyring, create, write=True)
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
            self._tighten_modes()
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise _translate(exc, f"cannot open the local store {self.path}") from exc
        except BaseException:
            connection.close()
            raise
        self._ready = True
        return connection

    def _enable_wal(self, connection: sqlite3.Connection) -> None:
        if connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        # Switching to WAL needs a moment alone with the file, and SQLite does not wait for it: retry within the
        # busy timeout (the one hand-written wait here; everything else uses SQLite's busy handler).
        deadline = time.monotonic() + self.settings.busy_timeout_seconds
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _verify(
        self,
        connection: sqlite3.Connection,
        state: _State,
        keyring: Keyring | None,
        create: bool,
        *,
        write: bool,
    ) -> bool:
        """Check the keys against the database; with ``write``, make whatever changes are due.

        Returns:
            True when nothing needs writing (the keyring is then installed).
        """
        if state.fresh:
            if not write:
                return False
            if keyring is None:
                # A new database, and only then, gets a new key file.
                keyring = create_key_file(
                    self.settings.resolved_key_file(),
                    Keyring.generate(),
                    variable="MULTICLOUD_STORE_LOCAL_KEY_FILE",
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            self._put_check(connection, keyring, keyring.newest_id)
            self._keyring = keyring
            return True
        if keyring is None:
            raise missing_key_file_error(
                self.path,
                self.settings.resolved_key_file(),
                variable="MULTICLOUD_STORE_LOCAL_KEY_FILE",
                key_variable="MULTICLOUD_STORE_LOCAL_KEY",
            )
        proven: set[str] = set()
        for key_id, check in state.checks.items():
            if key_id in keyring:
                if not key_check_opens(keyring, key_id, check):
                    raise self._wrong_key(f" (key id {key_id!r} is a different key)")
                proven.add(key_id)
        legacy_id: str | None = None
        if state.legacy_check is not None and not state.has_key_id:
            legacy_id = next(
                (
                    i
                    for i in keyring.ids
                    if key_check_opens(keyring, i, state.legacy_check, legacy_aad=b"key-check")
                ),
                None,
            )
            if legacy_id is None:
                raise self._wrong_key()
            proven.add(legacy_id)
        if not proven:
            if state.checks or state.legacy_check is not None:
                raise self._wrong_key()
            # Rows but no key check (it was removed): only a key that opens the rows may restore it.
            proven = self._prove_by_rows(connection, state, keyring)
            if not proven:
                raise SecretCorruptedError(
                    f"the local store {self.path} holds secrets but no key check, and the configured key "
                    f"({self._key_source()}) cannot open them: refusing to use it (the check was removed, or this "
                    "is the wrong key)",
                    backend="local",
                )
        needs = (
            state.version < _SCHEMA_VERSION or not state.has_key_id or keyring.newest_id not in state.checks
        )
        needs = needs or any(i not in state.checks for i in proven)
        if not needs:
            self._keyring = keyring
            return True
        if not write:
            return False
        if not state.has_key_id:
            # Upgrade in place, in this one transaction: it commits whole or not at all, so it resumes by itself.
            upgrade_id = legacy_id or next(iter(proven))
            connection.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL)")
            connection.execute("ALTER TABLE secrets ADD COLUMN key_id TEXT NOT NULL DEFAULT ''")
            connection.execute("UPDATE secrets SET key_id = ? WHERE key_id = ''", (upgrade_id,))
        connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        for key_id in {*proven, keyring.newest_id}:
            if key_id not in state.checks:
                self._put_check(connection, keyring, key_id)
        self._keyring = keyring
        return True

    @staticmethod
    def _put_check(connection: sqlite3.Connection, keyring: Keyring, key_id: str) -> None:
        connection.execute(
            "INSERT OR IGNORE INTO meta (k, v) VALUES (?, ?)",
            (_CHECK_PREFIX + key_id, seal_key_check(keyring, key_id)),
        )

    def _prove_by_rows(self, connection: sqlite3.Connection, state: _State, keyring: Keyring) -> set[str]:
        """Return the key ids that open the first rows, or nothing if any of those rows does not open."""
        query = (
            "SELECT name, key_id, nonce, ciphertext, labels FROM secrets ORDER BY name LIMIT ?"
            if state.has_key_id
            else "SELECT name, '', nonce, ciphertext, labels FROM secrets ORDER BY name LIMIT ?"
        )
        rows = connection.execute(query, (_PROOF_ROWS,)).fetchall()
        proven: set[str] = set()
        for name, key_id, nonce, ciphertext, labels_text in rows:
            aad = row_aad(name, labels_text)
            candidates = [key_id] if key_id in keyring else ([] if key_id else list(keyring.ids))
            opened = None
            for candidate in candidates:
                try:
                    keyring.open(Sealed(candidate, nonce, ciphertext), aad)
                except IntegrityError:
                    continue
                opened = candidate
                break
            if opened is None:
                return set()
            proven.add(opened)
        return proven

    def _tighten_modes(self) -> None:
        """Make the database, WAL and SHM files private to this user, if they are ours and are not yet."""
        changed = []
        for path in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            try:
                info = os.stat(path)
                if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
                    os.chmod(path, 0o600)
                    changed.append(f"{path.name} (was {stat.S_IMODE(info.st_mode):04o})")
            except OSError:
                continue  # not there (yet), or not ours to change
        if changed:
            with _warned_lock:
                first = str(self.path) not in _warned_modes
                _warned_modes.add(str(self.path))
            if first:
                logger.warning(
                    "the local store %s was readable by group or others; set to mode 0600: %s",
                    self.path,
                    ", ".join(changed),
                )

    # -- crypto -------------------------------------------------------------------------------------------

    def _seal(self, name: str, payload: str, labels_text: str) -> Sealed:
        assert self._keyring is not None
        return self._keyring.seal(payload.encode("utf-8"), row_aad(name, labels_text))

    def _unseal(self, name: str, key_id: str, nonce: bytes, ciphertext: bytes, labels_text: str) -> str:
        keyring = self._keyring
        assert keyring is not None
        aad = row_aad(name, labels_text)
        try:
            try:
                return keyring.open_parts(key_id, nonce, ciphertext, aad).decode("utf-8")
            except UnknownKeyError:
                if not key_id:
                    return _open_unlabelled(keyring, nonce, ciphertext, aad).decode("utf-8")
                keyring = self._reload_keys(key_id)
            return keyring.open_parts(key_id, nonce, ciphertext, aad).decode("utf-8")
        except (IntegrityError, UnicodeDecodeError):
            raise self._corrupted(name) from None

    def _corrupted(self, name: str) -> SecretCorruptedError:
        return SecretCorruptedError(
            f"secret {name!r} in {self.path} fails its integrity check: the row was modified or copied "
            "from another secret"
        )

    def _reload_keys(self, key_id: str) -> Keyring:
        """A row names a key this process does not hold: the key file may have gained it (a rotation)."""
        keyring = None
        if self.settings.key is None:
            with self._setup_lock:
                keyring = self._configured_keyring()
                if keyring is not None and key_id in keyring:
                    self._keyring = keyring
        if keyring is None or key_id not in keyring:
            raise ConfigurationError(
                f"a secret in the local store {self.path} is sealed with key id {key_id!r}, which is not among the "
                f"configured keys ({self._key_source()}); add that key (older keys go after the newest)",
                variable=self._key_variable(),
                backend="local",
            )
        return keyring

    # -- the protocol -------------------------------------------------------------------------------------

    def create(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Create a secret; see `SecretsDriver.create`."""
        connection = self._acquire(create=True)
        assert connection is not None
        try:
            labels_text = _labels_text(labels)
            sealed = self._seal(name, payload, labels_text)
            now = time.time()
            connection.execute(
                "INSERT INTO secrets (name, key_id, nonce, ciphertext, labels, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, sealed.key_id, sealed.nonce, sealed.ciphertext, labels_text, now, now),
            )
        except sqlite3.IntegrityError:
            raise SecretExistsError(f"secret {name!r} already exists") from None
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, f"storing {name!r} failed") from exc
        finally:
            self._release(connection)

    def read(self, name: str) -> StoredSecret:
        """Read and decrypt a secret; see `SecretsDriver.read`."""
        connection = self._acquire(create=False)
        if connection is None:
            raise SecretNotFoundError(f"secret {name!r} not found")
        try:
            row = connection.execute(_READ_ROW, (name,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, f"reading {name!r} failed") from exc
        finally:
            self._release(connection)
        return self._opened(name, row)

    def _opened(self, name: str, row: tuple[str, bytes, bytes, str] | None) -> StoredSecret:
        """Open a `_READ_ROW` row as `read` returns it; no row is not found."""
        if row is None:
            raise SecretNotFoundError(f"secret {name!r} not found")
        key_id, nonce, ciphertext, labels_text = row
        payload = self._unseal(name, key_id, nonce, ciphertext, labels_text)
        return StoredSecret(name, payload, _Labels(labels_text))

    def replace(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Replace a secret's payload in one statement; see `SecretsDriver.replace`."""
        connection = self._acquire(create=False)
        if connection is None:
            raise SecretNotFoundError(f"secret {name!r} not found")
        try:
            labels_text = _labels_text(labels)
            sealed = self._seal(name, payload, labels_text)
            cursor = connection.execute(
                "UPDATE secrets SET key_id = ?, nonce = ?, ciphertext = ?, labels = ?, updated = ? WHERE name = ?",
                (sealed.key_id, sealed.nonce, sealed.ciphertext, labels_text, time.time(), name),
            )
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, f"updating {name!r} failed") from exc
        finally:
            self._release(connection)
        if cursor.rowcount == 0:
            raise SecretNotFoundError(f"secret {name!r} not found")

    def delete(self, name: str) -> None:
        """Delete a row; see `SecretsDriver.delete`."""
        connection = self._acquire(create=False)
        if connection is None:
            raise SecretNotFoundError(f"secret {name!r} not found")
        try:
            cursor = connection.execute("DELETE FROM secrets WHERE name = ?", (name,))
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, f"deleting {name!r} failed") from exc
        finally:
            self._release(connection)
        if cursor.rowcount == 0:
            raise SecretNotFoundError(f"secret {name!r} not found")

    def replace_owned(
        self, name: str, payload: str, labels: Mapping[str, str], check: Callable[[StoredSecret], object]
    ) -> None:
        """Read, ``check``, then replace the row if it is still the one checked; see `OwnedWrites.replace_owned`."""

        def statement() -> tuple[str, tuple[object, ...]]:
            labels_text = _labels_text(labels)
            sealed = self._seal(name, payload, labels_text)  # the keys are loaded once a connection is open
            return (
                "UPDATE secrets SET key_id = ?, nonce = ?, ciphertext = ?, labels = ?, updated = ? "
                "WHERE name = ? AND nonce = ?",
                (sealed.key_id, sealed.nonce, sealed.ciphertext, labels_text, time.time(), name),
            )

        self._owned_write(name, check, statement, "updating")

    def delete_owned(self, name: str, check: Callable[[StoredSecret], object]) -> None:
        """Read, ``check``, then delete the row if it is still the one checked; see `OwnedWrites.delete_owned`."""
        self._owned_write(
            name, check, lambda: ("DELETE FROM secrets WHERE name = ? AND nonce = ?", (name,)), "deleting"
        )

    def _owned_write(
        self,
        name: str,
        check: Callable[[StoredSecret], object],
        statement: Callable[[], tuple[str, tuple[object, ...]]],
        what: str,
    ) -> None:
        """Read and open the row, ``check`` it, then write it with a compare-and-swap on the nonce checked.

        Two statements on one pooled connection, each atomic; a row another writer replaced in between is read and
        checked again (a few rounds at most). No transaction is held open while ``check`` runs.
        """
        connection = self._acquire(create=False)
        if connection is None:
            raise SecretNotFoundError(f"secret {name!r} not found")
        try:
            sql, parameters = statement()
            for _ in range(_OWNED_ATTEMPTS):
                row = connection.execute(_READ_ROW, (name,)).fetchone()
                check(self._opened(name, row))
                nonce = row[1]  # _opened raised if there was no row
                if connection.execute(sql, (*parameters, nonce)).rowcount:
                    return
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, f"{what} {name!r} failed") from exc
        finally:
            self._release(connection)
        raise BackendUnavailableError(
            f"{what} {name!r} failed: other writers changed it {_OWNED_ATTEMPTS} times while it was being written"
        )

    def list_names(self, labels: Mapping[str, str]) -> Iterator[str]:
        """List names by labels with keyset paging; see `SecretsDriver.list_names`."""
        size = self.settings.page_size
        after = ""
        while True:
            # A connection per page, never held across a yield: a slow consumer does not pin the pool.
            connection = self._acquire(create=False)
            if connection is None:
                return
            try:
                rows = connection.execute(
                    "SELECT name, labels FROM secrets WHERE name > ? ORDER BY name LIMIT ?", (after, size)
                ).fetchall()
            except sqlite3.DatabaseError as exc:
                raise _translate(exc, "listing secrets failed") from exc
            finally:
                self._release(connection)
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
        """Open the database and check the keys (a store that does not exist yet is healthy and stays absent)."""
        connection = self._acquire(create=False)
        if connection is None:
            return
        try:
            connection.execute("SELECT count(*) FROM secrets").fetchone()
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, "health check failed") from exc
        finally:
            self._release(connection)

    def close(self, timeout: float | None = None) -> None:
        """Refuse new calls, wait for the calls in flight (bounded), then close the connections.

        A call still running when the wait ends closes its own connection when it finishes; a connection is
        never closed under a running call.

        Args:
            timeout: Longest wait for calls in flight, in seconds (default: the busy timeout plus 5).
        """
        limit = self.settings.busy_timeout_seconds + 5 if timeout is None else timeout
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            deadline = time.monotonic() + limit
            while self._open_count > len(self._idle):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            idle, self._idle = self._idle, []
            self._open_count -= len(idle)
        for connection in idle:
            connection.close()

    # -- keys: rotation -----------------------------------------------------------------------------------

    def key_ids(self) -> tuple[str, ...]:
        """Return the ids of the configured keys, newest first (opens the database).

        Returns:
            The ids.
        """
        self._with_connection(lambda connection: None)
        assert self._keyring is not None
        return self._keyring.ids

    def _with_connection(self, func: Callable[[sqlite3.Connection], object]) -> object:
        connection = self._acquire(create=False)
        if connection is None:
            raise BackendError(
                f"the local store {self.path} does not exist yet: nothing to rotate", backend="local"
            )
        try:
            return func(connection)
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, "key rotation failed") from exc
        finally:
            self._release(connection)

    def add_new_key(self, key_id: str | None = None) -> str:
        """Generate a key and put it in front of the key file (atomic replace, mode 0600); writes then use it.

        The database records the new key's check first, so a crash in between leaves the key file as it was.

        Args:
            key_id: The new key's id (default: ``k<date>-<random>``).

        Returns:
            The new key's id.

        Raises:
            ConfigurationError: The keys come from ``MULTICLOUD_STORE_LOCAL_KEY`` (edit that instead).
        """
        if self.settings.key is not None:
            raise ConfigurationError(
                "the keys come from MULTICLOUD_STORE_LOCAL_KEY: put a new <id>:<base64> entry in front of it "
                "(for example: k2:$(openssl rand -base64 32)), keep the old key after it, then run rotate-key",
                variable="MULTICLOUD_STORE_LOCAL_KEY",
            )

        def add(connection: sqlite3.Connection) -> str:
            key_file = self.settings.resolved_key_file()
            with self._setup_lock:
                current = self._configured_keyring()
                if current is None:
                    raise missing_key_file_error(
                        self.path,
                        key_file,
                        variable="MULTICLOUD_STORE_LOCAL_KEY_FILE",
                        key_variable="MULTICLOUD_STORE_LOCAL_KEY",
                    )
                keyring = current.with_new_key(key_id)
                self._put_check(connection, keyring, keyring.newest_id)
                write_key_file(key_file, keyring, variable="MULTICLOUD_STORE_LOCAL_KEY_FILE")
                self._keyring = keyring
            return keyring.newest_id

        return str(self._with_connection(add))

    def rotate_keys(
        self, progress: Callable[[int, int], None] | None = None, *, batch_size: int = 100
    ) -> RotationReport:
        """Re-encrypt every row under the newest key while other processes keep reading and writing.

        Row by row, each a compare-and-swap ``UPDATE`` on the row's nonce, so a concurrent write is never
        overwritten. Safe to interrupt: a second run carries on with the rows still under older keys.

        Args:
            progress: Called with (rows done, rows to do) after each batch.
            batch_size: Rows read per batch.

        Returns:
            What was done, what remains, and which old keys no row uses any more.
        """

        def rotate(connection: sqlite3.Connection) -> RotationReport:
            keyring = self._keyring
            assert keyring is not None
            newest = keyring.newest_id
            report = RotationReport(newest_id=newest)
            total = connection.execute(
                "SELECT count(*) FROM secrets WHERE key_id != ?", (newest,)
            ).fetchone()[0]
            done = 0
            after = ""
            while True:
                rows = connection.execute(
                    "SELECT name, key_id, nonce, ciphertext, labels FROM secrets WHERE key_id != ? AND name > ? "
                    "ORDER BY name LIMIT ?",
                    (newest, after, batch_size),
                ).fetchall()
                for name, key_id, nonce, ciphertext, labels_text in rows:
                    aad = row_aad(name, labels_text)
                    try:
                        if key_id:
                            plaintext = keyring.open_parts(key_id, nonce, ciphertext, aad)
                        else:
                            plaintext = _open_unlabelled(keyring, nonce, ciphertext, aad)
                    except (UnknownKeyError, IntegrityError):
                        report.failed += 1
                        continue
                    sealed = keyring.seal(plaintext, aad)
                    cursor = connection.execute(
                        "UPDATE secrets SET key_id = ?, nonce = ?, ciphertext = ? WHERE name = ? AND nonce = ?",
                        (sealed.key_id, sealed.nonce, sealed.ciphertext, name, nonce),
                    )
                    if cursor.rowcount:
                        report.rewritten += 1
                    else:
                        report.skipped += 1  # rewritten or deleted by another writer meanwhile: theirs stands
                done += len(rows)
                if progress is not None:
                    progress(min(done, total), total)
                if len(rows) < batch_size:
                    break
                after = rows[-1][0]
            counts = dict(
                connection.execute("SELECT key_id, count(*) FROM secrets GROUP BY key_id").fetchall()
            )
            report.remaining = {k: int(v) for k, v in counts.items() if k != newest}
            report.removable = tuple(i for i in keyring.ids[1:] if i not in counts)
            return report

        result = self._with_connection(rotate)
        assert isinstance(result, RotationReport)
        return result


def _open_unlabelled(keyring: Keyring, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Open a row without a key id: one written into an upgraded file by an older version, with its one key."""
    for key_id in keyring.ids:
        try:
            return keyring.open_parts(key_id, nonce, ciphertext, aad)
        except IntegrityError:
            continue
    raise IntegrityError("no configured key opens the row")


def _labels_text(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


class _Labels(Mapping[str, str]):
    """A row's labels, parsed on first use: a read needs them only when the payload is not ours (rare)."""

    __slots__ = ("_parsed", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._parsed: dict[str, str] | None = None

    def _get(self) -> dict[str, str]:
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = _parse_labels(self._text)
        return parsed

    def __getitem__(self, key: str) -> str:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(self._get())


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

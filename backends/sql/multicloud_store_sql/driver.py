"""The ``sql`` backend: one table in PostgreSQL, MySQL, MariaDB or SQLite, through SQLAlchemy 2 Core.

- One row per secret: ``name`` (primary key), ``key_id``, ``nonce``, ``ciphertext``, ``labels`` (JSON text),
  ``deployment`` (the deployment label, indexed with the name for listing), ``created``, ``updated`` (UTC).
  The payload is sealed with AES-256-GCM by the shared keyring (`multicloud_store.sealing`), with the name and
  the labels as associated data, exactly like the ``local`` backend: a row copied onto another name, or
  relabelled, fails its integrity check instead of returning another secret's values.
- The table and a small ``<table>_meta`` table are created on first use. The meta table records the schema
  version (so a later release can migrate the table) and, per key id, a value sealed by that key: a wrong key
  is reported as a configuration error at start, never confused with a tampered row.
- Every call is one statement in its own transaction: create is an ``INSERT`` that the primary key makes
  exclusive; replace one ``UPDATE``; delete one ``DELETE``; listing pages by keyset (``name > :last``). The
  dispatcher's update and delete (`OwnedWrites`) check ownership inside the write's transaction: on PostgreSQL
  one statement returning the old row, then the check; elsewhere a read, the check and a compare-and-swap write
  on the nonce checked (MariaDB deletes with ``DELETE ... RETURNING`` too).
- Connections come from SQLAlchemy's pool with ``pool_pre_ping``, so connections broken by a server restart or
  a failover are replaced before use. Deadlocks and serialization failures re-run the statement a bounded number
  of times; every other failure maps onto the shared error hierarchy (`multicloud_store_sql.errors`).
- `SqlDriver.rotate` re-seals rows under the newest key with compare-and-swap updates, while other replicas keep
  reading and writing; it can be interrupted and run again.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql

from multicloud_store.driver import DriverLimits, StoredSecret
from multicloud_store.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    MultiCloudStoreError,
    SecretCorruptedError,
    SecretExistsError,
    SecretNotFoundError,
)
from multicloud_store.keyfiles import RotationReport, write_key_file
from multicloud_store.sealing import (
    IntegrityError,
    Keyring,
    Sealed,
    UnknownKeyError,
    key_check_opens,
    row_aad,
    seal_key_check,
)
from multicloud_store_sql.errors import BACKEND, rule_for, translate
from multicloud_store_sql.settings import SqlSettings, masked_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.sql.expression import Executable

    from multicloud_store.settings import EnvSettings

__all__ = ["SCHEMA_VERSION", "RotationReport", "SqlDriver"]

logger = logging.getLogger("multicloud_store.sql")

#: The version of the table layout this release writes; `SqlDriver` refuses a table of a newer one.
SCHEMA_VERSION = 1
# The label the dispatcher uses for the deployment: stored in its own indexed column for listing.
_DEPLOYMENT_LABEL = "mcs_deployment"
_KEY_CHECK_PREFIX = "key_check:"
# Rounds of read, check and compare-and-swap write before an owned write gives up on concurrent writers.
_OWNED_ATTEMPTS = 5

_T = TypeVar("_T")

# Names are ASCII ({prefix}-{uuid}): a binary collation keeps the primary key case-sensitive on MySQL and
# MariaDB, and makes keyset paging order bytewise (and index-friendly) on every database.
_NAME = String(255).with_variant(
    mysql.VARCHAR(255, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)
_NAME_PG = _NAME.with_variant(String(255, collation="C"), "postgresql")
# A sealed payload is up to 64 KiB plus the GCM tag: more than MySQL's BLOB holds.
_CIPHERTEXT = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")


def _tables(name: str) -> tuple[MetaData, Table, Table]:
    metadata = MetaData()
    secrets = Table(
        name,
        metadata,
        Column("name", _NAME_PG, primary_key=True),
        Column("key_id", String(32), nullable=False),
        Column("nonce", LargeBinary(16), nullable=False),
        Column("ciphertext", _CIPHERTEXT, nullable=False),
        Column("labels", Text, nullable=False),
        Column("deployment", String(63), nullable=False),
        Column("created", DateTime, nullable=False),
        Column("updated", DateTime, nullable=False),
        Index(f"ix_{name}_deployment", "deployment", "name"),
        Index(f"ix_{name}_key_id", "key_id"),
    )
    meta = Table(
        f"{name}_meta",
        metadata,
        Column(
            "k",
            String(64).with_variant(mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), "mysql"),
            primary_key=True,
        ),
        Column("v", Text, nullable=False),
    )
    return metadata, secrets, meta


class SqlDriver:
    """A SQL database. Thread-safe: one SQLAlchemy engine (and its pool), created on first use.

    Args:
        settings: Its settings; read from ``MULTICLOUD_STORE_SQL_*`` when omitted.
        engine: A ready engine (tests, or an engine configured by hand); the driver does not dispose of an engine
            it was given.

    Raises:
        ConfigurationError: The key cannot be loaded (no network call is made).
    """

    backend_name: ClassVar[str] = "sql"
    settings_class: ClassVar[type[EnvSettings]] = SqlSettings

    def __init__(self, settings: SqlSettings | None = None, *, engine: Engine | None = None) -> None:
        self.settings = settings if settings is not None else SqlSettings.from_environ()
        self._url: URL = engine.url if engine is not None else self.settings.sqlalchemy_url()
        self._where = masked_url(self._url)
        self._password = (self._url.password or "",) if self._url.password else ()
        self._keyring = self.settings.keyring()
        self._engine = engine
        self._owns_engine = engine is None
        self._lock = threading.Lock()
        self._setup_lock = threading.Lock()
        self._ready = threading.Event()
        self._closed = False
        self._metadata, self._table, self._meta = _tables(self.settings.table)
        t = self._table
        # Built once: the hot read path then only binds the name (SQLAlchemy caches the compiled form).
        self._read_statement = select(t.c.key_id, t.c.nonce, t.c.ciphertext, t.c.labels).where(
            t.c.name == bindparam("name")
        )
        # The owned writes' statements (`replace_owned`, `delete_owned`), built on first use.
        self._owned_update: Executable | None = None
        self._owned_delete: Executable | None = None
        # The cloud backends' common ceiling, so a secret that fits here also fits AWS and GCP.
        self._limits = DriverLimits(
            max_payload_bytes=65_536, max_name_length=255, batch_read_size=self.settings.batch_size
        )

    def __repr__(self) -> str:
        return (
            f"SqlDriver(url={self._where!r}, table={self.settings.table!r}, keys={list(self._keyring.ids)!r})"
        )

    @property
    def limits(self) -> DriverLimits:
        """What this backend accepts."""
        return self._limits

    @property
    def keyring(self) -> Keyring:
        """The keys this driver seals and opens with (newest first)."""
        return self._keyring

    @property
    def table(self) -> Table:
        """The secrets table (SQLAlchemy Core)."""
        return self._table

    @property
    def display_url(self) -> str:
        """The database URL with its password masked."""
        return self._where

    def location(self) -> tuple[str | None, ...]:
        """What identifies this store, from settings alone (``migrate`` refuses to copy a store onto itself).

        Returns:
            The dialect, host, port and database (never the password, the user or the DBAPI driver), and the
            table; for SQLite the resolved file. A private in-memory SQLite database is unique to its driver.
        """
        url = self._url
        if url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:"):
                return ("sqlite-memory", str(id(self)))
            import os.path

            return ("sqlite", os.path.realpath(url.database), self.settings.table)
        host = (url.host or "").lower() or None
        return (
            url.get_backend_name(),
            host,
            str(url.port) if url.port else None,
            url.database,
            self.settings.table,
        )

    # -- the engine ---------------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, created on first use (creating it connects to nothing).

        Raises:
            BackendError: The driver is closed.
            ConfigurationError: The URL names a dialect or database driver that is not installed.
        """
        engine = self._engine
        if engine is not None and not self._closed:
            return engine
        with self._lock:
            if self._closed:
                raise BackendError(f"this SQL driver ({self._where}) is closed", backend=BACKEND)
            if self._engine is None:
                self._engine = self._new_engine()
            return self._engine

    def _connect_args(self) -> dict[str, Any]:
        settings = self.settings
        backend, driver = self._url.get_backend_name(), self._url.get_driver_name()
        if backend == "postgresql" and driver in ("psycopg", "psycopg2"):
            return {
                # libpq takes whole seconds and treats less than 2 as 2.
                "connect_timeout": max(2, math.ceil(settings.connect_timeout)),
                "options": f"-c statement_timeout={int(settings.statement_timeout * 1000)}",
                "application_name": "multicloud-store",
            }
        if backend in ("mysql", "mariadb") and driver in ("pymysql", "mysqldb"):
            seconds = max(1, math.ceil(settings.statement_timeout))
            return {
                "connect_timeout": max(1, math.ceil(settings.connect_timeout)),
                "read_timeout": seconds,
                "write_timeout": seconds,
            }
        if backend == "sqlite":
            return {"timeout": settings.statement_timeout, "check_same_thread": False}
        return {}

    def _new_engine(self) -> Engine:
        settings = self.settings
        url = self._url
        kwargs: dict[str, Any] = {
            "pool_pre_ping": True,
            # Never a bound parameter (a name, a ciphertext) in SQLAlchemy's errors or logs.
            "hide_parameters": True,
            "connect_args": self._connect_args(),
        }
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            from sqlalchemy.pool import StaticPool

            # One in-memory database shared by every thread (tests); a pool would give each its own.
            kwargs["poolclass"] = StaticPool
        else:
            kwargs.update(
                pool_size=settings.pool_size,
                max_overflow=settings.max_overflow,
                pool_timeout=settings.pool_timeout,
                pool_recycle=settings.pool_recycle,
            )
        try:
            engine = create_engine(url, **kwargs)
        except (sa_exc.SQLAlchemyError, ModuleNotFoundError) as exc:
            raise translate(exc, action="configure", where=self._where, secrets=self._password) from None
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            event.listen(engine, "connect", _sqlite_wal)
        return engine

    # -- setup --------------------------------------------------------------------------------------------

    def _ensure_ready(self) -> None:
        if self._ready.is_set():
            return
        with self._setup_lock:
            if self._ready.is_set():
                return
            engine = self.engine
            try:
                self._create_tables(engine)
                self._check_schema_version(engine)
                self._check_keys(engine)
            except MultiCloudStoreError:
                raise
            except (sa_exc.SQLAlchemyError, ModuleNotFoundError) as exc:
                raise translate(
                    exc, action="set up the table", where=self._where, secrets=self._password
                ) from exc
            self._ready.set()

    def _create_tables(self, engine: Engine) -> None:
        # Replicas starting together race to create the tables; the loser's CREATE fails and finds them there.
        for attempt in range(3):
            try:
                self._metadata.create_all(engine, checkfirst=True)
                return
            except sa_exc.DBAPIError:
                names = set(inspect(engine).get_table_names())
                if {self._table.name, self._meta.name} <= names:
                    return
                if attempt == 2:
                    raise

    def _check_schema_version(self, engine: Engine) -> None:
        self._insert_meta_if_missing(engine, "schema_version", str(SCHEMA_VERSION))
        with engine.begin() as connection:
            stored = connection.execute(
                select(self._meta.c.v).where(self._meta.c.k == "schema_version")
            ).scalar_one()
        try:
            version = int(stored)
        except ValueError:
            version = -1
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"the table {self.settings.table!r} on {self._where} has schema version {version}, written by a "
                f"newer release of multicloud-store-sql (this one knows version {SCHEMA_VERSION}): upgrade it",
                variable="MULTICLOUD_STORE_SQL_TABLE",
                backend=BACKEND,
            )
        if version < 1:
            raise BackendError(
                f"the table {self.settings.table!r} on {self._where} has an unreadable schema version",
                backend=BACKEND,
            )
        # Version 1 is the first layout: later releases migrate older versions here, one step at a time.

    def _insert_meta_if_missing(self, engine: Engine, key: str, value: str) -> None:
        # Its own transaction: a failed INSERT aborts a PostgreSQL transaction, and a later read in the same
        # REPEATABLE READ transaction (MySQL's default) would not see the row another replica won the race with.
        with engine.begin() as connection:
            if connection.execute(select(self._meta.c.k).where(self._meta.c.k == key)).first() is not None:
                return
        try:
            with engine.begin() as connection:
                connection.execute(insert(self._meta).values(k=key, v=value))
        except sa_exc.IntegrityError:
            pass  # another replica inserted it first: theirs is checked like any other

    def _key_checks(self, engine: Engine) -> dict[str, str]:
        with engine.begin() as connection:
            rows = connection.execute(
                select(self._meta.c.k, self._meta.c.v).where(self._meta.c.k.like(f"{_KEY_CHECK_PREFIX}%"))
            ).all()
        return {k[len(_KEY_CHECK_PREFIX) :]: v for k, v in rows}

    def _check_keys(self, engine: Engine) -> None:
        """Prove every configured key is the one its id was first used with, before any secret is touched."""
        keyring = self._keyring
        known = self._key_checks(engine)
        if known and not set(known) & set(keyring.ids):
            raise ConfigurationError(
                f"none of the configured key ids {list(keyring.ids)} is one the table {self.settings.table!r} "
                f"on {self._where} was used with ({sorted(known)}): a new key goes in front of the old ones, "
                "never instead of them",
                variable=self._key_variable(),
                backend=BACKEND,
            )
        for key_id in keyring.ids:
            if key_id not in known:
                check = base64.b64encode(seal_key_check(keyring, key_id)).decode()
                self._insert_meta_if_missing(engine, _KEY_CHECK_PREFIX + key_id, check)
        known = self._key_checks(engine)
        for key_id in keyring.ids:
            try:
                opens = key_check_opens(keyring, key_id, base64.b64decode(known[key_id]))
            except (KeyError, ValueError):
                opens = False
            if not opens:
                raise ConfigurationError(
                    f"the key with id {key_id!r} ({self._key_variable()}) is not the key the table "
                    f"{self.settings.table!r} on {self._where} was used with under that id",
                    variable=self._key_variable(),
                    backend=BACKEND,
                )

    def _key_variable(self) -> str:
        return SqlSettings.env_name("key" if self.settings.key is not None else "key_file")

    # -- statements ---------------------------------------------------------------------------------------

    def _run(
        self, action: str, name: str | None, work: Callable[[Connection], _T], *, idempotent: bool = False
    ) -> _T:
        """Run one statement in its own transaction, re-running it on a deadlock or serialization failure.

        A read (``idempotent``) is also re-run once when its connection broke under it; a write is not, since
        its effect may have been committed before the answer was lost. A read ends by rolling back (one round trip,
        the pool's reset), a write by committing.
        """
        self._ensure_ready()
        engine = self.engine
        attempts = 0
        reconnected = False
        while True:
            try:
                if idempotent:
                    # A read: no COMMIT round trip; the pool's reset-on-return rolls the read transaction back.
                    with engine.connect() as connection:
                        return work(connection)
                with engine.begin() as connection:
                    return work(connection)
            except MultiCloudStoreError:
                raise
            except sa_exc.DBAPIError as exc:
                if rule_for(exc).retry and attempts < self.settings.max_retries:
                    attempts += 1
                    # Jittered back-off lets the competing transaction finish first; capped near 1 s, since
                    # max_retries may be up to 20 and 2**20 steps would sleep for hours.
                    step = 2 ** min(attempts, 6)
                    time.sleep(random.uniform(0.005, 0.02) * step)  # noqa: S311 - jitter, not a secret
                    continue
                if idempotent and exc.connection_invalidated and not reconnected:
                    reconnected = True
                    continue
                raise translate(
                    exc, action=action, name=name, where=self._where, secrets=self._password
                ) from exc
            except (sa_exc.SQLAlchemyError, ModuleNotFoundError) as exc:
                raise translate(
                    exc, action=action, name=name, where=self._where, secrets=self._password
                ) from exc

    def _seal(self, name: str, payload: str, labels_text: str) -> Sealed:
        return self._keyring.seal(payload.encode("utf-8"), row_aad(name, labels_text))

    def _row(self, name: str, payload: str, labels: Mapping[str, str]) -> dict[str, Any]:
        """The columns an update writes: the payload sealed anew, the labels, the deployment and the time."""
        labels_text = _labels_text(labels)
        sealed = self._seal(name, payload, labels_text)
        return {
            "key_id": sealed.key_id,
            "nonce": sealed.nonce,
            "ciphertext": sealed.ciphertext,
            "labels": labels_text,
            "deployment": labels.get(_DEPLOYMENT_LABEL, ""),
            "updated": _now(),
        }

    def _unseal(self, name: str, key_id: str, nonce: bytes, ciphertext: bytes, labels_text: str) -> str:
        try:
            return self._keyring.open_parts(
                key_id, bytes(nonce), bytes(ciphertext), row_aad(name, labels_text)
            ).decode("utf-8")
        except UnknownKeyError:
            raise ConfigurationError(
                f"secret {name!r} on {self._where} is sealed with key id {key_id!r}, which is not among the "
                f"configured keys {list(self._keyring.ids)}: add that key to {self._key_variable()}",
                variable=self._key_variable(),
                backend=BACKEND,
            ) from None
        except (IntegrityError, UnicodeDecodeError):
            raise SecretCorruptedError(
                f"secret {name!r} on {self._where} fails its integrity check: the row was modified, or copied from "
                "another secret",
                backend=BACKEND,
            ) from None

    # -- the protocol -------------------------------------------------------------------------------------

    def create(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Create a secret with one ``INSERT``; see `SecretsDriver.create`."""
        labels_text = _labels_text(labels)
        sealed = self._seal(name, payload, labels_text)
        now = _now()
        statement = insert(self._table).values(
            name=name,
            key_id=sealed.key_id,
            nonce=sealed.nonce,
            ciphertext=sealed.ciphertext,
            labels=labels_text,
            deployment=labels.get(_DEPLOYMENT_LABEL, ""),
            created=now,
            updated=now,
        )
        try:
            self._run("create", name, lambda c: c.execute(statement))
        except SecretExistsError:
            raise
        except MultiCloudStoreError as exc:
            if isinstance(exc.__cause__, sa_exc.IntegrityError):
                # The primary key makes the INSERT exclusive: exactly one concurrent writer wins.
                raise SecretExistsError(f"secret {name!r} already exists", backend=BACKEND) from None
            raise

    def read(self, name: str) -> StoredSecret:
        """Read and open a secret with one ``SELECT``; see `SecretsDriver.read`."""
        statement, parameters = self._read_statement, {"name": name}
        row = self._run("read", name, lambda c: c.execute(statement, parameters).first(), idempotent=True)
        return self._opened(name, row)

    def _opened(self, name: str, row: Sequence[Any] | None) -> StoredSecret:
        """Open a ``(key_id, nonce, ciphertext, labels)`` row as `read` returns it; no row is not found."""
        if row is None:
            raise SecretNotFoundError(f"secret {name!r} not found", backend=BACKEND)
        key_id, nonce, ciphertext, labels_text = row
        payload = self._unseal(name, key_id, nonce, ciphertext, labels_text)
        return StoredSecret(name, payload, _parse_labels(labels_text), version=key_id)

    def replace(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Replace a secret with one ``UPDATE``; see `SecretsDriver.replace`."""
        statement = (
            update(self._table).where(self._table.c.name == name).values(self._row(name, payload, labels))
        )
        count = self._run("replace", name, lambda c: c.execute(statement).rowcount)
        if count == 0:
            raise SecretNotFoundError(f"secret {name!r} not found", backend=BACKEND)

    def delete(self, name: str) -> None:
        """Delete a secret with one ``DELETE``; see `SecretsDriver.delete`."""
        statement = delete(self._table).where(self._table.c.name == name)
        count = self._run("delete", name, lambda c: c.execute(statement).rowcount)
        if count == 0:
            raise SecretNotFoundError(f"secret {name!r} not found", backend=BACKEND)

    def replace_owned(
        self, name: str, payload: str, labels: Mapping[str, str], check: Callable[[StoredSecret], object]
    ) -> None:
        """``UPDATE`` a secret only after ``check`` accepted it as it was, in one transaction; see `OwnedWrites`.

        PostgreSQL: one statement, ``UPDATE ... FROM (SELECT ... FOR UPDATE) AS old ... RETURNING old.*``, which
        returns the row as it was before the write; the check then commits or rolls back. Elsewhere (no ``UPDATE
        ... RETURNING`` of the old row): a read, the check and a compare-and-swap ``UPDATE`` (`_owned_write`).
        """
        row = self._row(name, payload, labels)
        t = self._table
        if self.engine.dialect.name != "postgresql":
            statement = update(t).values(row)
            self._owned_write(
                "replace", name, check, lambda nonce: statement.where(t.c.name == name, t.c.nonce == nonce)
            )
            return
        # The prepared statement's bind names: b_ + the column (see _owned_update_statement).
        parameters = {"b_name": name, **{f"b_{column}": value for column, value in row.items()}}
        swap = self._owned_update_statement()
        self._run("replace", name, self._checked(name, swap, check, parameters))

    def _owned_update_statement(self) -> Executable:
        """Return ``UPDATE ... FROM (SELECT ... FOR UPDATE) AS old ... RETURNING old.*``, built once.

        Building it costs more than its round trip. The locked sub-select returns the row as it was before the
        write (the row cannot change between the two: it is locked).
        """
        statement = self._owned_update
        if statement is None:
            t = self._table
            old = (
                select(t.c.name, t.c.key_id, t.c.nonce, t.c.ciphertext, t.c.labels)
                .where(t.c.name == bindparam("b_name"))
                .with_for_update()
                .subquery("old")
            )
            statement = self._owned_update = (
                update(t)
                .where(t.c.name == old.c.name)
                .values(
                    key_id=bindparam("b_key_id"),
                    nonce=bindparam("b_nonce"),
                    ciphertext=bindparam("b_ciphertext"),
                    labels=bindparam("b_labels"),
                    deployment=bindparam("b_deployment"),
                    updated=bindparam("b_updated"),
                )
                .returning(old.c.key_id, old.c.nonce, old.c.ciphertext, old.c.labels)
            )
        return statement

    def _checked(
        self,
        name: str,
        statement: Executable,
        check: Callable[[StoredSecret], object],
        parameters: dict[str, Any] | None = None,
    ) -> Callable[[Connection], None]:
        """Work for `_run`: a write returning the row as it was, then ``check`` on it (raising rolls it back)."""

        def work(connection: Connection) -> None:
            row = connection.execute(statement, parameters).first()
            # Raising here leaves engine.begin() by an exception: the write is rolled back.
            check(self._opened(name, row))

        return work

    def delete_owned(self, name: str, check: Callable[[StoredSecret], object]) -> None:
        """``DELETE ... RETURNING`` the row, ``check`` it, then commit (or roll back); see `OwnedWrites.delete_owned`.

        One statement on PostgreSQL and MariaDB. MySQL has no ``DELETE ... RETURNING``, and SQLite runs in the
        process (a second statement costs no round trip, and its RETURNING rows must be read before anything can
        commit): both get the read, check and compare-and-swap of `_owned_write`.
        """
        self._ensure_ready()  # the dialect knows the server's version (MariaDB or MySQL) once connected
        t = self._table
        dialect = self.engine.dialect
        if not dialect.delete_returning or dialect.name == "sqlite":
            self._owned_write(
                "delete", name, check, lambda nonce: delete(t).where(t.c.name == name, t.c.nonce == nonce)
            )
            return
        statement = self._owned_delete
        if statement is None:
            statement = self._owned_delete = (
                delete(t)
                .where(t.c.name == bindparam("b_name"))
                .returning(t.c.key_id, t.c.nonce, t.c.ciphertext, t.c.labels)
            )
        self._run("delete", name, self._checked(name, statement, check, {"b_name": name}))

    def _owned_write(
        self,
        action: str,
        name: str,
        check: Callable[[StoredSecret], object],
        write: Callable[[bytes], Executable],
    ) -> None:
        """One transaction: read the row, open it, ``check`` it, then write it if it still has the nonce checked.

        The compare-and-swap on the nonce replaces a lock (``FOR UPDATE`` would cost PostgreSQL a tuple write, and
        SQLite ignores it): a row another writer replaced in between is read and checked again, a bounded number
        of times.
        """
        read, parameters = self._read_statement, {"name": name}

        def work(connection: Connection) -> int:
            row = connection.execute(read, parameters).first()
            check(self._opened(name, row))
            assert row is not None  # _opened raised otherwise
            return int(connection.execute(write(bytes(row[1]))).rowcount)  # row[1]: the nonce checked

        for _ in range(_OWNED_ATTEMPTS):
            if self._run(action, name, work):
                return
            logger.debug("%s of %r met a concurrent writer; reading it again", action, name)
        raise BackendUnavailableError(
            f"{action} of secret {name!r} on {self._where}: other writers changed it {_OWNED_ATTEMPTS} times while "
            "it was being written; try again",
            backend=BACKEND,
        )

    def list_names(self, labels: Mapping[str, str]) -> Iterator[str]:
        """Yield names by keyset pagination (``name > :last ORDER BY name``); see `SecretsDriver.list_names`."""
        t = self._table
        size = self.settings.page_size
        deployment = labels.get(_DEPLOYMENT_LABEL)
        after: str | None = None
        while True:
            statement = select(t.c.name, t.c.labels).order_by(t.c.name).limit(size)
            if deployment is not None:
                # Served by the (deployment, name) index.
                statement = statement.where(t.c.deployment == deployment)
            if after is not None:
                statement = statement.where(t.c.name > after)
            rows = self._run("list", None, _fetch_all(statement), idempotent=True)
            for name, labels_text in rows:
                stored = _parse_labels(labels_text)
                if all(stored.get(k) == v for k, v in labels.items()):
                    yield name
            if len(rows) < size:
                return
            after = rows[-1][0]

    def read_many(self, names: list[str]) -> Mapping[str, StoredSecret | Exception]:
        """Read several secrets with one ``SELECT ... WHERE name IN (...)`` per batch; see `SecretsDriver.read_many`."""
        t = self._table
        out: dict[str, StoredSecret | Exception] = {}
        size = self.settings.batch_size
        for start in range(0, len(names), size):
            chunk = names[start : start + size]
            statement = select(t.c.name, t.c.key_id, t.c.nonce, t.c.ciphertext, t.c.labels).where(
                t.c.name.in_(chunk)
            )
            rows = self._run("read", None, _fetch_all(statement), idempotent=True)
            found = {row[0]: row for row in rows}
            for name in chunk:
                row = found.get(name)
                if row is None:
                    out[name] = SecretNotFoundError(f"secret {name!r} not found", backend=BACKEND)
                    continue
                _, key_id, nonce, ciphertext, labels_text = row
                try:
                    payload = self._unseal(name, key_id, nonce, ciphertext, labels_text)
                except MultiCloudStoreError as exc:
                    out[name] = exc
                else:
                    out[name] = StoredSecret(name, payload, _parse_labels(labels_text), version=key_id)
        return out

    def health_check(self) -> None:
        """Connect, create the tables if needed, check the keys and run one query."""
        self._run(
            "health check",
            None,
            lambda c: c.execute(select(self._table.c.name).limit(1)).first(),
            idempotent=True,
        )

    def close(self) -> None:
        """Dispose of the engine's pool (unless the engine was given)."""
        with self._lock:
            self._closed = True
            engine, self._engine = self._engine, None
        if engine is not None and self._owns_engine:
            engine.dispose()

    # -- keys -----------------------------------------------------------------------------------------------

    def key_usage(self) -> dict[str, int]:
        """Count the rows sealed with each key id.

        Returns:
            Key id to number of rows; a key id absent here seals nothing and may be dropped from the keyring.
        """
        t = self._table
        statement = select(t.c.key_id, func.count()).group_by(t.c.key_id)
        rows = self._run("count keys", None, lambda c: c.execute(statement).all(), idempotent=True)
        return {str(key_id): int(count) for key_id, count in rows}

    def rotate(
        self,
        *,
        batch_size: int = 100,
        limit: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> RotationReport:
        """Re-seal every row that an older key sealed under the newest key, while others keep using the table.

        Each row is read, opened with its own key, sealed with the newest key, and written back with a
        compare-and-swap ``UPDATE ... WHERE name = :name AND key_id = :old AND nonce = :old_nonce``: a row that
        another writer changed in between is left alone (that write already used the newest key). Interrupted,
        it can simply be run again; rows already on the newest key are not touched. Every replica must have the
        new key in its keyring (in front) before the rotation starts.

        Args:
            batch_size: Rows read per query.
            limit: Stop after this many rows (for a rotation spread over several runs).
            progress: Called with (rows done, rows to do) after each batch.

        Returns:
            What was done, and what is left.
        """
        t = self._table
        newest = self._keyring.newest_id
        report = RotationReport(newest_id=newest)
        after: str | None = None
        handled = 0
        total = sum(n for k, n in self.key_usage().items() if k != newest)
        if limit is not None:
            total = min(total, limit)
        while limit is None or handled < limit:
            take = batch_size if limit is None else min(batch_size, limit - handled)
            statement = (
                select(t.c.name, t.c.key_id, t.c.nonce, t.c.ciphertext, t.c.labels)
                .where(t.c.key_id != newest)
                .order_by(t.c.name)
                .limit(take)
            )
            if after is not None:
                statement = statement.where(t.c.name > after)
            rows = self._run("rotate", None, _fetch_all(statement), idempotent=True)
            for name, key_id, nonce, ciphertext, labels_text in rows:
                handled += 1
                try:
                    payload = self._unseal(name, key_id, nonce, ciphertext, labels_text)
                except MultiCloudStoreError as exc:
                    # Named, never shown: the row stays under its key for an operator to look at.
                    logger.warning(
                        "rotation left secret %r under key %r: %s", name, key_id, type(exc).__name__
                    )
                    report.failed += 1
                    continue
                sealed = self._seal(name, payload, labels_text)
                swap = (
                    update(t)
                    .where(t.c.name == name, t.c.key_id == key_id, t.c.nonce == nonce)
                    .values(key_id=sealed.key_id, nonce=sealed.nonce, ciphertext=sealed.ciphertext)
                )
                if self._run("rotate", name, _rowcount(swap)):
                    report.rewritten += 1
                else:
                    report.skipped += 1
            if progress is not None:
                progress(handled, max(total, handled))
            if len(rows) < take:
                break
            after = rows[-1][0]
        usage = self.key_usage()
        report.remaining = {k: n for k, n in usage.items() if k != newest}
        report.removable = tuple(k for k in self._keyring.ids[1:] if k not in usage)
        return report

    def rotate_keys(
        self, progress: Callable[[int, int], None] | None = None, *, batch_size: int = 100
    ) -> RotationReport:
        """Re-seal every row under the newest key: `rotate` under the name ``multicloud-store rotate-key`` calls.

        Args:
            progress: Called with (rows done, rows to do) after each batch.
            batch_size: Rows read per query.

        Returns:
            What was done, what remains, and which old keys no row uses any more.
        """
        return self.rotate(batch_size=batch_size, progress=progress)

    def add_new_key(self, key_id: str | None = None) -> str:
        """Generate a key and put it in front of the key file (atomic replace, mode 0600); writes then use it.

        The table records the new key's check first, so a crash in between leaves the key file as it was. Only
        this process (and those reading the same key file) learn the new key: with several replicas, give each
        the new keyring before rotating.

        Args:
            key_id: The new key's id (default: ``k<date>-<random>``).

        Returns:
            The new key's id.

        Raises:
            ConfigurationError: The keys come from ``MULTICLOUD_STORE_SQL_KEY`` (edit that instead).
        """
        if self.settings.key is not None or self.settings.key_file is None:
            raise ConfigurationError(
                "the keys come from MULTICLOUD_STORE_SQL_KEY: put a new <id>:<base64> entry in front of it on every "
                "replica (for example: k2:$(openssl rand -base64 32)), keep the old keys after it, then rotate",
                variable="MULTICLOUD_STORE_SQL_KEY",
                backend=BACKEND,
            )
        self._ensure_ready()
        variable = SqlSettings.env_name("key_file")
        with self._setup_lock:
            keyring = self._keyring.with_new_key(key_id)
            check = base64.b64encode(seal_key_check(keyring, keyring.newest_id)).decode()
            try:
                self._insert_meta_if_missing(self.engine, _KEY_CHECK_PREFIX + keyring.newest_id, check)
            except sa_exc.SQLAlchemyError as exc:
                raise translate(exc, action="add a key", where=self._where, secrets=self._password) from exc
            write_key_file(self.settings.key_file.expanduser(), keyring, variable=variable)
            self._keyring = keyring
        return keyring.newest_id


def _fetch_all(statement: Executable) -> Callable[[Connection], Sequence[Any]]:
    return lambda connection: connection.execute(statement).all()


def _rowcount(statement: Executable) -> Callable[[Connection], int]:
    return lambda connection: connection.execute(statement).rowcount


def _now() -> datetime:
    # Naive UTC: MySQL's DATETIME has no time zone, and every replica must write the same clock.
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run while another process writes the file.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def _labels_text(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def _parse_labels(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}

"""One table from database error codes to the shared error hierarchy, for every dialect the backend supports.

A code is the PostgreSQL SQLSTATE (psycopg, psycopg2), the MySQL/MariaDB error number (PyMySQL, mysqlclient) or
SQLite's result-code name, prefixed by the family: ``postgresql:40P01``, ``mysql:1213``, ``sqlite:SQLITE_BUSY``.
What the table does not name falls back on SQLAlchemy's exception class (``OperationalError``: unavailable).

The driver raises what `translate` returns with SQLAlchemy's exception as ``__cause__``. Messages name the
action, the secret's backend name, the database URL with its password masked, the code and a hint. The server's
own message is quoted only for rules that allow it (about identities, grants and connections; never about
parameters), with the URL's password scrubbed from it just in case. Parameters never appear: the engine is built
with ``hide_parameters=True``, and the plaintext of a secret never reaches the database anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from multicloud_store.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    MultiCloudStoreError,
)

__all__ = ["BACKEND", "ERROR_TABLE", "Rule", "error_code", "rule_for", "translate"]

BACKEND = "sql"
URL_VARIABLE = "MULTICLOUD_STORE_SQL_URL"


@dataclass(frozen=True)
class Rule:
    """How one database error is reported.

    Attributes:
        error: The class raised.
        hint: What it means for the user, in a few words.
        retry: Whether the driver re-runs the statement (deadlocks, serialization failures), a bounded number of
            times (``MULTICLOUD_STORE_SQL_MAX_RETRIES``).
        quote: Whether the server's message may be quoted (it names users, grants or hosts, never values).
    """

    error: type[MultiCloudStoreError]
    hint: str
    retry: bool = False
    quote: bool = False


_DEADLOCK = "a deadlock with another transaction, after the driver's retries"
_SERIALIZATION = "a serialization failure with a concurrent transaction, after the driver's retries"
_DENIED = "the database user lacks a grant this backend needs (see the SQL grants in docs/backends/sql.md)"
_LOGIN = f"the database refused the login: check the user and password in {URL_VARIABLE}"
_GONE = "the connection to the database failed or was lost"
_BUSY = "the database is overloaded or shutting down"
_READ_ONLY = (
    "the server is read-only (a standby or replica, or a failover in progress): point the URL at the primary"
)
_TIMEOUT = (
    "the statement ran longer than MULTICLOUD_STORE_SQL_STATEMENT_TIMEOUT or waited too long for a lock"
)
_NO_DB = f"the database named in {URL_VARIABLE} does not exist"
_NO_TABLE = "the table disappeared while in use (dropped or renamed by someone else)"
_DAMAGED = "the database file is damaged or is not a database"

#: family:code -> how it is reported.
ERROR_TABLE: Mapping[str, Rule] = {
    # PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
    "postgresql:40001": Rule(BackendUnavailableError, _SERIALIZATION, retry=True),
    "postgresql:40P01": Rule(BackendUnavailableError, _DEADLOCK, retry=True),
    "postgresql:42501": Rule(BackendPermissionError, _DENIED, quote=True),
    "postgresql:28000": Rule(BackendPermissionError, _LOGIN, quote=True),
    "postgresql:28P01": Rule(BackendPermissionError, _LOGIN, quote=True),
    "postgresql:3D000": Rule(ConfigurationError, _NO_DB, quote=True),
    "postgresql:42P01": Rule(BackendError, _NO_TABLE, quote=True),
    "postgresql:25006": Rule(BackendUnavailableError, _READ_ONLY, quote=True),
    "postgresql:57014": Rule(BackendUnavailableError, _TIMEOUT),
    "postgresql:55P03": Rule(BackendUnavailableError, _TIMEOUT),
    "postgresql:57P01": Rule(BackendUnavailableError, _BUSY, quote=True),
    "postgresql:57P02": Rule(BackendUnavailableError, _BUSY, quote=True),
    "postgresql:57P03": Rule(BackendUnavailableError, _BUSY, quote=True),
    "postgresql:53300": Rule(BackendUnavailableError, _BUSY, quote=True),
    "postgresql:53100": Rule(BackendUnavailableError, "the database server's disk is full", quote=True),
    "postgresql:53200": Rule(BackendUnavailableError, "the database server is out of memory", quote=True),
    "postgresql:08000": Rule(BackendUnavailableError, _GONE, quote=True),
    "postgresql:08001": Rule(BackendUnavailableError, _GONE, quote=True),
    "postgresql:08003": Rule(BackendUnavailableError, _GONE, quote=True),
    "postgresql:08004": Rule(BackendUnavailableError, _GONE, quote=True),
    "postgresql:08006": Rule(BackendUnavailableError, _GONE, quote=True),
    # MySQL and MariaDB error numbers (server errors below 2000, client errors from 2000).
    "mysql:1213": Rule(BackendUnavailableError, _DEADLOCK, retry=True),
    "mysql:1205": Rule(BackendUnavailableError, _TIMEOUT),
    "mysql:1044": Rule(BackendPermissionError, _DENIED, quote=True),
    "mysql:1045": Rule(BackendPermissionError, _LOGIN, quote=True),
    "mysql:1142": Rule(BackendPermissionError, _DENIED, quote=True),
    "mysql:1143": Rule(BackendPermissionError, _DENIED, quote=True),
    "mysql:1227": Rule(BackendPermissionError, _DENIED, quote=True),
    "mysql:1370": Rule(BackendPermissionError, _DENIED, quote=True),
    "mysql:1049": Rule(ConfigurationError, _NO_DB, quote=True),
    "mysql:1146": Rule(BackendError, _NO_TABLE, quote=True),
    "mysql:1290": Rule(BackendUnavailableError, _READ_ONLY, quote=True),
    "mysql:1792": Rule(BackendUnavailableError, _READ_ONLY, quote=True),
    "mysql:1040": Rule(BackendUnavailableError, _BUSY, quote=True),
    "mysql:1053": Rule(BackendUnavailableError, _BUSY, quote=True),
    "mysql:1317": Rule(BackendUnavailableError, _TIMEOUT),
    "mysql:3024": Rule(BackendUnavailableError, _TIMEOUT),
    "mysql:4031": Rule(BackendUnavailableError, _GONE, quote=True),
    "mysql:2002": Rule(BackendUnavailableError, _GONE, quote=True),
    "mysql:2003": Rule(BackendUnavailableError, _GONE, quote=True),
    "mysql:2006": Rule(BackendUnavailableError, _GONE, quote=True),
    "mysql:2013": Rule(BackendUnavailableError, _GONE, quote=True),
    "mysql:2055": Rule(BackendUnavailableError, _GONE, quote=True),
    # SQLite result codes (sqlite3's ``sqlite_errorname``, Python 3.11+; older Pythons go by the message).
    "sqlite:SQLITE_BUSY": Rule(BackendUnavailableError, "the database file is locked by another writer"),
    "sqlite:SQLITE_LOCKED": Rule(BackendUnavailableError, "the database file is locked by another writer"),
    "sqlite:SQLITE_READONLY": Rule(BackendPermissionError, "the database file is read-only for this process"),
    "sqlite:SQLITE_PERM": Rule(BackendPermissionError, "the database file may not be opened by this process"),
    "sqlite:SQLITE_AUTH": Rule(BackendPermissionError, "the database refused the access"),
    "sqlite:SQLITE_CANTOPEN": Rule(
        BackendUnavailableError, f"the database file cannot be opened: check the path in {URL_VARIABLE}"
    ),
    "sqlite:SQLITE_FULL": Rule(BackendUnavailableError, "the disk holding the database file is full"),
    "sqlite:SQLITE_IOERR": Rule(BackendUnavailableError, "reading or writing the database file failed"),
    "sqlite:SQLITE_CORRUPT": Rule(BackendError, _DAMAGED),
    "sqlite:SQLITE_NOTADB": Rule(BackendError, _DAMAGED),
}

# SQLite before Python 3.11 exposes no result code: its fixed messages stand in for one.
_SQLITE_MESSAGES = (
    ("database is locked", "SQLITE_BUSY"),
    ("database table is locked", "SQLITE_LOCKED"),
    ("readonly database", "SQLITE_READONLY"),
    ("unable to open database", "SQLITE_CANTOPEN"),
    ("disk i/o error", "SQLITE_IOERR"),
    ("database or disk is full", "SQLITE_FULL"),
    ("malformed", "SQLITE_CORRUPT"),
    ("file is not a database", "SQLITE_NOTADB"),
)
# libpq's connection failures have no SQLSTATE attached: the server's fixed FATAL messages stand in for one.
_LIBPQ_MESSAGES = (
    ("password authentication failed", "28P01"),
    ("no pg_hba.conf entry", "28000"),
    ('role "', "28000"),  # FATAL: role "x" does not exist
    ("authentication failed", "28000"),
    ('database "', "3D000"),  # FATAL: database "x" does not exist
    ("the database system is starting up", "57P03"),
    ("the database system is shutting down", "57P03"),
    ("the database system is in recovery mode", "57P03"),
    ("too many clients", "53300"),
    ("remaining connection slots are reserved", "53300"),
)
_MESSAGE_LIMIT = 300


def error_code(exc: BaseException) -> str | None:
    """Return the family-prefixed code of a database error, when the DBAPI driver exposes one.

    Args:
        exc: SQLAlchemy's exception (its ``orig`` is the driver's), or a driver exception.

    Returns:
        For example ``postgresql:40P01``, ``mysql:1213``, ``sqlite:SQLITE_BUSY``; None when unknown.
    """
    orig = getattr(exc, "orig", exc)
    if orig is None:
        return None
    module = type(orig).__module__.split(".")[0]
    if module in ("psycopg", "psycopg2"):
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if not state:
            # A failed connection carries libpq's text only; the server's FATAL message in it names the cause.
            message = str(orig).lower()
            state = next((code for fragment, code in _LIBPQ_MESSAGES if fragment in message), None)
        return f"postgresql:{state}" if state else None
    if module in ("pymysql", "MySQLdb"):
        args = getattr(orig, "args", ())
        return f"mysql:{args[0]}" if args and isinstance(args[0], int) else None
    if module == "sqlite3":
        name = getattr(orig, "sqlite_errorname", None)
        if isinstance(name, str):
            # Extended codes (SQLITE_READONLY_DBMOVED) fall back on their primary code.
            return f"sqlite:{name if name in _PRIMARY_SQLITE else '_'.join(name.split('_')[:2])}"
        message = str(orig).lower()
        for fragment, code in _SQLITE_MESSAGES:
            if fragment in message:
                return f"sqlite:{code}"
    return None


_PRIMARY_SQLITE = frozenset(code.split(":", 1)[1] for code in ERROR_TABLE if code.startswith("sqlite:"))


def rule_for(exc: BaseException) -> Rule:
    """Find how a SQLAlchemy exception is reported: by its code, else by its class.

    Args:
        exc: The exception.

    Returns:
        The rule.
    """
    code = error_code(exc)
    rule = ERROR_TABLE.get(code) if code else None
    if rule is not None:
        return rule
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return Rule(BackendUnavailableError, _GONE)
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)):
        return Rule(BackendUnavailableError, _GONE)
    if isinstance(exc, sa_exc.TimeoutError):
        return Rule(
            BackendUnavailableError,
            "no free connection in the pool within MULTICLOUD_STORE_SQL_POOL_TIMEOUT (raise "
            "MULTICLOUD_STORE_SQL_POOL_SIZE or MULTICLOUD_STORE_SQL_MAX_OVERFLOW)",
        )
    if isinstance(exc, sa_exc.NoSuchModuleError):
        return Rule(
            ConfigurationError,
            f"SQLAlchemy has no dialect or driver for the scheme of {URL_VARIABLE} (install the database "
            "driver, for example psycopg[binary] or pymysql)",
        )
    if isinstance(exc, ModuleNotFoundError):
        return Rule(
            ConfigurationError,
            f"the database driver named by {URL_VARIABLE} is not installed (for example: pip install "
            "'psycopg[binary]' for postgresql+psycopg://, pip install pymysql for mysql+pymysql://)",
        )
    return Rule(BackendError, "the database failed")


def _subject(action: str, name: str | None) -> str:
    return f"{action} of secret {name!r}" if name else action


def _server_message(exc: BaseException, secrets: tuple[str, ...]) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "..."


def translate(
    exc: BaseException,
    *,
    action: str,
    name: str | None = None,
    where: str = "the database",
    secrets: tuple[str, ...] = (),
) -> MultiCloudStoreError:
    """Map an exception from SQLAlchemy (or the DBAPI driver) onto the shared hierarchy. Raise it ``from exc``.

    Args:
        exc: What was raised.
        action: What we were doing (``read``, ``create``, ``replace``, ``delete``, ``list``, ...).
        name: The secret's backend name, when the call was about one.
        where: The database, as shown to users (the URL with its password masked).
        secrets: Texts to scrub from any quoted server message (the URL's password).

    Returns:
        The error to raise.
    """
    if isinstance(exc, MultiCloudStoreError):
        return exc
    rule = rule_for(exc)
    code = error_code(exc)
    text = f"{_subject(action, name)} on {where} failed: {code or type(exc).__name__}: {rule.hint}"
    if rule.quote:
        quoted = _server_message(exc, secrets)
        if quoted:
            text += f". The server says: {quoted}"
    if rule.error is ConfigurationError:
        return ConfigurationError(text, variable=URL_VARIABLE, backend=BACKEND)
    return rule.error(text, backend=BACKEND)

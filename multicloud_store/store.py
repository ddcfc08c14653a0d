"""`SecretsStore`: the dispatcher behind every backend.

It owns everything that must be the same on every cloud: id and value validation, backend names, the payload
envelope, size checks against the driver's limits, ownership checks, the read cache and error semantics. The
driver underneath only moves opaque text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from multicloud_store import envelope
from multicloud_store.errors import (
    BackendUnavailableError,
    ConfigurationError,
    InvalidSecretError,
    MultiCloudStoreError,
    SecretCorruptedError,
    SecretExistsError,
    SecretIncompleteError,
    SecretNotFoundError,
)
from multicloud_store.interface import SecretsStoreInterface
from multicloud_store.observability import SWITCH as _SWITCH
from multicloud_store.observability import outcome_of, watch_cache
from multicloud_store.settings import StoreSettings

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from multicloud_store.cache import ReadCache
    from multicloud_store.driver import SecretsDriver, StoredSecret
    from multicloud_store.settings import EnvSettings

__all__ = ["LABEL_DEPLOYMENT", "LABEL_MANAGED_BY", "LABEL_SECRET_ID", "ReadOutcome", "SecretsStore"]

logger = logging.getLogger("multicloud_store")

LABEL_MANAGED_BY = "managed_by"
LABEL_DEPLOYMENT = "mcs_deployment"
LABEL_SECRET_ID = "mcs_secret_id"
MANAGED_BY = "multicloud-store"
_NAMES_MAX = 1024  # the read path's memo of id -> (name, id text): about 300 bytes an entry


@dataclass(frozen=True)
class ReadOutcome:
    """The result for one id of `SecretsStore.get_many`.

    Attributes:
        status: ``ok``; ``not_found`` (no such secret); ``not_ours`` (the name holds another deployment's
            secret); ``error`` (the backend failed for this id).
        values: The values when ``status`` is ``ok``.
        error: The error otherwise.
    """

    status: Literal["ok", "not_found", "not_ours", "error"]
    values: dict[str, str] | None = field(default=None, repr=False)
    error: MultiCloudStoreError | None = None


def _not_ours(secret_id: UUID, backend: str) -> SecretNotFoundError:
    """The error for a name that holds another deployment's secret: a plain not-found, marked for `get_many`.

    The message and class are those of a missing secret, so nothing tells a caller that the id exists elsewhere.
    """
    error = SecretNotFoundError(f"secret {secret_id} not found", secret_id=secret_id, backend=backend)
    error.not_ours = True  # type: ignore[attr-defined]
    return error


def _coerce_id(secret_id: object) -> UUID:
    if isinstance(secret_id, UUID):
        return secret_id
    if isinstance(secret_id, str):
        try:
            return UUID(secret_id)
        except ValueError:
            pass
        # Never echo the input: it may be a value pasted in the wrong place.
        raise InvalidSecretError(f"secret id must be a UUID, got a string of {len(secret_id)} characters")
    raise InvalidSecretError(f"secret id must be a UUID, got {type(secret_id).__name__}")


def _validate_values(secret_values: object) -> dict[str, str]:
    if not isinstance(secret_values, Mapping):
        raise InvalidSecretError(
            f"secret values must be a dict of str to str, got {type(secret_values).__name__}"
        )
    out: dict[str, str] = {}
    for index, (key, value) in enumerate(secret_values.items(), start=1):  # 1-based, as the CLI counts
        if not isinstance(key, str):
            raise InvalidSecretError(f"secret key #{index} is a {type(key).__name__}, not a str")
        if not key:
            raise InvalidSecretError(f"secret key #{index} is empty")
        if not isinstance(value, str):
            raise InvalidSecretError(f"the value of key {key!r} is a {type(value).__name__}, not a str")
        # NUL is cut or refused by several backends and by ZenML's SQL layer; refuse it everywhere alike.
        if "\x00" in key:
            raise InvalidSecretError(f"secret key #{index} contains a NUL character")
        if "\x00" in value:
            raise InvalidSecretError(f"the value of key {key!r} contains a NUL character")
        out[key] = value
    return out


class SecretsStore(SecretsStoreInterface):
    """A secrets store on one backend, chosen by `StoreSettings.backend`.

    Thread-safe: share one instance between a server's worker threads.

    Args:
        settings: The dispatcher's settings; read from the environment when omitted.
        driver: A ready driver, bypassing the registry (tests, or a driver built by hand).
        driver_settings: Settings for the selected driver; read from the environment when omitted.

    Raises:
        ConfigurationError: A setting is missing or wrong, or does not fit the backend's naming rules.
        BackendNotInstalledError: The selected backend's distribution is not installed.

    Example:
        >>> store = SecretsStore.from_env({"MULTICLOUD_STORE_BACKEND": "memory"})
        >>> sid = UUID("8c9e1f52-2d5f-4c5e-9d0e-4b7c1d1f0a11")
        >>> store.store_secret_values(sid, {"token": "s3cr3t"})
        >>> store.get_secret_values(sid)
        {'token': 's3cr3t'}
    """

    def __init__(
        self,
        settings: StoreSettings | None = None,
        *,
        driver: SecretsDriver | None = None,
        driver_settings: EnvSettings | None = None,
    ) -> None:
        self.settings = settings if settings is not None else StoreSettings.from_environ()
        self._driver = driver
        self._driver_settings = driver_settings
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._cache: ReadCache | None = None
        self._closed = False
        # The read path's names by UUID int: formatting a UUID costs about 7,000 instructions, a tenth of a local
        # read. Bounded (cleared when full), and a pure function of the id: nothing in it can go stale.
        self._names: dict[int, tuple[str, str]] = {}
        self._deployment = self.settings.deployment_id
        self._initialize()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecretsStore:
        """Build a store from ``MULTICLOUD_STORE_*`` variables.

        Args:
            environ: Variables to read instead of the process environment.

        Returns:
            The store.
        """
        from multicloud_store.registry import driver_from_environ

        settings = StoreSettings.from_environ(environ)
        # Build the driver here so the registry (an entry-point scan for cloud backends) is consulted once.
        return cls(settings, driver=driver_from_environ(settings.backend, environ))

    # -- construction -------------------------------------------------------------------------------------

    def _initialize(self) -> None:
        """Build the driver and check that the naming settings fit its rules. No network call."""
        if self._driver is None:
            from multicloud_store.registry import load_driver_class

            driver_class = load_driver_class(self.settings.backend)
            driver_settings = self._driver_settings
            if driver_settings is None:
                driver_settings = driver_class.settings_class.from_environ()
            self._driver = driver_class(driver_settings)  # type: ignore[call-arg]
        limits = self._driver.limits
        sample = self._name(UUID(int=0))
        if not limits.name_ok(sample):
            raise ConfigurationError(
                f"MULTICLOUD_STORE_NAME_PREFIX={self.settings.name_prefix!r} gives names such as {sample!r} that "
                f"backend {self.backend!r} does not accept (pattern {limits.name_pattern}, "
                f"at most {limits.max_name_length} characters)",
                variable="MULTICLOUD_STORE_NAME_PREFIX",
            )
        if not limits.label_ok(LABEL_DEPLOYMENT, self.settings.deployment_id):
            raise ConfigurationError(
                f"MULTICLOUD_STORE_DEPLOYMENT_ID={self.settings.deployment_id!r} is not a valid label value on "
                f"backend {self.backend!r} (pattern {limits.label_value_pattern})",
                variable="MULTICLOUD_STORE_DEPLOYMENT_ID",
            )
        if self.settings.cache_ttl_seconds > 0:
            from multicloud_store.cache import ReadCache

            self._cache = ReadCache(
                self.settings.cache_ttl_seconds,
                max_entries=self.settings.cache_max_entries,
                jitter=self.settings.cache_jitter,
                negative_ttl=self.settings.cache_negative_ttl_seconds,
                stale_seconds=self.settings.cache_stale_seconds,
            )
            watch_cache(self._cache, self.backend)
        _SWITCH.poll()  # a provider installed before the store was built is seen from its first call on

    @property
    def driver(self) -> SecretsDriver:
        """The backend driver this store delegates to."""
        assert self._driver is not None  # set in _initialize
        return self._driver

    @property
    def backend(self) -> str:
        """The selected backend's name."""
        return getattr(self._driver, "backend_name", self.settings.backend)

    @property
    def cache(self) -> ReadCache | None:
        """The read cache, or None when ``MULTICLOUD_STORE_CACHE_TTL_SECONDS`` is 0."""
        return self._cache

    def __repr__(self) -> str:
        return (
            f"SecretsStore(backend={self.backend!r}, deployment_id={self.settings.deployment_id!r}, "
            f"name_prefix={self.settings.name_prefix!r})"
        )

    def __enter__(self) -> SecretsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the driver and the worker pool. The store may not be used afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._cache is not None:
            self._cache.clear()
        self.driver.close()

    # -- naming, labels, envelope -------------------------------------------------------------------------

    def _name(self, secret_id: UUID) -> str:
        return f"{self.settings.name_prefix}-{secret_id}"

    def secret_name(self, secret_id: UUID | str) -> str:
        """Return the backend name under which a secret id is stored.

        Args:
            secret_id: The secret's id.

        Returns:
            ``{name_prefix}-{uuid}``.
        """
        return self._name(_coerce_id(secret_id))

    def _labels(self, secret_id: UUID) -> dict[str, str]:
        return {
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_DEPLOYMENT: self.settings.deployment_id,
            LABEL_SECRET_ID: str(secret_id),
        }

    def _sized(self, secret_id: UUID, values: dict[str, str]) -> tuple[str, int]:
        payload = envelope.encode(self.settings.deployment_id, secret_id, values)
        try:
            return payload, len(payload.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidSecretError(
                "secret keys or values contain characters that cannot be encoded as UTF-8 (lone surrogates)",
                secret_id=secret_id,
            ) from None

    def _encode(self, secret_id: UUID, values: dict[str, str]) -> str:
        payload, size = self._sized(secret_id, values)
        limit = self.driver.limits.max_payload_bytes
        if size > limit:
            raise InvalidSecretError(
                f"secret {secret_id} is too large for backend {self.backend!r}: the stored payload would be "
                f"{size} bytes, the limit is {limit} bytes",
                secret_id=secret_id,
                backend=self.backend,
            )
        return payload

    def payload_size(self, secret_id: UUID | str, secret_values: dict[str, str]) -> int:
        """Return how many bytes these values take on the backend, to compare with ``driver.limits``.

        Args:
            secret_id: The secret's id.
            secret_values: The values.

        Returns:
            The size of the stored payload in UTF-8 bytes.

        Raises:
            InvalidSecretError: The id or the values would be refused by `store_secret_values`.
        """
        sid = _coerce_id(secret_id)
        return self._sized(sid, _validate_values(secret_values))[1]

    def _open(self, secret_id: UUID, stored: StoredSecret, id_text: str | None = None) -> dict[str, str]:
        """Check that a stored secret is ours and return its values (``id_text``: ``str(secret_id)``, if known)."""
        try:
            opened = envelope.decode(stored.payload)
        except envelope.EnvelopeError as exc:
            labels = stored.labels
            if labels.get(LABEL_DEPLOYMENT) == self.settings.deployment_id and labels.get(
                LABEL_SECRET_ID
            ) == str(secret_id):
                raise SecretCorruptedError(
                    f"secret {secret_id} on backend {self.backend!r} is labelled as ours but its payload cannot "
                    f"be read: {exc}",
                    secret_id=secret_id,
                    backend=self.backend,
                ) from None
            raise _not_ours(secret_id, self.backend) from None
        if opened.deployment != self.settings.deployment_id or opened.secret_id != (
            id_text if id_text is not None else str(secret_id)
        ):
            raise _not_ours(secret_id, self.backend)
        return opened.values

    def _holds(self, secret_id: UUID, name: str, values: dict[str, str]) -> bool:
        """Verify once, after an ambiguous write, whether the name holds our envelope with exactly ``values``.

        Any failure of the verification read counts as "not verified": the caller re-raises its original error.
        """
        try:
            stored = self._call("verify", secret_id, self.driver.read, name)
            return self._open(secret_id, stored) == values
        except MultiCloudStoreError:
            return False

    def _gone(self, name: str) -> bool:
        """Verify once, after an ambiguous delete, that the name holds no secret any more."""
        try:
            self._call("verify", None, self.driver.read, name)
        except SecretNotFoundError:
            return True
        except MultiCloudStoreError:
            return False
        return False

    @contextmanager
    def _invalidating(self, name: str) -> Iterator[None]:
        """Drop the cached read of ``name`` before and after a write.

        Before, so a failed write leaves no stale hit; after, so a read that raced the write cannot keep the old
        value.
        """
        if self._cache is not None:
            self._cache.invalidate(name)
        try:
            yield
        finally:
            if self._cache is not None:
                self._cache.invalidate(name)

    def _remember(self, sid: UUID) -> tuple[str, str]:
        """Return ``(name, str(sid))`` for the read path, kept in a bounded memo (a miss of `_names`)."""
        id_text = str(sid)
        names = (f"{self.settings.name_prefix}-{id_text}", id_text)
        if len(self._names) >= _NAMES_MAX:
            self._names.clear()  # simplest bound; a hot id is back after one formatting
        self._names[sid.int] = names
        return names

    def _stamp(self, exc: MultiCloudStoreError, secret_id: UUID | None) -> None:
        """Fill in the id and backend of a driver's error, unless the driver named them."""
        if exc.secret_id is None and secret_id is not None:
            exc.secret_id = secret_id
        if exc.backend is None:
            exc.backend = self.backend

    def _call(self, operation: str, secret_id: UUID | None, func: Any, *args: Any) -> Any:
        """Run a driver call, stamping errors with the id and backend, logging without values."""
        if self._closed:
            raise MultiCloudStoreError("this store is closed", secret_id=secret_id, backend=self.backend)
        # The timing and the log record cost more than the dispatcher's own work on a fast backend: skip them
        # unless DEBUG is on (isEnabledFor is cached by logging).
        telemetry = _SWITCH.telemetry or _SWITCH.poll()
        if telemetry is not None:
            telemetry.round_trip()
        debug = logger.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug else 0.0
        try:
            result = func(*args)
        except MultiCloudStoreError as exc:
            self._stamp(exc, secret_id)
            if debug:
                elapsed = (time.perf_counter() - started) * 1000
                logger.debug(
                    "%s %s on %s failed after %.1f ms: %s",
                    operation,
                    secret_id,
                    self.backend,
                    elapsed,
                    type(exc).__name__,
                    extra=self._log_fields(
                        operation, secret_id, outcome_of(exc), elapsed, type(exc).__name__
                    ),
                )
            raise
        if debug:
            elapsed = (time.perf_counter() - started) * 1000
            logger.debug(
                "%s %s on %s in %.1f ms",
                operation,
                secret_id,
                self.backend,
                elapsed,
                extra=self._log_fields(operation, secret_id, "ok", elapsed),
            )
        return result

    def _log_fields(
        self,
        operation: str,
        secret_id: UUID | None,
        outcome: str,
        duration_ms: float | None = None,
        error_type: str | None = None,
        cache: str | None = None,
    ) -> dict[str, object]:
        """The fields of a log line, named as the span attributes are (``mcs_`` prefix): never a value."""
        fields: dict[str, object] = {
            "mcs_backend": self.backend,
            "mcs_operation": operation,
            "mcs_outcome": outcome,
            "mcs_secret_id": str(secret_id) if secret_id is not None else None,
        }
        if duration_ms is not None:
            fields["mcs_duration_ms"] = round(duration_ms, 3)
        if error_type is not None:
            fields["mcs_error_type"] = error_type
        if cache is not None:
            fields["mcs_cache"] = cache
        return fields

    # -- the ZenML interface ------------------------------------------------------------------------------

    def store_secret_values(self, secret_id: UUID, secret_values: dict[str, str]) -> None:
        """Store the values of a new secret.

        Args:
            secret_id: The secret's id.
            secret_values: The values.

        Raises:
            InvalidSecretError: Bad id or values, or too large for the backend (before any network call).
            SecretExistsError: The id exists already with other values, or belongs to another deployment; the
                existing values are untouched. Storing exactly the values this deployment already holds under
                the id succeeds, so a retry after a lost answer is idempotent.
            BackendUnavailableError: The backend failed, and one verification read did not find the values
                stored (a write whose answer was lost but which committed counts as done).
        """
        telemetry = _SWITCH.telemetry
        if telemetry is not None and telemetry.outer():
            telemetry.run(
                "store", self.backend, self.store_secret_values, secret_id, secret_values, secret_id=secret_id
            )
            return
        sid = _coerce_id(secret_id)
        values = _validate_values(secret_values)
        payload = self._encode(sid, values)
        name = self._name(sid)
        with self._invalidating(name):
            try:
                self._call("store", sid, self.driver.create, name, payload, self._labels(sid))
            except (SecretExistsError, BackendUnavailableError):
                # Rare paths only: a retry of our own store whose answer was lost finds our identical values
                # (idempotent), and a create whose every answer was lost may still have committed.
                if self._holds(sid, name, values):
                    return
                raise

    def get_secret_values(self, secret_id: UUID) -> dict[str, str]:
        """Return the values of a secret: one round trip to the backend (none on a cache hit).

        Args:
            secret_id: The secret's id.

        Returns:
            A fresh dict of the values.

        Raises:
            InvalidSecretError: The id is not a UUID.
            SecretNotFoundError: No such secret for this deployment (a `KeyError`).
        """
        # The common case in one straight run: no cache, no telemetry (polled here, so a provider installed after
        # the store was built is seen at once), no DEBUG log. It makes every check of the general path below (id,
        # closed store, errors stamped with id and backend, ownership, values), without its bookkeeping.
        if self._cache is None and _SWITCH.poll() is None and not logger.isEnabledFor(logging.DEBUG):
            sid = secret_id if isinstance(secret_id, UUID) else _coerce_id(secret_id)
            name, id_text = self._names.get(sid.int) or self._remember(sid)
            if self._closed:
                raise MultiCloudStoreError("this store is closed", secret_id=sid, backend=self.backend)
            try:
                stored = self._driver.read(name)  # type: ignore[union-attr]  # set in _initialize
            except MultiCloudStoreError as exc:
                self._stamp(exc, sid)
                raise
            values = envelope.values_if_ours(stored.payload, self._deployment, id_text)
            # None: not ours, or not readable; _open tells which and raises the matching error.
            return values if values is not None else self._open(sid, stored, id_text)
        telemetry = _SWITCH.telemetry
        if telemetry is not None and telemetry.outer():
            return telemetry.run("get", self.backend, self.get_secret_values, secret_id, secret_id=secret_id)
        sid = _coerce_id(secret_id)
        name, id_text = self._names.get(sid.int) or self._remember(sid)
        cache = self._cache
        if cache is None:
            return self._open(sid, self._call("get", sid, self.driver.read, name), id_text)
        hit, cached = cache.lookup(name)
        if hit:
            if telemetry is not None:
                cache.hits += 1
                telemetry.note_cache("hit")
            if cached is None:
                raise SecretNotFoundError(f"secret {sid} not found", secret_id=sid, backend=self.backend)
            return cached
        if telemetry is not None:
            telemetry.note_cache("miss")
        try:
            return self._read_and_fill(sid, name, cache, id_text)
        except BackendUnavailableError:
            stale = cache.stale(name)
            if stale is None:
                raise
            if telemetry is not None:
                telemetry.note_cache("stale")
            logger.warning(
                "backend %s unavailable: serving the cached copy of secret %s past its TTL",
                self.backend,
                sid,
                extra=self._log_fields("get", sid, "ok", error_type="BackendUnavailableError", cache="stale"),
            )
            return stale

    def _read_and_fill(
        self, sid: UUID, name: str, cache: ReadCache, id_text: str | None = None
    ) -> dict[str, str]:
        """Read a secret from the backend and cache the answer, a not-found included (a miss, or a refresh)."""
        generation = cache.generation()
        try:
            values = self._open(sid, self._call("get", sid, self.driver.read, name), id_text)
        except SecretNotFoundError:
            cache.fill(name, None, generation)
            raise
        cache.fill(name, values, generation)
        return values

    def update_secret_values(self, secret_id: UUID, secret_values: dict[str, str]) -> None:
        """Replace all values of an existing secret of this deployment.

        Args:
            secret_id: The secret's id.
            secret_values: The new values; keys not in it are removed.

        Raises:
            InvalidSecretError: Bad id or values, or too large (before any network call).
            SecretNotFoundError: No such secret for this deployment; nothing changed.
            BackendUnavailableError: The backend failed, and one verification read did not find the new values.
        """
        telemetry = _SWITCH.telemetry
        if telemetry is not None and telemetry.outer():
            telemetry.run(
                "update",
                self.backend,
                self.update_secret_values,
                secret_id,
                secret_values,
                secret_id=secret_id,
            )
            return
        sid = _coerce_id(secret_id)
        values = _validate_values(secret_values)
        payload = self._encode(sid, values)
        name = self._name(sid)
        with self._invalidating(name):
            replace_owned = getattr(self.driver, "replace_owned", None)
            if replace_owned is not None:
                # The same ownership check, run by the driver between its read and its conditional write: one
                # round trip, no window between check and write (docs/decisions.md, decision 26).
                try:
                    check = lambda stored: self._open(sid, stored)  # noqa: E731 - one use, in this call
                    self._call("update", sid, replace_owned, name, payload, self._labels(sid), check)
                except BackendUnavailableError:
                    if self._holds(sid, name, values):  # the write committed, only its answer was lost
                        return
                    raise
                return
            self._open(sid, self._call("update", sid, self.driver.read, name))
            try:
                self._call("update", sid, self.driver.replace, name, payload, self._labels(sid))
            except BackendUnavailableError:
                if self._holds(sid, name, values):  # the write committed, only its answer was lost
                    return
                raise

    def delete_secret_values(self, secret_id: UUID) -> None:
        """Delete a secret of this deployment, so that its id can be stored again at once.

        Args:
            secret_id: The secret's id.

        Raises:
            InvalidSecretError: The id is not a UUID.
            SecretNotFoundError: No such secret for this deployment; nothing changed.
            BackendUnavailableError: The backend failed, and one verification read still found the secret.
        """
        telemetry = _SWITCH.telemetry
        if telemetry is not None and telemetry.outer():
            telemetry.run("delete", self.backend, self.delete_secret_values, secret_id, secret_id=secret_id)
            return
        sid = _coerce_id(secret_id)
        name = self._name(sid)
        with self._invalidating(name):
            delete_owned = getattr(self.driver, "delete_owned", None)
            if delete_owned is not None:
                # As in update: the driver runs the ownership check between its read and its conditional delete.
                try:
                    check = lambda stored: self._open(sid, stored)  # noqa: E731 - one use, in this call
                    self._call("delete", sid, delete_owned, name, check)
                    return
                except SecretIncompleteError:
                    pass  # an interrupted store's leftover: judged by its labels below, as without the extension
                except BackendUnavailableError:
                    if self._gone(name):  # the delete committed, only its answer was lost
                        return
                    raise
            try:
                self._open(sid, self._call("delete", sid, self.driver.read, name))
            except SecretIncompleteError as exc:
                # An interrupted store's empty leftover has no envelope: its labels prove whose it is.
                if any(exc.labels.get(key) != value for key, value in self._labels(sid).items()):
                    raise SecretNotFoundError(
                        f"secret {sid} not found", secret_id=sid, backend=self.backend
                    ) from None
            try:
                self._call("delete", sid, self.driver.delete, name)
            except BackendUnavailableError:
                if self._gone(name):  # the delete committed, only its answer was lost
                    return
                raise

    # -- beyond the interface -----------------------------------------------------------------------------

    def delete_corrupted(self, secret_id: UUID) -> bool:
        """Delete a secret of this deployment even when its payload fails its integrity check.

        `delete_secret_values` refuses a secret it cannot open, since the payload is what proves ownership. Here
        the labels the backend keeps beside the payload prove it instead: the secret is deleted only when a
        listing filtered on this deployment's labels and this id returns its name. A secret that reads fine is
        deleted as `delete_secret_values` would.

        Args:
            secret_id: The secret's id.

        Returns:
            True when the secret was corrupted, False when it read fine.

        Raises:
            InvalidSecretError: The id is not a UUID.
            SecretNotFoundError: No such secret, or its labels are not this deployment's; nothing changed.
        """
        sid = _coerce_id(secret_id)
        name = self._name(sid)
        with self._invalidating(name):
            try:
                self._open(sid, self._call("delete", sid, self.driver.read, name))
            except SecretCorruptedError:
                pass
            else:
                self._call("delete", sid, self.driver.delete, name)
                return False
            labels = self._labels(sid)
            if not any(listed == name for listed in self._call("list", sid, self.driver.list_names, labels)):
                raise SecretNotFoundError(f"secret {sid} not found", secret_id=sid, backend=self.backend)
            self._call("delete", sid, self.driver.delete, name)
            return True

    def store_identity(self) -> tuple[object, ...]:
        """Return what identifies the secrets this store reads and writes (no network call).

        Two stores with equal identities see the same secrets: same backend, same location, same deployment id
        and name prefix (`multicloud_store.migrate` refuses to copy a store onto itself). The location is the
        driver's optional ``location()`` (a resolved file path, a region and endpoint, a project, a vault URL);
        a driver without one is identified by its settings.

        Returns:
            A tuple to compare with ``==``.
        """
        location_of = getattr(self.driver, "location", None)
        if callable(location_of):
            location: tuple[object, ...] = ("location", *location_of())
        else:
            settings = getattr(self.driver, "settings", None)
            dump = getattr(settings, "model_dump", None)
            # Without settings nothing proves two drivers share a location: the object itself is the identity.
            location = ("settings", type(settings), dump()) if callable(dump) else ("driver", id(self.driver))
        return (self.backend, location, self.settings.deployment_id, self.settings.name_prefix)

    def secret_exists(self, secret_id: UUID) -> bool:
        """Tell whether this deployment has a secret with this id (one round trip, or a cache hit).

        Args:
            secret_id: The secret's id.

        Returns:
            True if `get_secret_values` would succeed.
        """
        try:
            self.get_secret_values(secret_id)
        except SecretNotFoundError:
            return False
        return True

    # -- cache control ------------------------------------------------------------------------------------

    def refresh(self, secret_id: UUID | str) -> dict[str, str]:
        """Read a secret from the backend now, whatever the cache holds, and cache the answer.

        For an application told of a rotation by other means (an event, a webhook). Unlike a cache miss, a
        refresh never serves a stale copy: when the backend is unavailable it raises, and the cached entry
        (with its stale window) stays for the other readers. Without a cache it is `get_secret_values`.

        Args:
            secret_id: The secret's id.

        Returns:
            A fresh dict of the values.

        Raises:
            InvalidSecretError: The id is not a UUID.
            SecretNotFoundError: No such secret for this deployment (remembered as such by the cache).
            BackendError: The backend failed.
        """
        telemetry = _SWITCH.telemetry
        if telemetry is not None and telemetry.outer():
            return telemetry.run("get", self.backend, self.refresh, secret_id, secret_id=secret_id)
        sid = _coerce_id(secret_id)
        name = self._name(sid)
        cache = self._cache
        if cache is None:
            return self._open(sid, self._call("get", sid, self.driver.read, name))
        if telemetry is not None:
            telemetry.note_cache("refresh")
        return self._read_and_fill(sid, name, cache)

    def invalidate(self, secret_id: UUID | str) -> None:
        """Forget the cached read of one secret, so the next read goes to the backend (no network call).

        Args:
            secret_id: The secret's id.

        Raises:
            InvalidSecretError: The id is not a UUID.
        """
        sid = _coerce_id(secret_id)
        if self._cache is not None:
            self._cache.invalidate(self._name(sid))

    def clear_cache(self) -> None:
        """Forget every cached read (no network call): each secret's next read goes to the backend."""
        if self._cache is not None:
            self._cache.clear()

    def list_secret_ids(self) -> Iterator[UUID]:
        """Yield the ids of this deployment's secrets, lazily, page by page as the driver fetches them.

        Yields:
            Secret ids, in the backend's order.
        """
        ids = self._list_ids()
        telemetry = _SWITCH.telemetry or _SWITCH.poll()
        if telemetry is not None:
            ids = telemetry.iterate("list", self.backend, ids)
        yield from ids

    def _list_ids(self) -> Iterator[UUID]:
        prefix = f"{self.settings.name_prefix}-"
        labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_DEPLOYMENT: self.settings.deployment_id}
        names = self._call("list", None, self.driver.list_names, labels)
        for name in names:
            if not name.startswith(prefix):
                continue
            tail = name[len(prefix) :]
            try:
                sid = UUID(tail)
            except ValueError:
                continue
            # UUID() also accepts "-…", braces, "urn:uuid:" and upper case: a name of prefix "app-" would pass
            # as one of prefix "app". Only the exact name this store writes belongs to it.
            if str(sid) == tail:
                yield sid

    def get_many(self, secret_ids: Iterable[UUID]) -> dict[UUID, ReadOutcome]:
        """Read many secrets in as few round trips as the backend allows.

        Backends with a batch read (AWS) are called once per batch; the others are read by a bounded thread
        pool (``MULTICLOUD_STORE_MAX_WORKERS``). One id's failure does not fail the others.

        Args:
            secret_ids: The ids; duplicates are read once.

        Returns:
            An outcome for every id.

        Raises:
            InvalidSecretError: An id is not a UUID (checked for all ids before any network call).
        """
        telemetry = _SWITCH.telemetry
        if telemetry is not None and telemetry.outer():
            requested = list(secret_ids)
            return telemetry.run("get_many", self.backend, self.get_many, requested, batch=len(requested))
        sids = list(dict.fromkeys(_coerce_id(s) for s in secret_ids))
        outcomes: dict[UUID, ReadOutcome] = {}
        pending: list[UUID] = []
        for sid in sids:
            if self._cache is not None:
                hit, cached = self._cache.lookup(self._name(sid))
                if hit:
                    if telemetry is not None:
                        self._cache.hits += 1
                    outcomes[sid] = (
                        ReadOutcome("ok", cached)
                        if cached is not None
                        else ReadOutcome(
                            "not_found", error=SecretNotFoundError(f"secret {sid} not found", secret_id=sid)
                        )
                    )
                    continue
            pending.append(sid)
        if not pending:
            if telemetry is not None:
                telemetry.note_batch((o.status for o in outcomes.values()), len(sids), None)
            return {sid: outcomes[sid] for sid in sids}
        generation = self._cache.generation() if self._cache is not None else 0
        batch = self.driver.limits.batch_read_size
        stored: dict[str, StoredSecret | Exception] = {}
        # With telemetry on, pool threads run in this call's context: the SDK's spans nest under get_many's.
        read_chunk = self._read_chunk if telemetry is None else telemetry.propagating(self._read_chunk)
        read_one = self._read_one if telemetry is None else telemetry.propagating(self._read_one)
        if batch > 1:
            chunks = [pending[i : i + batch] for i in range(0, len(pending), batch)]
            if len(chunks) == 1:
                stored.update(read_chunk(chunks[0]))
            else:
                for part in self._executor().map(read_chunk, chunks):
                    stored.update(part)
        else:
            names = [self._name(s) for s in pending]
            for name, result in zip(names, self._executor().map(read_one, names), strict=False):
                stored[name] = result
        for sid in pending:
            outcomes[sid] = self._outcome(sid, stored.get(self._name(sid)), generation)
        if telemetry is not None:
            failed = next((o.error for o in outcomes.values() if o.status == "error"), None)
            telemetry.note_batch((o.status for o in outcomes.values()), len(sids) - len(pending), failed)
        return {sid: outcomes[sid] for sid in sids}

    def _read_chunk(self, chunk: list[UUID]) -> Mapping[str, StoredSecret | Exception]:
        names = [self._name(s) for s in chunk]
        try:
            result: Mapping[str, StoredSecret | Exception] = self._call(
                "get_many", None, self.driver.read_many, names
            )
        except MultiCloudStoreError as exc:
            return dict.fromkeys(names, exc)
        return result

    def _read_one(self, name: str) -> StoredSecret | Exception:
        try:
            return self._call("get", None, self.driver.read, name)  # type: ignore[no-any-return]
        except MultiCloudStoreError as exc:
            return exc

    def _outcome(self, sid: UUID, result: StoredSecret | Exception | None, generation: int) -> ReadOutcome:
        name = self._name(sid)
        if result is None:
            result = SecretNotFoundError(f"secret {sid} not found", secret_id=sid, backend=self.backend)
        if isinstance(result, Exception):
            if isinstance(result, MultiCloudStoreError) and result.secret_id is None:
                result.secret_id = sid
            error = (
                result
                if isinstance(result, MultiCloudStoreError)
                else MultiCloudStoreError(
                    f"reading secret {sid} failed: {type(result).__name__}", secret_id=sid
                )
            )
            if isinstance(error, SecretNotFoundError):
                if self._cache is not None:
                    self._cache.fill(name, None, generation)
                return ReadOutcome("not_found", error=error)
            return ReadOutcome("error", error=error)
        try:
            values = self._open(sid, result)
        except SecretNotFoundError as exc:
            return ReadOutcome("not_ours" if getattr(exc, "not_ours", False) else "not_found", error=exc)
        except MultiCloudStoreError as exc:
            return ReadOutcome("error", error=exc)
        if self._cache is not None:
            self._cache.fill(name, values, generation)
        return ReadOutcome("ok", values)

    def _executor(self) -> ThreadPoolExecutor:
        # Imported here: only get_many on a backend without a batch read needs threads (cold start).
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.settings.max_workers, thread_name_prefix="multicloud-store"
                )
            return self._pool

    def check(self) -> None:
        """Ask the driver for one cheap authenticated call.

        Raises:
            BackendError: The backend cannot be used.
        """
        self._call("health_check", None, self.driver.health_check)

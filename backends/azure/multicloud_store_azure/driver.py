"""The ``azure`` backend: Azure Key Vault secrets.

- One Key Vault secret per store secret, named as the dispatcher says. Its current version holds the payload
  (content type ``application/json``) and carries the dispatcher's labels as tags, so a read is one GET that
  returns both.
- Key Vault has no conditional create: ``set_secret`` adds a version to whatever holds the name. Creating is
  therefore an existence check (one page of the name's versions: no value travels), the write, and a
  confirmation read. Within one driver, creates of one name are serialised by a lock, so of several threads
  exactly one wins. Across processes a window of about one round trip remains; when the confirmation read
  shows that another writer's version landed after ours, that writer won: our version is disabled and
  `SecretExistsError` is raised. See docs/backends/azure.md, "Concurrent creates".
- Soft delete is always on in Key Vault. A delete waits for the deletion to finish, then purges the secret
  (``purge_on_delete``) so that the id can be stored again at once. Where the purge is refused (purge
  protection, or no purge permission) the secret stays soft-deleted, and the next store of that id recovers it
  and overwrites it with a new version.
- Every call goes through azure-core's retry policy (throttling with ``Retry-After``, 5xx, connection errors)
  with the settings' timeouts; errors are mapped by the one table in `multicloud_store_azure.errors`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, ClassVar

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.policies import RetryPolicy
from pydantic import SecretStr

from multicloud_store.driver import DriverLimits, StoredSecret, read_many_sequential
from multicloud_store.errors import (
    BackendError,
    BackendUnavailableError,
    MultiCloudStoreError,
    SecretExistsError,
    SecretNotFoundError,
    SecretStateError,
)
from multicloud_store.settings import EnvSettings
from multicloud_store_azure.errors import DELETED_BUT_RECOVERABLE, credentials_error, error_codes, translate
from multicloud_store_azure.settings import AzureSettings

__all__ = ["AzureDriver", "build_credential", "client_options", "create_client"]

logger = logging.getLogger("multicloud_store.azure")

_BACKEND = "azure"
_SERVICE = "Azure Key Vault"
_CONTENT_TYPE = "application/json"
_PAGE_SIZE = 25  # the largest page Key Vault serves
_STATIC_TOKEN_LIFETIME = 3600


class _StaticTokenCredential:
    """A token credential that hands out one fixed bearer token (``MULTICLOUD_STORE_AZURE_ACCESS_TOKEN``).

    The token's real expiry is unknown; it is reported as an hour ahead, so the SDK never asks early. Once the
    service rejects it, calls fail with `BackendPermissionError`.
    """

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticTokenCredential(token=<redacted>)"

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """Return the token, whatever the scope (azure-core's ``TokenCredential``).

        Args:
            *scopes: Ignored: the token is for whatever it was issued for.
            claims: Ignored.
            tenant_id: Ignored.
            enable_cae: Ignored.
            **kwargs: Ignored.

        Returns:
            The token.
        """
        return AccessToken(self._token.get_secret_value(), int(time.time()) + _STATIC_TOKEN_LIFETIME)

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        """Return the token (azure-core's ``SupportsTokenInfo``, which the Key Vault SDK prefers).

        Args:
            *scopes: Ignored.
            options: Ignored.

        Returns:
            The token.
        """
        return AccessTokenInfo(
            self._token.get_secret_value(), int(time.time()) + _STATIC_TOKEN_LIFETIME, token_type="Bearer"
        )

    def close(self) -> None:
        """Nothing to release."""


class _BoundedRetryPolicy(RetryPolicy):  # type: ignore[type-arg]
    """azure-core's retry policy, except that a ``Retry-After`` longer than the longest backoff is not waited for.

    azure-core sleeps for whatever ``Retry-After`` says; a throttled vault asking for minutes would hang a
    server's request that long. Such a response is returned at once and becomes `BackendUnavailableError`.
    """

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        """Tell whether to retry this response; see `RetryPolicy.is_retry`."""
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > settings["max_backoff"]:
            return False
        return bool(super().is_retry(settings, response))


class _RetryNoticer:
    """A ``raw_response_hook`` that remembers whether a call was retried.

    After a retry, a 404 may be the answer to our own earlier attempt, whose success was lost on the way back.
    """

    def __init__(self) -> None:
        self.retried = False

    def __call__(self, response: Any) -> None:
        # The retry policy numbers each attempt in the shared context before sending it.
        if int(response.context.get("retry_count") or 0) > 0:
            self.retried = True


class _NameLocks:
    """One lock per secret name in use, dropped again when no thread holds it or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Hold the lock of ``name`` (case-insensitively, as Key Vault compares names).

        Args:
            name: The secret name.

        Yields:
            Nothing, with the lock held.
        """
        key = name.lower()
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


def build_credential(settings: AzureSettings) -> Any:
    """Build the token credential the settings ask for. No network I/O.

    Args:
        settings: The backend's settings.

    Returns:
        An azure-core token credential.

    Raises:
        ConfigurationError: The credential cannot be built from these settings.
    """
    kind = settings.resolved_credential()
    if kind == "access_token":
        assert settings.access_token is not None  # checked by AzureSettings
        return _StaticTokenCredential(settings.access_token)
    from azure import identity

    authority: dict[str, Any] = {"authority": settings.authority_host} if settings.authority_host else {}
    try:
        if kind == "client_secret":
            assert settings.client_secret is not None  # checked by AzureSettings
            return identity.ClientSecretCredential(
                settings.tenant_id or "",
                settings.client_id or "",
                settings.client_secret.get_secret_value(),
                **authority,
            )
        if kind == "managed_identity":
            return identity.ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
        if kind == "workload_identity":
            # Unset values fall back to the AZURE_* variables the AKS webhook injects.
            token_file = str(settings.token_file_path) if settings.token_file_path else None
            return identity.WorkloadIdentityCredential(
                tenant_id=settings.tenant_id,
                client_id=settings.client_id,
                token_file_path=token_file,
                **authority,
            )
        if kind == "azure_cli":
            return identity.AzureCliCredential(tenant_id=settings.tenant_id or "")
        # DefaultAzureCredential reads AZURE_CLIENT_ID / AZURE_TENANT_ID itself; pass ours only when set, since
        # an explicit None would switch that fallback off.
        options: dict[str, Any] = dict(authority)
        client_id = settings.managed_identity_client_id or settings.client_id
        if client_id:
            options["managed_identity_client_id"] = client_id
        if settings.tenant_id:
            options["workload_identity_tenant_id"] = settings.tenant_id
        return identity.DefaultAzureCredential(**options)
    except ValueError as exc:
        raise credentials_error(exc) from exc


def client_options(settings: AzureSettings) -> dict[str, Any]:
    """Return the ``SecretClient`` keyword arguments that apply the settings' retries, timeouts and TLS.

    Useful to build a client by hand (for example on an in-process transport) that behaves like the driver's.

    Args:
        settings: The backend's settings.

    Returns:
        Keyword arguments for ``SecretClient``.
    """
    retries = settings.retry_total
    options: dict[str, Any] = {
        "retry_policy": _BoundedRetryPolicy(
            retry_total=retries,
            retry_connect=retries,
            retry_read=retries,
            retry_status=retries,
            retry_backoff_factor=settings.retry_backoff_factor,
            retry_backoff_max=settings.retry_backoff_max,
        ),
        "connection_timeout": settings.connection_timeout,
        "read_timeout": settings.read_timeout,
        "verify_challenge_resource": settings.verify_challenge_resource,
    }
    if settings.ca_bundle is not None:
        options["connection_verify"] = str(settings.ca_bundle)
    return options


def create_client(settings: AzureSettings, *, credential: Any = None, **kwargs: Any) -> Any:
    """Build a ``SecretClient`` for the settings' vault, credential, retries and timeouts. No network I/O.

    Args:
        settings: The backend's settings.
        credential: A token credential to use instead of the one the settings describe.
        **kwargs: More ``SecretClient`` options (``transport=...``); they win over the settings'.

    Returns:
        An ``azure.keyvault.secrets.SecretClient``.

    Raises:
        ConfigurationError: The credential cannot be built from these settings.
    """
    from azure.keyvault.secrets import SecretClient

    if credential is None:
        credential = build_credential(settings)
    options = client_options(settings)
    options.update(kwargs)
    return SecretClient(settings.resolved_vault_url(), credential, **options)


class AzureDriver:
    """Secrets in Azure Key Vault. Thread-safe: one client, created on first use, shared by all threads.

    Args:
        settings: Its settings; read from ``MULTICLOUD_STORE_AZURE_*`` when omitted.
        client: A ready ``SecretClient`` (tests, an in-process transport, or one built by hand); the driver
            does not close it. See `create_client` and `client_options` to give it the settings' behaviour.

    Raises:
        ConfigurationError: A setting is missing or wrong.
    """

    backend_name: ClassVar[str] = "azure"
    settings_class: ClassVar[type[EnvSettings]] = AzureSettings
    _LIMITS: ClassVar[DriverLimits] = DriverLimits(
        # Key Vault documents the value limit as "25k bytes".
        max_payload_bytes=25_000,
        name_pattern=r"[A-Za-z0-9-]+",
        max_name_length=127,
        max_labels=15,
        # Tags may hold any printable text; Azure's tag limits are 512 characters per name, 256 per value.
        label_key_pattern=r"[^\x00-\x1f\x7f]{1,512}",
        label_value_pattern=r"[^\x00-\x1f\x7f]{0,256}",
        batch_read_size=1,
    )

    def __init__(self, settings: AzureSettings | None = None, *, client: Any = None) -> None:
        self.settings = settings if settings is not None else AzureSettings.from_environ()
        self._client: Any = client
        self._owns_client = client is None
        self._credential: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self._create_locks = _NameLocks()
        self._purge_refusal_reported = False

    def __repr__(self) -> str:
        return (
            f"AzureDriver(vault_url={self.settings.resolved_vault_url()!r}, "
            f"credential={self.settings.resolved_credential()!r})"
        )

    @property
    def limits(self) -> DriverLimits:
        """What this backend accepts."""
        return self._LIMITS

    def location(self) -> tuple[str, ...]:
        """Identify the store from settings alone: the vault URL.

        Returns:
            ``(vault URL,)``, lower case, without a trailing slash.
        """
        return (self.settings.resolved_vault_url().rstrip("/").lower(),)

    # -- client -------------------------------------------------------------------------------------------

    def _connect(self) -> Any:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise BackendError("this Azure Key Vault driver is closed", backend=_BACKEND)
            if self._client is None:
                credential = build_credential(self.settings)
                self._client = create_client(self.settings, credential=credential)
                self._credential = credential
            return self._client

    def _wait_until(self, probe: Callable[[], bool]) -> bool:
        """Call ``probe`` with growing pauses until it returns True or ``operation_timeout`` passes."""
        deadline = time.monotonic() + self.settings.operation_timeout
        delay = 0.05
        while not probe():
            if time.monotonic() + delay > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        return True

    # -- reading ------------------------------------------------------------------------------------------

    def read(self, name: str) -> StoredSecret:
        """Read the current version and its tags in one call; see `SecretsDriver.read`.

        Raises:
            SecretNotFoundError: No such secret (or it is soft-deleted).
            SecretStateError: It is disabled, expired or not valid yet.
        """
        client = self._connect()
        try:
            secret = client.get_secret(name)
        except Exception as exc:
            raise translate(exc, operation="read", name=name) from exc
        properties = secret.properties
        self._check_dates(name, properties)
        return StoredSecret(
            name=name,
            payload=secret.value or "",
            labels=dict(properties.tags or {}),
            version=properties.version,
        )

    def _check_dates(self, name: str, properties: Any) -> None:
        # Key Vault still serves expired and not-yet-valid secrets; its documentation says they SHOULD NOT be
        # used, so by default neither do we.
        if not self.settings.enforce_expiry:
            return
        now = datetime.now(timezone.utc)
        expires, not_before = properties.expires_on, properties.not_before
        if expires is not None and expires <= now:
            raise SecretStateError(
                f"{_SERVICE}: secret {name!r} has expired (its expiry date {expires:%Y-%m-%d %H:%M} UTC has "
                "passed); extend it, or set MULTICLOUD_STORE_AZURE_ENFORCE_EXPIRY=false",
                backend=_BACKEND,
            )
        if not_before is not None and not_before > now:
            raise SecretStateError(
                f"{_SERVICE}: secret {name!r} is not valid yet (activation date {not_before:%Y-%m-%d %H:%M} UTC)",
                backend=_BACKEND,
            )

    def read_many(self, names: list[str]) -> Mapping[str, StoredSecret | Exception]:
        """Read several secrets one by one (Key Vault has no batch read); see `SecretsDriver.read_many`."""
        return read_many_sequential(self, names)

    # -- creating -----------------------------------------------------------------------------------------

    def create(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Create a secret that must not exist yet; see `SecretsDriver.create` and the module docstring.

        Raises:
            SecretExistsError: A secret of that name exists, or another writer created it concurrently.
        """
        client = self._connect()
        with self._create_locks.hold(name):
            if self._exists(client, name, operation="create"):
                raise SecretExistsError(f"{_SERVICE}: secret {name!r} already exists", backend=_BACKEND)
            version = self._write_new(client, name, payload, labels)
            self._confirm_created(client, name, version)

    def _exists(self, client: Any, name: str, *, operation: str) -> bool:
        """Tell whether the name holds a live secret (disabled ones included), without fetching a value."""
        try:
            pages = client.list_properties_of_secret_versions(name, max_page_size=1).by_page()
            return any(True for _ in next(pages, []))
        except ResourceNotFoundError:
            return False
        except Exception as exc:
            raise translate(exc, operation=operation, name=name) from exc

    def _write_new(self, client: Any, name: str, payload: str, labels: Mapping[str, str]) -> str | None:
        """Write the first version of our secret, clearing a soft-deleted one of that name out of the way."""
        deadline = time.monotonic() + self.settings.operation_timeout
        delay = 0.05
        recovered = False
        while True:
            try:
                secret = client.set_secret(name, payload, content_type=_CONTENT_TYPE, tags=dict(labels))
            except ResourceExistsError as exc:
                _, inner = error_codes(exc)
                if inner == DELETED_BUT_RECOVERABLE and time.monotonic() < deadline:
                    outcome = self._reclaim(client, name)
                    recovered = recovered or outcome == "recovered"
                    if outcome != "waiting":
                        continue  # the name is free, or holds the recovered secret: write at once
                # Being deleted, purged or recovered: the name is in transition; wait for it to settle.
                if time.monotonic() + delay > deadline:
                    self._undo_recovery(client, name, recovered)
                    raise BackendUnavailableError(
                        f"{_SERVICE}: cannot create secret {name!r}: its name is still held by a secret being "
                        f"deleted, purged or recovered after {self.settings.operation_timeout:g} s",
                        backend=_BACKEND,
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except BaseException as exc:
                self._undo_recovery(client, name, recovered)
                if isinstance(exc, Exception):
                    raise translate(exc, operation="create", name=name) from exc
                raise
            else:
                version = secret.properties.version
                return version if isinstance(version, str) else None

    def _reclaim(self, client: Any, name: str) -> str:
        """Free a name held by a soft-deleted secret: purge it, or (where purging is refused) recover it.

        Returns:
            ``purged``; ``recovered`` (the old secret, whose old payload is live until our write lands); or
            ``waiting`` (the deleted secret is still settling, or another writer freed it first).

        Raises:
            SecretExistsError: Another writer recovered it first and now holds the name.
        """
        if self.settings.purge_on_delete:
            try:
                client.purge_deleted_secret(name)
            except ResourceNotFoundError:
                # Purged or recovered by someone else meanwhile.
                self._raise_if_exists(client, name)
                return "waiting"
            except ResourceExistsError:
                return "waiting"  # still being deleted: the caller waits and tries again
            except HttpResponseError as exc:
                if exc.status_code != 403:
                    raise translate(exc, operation="create", name=name) from exc
                logger.info(
                    "secret %s is soft-deleted and Key Vault refused to purge it (%s); recovering it to overwrite it",
                    name,
                    error_codes(exc)[1] or "Forbidden",
                )
            except Exception as exc:
                raise translate(exc, operation="create", name=name) from exc
            else:
                logger.info("purged soft-deleted secret %s so that its id can be stored again", name)
                return "purged"
        noticer = _RetryNoticer()
        try:
            client.begin_recover_deleted_secret(name, raw_response_hook=noticer)
        except (ResourceNotFoundError, ResourceExistsError):
            if not noticer.retried:
                # Recovered (or purged) by another writer first, or still being deleted.
                self._raise_if_exists(client, name)
                return "waiting"
        except Exception as exc:
            raise translate(exc, operation="create", name=name) from exc
        # Wait until the recovered secret is visible, so that our write lands on it rather than on a 409.
        self._wait_until(lambda: self._exists(client, name, operation="create"))
        logger.info("recovered soft-deleted secret %s (it cannot be purged) to overwrite it", name)
        return "recovered"

    def _raise_if_exists(self, client: Any, name: str) -> None:
        if self._exists(client, name, operation="create"):
            raise SecretExistsError(
                f"{_SERVICE}: secret {name!r} already exists (another writer recovered it first)",
                backend=_BACKEND,
            )

    def _undo_recovery(self, client: Any, name: str, recovered: bool) -> None:
        """After a failed write, delete again the old secret we recovered: it must not come back to life."""
        if not recovered:
            return
        try:
            client.begin_delete_secret(name)
        except Exception as exc:
            logger.warning(
                "secret %s was recovered to be overwritten, but the write failed and deleting it again failed "
                "too (%s): its previous, deleted values are readable again until it is deleted",
                name,
                type(exc).__name__,
            )

    def _confirm_created(self, client: Any, name: str, version: str | None) -> None:
        """Check that our version is the current one; if another writer's landed after it, that writer won."""
        if version is None:
            return
        try:
            current = client.get_secret(name)
        except Exception as exc:
            # Our write succeeded; only the race check could not be made.
            logger.warning(
                "secret %s was created, but the check for a concurrent create failed (%s)",
                name,
                type(exc).__name__,
            )
            return
        if current.properties.version == version:
            return
        # No longer current, our version is never served again; disable it so it cannot be read by id either.
        try:
            client.update_secret_properties(name, version, enabled=False)
        except Exception as exc:
            logger.warning(
                "could not disable the losing version of secret %s after a concurrent create (%s)",
                name,
                type(exc).__name__,
            )
        raise SecretExistsError(
            f"{_SERVICE}: secret {name!r} was created concurrently by another writer, whose version is the "
            "current one; this store's version was disabled",
            backend=_BACKEND,
        )

    # -- replacing and deleting ---------------------------------------------------------------------------

    def replace(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Add a new current version; see `SecretsDriver.replace`.

        Readers switch from the old version to the new one in one step. ``set_secret`` creates whatever is not
        there, so this relies on the dispatcher's read just before: a secret deleted and purged in between is
        created again (a soft-deleted one answers 409 and becomes `SecretNotFoundError`).

        Raises:
            SecretNotFoundError: The secret was deleted meanwhile.
        """
        client = self._connect()
        try:
            client.set_secret(name, payload, content_type=_CONTENT_TYPE, tags=dict(labels))
        except ResourceExistsError as exc:
            raise SecretNotFoundError(
                f"{_SERVICE}: secret {name!r} not found (it was deleted meanwhile); nothing changed",
                backend=_BACKEND,
            ) from exc
        except Exception as exc:
            raise translate(exc, operation="update", name=name) from exc

    def delete(self, name: str) -> None:
        """Delete the secret, wait for the deletion, then purge it (``purge_on_delete``).

        A refused purge (purge protection, no purge permission) is logged and leaves the secret soft-deleted;
        the next store of the same id recovers and overwrites it. Once the deletion is done, a failure of the
        purge never fails the call.

        Raises:
            SecretNotFoundError: No such secret.
        """
        client = self._connect()
        noticer = _RetryNoticer()
        soft_deleted = True
        try:
            poller = client.begin_delete_secret(name, raw_response_hook=noticer)
        except ResourceNotFoundError as exc:
            if not noticer.retried:
                raise translate(exc, operation="delete", name=name) from exc
            # An earlier attempt, whose answer was lost, deleted it.
        except ResourceExistsError as exc:
            raise SecretNotFoundError(
                f"{_SERVICE}: secret {name!r} not found (another client is deleting it)", backend=_BACKEND
            ) from exc
        except Exception as exc:
            raise translate(exc, operation="delete", name=name) from exc
        else:
            # No recovery id: a vault without soft delete, where the deletion is final.
            soft_deleted = poller.result().recovery_id is not None
        if soft_deleted and self.settings.purge_on_delete:
            self._purge_deleted(client, name)

    def _deletion_done(self, client: Any, name: str) -> bool:
        try:
            client.get_deleted_secret(name)
        except ResourceNotFoundError:
            return False  # still being deleted: not in the deleted collection yet
        except HttpResponseError as exc:
            if exc.status_code == 403:
                return True  # may not look at deleted secrets: try the purge and see
            raise
        return True

    def _purge_deleted(self, client: Any, name: str) -> None:
        """Purge a secret we deleted. Never raises: the deletion itself has succeeded."""
        try:
            if not self._wait_until(lambda: self._deletion_done(client, name)):
                logger.warning(
                    "secret %s was deleted but is still being deleted after %g s; it was not purged",
                    name,
                    self.settings.operation_timeout,
                )
                return
            deadline = time.monotonic() + self.settings.operation_timeout
            delay = 0.05
            while True:
                try:
                    client.purge_deleted_secret(name)
                    return
                except ResourceNotFoundError:
                    return  # purged (or recovered) by someone else
                except ResourceExistsError:
                    if time.monotonic() + delay > deadline:
                        raise
                    time.sleep(delay)  # the deletion is still settling
                    delay = min(delay * 2, 1.0)
                except HttpResponseError as exc:
                    if exc.status_code != 403:
                        raise
                    self._report_purge_refusal(name, exc)
                    return
        except Exception as exc:
            logger.warning(
                "secret %s was deleted but could not be purged (%s); it stays soft-deleted, and a later store of "
                "the same id purges or recovers it",
                name,
                translate(exc, operation="purge", name=name),
            )

    def _report_purge_refusal(self, name: str, exc: HttpResponseError) -> None:
        reason = error_codes(exc)[1] or "Forbidden"
        if self._purge_refusal_reported:
            logger.debug("Key Vault refused to purge deleted secret %s (%s)", name, reason)
            return
        self._purge_refusal_reported = True
        logger.warning(
            "Key Vault refused to purge deleted secret %s (%s: purge protection, or no purge permission). Deleted "
            "secrets stay soft-deleted until the vault's retention period ends; storing the same id again "
            "recovers and overwrites them. Set MULTICLOUD_STORE_AZURE_PURGE_ON_DELETE=false to stop trying.",
            name,
            reason,
        )

    # -- listing and health -------------------------------------------------------------------------------

    def list_names(self, labels: Mapping[str, str]) -> Iterator[str]:
        """Yield the names of secrets carrying all these tags, a page of 25 at a time, lazily.

        Key Vault cannot filter by tag, so every secret's properties are listed and filtered here.

        Args:
            labels: Tags every listed secret must carry (exact match).

        Yields:
            Secret names.
        """
        # A generator: nothing, not even the client, is touched before the first name is asked for.
        wanted = dict(labels)
        try:
            client = self._connect()
            for page in client.list_properties_of_secrets(max_page_size=_PAGE_SIZE).by_page():
                for properties in page:
                    tags = properties.tags or {}
                    if all(tags.get(key) == value for key, value in wanted.items()):
                        yield properties.name
        except MultiCloudStoreError:
            raise
        except Exception as exc:
            raise translate(exc, operation="list") from exc

    def health_check(self) -> None:
        """List one secret: proves the vault URL, TLS, the credential and the list permission.

        Raises:
            BackendError: The backend cannot be used.
        """
        client = self._connect()
        try:
            next(client.list_properties_of_secrets(max_page_size=1).by_page(), None)
        except Exception as exc:
            raise translate(exc, operation="health check") from exc

    def close(self) -> None:
        """Close the client's connections and the credential, if the driver created them."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            client, self._client = self._client, None
            credential, self._credential = self._credential, None
        for resource, owned in ((client, self._owns_client), (credential, True)):
            if resource is None or not owned:
                continue
            try:
                resource.close()
            except Exception as exc:  # closing is best effort; nothing is lost
                logger.debug("closing %s failed: %s", type(resource).__name__, type(exc).__name__)

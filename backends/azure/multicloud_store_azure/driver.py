"""The ``azure`` backend: Azure Key Vault secrets.

- One Key Vault secret per store secret, named as the dispatcher says. Its current version holds the payload
  (content type ``application/json``) and carries the dispatcher's labels as tags, so a read is one GET that
  returns both.
- Key Vault has no conditional create: ``set_secret`` adds a version to whatever holds the name. Creating is
  an existence check (one page of the name's versions: no value travels), the write of a version tagged with a
  random writer id, a wait until the second of that version is over on the service's clock, and one listing of
  the versions: the earliest creator's version (creation second, then version id) wins; a loser puts the
  winner's values back on top and raises `SecretExistsError`. See docs/backends/azure.md, "Concurrent creates".
- Soft delete is always on in Key Vault. A delete waits for the deletion to finish, then purges the secret
  (``purge_on_delete``) so that the id can be stored again at once. Where the purge is refused (purge
  protection, or no purge permission) the secret stays soft-deleted, and the next store of that id recovers it
  and overwrites it with a new version.
- Every call goes through azure-core's retry policy (throttling with ``Retry-After``, 5xx, connection errors)
  with the settings' timeouts; errors are mapped by the one table in `multicloud_store_azure.errors`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar
from urllib.parse import quote

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import (
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    map_error,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.core.rest import HttpRequest

from multicloud_store.driver import DriverLimits, StoredSecret, read_many_sequential
from multicloud_store.errors import (
    BackendError,
    BackendUnavailableError,
    MultiCloudStoreError,
    SecretExistsError,
    SecretNotFoundError,
    SecretStateError,
)
from multicloud_store.settings import EnvSettings, SecretStr
from multicloud_store_azure import _redact
from multicloud_store_azure.errors import (
    DELETED_BUT_RECOVERABLE,
    credentials_error,
    error_codes,
    malformed_header,
    translate,
)
from multicloud_store_azure.settings import AzureSettings

__all__ = [
    "WRITER_TAG",
    "AzureDriver",
    "build_credential",
    "client_options",
    "create_client",
    "environment_proxies",
    "pooled_transport",
]

logger = logging.getLogger("multicloud_store.azure")

_BACKEND = "azure"
_SERVICE = "Azure Key Vault"
_CONTENT_TYPE = "application/json"
_PAGE_SIZE = 25  # the largest page Key Vault serves
_STATIC_TOKEN_LIFETIME = 3600
WRITER_TAG = "mcs_writer"
"""The tag with which a creator marks the version it writes: a random id per create call."""


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

    def increment(self, settings: dict[str, Any], response: Any = None, error: Any = None) -> bool:
        """Count an attempt; never retry a request whose header a malformed credential broke."""
        if error is not None and malformed_header(error):
            return False
        return bool(super().increment(settings, response=response, error=error))

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        """Tell whether to retry this response; see `RetryPolicy.is_retry`."""
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > settings["max_backoff"]:
            return False
        return bool(super().is_retry(settings, response))


# As the generated client's get_secret maps them; any other status is a plain HttpResponseError.
_READ_ERRORS: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
    304: ResourceNotModifiedError,
}


def _get_secret_bundle(client: Any, name: str) -> dict[str, Any]:
    """``GET /secrets/{name}/``: the current version as the service's JSON (a *SecretBundle*).

    ``SecretClient.send_request`` runs the request through the client's own pipeline (its retries, timeouts,
    authentication, logging and tracing) and the client's API version, like ``get_secret``; the body is read
    as plain JSON rather than deserialised into the SDK's models, which is about a sixth of a read's CPU (the
    parallel reads of docs/performance.md are bounded by that CPU). Errors are raised as ``get_secret`` raises
    them: the same exception types, carrying the service's error body.

    Raises:
        HttpResponseError: The service answered with an error (a subclass for 401, 404 and 409).
    """
    # An unparsable 200 is reported below, outside the except block, and not chained: azure-core's DecodeError
    # repeats up to 2 KB of the body in its str(), json's error keeps all of it, and a 200's body is the value.
    bundle: Any = None
    try:
        # Quoted as the generated client quotes it (the dispatcher only passes letters, digits and dashes).
        response = client.send_request(HttpRequest("GET", f"/secrets/{quote(name, safe='')}/"))
    except DecodeError as exc:
        if exc.status_code != 200:
            raise  # an error answer: its body is the service's (or a gateway's) error text
        response = None
    if response is not None and response.status_code != 200:
        map_error(status_code=response.status_code, response=response, error_map=_READ_ERRORS)
        raise HttpResponseError(response=response)
    if response is not None:
        # json.loads on the bytes (UTF-8, as Key Vault answers): not .json(), which first works out a charset.
        with suppress(ValueError):
            bundle = json.loads(response.content)
    if not isinstance(bundle, dict):
        raise HttpResponseError(message="Key Vault answered a read with a body that is not a JSON object")
    return bundle


def _version_of(identifier: Any) -> str | None:
    """The version in a secret id, ``https://{vault}/secrets/{name}/{version}``; None when it has none."""
    if not isinstance(identifier, str):
        return None
    # "https:", "", host, "secrets", name, version
    parts = identifier.split("?", 1)[0].split("/")
    return parts[5] if len(parts) > 5 and parts[5] else None


def _timestamp(value: Any) -> datetime | None:
    """A Key Vault attribute time (Unix seconds) as an aware datetime; None when absent."""
    return datetime.fromtimestamp(value, timezone.utc) if isinstance(value, (int, float)) else None


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


class _ServiceClock:
    """A ``raw_response_hook`` that keeps the service's clock from the ``Date`` header, in whole seconds."""

    def __init__(self) -> None:
        self.second: int | None = None

    def __call__(self, response: Any) -> None:
        date = response.http_response.headers.get("Date")
        if not date:
            return
        with suppress(TypeError, ValueError):
            self.second = int(email.utils.parsedate_to_datetime(date).timestamp())


@dataclass(frozen=True)
class _VersionInfo:
    version: str
    created: int
    writer: str | None


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
    if "transport" not in kwargs:
        options["transport"] = pooled_transport(settings)
        # That transport ignores the environment on each request; the proxy it would have found is given
        # once here, to azure-core's ProxyPolicy.
        proxies = environment_proxies(settings.resolved_vault_url())
        if proxies:
            options["proxies"] = proxies
    options.update(kwargs)
    return SecretClient(settings.resolved_vault_url(), credential, **options)


def environment_proxies(url: str) -> dict[str, str]:
    """Return the proxies the environment names for ``url``, as requests would find them on every call.

    ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` (any case), minus ``NO_PROXY``: requests' own
    ``get_environ_proxies``, called once when the client is built instead of twice per request (each call
    scans the whole environment).

    Args:
        url: The vault URL (the only host a ``SecretClient`` talks to).

    Returns:
        ``{scheme: proxy URL}`` for requests' ``proxies=``; empty when no proxy applies.
    """
    from requests.utils import get_environ_proxies

    return {scheme: proxy for scheme, proxy in get_environ_proxies(url).items() if scheme != "no" and proxy}


def pooled_transport(settings: AzureSettings) -> Any:
    """Build azure-core's requests transport with a connection pool sized for the store's threads.

    azure-core mounts requests' default adapter, whose pool keeps 10 connections per host: a store shared by
    more threads opens a new TCP and TLS connection for every call beyond that and discards it afterwards,
    logging "Connection pool is full, discarding connection" each time.

    Args:
        settings: The backend's settings (`AzureSettings.pool_size`).

    Returns:
        A ``RequestsTransport`` that owns (and closes) its session.
    """
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from urllib3.util.retry import Retry

    session = requests.Session()
    # Not the environment on every request: requests would scan all of os.environ twice per call for proxies
    # (create_client resolves them once instead) and stat ~/.netrc, whose credentials would only replace the
    # bearer token anyway. The CA bundle requests would take from the environment is taken once, below.
    session.trust_env = False
    # As azure-core's own adapter: its retry policy retries, so urllib3 must not.
    adapter = requests.adapters.HTTPAdapter(
        pool_maxsize=settings.pool_size(),
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    for prefix in ("https://", "http://"):
        session.mount(prefix, adapter)
    # The connection settings a client would otherwise hand to the transport it builds.
    connection = {
        key: value
        for key, value in client_options(settings).items()
        if key in ("connection_timeout", "read_timeout", "connection_verify")
    }
    if "connection_verify" not in connection:
        # What requests does per call with trust_env: REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE.
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            connection["connection_verify"] = bundle
    return RequestsTransport(session=session, session_owner=True, use_env_settings=False, **connection)


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
        # Key Vault allows 15 tags; one is the creator's writer tag.
        max_labels=14,
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
        self._ready = False
        self._create_locks = _NameLocks()
        self._purge_refusal_reported = False
        # Masked wherever they turn up: SDK log records, tracebacks, error messages.
        _redact.register(
            *(
                secret.get_secret_value() if secret is not None else None
                for secret in (self.settings.access_token, self.settings.client_secret)
            )
        )

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
        if client is not None and self._ready:
            return client
        with self._lock:
            if self._closed:
                raise BackendError("this Azure Key Vault driver is closed", backend=_BACKEND)
            # Before the first request: the SDK's loggers get the credential filter (an injected client too).
            _redact.install()
            if self._client is None:
                credential = build_credential(self.settings)
                self._client = create_client(self.settings, credential=credential)
                self._credential = credential
            self._ready = True
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
            bundle = _get_secret_bundle(client, name)
        except Exception as exc:
            raise translate(exc, operation="read", name=name) from exc
        attributes = bundle.get("attributes") or {}
        self._check_dates(name, _timestamp(attributes.get("exp")), _timestamp(attributes.get("nbf")))
        return StoredSecret(
            name=name,
            payload=bundle.get("value") or "",
            labels=dict(bundle.get("tags") or {}),
            version=_version_of(bundle.get("id")),
        )

    def _check_dates(self, name: str, expires: datetime | None, not_before: datetime | None) -> None:
        # Key Vault still serves expired and not-yet-valid secrets; its documentation says they SHOULD NOT be
        # used, so by default neither do we.
        if not self.settings.enforce_expiry:
            return
        now = datetime.now(timezone.utc)
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

        The protocol (docs/backends/azure.md, "Concurrent creates"): check that the name is free; write the
        first version, tagged with a random writer id; then list the versions until the second in which the
        earliest creator's version was made is over, so that no earlier version can still appear. The earliest
        version (by creation second, then version id) wins. A loser whose version is the current one writes the
        winner's payload back as a newer version, disables its own versions, and raises `SecretExistsError`.

        Raises:
            SecretExistsError: A secret of that name exists, or another writer created it concurrently.
        """
        client = self._connect()
        with self._create_locks.hold(name):
            checked_at = self._check_free(client, name)
            writer = uuid.uuid4().hex
            tags = {**labels, WRITER_TAG: writer}
            old_versions, written = self._write_new(client, name, payload, tags)
            # No version made before ours can be the earliest until our second is over: wait for that first,
            # so that one listing usually settles the create.
            time.sleep(self._until_service_time(written[0] + 1 + self.settings.clock_skew, written[1]))
            self._settle_create(client, name, writer, checked_at, old_versions)

    def _check_free(self, client: Any, name: str) -> int | None:
        """Raise `SecretExistsError` when the name holds a live secret; return the service's clock (seconds)."""
        clock = _ServiceClock()
        if self._exists(client, name, operation="create", raw_response_hook=clock):
            raise SecretExistsError(f"{_SERVICE}: secret {name!r} already exists", backend=_BACKEND)
        return clock.second

    def _exists(self, client: Any, name: str, *, operation: str, **kwargs: Any) -> bool:
        """Tell whether the name holds a live secret (disabled ones included), without fetching a value."""
        try:
            pages = client.list_properties_of_secret_versions(name, max_page_size=1, **kwargs).by_page()
            return any(True for _ in next(pages, []))
        except ResourceNotFoundError:
            return False
        except Exception as exc:
            raise translate(exc, operation=operation, name=name) from exc

    def _versions(self, client: Any, name: str) -> tuple[list[_VersionInfo], int | None]:
        """List every version of ``name`` (properties only) and the service's clock when the last page came.

        Raises:
            SecretNotFoundError: No such secret (deleted meanwhile).
        """
        clock = _ServiceClock()
        try:
            found = [
                _VersionInfo(
                    version=str(properties.version or ""),
                    created=int(properties.created_on.timestamp()) if properties.created_on else 0,
                    writer=(properties.tags or {}).get(WRITER_TAG),
                )
                for properties in client.list_properties_of_secret_versions(
                    name, max_page_size=_PAGE_SIZE, raw_response_hook=clock
                )
            ]
        except Exception as exc:
            raise translate(exc, operation="create", name=name) from exc
        return found, clock.second

    def _write_new(
        self, client: Any, name: str, payload: str, tags: Mapping[str, str]
    ) -> tuple[frozenset[str], tuple[int, int | None]]:
        """Write the first version of our secret, clearing a soft-deleted one of that name out of the way.

        Returns:
            The ids of the versions that a secret recovered by this call brought back (empty otherwise): they
            belong to the deleted secret, not to this create; and the creation second of our version with the
            service's clock when it answered.
        """
        deadline = time.monotonic() + self.settings.operation_timeout
        delay = 0.05
        old_versions: frozenset[str] = frozenset()
        recovered = False
        while True:
            clock = _ServiceClock()
            try:
                secret = client.set_secret(
                    name, payload, content_type=_CONTENT_TYPE, tags=dict(tags), raw_response_hook=clock
                )
            except ResourceExistsError as exc:
                _, inner = error_codes(exc)
                if inner == DELETED_BUT_RECOVERABLE and time.monotonic() < deadline:
                    outcome = self._reclaim(client, name)
                    if isinstance(outcome, frozenset):
                        recovered, old_versions = True, outcome
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
                created = secret.properties.created_on
                second = (
                    int(created.timestamp()) if created is not None else (clock.second or int(time.time()))
                )
                return old_versions, (second, clock.second)

    def _reclaim(self, client: Any, name: str) -> str | frozenset[str]:
        """Free a name held by a soft-deleted secret: purge it, or (where purging is refused) recover it.

        Returns:
            ``purged``; the ids of the recovered secret's old versions (its old payload is live until our write
            lands); or ``waiting`` (the deleted secret is still settling, or another writer freed it first).

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
        latest_old: Any = None
        try:
            poller = client.begin_recover_deleted_secret(name, raw_response_hook=noticer)
            resource = getattr(poller.polling_method(), "resource", None)
            latest_old = resource() if callable(resource) else None
        except (ResourceNotFoundError, ResourceExistsError):
            if not noticer.retried:
                # Recovered (or purged) by another writer first, or still being deleted.
                self._raise_if_exists(client, name)
                return "waiting"
        except Exception as exc:
            raise translate(exc, operation="create", name=name) from exc
        # Wait until the recovered secret is visible, so that our write lands on it rather than on a 409, and
        # note its versions: they were made before the deletion, at the latest in the second of its newest one.
        listed: list[_VersionInfo] = []

        def visible() -> bool:
            try:
                listed[:] = self._versions(client, name)[0]
            except SecretNotFoundError:
                return False
            return bool(listed)

        self._wait_until(visible)
        newest = latest_old.created_on if latest_old is not None else None
        cutoff = (
            int(newest.timestamp()) if newest is not None else max((v.created for v in listed), default=0)
        )
        logger.info("recovered soft-deleted secret %s (it cannot be purged) to overwrite it", name)
        return frozenset(v.version for v in listed if v.created <= cutoff)

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

    def _settle_create(
        self, client: Any, name: str, writer: str, checked_at: int | None, old_versions: frozenset[str]
    ) -> None:
        """Find the winner of the create: the earliest version written by a creator since the name was free.

        Key Vault stamps versions with their creation time in whole seconds and lists them in version id order,
        so "earliest" is (creation second, version id), and it is final only once that second is over on the
        service's clock (the ``Date`` of a listing, plus ``clock_skew`` for the service's own clocks).
        Every version of this create was written after our existence check found the name free, so versions
        made before that check (a recovered secret's history) are not candidates.

        Raises:
            SecretExistsError: Another writer's version is the earliest.
        """
        deadline = time.monotonic() + self.settings.operation_timeout
        floor = checked_at - self.settings.clock_skew if checked_at is not None else None
        while True:
            try:
                versions, now = self._versions(client, name)
            except SecretNotFoundError:
                logger.warning("secret %s was deleted by another client right after it was created", name)
                return
            candidates = [
                v
                for v in versions
                if v.writer and v.version not in old_versions and (floor is None or v.created >= floor)
            ]
            if not any(v.writer == writer for v in candidates):
                # Our version is gone (the secret was deleted and created again meanwhile): nothing to settle.
                logger.warning("secret %s: the version this create wrote is no longer listed", name)
                return
            earliest = min(candidates, key=lambda v: (v.created, v.version.lower()))
            settled_at = earliest.created + 1 + self.settings.clock_skew
            wait = self._until_service_time(settled_at, now)
            if wait <= 0:
                break
            if time.monotonic() + wait > deadline:
                raise BackendUnavailableError(
                    f"{_SERVICE}: create of secret {name!r}: the service's clock did not pass the creation "
                    f"second of its first version within {self.settings.operation_timeout:g} s",
                    backend=_BACKEND,
                )
            time.sleep(wait)
        if earliest.writer == writer:
            return
        mine = [v.version for v in versions if v.writer == writer]
        self._yield_to(client, name, earliest, mine)
        raise SecretExistsError(
            f"{_SERVICE}: secret {name!r} was created concurrently by another writer, whose values were kept",
            backend=_BACKEND,
        )

    @staticmethod
    def _until_service_time(target: int, now: int | None) -> float:
        """Seconds to wait until the service's clock reads ``target`` (0 when it already does)."""
        local = time.time()
        if now is None:
            # No Date header (a proxy dropped it): the local clock is all there is.
            return max(0.0, target - local)
        if now >= target:
            return 0.0
        if abs(local - now) >= 2:
            # A local clock far off the service's: wait whole seconds from what the service said.
            return float(target - now)
        # The Date header is the service's clock rounded down; the local clock supplies the fraction.
        return max(0.05, target - local + 0.05)

    def _yield_to(self, client: Any, name: str, winner: _VersionInfo, mine: list[str]) -> None:
        """As a losing creator: put the winner's payload back on top if ours is current, then disable ours."""
        try:
            current = client.get_secret(name)
            if current.properties.version in mine:
                won = client.get_secret(name, winner.version)
                tags = {key: value for key, value in (won.properties.tags or {}).items() if key != WRITER_TAG}
                client.set_secret(
                    name,
                    won.value or "",
                    content_type=won.properties.content_type or _CONTENT_TYPE,
                    tags=tags,
                )
        except Exception as exc:
            # Neither "exists" nor "unavailable": the dispatcher would verify either by reading, and could find
            # our own values still current.
            raise BackendError(
                f"{_SERVICE}: secret {name!r} was created concurrently by another writer, but putting its values "
                f"back on top of this store's failed ({translate(exc, operation='create', name=name)}); this "
                "store's values may be the current ones: store or delete the secret again",
                backend=_BACKEND,
            ) from exc
        # No longer current, our versions are never served again; disable them so they cannot be read by id.
        for version in mine:
            try:
                client.update_secret_properties(name, version, enabled=False)
            except Exception as exc:
                logger.warning(
                    "could not disable the losing version of secret %s after a concurrent create (%s)",
                    name,
                    type(exc).__name__,
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

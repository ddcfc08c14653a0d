"""The ``vault`` backend: HashiCorp Vault or OpenBao, KV secrets engine version 2, through hvac.

One KV v2 secret per store secret, at ``{mount}/data/{name}``. The secret's data is
``{"payload": <the dispatcher's envelope>, "labels": {...}}``, and the labels are also the secret's
``custom_metadata``, where operators and policies see them:

- create: ``POST data`` with ``cas=0`` (exclusive), then ``POST metadata`` with ``custom_metadata`` and
  ``max_versions``. The labels are in the data too, so a secret whose metadata write failed is still complete.
- read: one ``GET data``, which returns the payload and the labels (and the version, remembered for replace).
- replace: ``POST data`` with ``cas`` = the version the dispatcher's ownership read just saw. A mismatch means
  another writer came in between: the driver reads again and, if the secret still carries the same labels (the
  same deployment and id), writes against the new version (last writer wins, as on every other backend); if
  it was deleted or now belongs to someone else, `SecretNotFoundError`. At most `_CAS_ATTEMPTS` rounds. KV v2
  compares version numbers only: a secret deleted and created again (version 1 again) by someone else in the
  milliseconds between the ownership read and the write is not detected, as on every backend without
  conditional writes; any write of theirs in between is.
- delete: ``DELETE metadata``: every version and the metadata go, so the name can be created again at once.
- list: ``LIST metadata`` page by page (OpenBao's ``after``/``limit``; Vault, which ignores them, answers with
  every key at once) and one ``GET metadata`` per key to compare the labels.

Retries (connection errors, 429, 5xx, sealed) are urllib3's, on the requests session hvac uses. AppRole and
Kubernetes tokens are renewed lazily once two thirds of their TTL has passed, and obtained again by a new login
when renewal is refused or the token nears its maximum TTL.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import quote, urlsplit

import hvac
import requests
from hvac import exceptions as hvac_exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from multicloud_store.driver import DriverLimits, StoredSecret, read_many_sequential
from multicloud_store.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    SecretExistsError,
    SecretNotFoundError,
)
from multicloud_store.settings import EnvSettings
from multicloud_store_vault.errors import is_cas_mismatch, status_of, translate
from multicloud_store_vault.settings import VaultSettings, read_credential_file

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["VaultDriver"]

logger = logging.getLogger("multicloud_store.vault")

_T = TypeVar("_T")

_PAGE = 500  # keys per LIST page where the server paginates (OpenBao)
_LIST_WORKERS = 8  # concurrent metadata reads while listing
_CAS_ATTEMPTS = 3  # rounds of re-read and write when concurrent writers keep changing the version
_SEEN_MAX = 4096  # versions remembered between a read and the replace that follows it
_RENEW_AT = 2 / 3  # renew a login token once this fraction of its TTL has passed
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Every write is protected by check-and-set or idempotent (metadata, delete), so POST may be retried too.
_RETRY_METHODS = frozenset({"GET", "HEAD", "LIST", "POST", "PUT", "DELETE"})


def _list_page(client: hvac.Client, *, path: str, params: dict[str, Any]) -> Any:
    return client.adapter.list(path, params=params)


class VaultDriver:
    """HashiCorp Vault or OpenBao (KV v2). Thread-safe: one hvac client, created on first use, for all threads.

    Args:
        settings: Its settings; read from ``MULTICLOUD_STORE_VAULT_*`` (and ``VAULT_*``) when omitted.
        client: A ready ``hvac.Client`` (tests, or a client configured by hand), already holding a token when
            ``auth_method`` is ``token``. The driver does not close a client it was given.
    """

    backend_name: ClassVar[str] = "vault"
    settings_class: ClassVar[type[EnvSettings]] = VaultSettings
    # KV v2 has no value limit of its own; the storage does: Raft's max_entry_size is 1 MiB by default, and Go's
    # JSON encoding may grow a payload up to six times (it escapes <, > and & as \u003c). 128 KiB stays below it.
    # custom_metadata: at most 64 keys, keys up to 128 bytes, values up to 512 bytes.
    _LIMITS = DriverLimits(
        max_payload_bytes=131_072,
        name_pattern=r"[A-Za-z0-9_.-]+",
        max_name_length=255,
        max_labels=64,
        label_key_pattern=r"[A-Za-z0-9_.-]{1,128}",
        label_value_pattern=r"[A-Za-z0-9_.:@+=, -]{0,512}",
        batch_read_size=1,
    )

    def __init__(self, settings: VaultSettings | None = None, *, client: hvac.Client | None = None) -> None:
        self.settings = settings if settings is not None else VaultSettings.from_environ()
        self._client = client
        self._owns_client = client is None
        self._lock = threading.Lock()
        self._auth_lock = threading.Lock()
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None
        self._seen: OrderedDict[str, tuple[int, dict[str, str]]] = OrderedDict()
        self._seen_lock = threading.Lock()
        # Token state for approle / kubernetes (monotonic seconds); None: no login yet, or no expiry.
        self._renew_at: float | None = None
        self._expires_at: float | None = None
        self._login_ttl = 0
        self._renewable = False
        self._logged_in = False
        self.logins = 0  # how many logins this driver made (diagnostics and tests)
        self.renewals = 0  # how many successful renewals

    def __repr__(self) -> str:
        settings = self.settings
        return (
            f"VaultDriver(url={settings.url!r}, mount={settings.mount!r}, auth_method={settings.auth_method!r}, "
            f"namespace={settings.namespace!r})"
        )

    @property
    def limits(self) -> DriverLimits:
        """What KV v2 accepts here."""
        return self._LIMITS

    def location(self) -> tuple[str | None, ...]:
        """Identify the store from settings alone: server URL, namespace and KV mount.

        Returns:
            ``(URL, namespace, mount)``.
        """
        settings = self.settings
        url = (settings.url or "").rstrip("/").lower() or None
        return (url, (settings.namespace or "").strip("/") or None, settings.mount.strip("/"))

    # -- the client ---------------------------------------------------------------------------------------

    @property
    def client(self) -> hvac.Client:
        """The hvac client, created on first use (no network I/O until the first call).

        Raises:
            BackendError: The driver is closed.
        """
        client = self._client
        if client is not None and not self._closed:
            return client
        with self._lock:
            if self._closed:
                raise BackendError("this Vault driver is closed", backend="vault")
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> hvac.Client:
        settings = self.settings
        assert settings.url is not None  # the settings refuse a missing URL
        parts = urlsplit(settings.url)
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            logger.warning(
                "MULTICLOUD_STORE_VAULT_URL is plain http:// to another host: tokens and secret values cross the "
                "network unencrypted"
            )
        retry = Retry(
            total=settings.max_retries,
            connect=settings.max_retries,
            read=settings.max_retries,
            status=settings.max_retries,
            backoff_factor=settings.backoff_factor,
            status_forcelist=_RETRY_STATUSES,
            allowed_methods=_RETRY_METHODS,
            respect_retry_after_header=True,
            # Hand the last answer to hvac, which raises the exception that matches its status.
            raise_on_status=False,
        )
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=32)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        verify: bool | str = str(settings.ca_bundle) if settings.ca_bundle is not None else True
        session.verify = verify
        token = (
            settings.token.get_secret_value() if settings.auth_method == "token" and settings.token else None
        )
        return hvac.Client(
            url=settings.url,
            token=token,
            namespace=settings.namespace,
            verify=verify,
            timeout=(settings.connect_timeout, settings.read_timeout),
            session=session,
        )

    # -- authentication -----------------------------------------------------------------------------------

    def _ensure_token(self, client: hvac.Client) -> None:
        """Log in, or renew the token once two thirds of its TTL have passed; checked lazily on every call."""
        if self.settings.auth_method == "token":
            return
        renew_at = self._renew_at
        if self._logged_in and (renew_at is None or time.monotonic() < renew_at):
            return
        with self._auth_lock:
            now = time.monotonic()
            if self._logged_in and (self._renew_at is None or now < self._renew_at):
                return  # another thread did it
            renewable = self._logged_in and self._renewable and self._expires_at is not None
            if renewable and self._expires_at is not None and now < self._expires_at and self._renew(client):
                return
            self._login(client)

    def _renew(self, client: hvac.Client) -> bool:
        """Renew the token; False when a new login is needed instead. Called under the auth lock."""
        try:
            response = client.auth.token.renew_self()
        except hvac_exceptions.VaultError as exc:
            status = status_of(exc)
            if status in (400, 401, 403, 404):
                logger.info("Vault refused to renew the token (HTTP %s); logging in again", status)
                return False
            raise translate(exc, action="token renewal") from exc
        except requests.RequestException as exc:
            raise translate(exc, action="token renewal") from exc
        auth = response.get("auth") or {} if isinstance(response, dict) else {}
        ttl = int(auth.get("lease_duration") or 0)
        if ttl < max(1, self._login_ttl // 3):
            # Capped by the token's maximum TTL: it expires soon whatever we do, so log in afresh.
            logger.info("the Vault token nears its maximum TTL; logging in again")
            return False
        self._set_lease(ttl, bool(auth.get("renewable")))
        self.renewals += 1
        return True

    def _login(self, client: hvac.Client) -> None:
        """Log in with AppRole or Kubernetes and start using the new token. Called under the auth lock."""
        settings = self.settings
        method = settings.auth_method
        try:
            if method == "approle":
                assert settings.role_id is not None  # the settings require it
                secret_id: str | None = None
                if settings.secret_id is not None:
                    secret_id = settings.secret_id.get_secret_value()
                elif settings.secret_id_file is not None:
                    secret_id = read_credential_file(
                        settings.secret_id_file, VaultSettings.env_name("secret_id_file")
                    )
                response = client.auth.approle.login(
                    role_id=settings.role_id.get_secret_value(),
                    secret_id=secret_id,
                    mount_point=settings.approle_mount,
                    use_token=True,
                )
            else:
                jwt = read_credential_file(
                    settings.kubernetes_token_file, VaultSettings.env_name("kubernetes_token_file")
                )
                response = client.auth.kubernetes.login(
                    role=settings.kubernetes_role,
                    jwt=jwt,
                    mount_point=settings.kubernetes_mount,
                    use_token=True,
                )
        except hvac_exceptions.VaultError as exc:
            if status_of(exc) in (400, 401, 403):
                # AppRole answers 400 "invalid role or secret ID"; Vault's words name no credential.
                errors = "; ".join(str(e) for e in (getattr(exc, "errors", None) or []))[:300]
                raise BackendPermissionError(
                    f"login with {method} at auth/{self._auth_mount()} was refused by Vault"
                    + (f": {errors}" if errors else "")
                    + f" (check {self._credential_variables()})",
                    backend="vault",
                ) from exc
            raise translate(exc, action=f"{method} login") from exc
        except requests.RequestException as exc:
            raise translate(exc, action=f"{method} login") from exc
        auth = response.get("auth") or {} if isinstance(response, dict) else {}
        ttl = int(auth.get("lease_duration") or 0)
        self._login_ttl = ttl
        self._set_lease(ttl, bool(auth.get("renewable")))
        self._logged_in = True
        self.logins += 1
        logger.debug("logged in to Vault with %s; token TTL %s s", method, ttl)

    def _set_lease(self, ttl: int, renewable: bool) -> None:
        now = time.monotonic()
        self._renewable = renewable
        if ttl <= 0:  # a token without expiry
            self._renew_at = self._expires_at = None
        else:
            self._renew_at = now + ttl * _RENEW_AT
            self._expires_at = now + ttl

    def _auth_mount(self) -> str:
        settings = self.settings
        return settings.approle_mount if settings.auth_method == "approle" else settings.kubernetes_mount

    def _credential_variables(self) -> str:
        env = VaultSettings.env_name
        if self.settings.auth_method == "approle":
            return f"{env('role_id')}, {env('secret_id')} or {env('secret_id_file')}, {env('approle_mount')}"
        return f"{env('kubernetes_role')}, {env('kubernetes_token_file')}, {env('kubernetes_mount')}"

    def _raw(self, action: str, name: str | None, call: Callable[[hvac.Client], _T]) -> _T:
        """Run one call with a valid token. hvac's errors pass through; transport errors are translated.

        With a login method, a 403 may mean the token was revoked or expired early: log in again and repeat the
        call once; a second 403 is the caller's to report (as `BackendPermissionError`).
        """
        client = self.client
        try:
            self._ensure_token(client)
            logins = self.logins
            try:
                return call(client)
            except hvac_exceptions.Forbidden:
                if self.settings.auth_method == "token":
                    raise
                logger.info("Vault refused the token for %s; logging in again", action)
            with self._auth_lock:
                # Threads refused the same token log in once: another thread's fresh login is used as is.
                if self.logins == logins:
                    self._login(client)
            return call(client)
        except requests.RequestException as exc:
            raise translate(exc, action=action, name=name) from exc

    def _run(self, action: str, name: str | None, call: Callable[[hvac.Client], _T]) -> _T:
        """`_raw`, with every error translated."""
        try:
            return self._raw(action, name, call)
        except hvac_exceptions.VaultError as exc:
            raise translate(exc, action=action, name=name) from exc

    # -- paths and remembered versions --------------------------------------------------------------------

    def _data_path(self, name: str) -> str:
        return f"/v1/{self.settings.mount}/data/{quote(name, safe='/')}"

    def _metadata_path(self, name: str) -> str:
        return f"/v1/{self.settings.mount}/metadata/{quote(name, safe='/')}"

    def _remember(self, name: str, version: object, labels: Mapping[str, str]) -> None:
        if not isinstance(version, int):
            return
        with self._seen_lock:
            self._seen[name] = (version, dict(labels))
            self._seen.move_to_end(name)
            while len(self._seen) > _SEEN_MAX:
                self._seen.popitem(last=False)

    def _recall(self, name: str) -> tuple[int, dict[str, str]] | None:
        with self._seen_lock:
            return self._seen.get(name)

    def _forget(self, name: str) -> None:
        with self._seen_lock:
            self._seen.pop(name, None)

    # -- documents (also used by the ZenML layout source) -------------------------------------------------

    def read_document(self, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Read the current version of any KV v2 secret on the mount, in one request.

        Args:
            path: The secret's path below the mount (``zenml/<uuid>``, or a store name).

        Returns:
            The secret's data and its version metadata (``version``, ``custom_metadata``, ...).

        Raises:
            SecretNotFoundError: No such secret, or its current version is deleted or destroyed.
        """
        response = self._run("read", path, lambda c: c.adapter.get(self._data_path(path)))
        body = response.get("data") if isinstance(response, dict) else None
        if not isinstance(body, dict):
            raise BackendError(f"read of secret {path!r} on Vault: the answer has no data", backend="vault")
        data = body.get("data")
        metadata = body.get("metadata")
        if not isinstance(data, dict):  # a deleted version reads as data null on some servers
            raise SecretNotFoundError(f"secret {path!r} has no current version on Vault", backend="vault")
        return data, metadata if isinstance(metadata, dict) else {}

    def list_keys(self, folder: str = "") -> Iterator[str]:
        """Yield the keys directly below a folder of the mount, page by page, lazily.

        OpenBao pages with ``after`` and ``limit``; HashiCorp Vault ignores both and answers with every key at
        once, which this handles too (a second request returns nothing new). Sub-folders end with ``/``.

        Args:
            folder: A folder below the mount (``""``: the mount's top level).

        Yields:
            Keys, in the server's (lexical) order.
        """
        path = self._metadata_path(folder.strip("/") + "/" if folder.strip("/") else "")
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": _PAGE}
            if after is not None:
                params["after"] = after
            try:
                response = self._raw("list", None, functools.partial(_list_page, path=path, params=params))
            except hvac_exceptions.InvalidPath:
                return  # an empty folder
            except hvac_exceptions.VaultError as exc:
                raise translate(exc, action="list") from exc
            body = response.get("data") if isinstance(response, dict) else None
            keys = [str(k) for k in (body or {}).get("keys") or []]
            fresh = [k for k in keys if after is None or k > after]
            yield from fresh
            if len(keys) < _PAGE or not fresh:
                return
            after = max(fresh)

    # -- the protocol -------------------------------------------------------------------------------------

    def create(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Create the secret with ``cas=0``, then its metadata; see `SecretsDriver.create`.

        When the name is taken by a secret holding exactly this payload and these labels (our own write, whose
        answer was lost and which urllib3 sent again), the create succeeds.

        Raises:
            SecretExistsError: The name is taken (including by a soft-deleted secret whose metadata remains).
        """
        body = {"options": {"cas": 0}, "data": {"payload": payload, "labels": dict(labels)}}
        try:
            response = self._raw("create", name, lambda c: c.adapter.post(self._data_path(name), json=body))
        except hvac_exceptions.VaultError as exc:
            if not is_cas_mismatch(exc):
                raise translate(exc, action="create", name=name) from exc
            if not self._holds(name, payload, labels):
                raise SecretExistsError(
                    f"secret {name!r} already exists on Vault (check-and-set 0 did not match)",
                    backend="vault",
                ) from exc
        else:
            version = (response.get("data") or {}).get("version") if isinstance(response, dict) else None
            self._remember(name, version, labels)
        self._run(
            "create (metadata)",
            name,
            lambda c: c.adapter.post(
                self._metadata_path(name),
                json={"max_versions": self.settings.max_versions, "custom_metadata": dict(labels)},
            ),
        )

    def _holds(self, name: str, payload: str, labels: Mapping[str, str]) -> bool:
        """Tell whether the secret's current version is exactly this payload with these labels."""
        try:
            data, _ = self.read_document(name)
        except SecretNotFoundError:
            return False
        return data.get("payload") == payload and data.get("labels") == dict(labels)

    def read(self, name: str) -> StoredSecret:
        """Read the payload and the labels with one ``GET data``; see `SecretsDriver.read`."""
        data, metadata = self.read_document(name)
        payload = data.get("payload")
        labels = data.get("labels")
        if not isinstance(labels, dict):
            labels = metadata.get("custom_metadata") or {}
        labels = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
        version = metadata.get("version")
        self._remember(name, version, labels)
        # A secret not written by this store has no payload: an empty one makes the dispatcher say so.
        return StoredSecret(name, payload if isinstance(payload, str) else "", labels, str(version))

    def replace(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Write a new version with check-and-set; see `SecretsDriver.replace` and the module's notes.

        Raises:
            SecretNotFoundError: The secret was deleted, or now carries other labels (another owner).
            BackendUnavailableError: Concurrent writers changed it in every one of `_CAS_ATTEMPTS` rounds.
        """
        wanted = dict(labels)
        seen = self._recall(name)
        version: int | None = seen[0] if seen is not None and seen[1] == wanted else None
        body: dict[str, Any] = {"data": {"payload": payload, "labels": wanted}}
        for _ in range(_CAS_ATTEMPTS):
            if version is None:
                current = self.read(name)
                if dict(current.labels) != wanted:
                    raise SecretNotFoundError(
                        f"secret {name!r} changed owner on Vault while it was being replaced", backend="vault"
                    )
                version = int(current.version or 0)
            body["options"] = {"cas": version}
            try:
                response = self._raw(
                    "replace", name, lambda c: c.adapter.post(self._data_path(name), json=body)
                )
            except hvac_exceptions.VaultError as exc:
                if not is_cas_mismatch(exc):
                    raise translate(exc, action="replace", name=name) from exc
                logger.debug("replace of %r met a concurrent writer; reading it again", name)
                version = None
                continue
            new_version = (response.get("data") or {}).get("version") if isinstance(response, dict) else None
            self._remember(name, new_version, wanted)
            return
        raise BackendUnavailableError(
            f"replace of secret {name!r} on Vault: other writers changed it {_CAS_ATTEMPTS} times while it was "
            "being written; try again",
            backend="vault",
        )

    def delete(self, name: str) -> None:
        """Delete the metadata and every version (``DELETE metadata``); see `SecretsDriver.delete`.

        Vault answers 204 for a name that does not exist; the dispatcher's ownership read just before reports a
        missing id.
        """
        self._forget(name)
        self._run("delete", name, lambda c: c.adapter.delete(self._metadata_path(name)))

    def _labels_of(self, name: str) -> dict[str, str] | None:
        """The labels of one key (its custom_metadata, else its data's labels); None once it is gone."""
        try:
            response = self._raw("list", name, lambda c: c.adapter.get(self._metadata_path(name)))
        except hvac_exceptions.InvalidPath:
            return None
        except hvac_exceptions.VaultError as exc:
            raise translate(exc, action="list", name=name) from exc
        body = response.get("data") if isinstance(response, dict) else None
        custom = (body or {}).get("custom_metadata")
        if isinstance(custom, dict) and custom:
            return {str(k): str(v) for k, v in custom.items()}
        # Created a moment ago (metadata not written yet), or its metadata write failed: the data has them.
        try:
            return dict(self.read(name).labels)
        except SecretNotFoundError:
            return None

    def list_names(self, labels: Mapping[str, str]) -> Iterator[str]:
        """Yield the names of the secrets carrying all these labels; see `SecretsDriver.list_names`.

        KV v2 cannot filter a LIST by metadata: every key on the mount costs one ``GET metadata`` (eight at a
        time), so a listing costs one request per key of the whole mount. Give the store a mount of its own.
        """
        wanted = dict(labels)
        page: list[str] = []

        def matching(names: list[str]) -> Iterator[str]:
            pool = self._executor()
            for name, found in zip(names, pool.map(self._labels_of, names), strict=True):
                if found is not None and all(found.get(k) == v for k, v in wanted.items()):
                    yield name

        for key in self.list_keys():
            if key.endswith("/") or not self._LIMITS.name_ok(key):
                continue
            page.append(key)
            if len(page) >= _PAGE:
                yield from matching(page)
                page = []
        if page:
            yield from matching(page)

    def _executor(self) -> ThreadPoolExecutor:
        from concurrent.futures import ThreadPoolExecutor  # only listing needs threads (cold start)

        with self._lock:
            if self._closed:
                raise BackendError("this Vault driver is closed", backend="vault")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_LIST_WORKERS, thread_name_prefix="mcs-vault-list")
            return self._pool

    def read_many(self, names: list[str]) -> Mapping[str, StoredSecret | Exception]:
        """Read one by one: KV v2 has no batch read; see `SecretsDriver.read_many`."""
        return read_many_sequential(self, names)

    def health_check(self) -> None:
        """Look the token up (``auth/token/lookup-self``), after logging in if needed.

        Raises:
            BackendError: Vault cannot be reached, or the token or login is refused.
        """
        self._run("health check", None, lambda c: c.auth.token.lookup_self())

    def close(self) -> None:
        """Close the session if this driver created it. The driver may not be used afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            client, self._client = self._client, None
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if client is not None and self._owns_client:
            client.adapter.close()

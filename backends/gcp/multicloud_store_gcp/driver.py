"""The ``gcp`` backend: Google Cloud Secret Manager, over gRPC (default) or REST.

- One Secret Manager secret per store secret, named as the dispatcher says, carrying the dispatcher's labels.
  Its latest version holds the payload, sent with a CRC32C checksum and checked against the service's checksum
  on every read.
- An update adds a version, then destroys the enabled or disabled versions beyond ``keep_versions`` that were
  superseded more than ``prune_grace_seconds`` ago (every active version is billed). ``latest`` is eventually
  consistent, so a version it may still name is kept; a read whose ``latest`` names no version, or a disabled
  or destroyed one, reads the newest live version by number instead (more calls, on that path only).
- Creating is two calls (CreateSecret, AddSecretVersion). Whoever adds version 1 has stored the secret; a
  writer whose version got another number lost a race, destroys it and reports that the id exists. If the
  second call fails the empty secret is deleted again; if the process dies in between, the empty secret
  (with our labels) is completed by the next store of the id, at once, and deleted by a delete.
- Every call carries a per-attempt timeout and one retry policy (unavailable, throttled, 5xx, timeouts)
  bounded by ``retry_deadline``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import google_crc32c
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.api_core.timeout import ConstantTimeout

from multicloud_store.driver import DriverLimits, StoredSecret, read_many_sequential
from multicloud_store.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    MultiCloudStoreError,
    SecretCorruptedError,
    SecretExistsError,
    SecretIncompleteError,
    SecretNotFoundError,
    SecretStateError,
)
from multicloud_store.settings import EnvSettings
from multicloud_store_gcp.errors import RETRYABLE, credentials_error, status_name, translate
from multicloud_store_gcp.settings import GcpSettings

__all__ = ["GcpDriver"]

logger = logging.getLogger("multicloud_store.gcp")

_BACKEND = "gcp"
_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# Versions that still hold a payload (and are billed); DESTROYED ones hold nothing.
_LIVE_VERSIONS = "state:ENABLED OR state:DISABLED"
_LIST_PAGE_SIZE = 100

# The client library logs request and response bodies (secret values) at DEBUG once its "google" loggers are
# enabled; these are the loggers that do it. google-auth's REST session logs its requests too ("body", and
# response bodies): today it cannot parse the transport's text bodies, but nothing promises that it never will.
_SDK_LOGGERS = (
    *(
        f"google.cloud.secretmanager_v1.services.secret_manager_service.{module}"
        for module in ("client", "transports.grpc", "transports.rest")
    ),
    "google.auth.transport.requests",
)
_REDACTED = "<redacted by multicloud-store>"
_BODY_KEYS = ("payload", "body")


class _PayloadScrubber(logging.Filter):
    """Replace the bodies the client libraries attach to their DEBUG records; keep everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        for attribute in ("httpRequest", "httpResponse", "request", "response"):
            value = record.__dict__.get(attribute)
            if isinstance(value, dict) and any(key in value for key in _BODY_KEYS):
                record.__dict__[attribute] = {
                    **value,
                    **{key: _REDACTED for key in _BODY_KEYS if key in value},
                }
        return True


_SCRUBBER = _PayloadScrubber()


def _scrub_sdk_logs() -> None:
    for name in _SDK_LOGGERS:
        sdk_logger = logging.getLogger(name)
        if _SCRUBBER not in sdk_logger.filters:
            sdk_logger.addFilter(_SCRUBBER)


def _version_number(version_name: str) -> int | None:
    tail = version_name.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _credentials_from_info(info: Any) -> tuple[Any, str | None]:
    """Load credentials of a known type with that type's own loader.

    google.auth's generic loaders accept any credential configuration (and are deprecated for it); the
    type-specific ones load only what they are named for.

    Raises:
        ValueError: Not a credentials object of a supported type, or a malformed one.
    """
    kind = info.get("type") if isinstance(info, dict) else None
    loader: Any  # google.auth's loaders are untyped
    project = None
    if kind == "service_account":
        from google.oauth2 import service_account

        loader, project = service_account.Credentials.from_service_account_info, info.get("project_id")
    elif kind == "authorized_user":
        from google.oauth2 import credentials as user_credentials

        loader = user_credentials.Credentials.from_authorized_user_info
    elif kind == "impersonated_service_account":
        from google.auth import impersonated_credentials

        loader = impersonated_credentials.Credentials.from_impersonated_service_account_info
    elif kind == "external_account":  # workload identity federation
        source = info.get("credential_source") or {}
        if str(source.get("environment_id", "")).startswith("aws"):
            from google.auth import aws

            loader = aws.Credentials.from_info
        elif "executable" in source:
            from google.auth import pluggable

            loader = pluggable.Credentials.from_info
        else:
            from google.auth import identity_pool

            loader = identity_pool.Credentials.from_info
    else:
        raise ValueError(
            f"credentials of type {kind!r} are not supported here (service_account, authorized_user, "
            "impersonated_service_account, external_account); point GOOGLE_APPLICATION_CREDENTIALS at them "
            "instead"
        )
    return loader(info, scopes=list(_SCOPES)), project


class GcpDriver:
    """Secrets in Google Cloud Secret Manager. Thread-safe: one client, created on first use, shared by all.

    Args:
        settings: Its settings; read from ``MULTICLOUD_STORE_GCP_*`` when omitted.
        client: A ready ``SecretManagerServiceClient`` (tests, or one built by hand); the driver does not
            close it. ``settings.project_id`` is then required.

    Raises:
        ConfigurationError: A setting is missing or wrong.
    """

    backend_name: ClassVar[str] = "gcp"
    settings_class: ClassVar[type[EnvSettings]] = GcpSettings
    _LIMITS: ClassVar[DriverLimits] = DriverLimits(
        max_payload_bytes=65_536,
        name_pattern=r"[A-Za-z0-9_-]+",
        max_name_length=255,
        # GCP also allows international lowercase letters; ASCII is what the dispatcher writes.
        max_labels=64,
        label_key_pattern=r"[a-z][a-z0-9_-]{0,62}",
        label_value_pattern=r"[a-z0-9_-]{0,63}",
        batch_read_size=1,
    )

    def __init__(self, settings: GcpSettings | None = None, *, client: Any = None) -> None:
        self.settings = settings if settings is not None else GcpSettings.from_environ()
        if client is not None and self.settings.project_id is None:
            variable = GcpSettings.env_name("project_id")
            raise ConfigurationError(
                f"{variable} is required when a client is passed in", variable=variable, backend=_BACKEND
            )
        self._client: Any = client
        self._owns_client = client is None
        self._parent: str | None = self._parent_of(self.settings.project_id) if client is not None else None
        self._lock = threading.Lock()
        self._closed = False
        # Per attempt: a float would be read as one deadline for all attempts together.
        self._timeout = ConstantTimeout(self.settings.timeout)  # type: ignore[no-untyped-call]
        self._retry = self._make_retry()

    def __repr__(self) -> str:
        settings = self.settings
        return (
            f"GcpDriver(project={settings.project_id!r}, location={settings.location!r}, "
            f"transport={settings.transport!r}, endpoint={settings.resolved_endpoint()!r})"
        )

    @property
    def limits(self) -> DriverLimits:
        """What this backend accepts."""
        return self._LIMITS

    def location(self) -> tuple[str | None, ...]:
        """Identify the store from settings alone: project, regional location and endpoint.

        Returns:
            ``(project id, location, endpoint)``.
        """
        settings = self.settings
        return (
            settings.project_id,
            settings.location,
            str(settings.resolved_endpoint() or "").lower() or None,
        )

    # -- client -------------------------------------------------------------------------------------------

    def _parent_of(self, project: str | None) -> str:
        location = self.settings.location
        return f"projects/{project}" + (f"/locations/{location}" if location else "")

    def _make_retry(self, on_error: Callable[[Exception], None] | None = None) -> gretry.Retry | None:
        settings = self.settings
        if settings.retry_deadline == 0:
            return None
        return gretry.Retry(
            predicate=gretry.if_exception_type(*RETRYABLE),
            initial=settings.retry_initial_backoff,
            maximum=settings.retry_max_backoff,
            multiplier=2.0,
            timeout=settings.retry_deadline,
            on_error=on_error,
        )

    def _retry_noting_failures(self) -> tuple[gretry.Retry | None, list[Exception]]:
        """A retry policy that records every retried failure: a later answer may then be our own doing."""
        failures: list[Exception] = []
        return self._make_retry(on_error=failures.append), failures

    def _connect(self) -> tuple[Any, str]:
        """Return the client and the parent resource (``projects/P`` or ``projects/P/locations/L``)."""
        if self._closed:
            raise BackendError("this GCP Secret Manager driver is closed", backend=_BACKEND)
        client, parent = self._client, self._parent
        if client is not None and parent is not None:
            return client, parent
        with self._lock:
            if self._closed:
                raise BackendError("this GCP Secret Manager driver is closed", backend=_BACKEND)
            if self._client is None or self._parent is None:
                self._client, project = self._build_client()
                self._parent = self._parent_of(project)
            return self._client, self._parent

    def _build_client(self) -> tuple[Any, str]:
        from google.cloud.secretmanager_v1 import SecretManagerServiceClient

        _scrub_sdk_logs()
        settings = self.settings
        endpoint = settings.resolved_endpoint()
        try:
            if settings.anonymous:
                # Both checked by GcpSettings.
                assert settings.project_id is not None
                assert endpoint is not None
                if settings.transport == "grpc":
                    # An emulator speaks plaintext gRPC; the default channel would insist on TLS.
                    import grpc
                    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
                        SecretManagerServiceGrpcTransport,
                    )

                    transport = SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(endpoint))
                    return SecretManagerServiceClient(transport=transport), settings.project_id
                from google.auth.credentials import AnonymousCredentials

                credentials: Any = AnonymousCredentials()  # type: ignore[no-untyped-call]
                project = settings.project_id
            else:
                credentials, project = self._credentials()
            options = {"api_endpoint": endpoint} if endpoint is not None else None
            client = SecretManagerServiceClient(
                credentials=credentials, transport=settings.transport, client_options=options
            )
            if settings.transport == "rest":
                self._size_pool(client)
        except MultiCloudStoreError:
            raise
        except Exception as exc:
            raise translate(exc, operation="creating the client") from exc
        return client, project

    def _size_pool(self, client: Any) -> None:
        """Keep as many connections as threads may share this driver (requests keeps 10 by default).

        With fewer, every call beyond the pool's size opens a new TCP and TLS connection and urllib3 logs
        "Connection pool is full, discarding connection". The transport builds its session itself; its
        ``_session`` attribute is the only way to reach it.
        """
        from requests.adapters import HTTPAdapter

        size = max(10, self.settings.max_connections)
        session = client.transport._session
        for prefix in ("https://", "http://"):
            session.mount(prefix, HTTPAdapter(pool_connections=size, pool_maxsize=size))

    def _credentials(self) -> tuple[Any, str]:
        """Resolve credentials and the project: the settings first, then Application Default Credentials."""
        import google.auth
        from google.auth import exceptions as auth_exceptions

        settings = self.settings
        variable: str | None = None
        try:
            if settings.credentials_json is not None:
                variable = GcpSettings.env_name("credentials_json")
                info = json.loads(settings.credentials_json.get_secret_value())
                credentials, project = _credentials_from_info(info)
            elif settings.credentials_file is not None:
                variable = GcpSettings.env_name("credentials_file")
                info = json.loads(settings.credentials_file.read_text(encoding="utf-8"))
                credentials, project = _credentials_from_info(info)
            else:
                credentials, project = google.auth.default(scopes=list(_SCOPES))
        except (auth_exceptions.DefaultCredentialsError, ValueError, OSError) as exc:
            # ValueError: not JSON, or a malformed key; OSError: the file cannot be read.
            raise credentials_error(exc, variable=variable) from exc
        if settings.impersonate_service_account is not None:
            from google.auth import impersonated_credentials

            credentials = impersonated_credentials.Credentials(  # type: ignore[no-untyped-call]
                source_credentials=credentials,
                target_principal=settings.impersonate_service_account,
                target_scopes=list(_SCOPES),
            )
        project = settings.project_id or project
        if not project:
            variable = GcpSettings.env_name("project_id")
            raise ConfigurationError(
                f"no GCP project: set {variable} (the credentials do not name a project)",
                variable=variable,
                backend=_BACKEND,
            )
        return credentials, project

    # -- reading ------------------------------------------------------------------------------------------

    def read(self, name: str) -> StoredSecret:
        """Read the latest version in one call; see `SecretsDriver.read`.

        ``latest`` is eventually consistent on the service. When it names no version, or a disabled or
        destroyed one (a stale alias, or a version pruned meanwhile), the live versions are listed and the
        newest is read by number: more calls, on that rare path only.

        Raises:
            SecretNotFoundError: No such secret.
            SecretIncompleteError: The secret exists but has no version to read (an interrupted store).
            SecretStateError: Its newest version is disabled.
            SecretCorruptedError: The payload does not match its checksum.
        """
        client, parent = self._connect()
        path = f"{parent}/secrets/{name}"
        try:
            response = client.access_secret_version(
                request={"name": f"{path}/versions/latest"}, retry=self._retry, timeout=self._timeout
            )
        except gexc.NotFound as exc:
            # No such secret, or 'latest' does not name a version yet (the alias lags behind the first add).
            response = self._read_around_latest(client, path, name, exc)
        except gexc.BadRequest as exc:
            # FAILED_PRECONDITION (gRPC) or 400 (REST): 'latest' names a disabled or destroyed version.
            if status_name(exc) not in (None, "FAILED_PRECONDITION"):
                raise translate(exc, operation="read", name=name) from exc
            response = self._read_around_latest(client, path, name, exc)
        except Exception as exc:
            raise translate(exc, operation="read", name=name) from exc
        return self._stored(name, response)

    def _stored(self, name: str, response: Any) -> StoredSecret:
        # The protobuf under the proto-plus wrapper (proto-plus's documented ``Message.pb``): each attribute read
        # through the wrapper costs a marshalling step, on every read.
        pb = type(response).pb(response)
        payload = pb.payload
        data = payload.data
        if payload.HasField("data_crc32c") and google_crc32c.value(data) != payload.data_crc32c:
            raise SecretCorruptedError(
                f"GCP Secret Manager: the payload of secret {name!r} does not match its CRC32C checksum; "
                "it was corrupted in transit or at rest",
                backend=_BACKEND,
            )
        # We only ever write UTF-8; anything else is not ours, and the dispatcher's envelope check says so.
        text = data.decode("utf-8", errors="replace")
        return StoredSecret(name=name, payload=text, labels={}, version=pb.name.rsplit("/", 1)[-1])

    def _access(self, client: Any, version_name: str, name: str) -> Any:
        try:
            return client.access_secret_version(
                request={"name": version_name}, retry=self._retry, timeout=self._timeout
            )
        except Exception as exc:
            raise translate(exc, operation="read", name=name) from exc

    def _read_around_latest(self, client: Any, path: str, name: str, original: Exception) -> Any:
        """Read the newest live version by number, when ``latest`` cannot be read: the rare path.

        Returns:
            The ``AccessSecretVersion`` response.

        Raises:
            MultiCloudStoreError: Why there is nothing to read.
        """
        try:
            pager = client.list_secret_versions(
                request={"parent": path, "filter": _LIVE_VERSIONS, "page_size": _LIST_PAGE_SIZE},
                retry=self._retry,
                timeout=self._timeout,
            )
            # Newest by number, whatever order the service lists them in.
            newest = max(pager, key=lambda v: _version_number(v.name) or 0, default=None)
        except gexc.NotFound as exc:
            # The secret itself may not be visible yet (creating it is eventually consistent); version 1, by
            # number, is read-your-writes after a store.
            first = self._version_by_number(client, path, 1, name)
            if first is not None:
                return first
            raise translate(original, operation="read", name=name) from exc
        except Exception as exc:
            error = translate(exc, operation="read", name=name)
            if isinstance(error, BackendUnavailableError):
                raise error from exc  # an outage is never "not found"
            # We may not look closer (no versions.list): the service's own refusal says it best.
            raise translate(original, operation="read", name=name) from original
        if newest is not None:
            if getattr(newest.state, "name", str(newest.state)) == "DISABLED":
                raise SecretStateError(
                    f"GCP Secret Manager: the newest version of secret {name!r} "
                    f"({newest.name.rsplit('/', 1)[-1]}) is disabled; enable it to use this secret",
                    backend=_BACKEND,
                ) from original
            return self._access(client, newest.name, name)
        # The listing is eventually consistent too; version 1, accessed by number, is read-your-writes.
        first = self._version_by_number(client, path, 1, name)
        if first is not None:
            return first
        raise self._incomplete(client, path, name) from original

    def _version_by_number(self, client: Any, path: str, number: int, name: str) -> Any:
        """Access one version by number (read-your-writes); None when it is missing or not enabled."""
        try:
            return client.access_secret_version(
                request={"name": f"{path}/versions/{number}"}, retry=self._retry, timeout=self._timeout
            )
        except (gexc.NotFound, gexc.BadRequest):
            return None
        except Exception as exc:
            raise translate(exc, operation="read", name=name) from exc

    def _version_data(self, client: Any, path: str, number: int, name: str) -> bytes | None:
        """The payload of one version, by number; None when it is missing or not enabled."""
        response = self._version_by_number(client, path, number, name)
        return bytes(response.payload.data) if response is not None else None

    def _incomplete(self, client: Any, path: str, name: str) -> MultiCloudStoreError:
        """The secret has no version to read: report it with its labels, which tell whose leftover it is."""
        try:
            secret = client.get_secret(request={"name": path}, retry=self._retry, timeout=self._timeout)
        except gexc.NotFound:
            return SecretNotFoundError(f"GCP Secret Manager: secret {name!r} not found", backend=_BACKEND)
        except Exception as exc:
            error = translate(exc, operation="read", name=name)
            if isinstance(error, BackendUnavailableError):
                return error
            secret = None  # without secrets.get the labels stay unknown: nobody may delete it through us
        return SecretIncompleteError(
            f"GCP Secret Manager: secret {name!r} has no readable version (a store interrupted before its "
            "first version, or every version destroyed)",
            labels=dict(secret.labels) if secret is not None else {},
            backend=_BACKEND,
        )

    def read_many(self, names: list[str]) -> Mapping[str, StoredSecret | Exception]:
        """Read one by one (Secret Manager has no batch read); see `SecretsDriver.read_many`."""
        return read_many_sequential(self, names)

    # -- writing ------------------------------------------------------------------------------------------

    def create(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Create the secret and its first version; see `SecretsDriver.create`.

        Whoever adds the first version of a new secret has stored it: the service numbers versions one by
        one, so that writer's ``AddSecretVersion`` answers with the number it expected, and every other
        writer's does not. An empty secret carrying exactly our labels (an interrupted store, or our own
        create whose answer was lost) is completed the same way, without waiting.

        Raises:
            SecretExistsError: A secret of that name exists, or another writer stored it first.
            BackendUnavailableError: The service could not be reached, and nothing shows the store took effect.
        """
        client, parent = self._connect()
        data = payload.encode("utf-8")
        try:
            client.create_secret(
                request={"parent": parent, "secret_id": name, "secret": self._new_secret(labels)},
                retry=self._retry,
                timeout=self._timeout,
            )
        except gexc.Conflict as exc:  # AlreadyExists over gRPC, 409 over REST
            # An interrupted store's leftover, the secret a retried attempt of ours created, or a real conflict.
            self._complete_existing(client, parent, name, data, labels, exc)
            return
        except Exception as exc:
            error = translate(exc, operation="create", name=name)
            if not isinstance(error, BackendUnavailableError):
                raise error from exc
            # Every answer may have been lost while the secret was created: complete it if it is there.
            self._complete_existing(client, parent, name, data, labels, exc, unsure=error)
            return
        self._first_version(client, parent, name, data, expected=1)

    def _new_secret(self, labels: Mapping[str, str]) -> dict[str, Any]:
        settings = self.settings
        secret: dict[str, Any] = {"labels": dict(labels)}
        if settings.location is not None:
            # Regional secrets have no replication policy; CMEK is set on the secret itself.
            key = settings.kms_key_for(None)
            if key is not None:
                secret["customer_managed_encryption"] = {"kms_key_name": key}
        elif settings.replication_locations:
            replicas = []
            for location in settings.replication_locations:
                replica: dict[str, Any] = {"location": location}
                key = settings.kms_key_for(location)
                if key is not None:
                    replica["customer_managed_encryption"] = {"kms_key_name": key}
                replicas.append(replica)
            secret["replication"] = {"user_managed": {"replicas": replicas}}
        else:
            automatic: dict[str, Any] = {}
            if settings.kms_key_name is not None:
                automatic["customer_managed_encryption"] = {"kms_key_name": settings.kms_key_name}
            secret["replication"] = {"automatic": automatic}
        return secret

    def _add_version(self, client: Any, parent: str, name: str, data: bytes) -> str:
        response = client.add_secret_version(
            request={
                "parent": f"{parent}/secrets/{name}",
                "payload": {"data": data, "data_crc32c": google_crc32c.value(data)},
            },
            retry=self._retry,
            timeout=self._timeout,
        )
        return str(response.name)

    def _first_version(self, client: Any, parent: str, name: str, data: bytes, *, expected: int) -> None:
        """Add the first version; the store is ours only if the service gave it the ``expected`` number.

        A version numbered otherwise means another writer added one first (unless it is our own earlier
        attempt, whose answer was lost): ours is destroyed again and the id exists. On a definite failure the
        empty secret is deleted again, unless another writer's version is in it by now.
        """
        path = f"{parent}/secrets/{name}"
        try:
            number = _version_number(self._add_version(client, parent, name, data))
        except Exception as exc:
            if isinstance(exc, gexc.NotFound):
                # Deleted by someone else between our two calls: never a KeyError from a store.
                error: MultiCloudStoreError = BackendError(
                    f"GCP Secret Manager: secret {name!r} was deleted by another client while it was being "
                    "created; nothing was stored",
                    backend=_BACKEND,
                )
            else:
                error = translate(exc, operation="create", name=name)
            try:
                held = self._version_data(client, path, expected, name)
            except MultiCloudStoreError:
                if isinstance(error, BackendUnavailableError):
                    raise error from exc  # cannot tell: the secret stays for the caller's retry to complete
                held = None  # a definite refusal added nothing, and nothing shows another writer's version
            if held == data:
                return  # the version was added; only the answer was lost
            if held is None:
                self._discard_empty(client, parent, name)
            raise error from exc
        if number == expected:
            return
        try:
            won = self._version_data(client, path, expected, name) == data
        except MultiCloudStoreError:
            won = False
        if won:
            return  # our own earlier attempt (its answer lost) added the expected version
        self._destroy_quietly(client, path, number, name)
        raise SecretExistsError(
            f"GCP Secret Manager: secret {name!r} already exists (another writer stored it first)",
            backend=_BACKEND,
        )

    def _destroy_quietly(self, client: Any, path: str, number: int | None, name: str) -> None:
        """Destroy the version a losing writer added; readers of ``latest`` then fall back to the winner's."""
        if number is None:
            return
        try:
            client.destroy_secret_version(
                request={"name": f"{path}/versions/{number}"}, retry=self._retry, timeout=self._timeout
            )
        except Exception as exc:
            logger.warning(
                "could not destroy version %s of secret %s, added by a store that lost a race (%s)",
                number,
                name,
                type(exc).__name__,
            )

    def _discard_empty(self, client: Any, parent: str, name: str) -> None:
        try:
            client.delete_secret(
                request={"name": f"{parent}/secrets/{name}"}, retry=self._retry, timeout=self._timeout
            )
        except gexc.NotFound:
            pass
        except Exception as exc:
            logger.warning(
                "could not delete the empty secret %s after a failed store (%s); the next store of the same "
                "id completes it, a delete removes it",
                name,
                type(exc).__name__,
            )

    def _complete_existing(
        self,
        client: Any,
        parent: str,
        name: str,
        data: bytes,
        labels: Mapping[str, str],
        cause: Exception,
        *,
        unsure: MultiCloudStoreError | None = None,
    ) -> None:
        """Complete the existing secret if it is an empty one with our labels; otherwise the id exists.

        Args:
            client: The client.
            parent: ``projects/P`` or ``projects/P/locations/L``.
            name: The secret's name.
            data: The payload.
            labels: The labels a secret of ours carries.
            cause: What the create call raised.
            unsure: Set when the create's answers were lost rather than refused: whether the secret exists at
                all is unknown, and this error is raised when it cannot be shown to.
        """
        path = f"{parent}/secrets/{name}"
        exists = SecretExistsError(f"GCP Secret Manager: secret {name!r} already exists", backend=_BACKEND)
        try:
            secret = client.get_secret(request={"name": path}, retry=self._retry, timeout=self._timeout)
            if any(secret.labels.get(key) != value for key, value in labels.items()):
                raise exists from cause
            newest = 0
            pager = client.list_secret_versions(
                request={"parent": path, "page_size": _LIST_PAGE_SIZE},
                retry=self._retry,
                timeout=self._timeout,
            )
            for version in pager:
                if getattr(version.state, "name", str(version.state)) != "DESTROYED":
                    raise exists from cause
                newest = max(newest, _version_number(version.name) or 0)
        except MultiCloudStoreError:
            raise
        except (gexc.NotFound, gexc.Forbidden) as exc:
            # Deleted meanwhile, or we may not look (no secrets.get or versions.list): either way it existed,
            # unless the create was never answered at all.
            raise (unsure or exists) from exc
        except Exception as exc:
            raise (unsure or translate(exc, operation="create", name=name)) from exc
        logger.info("completing secret %s, left without a version by an interrupted store", name)
        # A listing that lags shows fewer versions: the expected number is then too low, and we lose (safe).
        self._first_version(client, parent, name, data, expected=newest + 1)

    def replace(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Add a version, then prune the old ones; see `SecretsDriver.replace`.

        Readers of ``latest`` switch from the old payload to the new one in one step. Labels are left as they
        are: the dispatcher writes the same ones on every call.

        Raises:
            SecretNotFoundError: No such secret.
        """
        client, parent = self._connect()
        try:
            version = self._add_version(client, parent, name, payload.encode("utf-8"))
        except Exception as exc:
            raise translate(exc, operation="update", name=name) from exc
        number = _version_number(version)
        # Version numbers count up from 1, so a secret cannot hold more than `number` versions.
        if number is None or number > self.settings.keep_versions:
            self._prune(client, f"{parent}/secrets/{name}", name)

    def _prune(self, client: Any, path: str, name: str) -> None:
        """Destroy live versions beyond ``keep_versions`` that were superseded over the grace period ago.

        ``latest`` is eventually consistent: a reader may be sent to the version that was newest a while ago,
        so a version is destroyed only once the one that superseded it is older than ``prune_grace_seconds``.
        Best effort, without retries: a failure is logged and left for the next update.
        """
        keep, grace = self.settings.keep_versions, self.settings.prune_grace_seconds
        try:
            pager = client.list_secret_versions(
                request={"parent": path, "filter": _LIVE_VERSIONS, "page_size": _LIST_PAGE_SIZE},
                retry=None,
                timeout=self._timeout,
            )
            versions = sorted(
                (
                    (number, v.create_time.timestamp())
                    for v in pager
                    if (number := _version_number(v.name)) is not None
                ),
                reverse=True,
            )
        except Exception as exc:
            logger.warning(
                "could not list the versions of secret %s to prune them (%s); the next update prunes them",
                name,
                type(exc).__name__,
            )
            return
        now = time.time()
        # Only versions listed here can go, and the newest listed ones stay: the version just added (or a
        # newer one of a concurrent update) is never destroyed. versions[i] was superseded no earlier than
        # versions[i - 1] was created.
        for index in range(keep, len(versions)):
            number, superseded = versions[index][0], versions[index - 1][1]
            if grace > 0 and now - superseded < grace:
                continue
            try:
                client.destroy_secret_version(
                    request={"name": f"{path}/versions/{number}"}, retry=None, timeout=self._timeout
                )
            except (gexc.NotFound, gexc.BadRequest):
                # Destroyed meanwhile by a concurrent update's pruning (FAILED_PRECONDITION), or gone.
                logger.debug("version %s of secret %s was already destroyed", number, name)
            except Exception as exc:
                logger.warning(
                    "could not destroy old version %s of secret %s (%s); the next update retries",
                    number,
                    name,
                    type(exc).__name__,
                )
                return

    def delete(self, name: str) -> None:
        """Delete the secret and all its versions; the name is free again at once. See `SecretsDriver.delete`.

        Raises:
            SecretNotFoundError: No such secret.
        """
        client, parent = self._connect()
        retry, failures = self._retry_noting_failures()
        try:
            client.delete_secret(
                request={"name": f"{parent}/secrets/{name}"}, retry=retry, timeout=self._timeout
            )
        except gexc.NotFound as exc:
            if failures:
                return  # an earlier attempt, whose answer was lost, deleted it
            raise translate(exc, operation="delete", name=name) from exc
        except Exception as exc:
            raise translate(exc, operation="delete", name=name) from exc

    # -- listing and health -------------------------------------------------------------------------------

    def list_names(self, labels: Mapping[str, str]) -> Iterator[str]:
        """Yield the ids of secrets carrying all these labels, a page of 100 at a time, lazily.

        Args:
            labels: Labels every listed secret must carry (exact match, filtered by the service).

        Yields:
            Secret ids (the last segment of ``projects/P/secrets/ID``).
        """
        # A generator: nothing, not even the client, is touched before the first name is asked for.
        try:
            client, parent = self._connect()
            pager = client.list_secrets(
                request={
                    "parent": parent,
                    "filter": " AND ".join(
                        f'labels.{key}="{value}"' for key, value in sorted(labels.items())
                    ),
                    "page_size": _LIST_PAGE_SIZE,
                },
                retry=self._retry,
                timeout=self._timeout,
            )
            for page in pager.pages:
                for secret in page.secrets:
                    yield secret.name.rsplit("/", 1)[-1]
        except MultiCloudStoreError:
            raise
        except Exception as exc:
            raise translate(exc, operation="list") from exc

    def health_check(self) -> None:
        """List one secret: proves the endpoint, the credentials and ``secretmanager.secrets.list``.

        Raises:
            BackendError: The backend cannot be used.
        """
        client, parent = self._connect()
        try:
            client.list_secrets(
                request={"parent": parent, "page_size": 1}, retry=self._retry, timeout=self._timeout
            )
        except Exception as exc:
            raise translate(exc, operation="health check") from exc

    def close(self) -> None:
        """Close the client's channel or HTTP session, if the driver created it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            client, self._client = self._client, None
        if client is not None and self._owns_client:
            try:
                client.transport.close()
            except Exception as exc:  # closing is best effort; nothing is lost
                logger.debug("closing the Secret Manager client failed: %s", type(exc).__name__)

"""The one table from Google client errors to `multicloud_store.errors`, for both transports.

gRPC errors arrive as the exact `google.api_core.exceptions` class of their status (``AlreadyExists``,
``FailedPrecondition``); REST errors as the class of their HTTP status (``Conflict``, ``BadRequest``),
which is a base class of the gRPC one. Listing each row by the HTTP-level base class therefore covers both
transports, and rows are ordered so that a subclass that must be treated differently comes before its base.

Messages carry the operation, the secret name and the service's own explanation (which never contains a
payload: payloads travel only in request and response bodies); the SDK exception stays as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

import requests.exceptions
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from multicloud_store.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    MultiCloudStoreError,
    SecretExistsError,
    SecretNotFoundError,
)

__all__ = ["RETRYABLE", "credentials_error", "status_name", "translate"]

_BACKEND = "gcp"
_SERVICE = "GCP Secret Manager"

# (SDK exception classes, our class, what happened). First match wins.
_TABLE: tuple[tuple[tuple[type[BaseException], ...], type[MultiCloudStoreError], str], ...] = (
    ((gexc.NotFound,), SecretNotFoundError, "not found"),
    # Aborted is a Conflict too, but means a concurrent change (an etag race), not an existing secret.
    ((gexc.Aborted,), BackendUnavailableError, "aborted by a concurrent change"),
    ((gexc.AlreadyExists, gexc.Conflict), SecretExistsError, "already exists"),
    ((gexc.PermissionDenied, gexc.Forbidden), BackendPermissionError, "permission denied"),
    ((gexc.Unauthenticated, gexc.Unauthorized), BackendPermissionError, "not authenticated"),
    ((gexc.ResourceExhausted, gexc.TooManyRequests), BackendUnavailableError, "throttled (quota exhausted)"),
    ((gexc.DeadlineExceeded, gexc.GatewayTimeout), BackendUnavailableError, "timed out"),
    ((gexc.ServiceUnavailable,), BackendUnavailableError, "service unavailable"),
    ((gexc.InternalServerError,), BackendUnavailableError, "internal server error"),
    ((gexc.Cancelled,), BackendUnavailableError, "cancelled"),
    ((gexc.RetryError,), BackendUnavailableError, "still failing when the retry deadline passed"),
    ((gexc.FailedPrecondition,), BackendError, "refused: failed precondition"),
    ((gexc.InvalidArgument, gexc.BadRequest), BackendError, "rejected the request as invalid"),
    ((gexc.MethodNotImplemented,), BackendError, "is not implemented by this endpoint"),
    ((gexc.ServerError,), BackendUnavailableError, "server error"),
    ((auth_exc.RefreshError,), BackendPermissionError, "could not obtain an access token"),
    ((auth_exc.TransportError,), BackendUnavailableError, "could not reach the token endpoint"),
    # The REST transport lets requests' own errors through unwrapped.
    (
        (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError),
        BackendUnavailableError,
        "could not be reached",
    ),
)

RETRYABLE: tuple[type[Exception], ...] = (
    gexc.ServiceUnavailable,
    gexc.TooManyRequests,  # ResourceExhausted over gRPC, HTTP 429 over REST
    gexc.GatewayTimeout,  # DeadlineExceeded over gRPC, HTTP 504 over REST
    gexc.InternalServerError,
    auth_exc.TransportError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)
"""What the driver's retry policy retries: failures that are transient by nature, on either transport."""


def status_name(exc: BaseException) -> str | None:
    """Return the canonical status (``"FAILED_PRECONDITION"``) of a Google client error, on either transport.

    Over REST the exception class only reflects the HTTP status (400 for both ``INVALID_ARGUMENT`` and
    ``FAILED_PRECONDITION``); the status name is in the JSON error body.

    Args:
        exc: An exception raised by the client.

    Returns:
        The status name, or None when it cannot be told.
    """
    code = getattr(exc, "grpc_status_code", None)
    name = getattr(code, "name", None)
    if isinstance(name, str):
        return name
    response: Any = getattr(exc, "response", None)
    if response is None or not hasattr(response, "json"):
        return None
    try:
        status = response.json().get("error", {}).get("status")
    except Exception:  # no JSON body, or an unexpected shape: the status is simply unknown
        return None
    return status if isinstance(status, str) else None


def _sdk_message(exc: BaseException) -> str:
    if isinstance(exc, gexc.RetryError):
        cause = exc.cause
        return (
            f"last error: {type(cause).__name__}: {_sdk_message(cause)}" if cause is not None else exc.message
        )
    message = getattr(exc, "message", None)
    text = message if isinstance(message, str) else str(exc)
    # Service messages are short; a long one is not worth repeating in full in every log line.
    return text if len(text) <= 500 else text[:500] + "..."


def translate(exc: BaseException, *, operation: str, name: str | None = None) -> MultiCloudStoreError:
    """Map an exception raised by the Google client onto the store's error hierarchy.

    Use as ``raise translate(exc, operation="read", name=name) from exc``.

    Args:
        exc: What the client raised.
        operation: What the driver was doing (``read``, ``create``, ...), for the message.
        name: The secret's backend name, when the call was about one.

    Returns:
        The error to raise (``exc`` itself when it is already one of ours).
    """
    if isinstance(exc, MultiCloudStoreError):
        return exc
    if isinstance(exc, auth_exc.InvalidOperation):
        # Anonymous credentials asked to refresh after a 401: the endpoint wants real credentials.
        return BackendPermissionError(
            f"{_SERVICE}: {operation} not authenticated ({_sdk_message(exc)})", backend=_BACKEND
        )
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return credentials_error(exc)
    what = f"{operation} of secret {name!r}" if name else operation
    for sdk_classes, ours, happened in _TABLE:
        if isinstance(exc, sdk_classes):
            return ours(f"{_SERVICE}: {what} {happened} ({_sdk_message(exc)})", backend=_BACKEND)
    return BackendError(
        f"{_SERVICE}: {what} failed: {type(exc).__name__}: {_sdk_message(exc)}", backend=_BACKEND
    )


def credentials_error(exc: BaseException | None, *, variable: str | None = None) -> ConfigurationError:
    """Explain that no usable Google credentials were found, naming the variables that provide them.

    Args:
        exc: What google.auth raised, if anything.
        variable: The setting that was used, if one was.

    Returns:
        The error to raise.
    """
    detail = f" ({type(exc).__name__}: {_sdk_message(exc)})" if exc is not None else ""
    if variable is not None:
        return ConfigurationError(
            f"{variable}: these Google credentials cannot be used{detail}",
            variable=variable,
            backend=_BACKEND,
        )
    return ConfigurationError(
        "no Google credentials found: set MULTICLOUD_STORE_GCP_CREDENTIALS_FILE or "
        "MULTICLOUD_STORE_GCP_CREDENTIALS_JSON, or provide Application Default Credentials "
        "(GOOGLE_APPLICATION_CREDENTIALS, workload identity, or `gcloud auth application-default login`)"
        f"{detail}",
        variable="MULTICLOUD_STORE_GCP_CREDENTIALS_FILE",
        backend=_BACKEND,
    )

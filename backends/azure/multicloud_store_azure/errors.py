"""The one table from azure-core and azure-identity errors to `multicloud_store.errors`.

The Key Vault client raises azure-core exceptions: a class per HTTP status the SDK maps
(`ResourceNotFoundError` for 404, `ResourceExistsError` for 409, `ClientAuthenticationError` for 401), a plain
`HttpResponseError` for the others, and `ServiceRequestError` / `ServiceResponseError` when no answer came.
The service's error body adds a code and an inner code (``Forbidden`` / ``SecretDisabled``), which tell a disabled
secret apart from a denied caller.

Messages carry the operation, the secret name and the service's own explanation, which never contains a
payload (payloads travel only in request and response bodies); the SDK exception stays as ``__cause__``.
"""

from __future__ import annotations

import ssl
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from multicloud_store.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    MultiCloudStoreError,
    SecretExistsError,
    SecretNotFoundError,
    SecretStateError,
)
from multicloud_store_azure._redact import redact

__all__ = [
    "DELETED_BUT_RECOVERABLE",
    "TLS_HINT",
    "credentials_error",
    "error_codes",
    "is_disabled_or_expired",
    "malformed_header",
    "translate",
]

_BACKEND = "azure"
_SERVICE = "Azure Key Vault"

DELETED_BUT_RECOVERABLE = "ObjectIsDeletedButRecoverable"
"""The inner code of a 409 for a name held by a soft-deleted secret."""

TLS_HINT = "TLS certificate verification failed; set MULTICLOUD_STORE_AZURE_CA_BUNDLE"

# Inner codes of a 403 that are about the secret's state, not about the caller's rights.
_STATE_CODES: dict[str, str] = {
    "secretdisabled": "is disabled in Key Vault",
    "secretexpired": "has expired (its expiry date has passed)",
    "secretnotyetvalid": "is not valid yet (its activation date has not come)",
}

# (SDK classes, HTTP statuses, our class, what happened). First match wins; a row matches an exception of one
# of its classes whose status is in its statuses (an empty tuple: any status).
_TABLE: tuple[
    tuple[tuple[type[BaseException], ...], tuple[int, ...], type[MultiCloudStoreError], str], ...
] = (
    ((ResourceNotFoundError,), (), SecretNotFoundError, "not found"),
    ((ResourceExistsError,), (), SecretExistsError, "already exists (or is soft-deleted under that name)"),
    ((ClientAuthenticationError,), (), BackendPermissionError, "not authenticated"),
    ((HttpResponseError,), (401,), BackendPermissionError, "not authenticated"),
    ((HttpResponseError,), (403,), BackendPermissionError, "permission denied"),
    ((HttpResponseError,), (429,), BackendUnavailableError, "throttled (still after the retries)"),
    ((HttpResponseError,), (408, 500, 502, 503, 504), BackendUnavailableError, "failed on the service side"),
    ((HttpResponseError,), (400,), BackendError, "rejected the request as invalid"),
    ((ServiceResponseError,), (), BackendUnavailableError, "got no answer in time"),
    ((ServiceRequestError,), (), BackendUnavailableError, "could not be reached"),
    ((HttpResponseError,), (), BackendError, "failed"),
    ((AzureError,), (), BackendError, "failed"),
)


def error_codes(exc: BaseException) -> tuple[str | None, str | None]:
    """Return the service's error code and inner error code, as in ``Forbidden`` / ``SecretDisabled``.

    Args:
        exc: An exception raised by the client.

    Returns:
        ``(code, inner_code)``, each None when absent.
    """
    error: Any = getattr(exc, "error", None)
    if error is None:
        return None, None
    code = getattr(error, "code", None)
    inner: Any = getattr(error, "innererror", None) or {}
    inner_code = inner.get("code") if isinstance(inner, dict) else None
    return (code if isinstance(code, str) else None), (inner_code if isinstance(inner_code, str) else None)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def is_disabled_or_expired(exc: BaseException) -> str | None:
    """Tell whether a 403 is about the secret's state rather than the caller's rights.

    Args:
        exc: An exception raised by the client.

    Returns:
        A description of the state ("is disabled in Key Vault"), or None for any other error.
    """
    if _status(exc) != 403:
        return None
    _, inner = error_codes(exc)
    if inner is not None and inner.lower() in _STATE_CODES:
        return _STATE_CODES[inner.lower()]
    message = (_sdk_message(exc) or "").lower()
    # Older API versions say it only in the message.
    if "disabled secret" in message:
        return _STATE_CODES["secretdisabled"]
    if "expired secret" in message:
        return _STATE_CODES["secretexpired"]
    return None


def _sdk_message(exc: BaseException) -> str:
    error: Any = getattr(exc, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    if not isinstance(message, str) or not message:
        message = getattr(exc, "message", None)
    text = message if isinstance(message, str) and message else str(exc) or type(exc).__name__
    # One line, bounded: the SDK's messages repeat the whole error body.
    # Never a credential: an SDK message may quote a header (requests does, for a value it refuses).
    text = redact(" ".join(text.split()))
    return text if len(text) <= 400 else text[:400] + "..."


def _tls_failure(exc: BaseException) -> bool:
    """Walk the chain of causes looking for a failed certificate verification."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else (current.__cause__ or current.__context__)
    return False


def malformed_header(exc: BaseException) -> bool:
    """Tell whether a request failed because a header could not be built, which only a bad credential causes.

    requests refuses a header value with a line break or surrounding whitespace (``InvalidHeader``), http.client
    one with characters it cannot encode; azure-core wraps either as a `ServiceRequestError` or
    `ServiceResponseError`, which would otherwise be retried and reported as "unavailable".

    Args:
        exc: An exception raised by the client or the transport.

    Returns:
        True when the chain of causes holds such an error.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = type(current)
        if kind.__name__ in ("InvalidHeader", "InvalidHeaderValue") or (
            isinstance(current, (UnicodeEncodeError, ValueError))
            and "header" in str(current).lower()
            and not isinstance(current, AzureError)
        ):
            return True
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else (current.__cause__ or current.__context__)
    return False


def _is_unavailable_credential(exc: BaseException) -> bool:
    # Matched by name so that this module does not import azure-identity (msal and friends) on its own.
    if any(
        cls.__name__ == "CredentialUnavailableError" and cls.__module__.startswith("azure.identity")
        for cls in type(exc).__mro__
    ):
        return True
    # DefaultAzureCredential (a chain) reports "nothing could give a token" as a plain ClientAuthenticationError.
    return (
        isinstance(exc, ClientAuthenticationError)
        and _status(exc) is None
        and ("failed to retrieve a token from the included credentials" in str(exc))
    )


def credentials_error(exc: BaseException, *, variable: str | None = None) -> ConfigurationError:
    """Build the error for a credential that cannot be built or cannot produce a token at all.

    Args:
        exc: What azure-identity raised.
        variable: The setting at fault, when one is known.

    Returns:
        A `ConfigurationError` naming the settings that choose the credential.
    """
    variable = variable or "MULTICLOUD_STORE_AZURE_CREDENTIAL"
    return ConfigurationError(
        f"{_SERVICE}: no Azure credential is available ({_sdk_message(exc)}). Configure one: "
        "MULTICLOUD_STORE_AZURE_CLIENT_ID with MULTICLOUD_STORE_AZURE_CLIENT_SECRET and "
        "MULTICLOUD_STORE_AZURE_TENANT_ID, MULTICLOUD_STORE_AZURE_MANAGED_IDENTITY_CLIENT_ID, workload identity, "
        "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN, or choose one with MULTICLOUD_STORE_AZURE_CREDENTIAL",
        variable=variable,
        backend=_BACKEND,
    )


def translate(exc: BaseException, *, operation: str, name: str | None = None) -> MultiCloudStoreError:
    """Map an exception raised by the Key Vault client onto the store's error hierarchy.

    Use as ``raise translate(exc, operation="read", name=name) from exc``.

    Args:
        exc: What the client (or azure-identity) raised.
        operation: What the driver was doing (``read``, ``create``, ...), for the message.
        name: The secret's name, when the call was about one.

    Returns:
        The error to raise (``exc`` itself when it is already one of ours).
    """
    if isinstance(exc, MultiCloudStoreError):
        return exc
    what = f"{operation} of secret {name!r}" if name else operation
    if _is_unavailable_credential(exc):
        return credentials_error(exc)
    if malformed_header(exc):
        return ConfigurationError(
            f"{_SERVICE}: {what} failed: a credential is malformed (no HTTP header can carry it); check "
            "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN or the credential MULTICLOUD_STORE_AZURE_CREDENTIAL chooses",
            variable="MULTICLOUD_STORE_AZURE_CREDENTIAL",
            backend=_BACKEND,
        )
    state = is_disabled_or_expired(exc)
    if state is not None:
        subject = f"secret {name!r}" if name else "the secret"
        return SecretStateError(f"{_SERVICE}: {subject} {state}; {operation} refused", backend=_BACKEND)
    if isinstance(exc, ServiceRequestError) and _tls_failure(exc):
        return BackendUnavailableError(
            f"{_SERVICE}: {what} failed: {TLS_HINT} to a PEM file of the CA that signed the vault's certificate "
            f"({_sdk_message(exc)})",
            backend=_BACKEND,
        )
    status = _status(exc)
    for sdk_classes, statuses, ours, happened in _TABLE:
        if isinstance(exc, sdk_classes) and (not statuses or status in statuses):
            detail = _sdk_message(exc)
            _, inner = error_codes(exc)
            if status == 403 and inner and inner.lower() in ("forbiddenbypolicy", "forbiddenbyfirewall"):
                happened = (
                    f"denied by the vault's {'network rules' if 'firewall' in inner.lower() else 'policy'}"
                )
            prefix = f"HTTP {status}: " if status is not None else ""
            return ours(f"{_SERVICE}: {what} {happened} ({prefix}{detail})", backend=_BACKEND)
    return BackendError(
        f"{_SERVICE}: {what} failed unexpectedly ({type(exc).__name__}: {_sdk_message(exc)})",
        backend=_BACKEND,
    )

"""One table from Vault's answers (HTTP status, hvac and requests exceptions) to the shared error hierarchy.

The driver raises what `translate` returns with the original exception as ``__cause__``. Messages name the secret,
the operation and the HTTP status; Vault's own error text is quoted only for statuses whose messages are about
policies and server state (403, 429, 5xx), never for 400s, and a token never appears (hvac sends it in a header,
which neither hvac's exceptions nor urllib3's log lines contain).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import requests
from hvac import exceptions as hvac_exceptions

from multicloud_store.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    MultiCloudStoreError,
    SecretExistsError,
    SecretNotFoundError,
)

__all__ = ["CAS_MISMATCH", "ERROR_TABLE", "Rule", "is_cas_mismatch", "status_of", "translate"]

BACKEND = "vault"

#: What KV v2 answers (HTTP 400) when a check-and-set version does not match the secret's current version.
CAS_MISMATCH = "check-and-set parameter did not match the current version"
_MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class Rule:
    """How one HTTP status from Vault is reported.

    Attributes:
        error: The class raised.
        hint: What it means for the user, in a few words.
        quote_vault: Whether Vault's error text may be quoted (it is about policies or state, never values).
    """

    error: type[MultiCloudStoreError]
    hint: str
    quote_vault: bool = False


_UNAVAILABLE = "Vault failed after urllib3's retries (MULTICLOUD_STORE_VAULT_MAX_RETRIES)"

#: HTTP status -> how it is reported. A 400 check-and-set mismatch is handled by the driver before this table:
#: on create it is `SecretExistsError`; on replace the driver re-reads and decides (see `VaultDriver.replace`).
ERROR_TABLE: Mapping[int, Rule] = {
    400: Rule(BackendError, "Vault rejected the request (a bug, or a mount that is not KV version 2)"),
    401: Rule(BackendPermissionError, "Vault did not accept the credentials", True),
    403: Rule(
        BackendPermissionError,
        "permission denied: the token's policies do not allow this on this path, or the token is invalid or "
        "expired (and a new login did not help)",
        True,
    ),
    404: Rule(SecretNotFoundError, "no such secret"),
    405: Rule(
        BackendError, "Vault does not support this operation on this path (is the mount KV version 2?)"
    ),
    412: Rule(BackendUnavailableError, "a standby has not caught up with this write yet", True),
    429: Rule(BackendUnavailableError, "rate-limited by Vault after urllib3's retries", True),
    500: Rule(BackendUnavailableError, _UNAVAILABLE, True),
    501: Rule(BackendUnavailableError, "Vault is not initialized", True),
    502: Rule(BackendUnavailableError, _UNAVAILABLE, True),
    503: Rule(BackendUnavailableError, "Vault is sealed, in standby without an active node, or down", True),
    504: Rule(BackendUnavailableError, _UNAVAILABLE, True),
}

_STATUS_OF_CLASS: Mapping[type[hvac_exceptions.VaultError], int] = {
    hvac_exceptions.InvalidRequest: 400,
    hvac_exceptions.Unauthorized: 401,
    hvac_exceptions.Forbidden: 403,
    hvac_exceptions.InvalidPath: 404,
    hvac_exceptions.UnsupportedOperation: 405,
    hvac_exceptions.PreconditionFailed: 412,
    hvac_exceptions.RateLimitExceeded: 429,
    hvac_exceptions.InternalServerError: 500,
    hvac_exceptions.VaultNotInitialized: 501,
    hvac_exceptions.BadGateway: 502,
    hvac_exceptions.VaultDown: 503,
}


def status_of(exc: BaseException) -> int | None:
    """Return the HTTP status of an hvac exception.

    Args:
        exc: What hvac raised.

    Returns:
        The status, or None when it is not an hvac error or its status is unknown.
    """
    for cls in type(exc).__mro__:
        status = _STATUS_OF_CLASS.get(cls)
        if status is not None:
            return status
    return None


def _errors(exc: BaseException) -> list[str]:
    errors = getattr(exc, "errors", None)
    return [str(item) for item in errors] if isinstance(errors, list) else []


def is_cas_mismatch(exc: BaseException) -> bool:
    """Tell whether an hvac exception is KV v2's check-and-set mismatch.

    Args:
        exc: What hvac raised.

    Returns:
        True for a 400 whose error says the check-and-set version did not match.
    """
    return isinstance(exc, hvac_exceptions.InvalidRequest) and any(
        "check-and-set" in error for error in _errors(exc)
    )


def _subject(action: str, name: str | None) -> str:
    return f"{action} of secret {name!r}" if name else action


def translate(exc: BaseException, *, action: str, name: str | None = None) -> MultiCloudStoreError:
    """Map an hvac or requests exception onto the shared hierarchy. Raise the result ``from exc``.

    Args:
        exc: What hvac or requests raised.
        action: What we were doing (``read``, ``create``, ``replace``, ``delete``, ``list``, ``login``, ...).
        name: The secret's backend name, when the call was about one.

    Returns:
        The error to raise.
    """
    if isinstance(exc, MultiCloudStoreError):
        return exc
    subject = _subject(action, name)
    if isinstance(exc, hvac_exceptions.VaultError):
        status = status_of(exc)
        if status is None:
            rule = Rule(BackendError, "unexpected answer from Vault")
        else:
            rule = ERROR_TABLE.get(status) or Rule(BackendError, "unexpected answer from Vault")
        if is_cas_mismatch(exc) and action == "create":
            rule = Rule(SecretExistsError, "a secret of that name already exists")
        text = f"{subject} on Vault failed"
        if status is not None:
            text += f" (HTTP {status})"
        text += f": {rule.hint}"
        errors = _errors(exc)
        if rule.quote_vault and errors:
            quoted = "; ".join(errors)
            text += ". Vault says: " + (
                quoted if len(quoted) <= _MESSAGE_LIMIT else quoted[:_MESSAGE_LIMIT] + "..."
            )
        return rule.error(text, backend=BACKEND)
    if isinstance(exc, requests.exceptions.SSLError):
        return BackendUnavailableError(
            f"{subject} on Vault: the TLS handshake failed (check MULTICLOUD_STORE_VAULT_URL and "
            "MULTICLOUD_STORE_VAULT_CA_BUNDLE / VAULT_CACERT)",
            backend=BACKEND,
        )
    if isinstance(exc, requests.exceptions.Timeout):
        which = "connect" if isinstance(exc, requests.exceptions.ConnectTimeout) else "read"
        return BackendUnavailableError(
            f"{subject} on Vault timed out ({which} timeout, MULTICLOUD_STORE_VAULT_{which.upper()}_TIMEOUT) "
            "after urllib3's retries",
            backend=BACKEND,
        )
    if isinstance(exc, requests.exceptions.InvalidURL):
        return ConfigurationError(
            f"{subject}: the Vault address is not a usable URL (MULTICLOUD_STORE_VAULT_URL)",
            variable="MULTICLOUD_STORE_VAULT_URL",
            backend=BACKEND,
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return BackendUnavailableError(
            f"{subject} on Vault: cannot reach the server ({type(exc).__name__}) after urllib3's retries",
            backend=BACKEND,
        )
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return BackendError(
            f"{subject} on Vault: the answer was not what KV version 2 sends ({type(exc).__name__})",
            backend=BACKEND,
        )
    return BackendError(f"{subject} on Vault failed ({type(exc).__name__})", backend=BACKEND)

"""The one error hierarchy of multicloud-store.

Every backend maps its service's failures onto these classes, so code that uses the store handles one set of
exceptions whatever cloud it runs on. A driver raises them with the SDK's exception as ``__cause__``.

Messages name secrets by id or backend name, never by value: nothing here ever formats a secret value.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

__all__ = [
    "BackendError",
    "BackendNotInstalledError",
    "BackendPermissionError",
    "BackendUnavailableError",
    "ConfigurationError",
    "InvalidSecretError",
    "MultiCloudStoreError",
    "SecretCorruptedError",
    "SecretExistsError",
    "SecretIncompleteError",
    "SecretNotFoundError",
    "SecretStateError",
]


class MultiCloudStoreError(Exception):
    """Root of every error this library raises on purpose.

    Attributes:
        secret_id: The id of the secret the failed call was about, when there was one.
        backend: The backend name (``local``, ``aws``, ...) when known.
    """

    secret_id: UUID | None = None
    backend: str | None = None

    def __init__(self, message: str, *, secret_id: UUID | None = None, backend: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if secret_id is not None:
            self.secret_id = secret_id
        if backend is not None:
            self.backend = backend

    def __str__(self) -> str:
        # KeyError.__str__ would quote the message; keep every subclass readable.
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments do not survive the default pickling; errors cross process pools.
        return (_rebuild, (type(self), self.message, self.secret_id, self.backend))


def _rebuild(
    cls: type[MultiCloudStoreError], message: str, secret_id: UUID | None, backend: str | None
) -> MultiCloudStoreError:
    return cls(message, secret_id=secret_id, backend=backend)


class SecretNotFoundError(MultiCloudStoreError, KeyError):
    """No secret with this id exists for this deployment.

    Also raised when the backend holds a secret under that name that belongs to another deployment: it is not
    ours, so for this store it does not exist. A subclass of `KeyError`, as ZenML's interface requires.
    """


class SecretIncompleteError(SecretNotFoundError):
    """The name holds a secret with no value: the leftover of a store interrupted between its steps.

    A driver whose create takes more than one call (GCP: CreateSecret, then AddSecretVersion) raises it from
    ``read`` when the secret exists but holds nothing to read. Readers see "not found", since no value was ever
    stored; `SecretsStore.delete_secret_values` deletes such a leftover when its labels are this deployment's and
    this id's, so that every listed id can be deleted.

    Attributes:
        labels: The labels the empty secret carries (what proves whose leftover it is).
    """

    def __init__(
        self,
        message: str,
        *,
        labels: Mapping[str, str] | None = None,
        secret_id: UUID | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(message, secret_id=secret_id, backend=backend)
        self.labels: Mapping[str, str] = dict(labels or {})


class SecretExistsError(MultiCloudStoreError):
    """A secret with this id already exists (ours or another deployment's); nothing was overwritten.

    Deliberately not a `KeyError`: ZenML treats a `KeyError` from ``store_secret_values`` as retryable.
    """


class InvalidSecretError(MultiCloudStoreError, ValueError):
    """The id or the values are not acceptable; raised before any call to the backend."""


class ConfigurationError(MultiCloudStoreError):
    """A setting is missing or wrong. The message names the environment variable.

    Attributes:
        variable: The environment variable at fault, when one is.
    """

    variable: str | None = None

    def __init__(self, message: str, *, variable: str | None = None, backend: str | None = None) -> None:
        super().__init__(message, backend=backend)
        self.variable = variable


class BackendNotInstalledError(ConfigurationError):
    """The selected backend is known, but its distribution (or its SDK) is not installed.

    Attributes:
        requirement: What to install, for example ``multicloud-store[aws]``.
    """

    requirement: str | None = None

    def __init__(self, message: str, *, requirement: str | None = None, backend: str | None = None) -> None:
        super().__init__(message, variable="MULTICLOUD_STORE_BACKEND", backend=backend)
        self.requirement = requirement


class BackendError(MultiCloudStoreError):
    """The backend failed in a way that is not about the secret's existence."""


class BackendPermissionError(BackendError):
    """The cloud's access control denied the call. Never reported as "not found"."""


class BackendUnavailableError(BackendError):
    """The backend could not be reached, throttled us, or failed, after the SDK's own retries."""


class SecretCorruptedError(BackendError):
    """What the backend returned cannot be trusted: failed decryption, checksum or envelope check."""


class SecretStateError(BackendError):
    """The secret exists but its state forbids the call (disabled, expired, scheduled for deletion)."""

"""The driver protocol: the one small interface between the dispatcher and a secrets service.

A driver moves opaque text payloads and a few labels to and from one service and maps that service's errors onto
`multicloud_store.errors`. Everything that must behave the same on every cloud (validation, naming, the envelope,
ownership, caching) lives in `multicloud_store.store.SecretsStore`, not here.

A third-party driver implements `SecretsDriver`, declares its `DriverLimits`, and passes the contract suite in
`multicloud_store.testing`. See docs/writing-a-driver.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from multicloud_store.settings import EnvSettings

__all__ = ["DriverLimits", "OwnedWrites", "SecretsDriver", "StoredSecret", "read_many_sequential"]


@dataclass(frozen=True)
class DriverLimits:
    """What a backend accepts. The dispatcher checks every call against these before the network.

    Attributes:
        max_payload_bytes: Largest payload, in UTF-8 bytes, the service stores.
        name_pattern: Regular expression a whole secret name must match.
        max_name_length: Longest secret name.
        max_labels: Most labels (tags) on one secret.
        label_key_pattern: Regular expression a label key must match.
        label_value_pattern: Regular expression a label value must match.
        batch_read_size: How many names one `read_many` round trip takes (1: no batch call).
    """

    max_payload_bytes: int
    name_pattern: str = r"[A-Za-z0-9-]+"
    max_name_length: int = 127
    max_labels: int = 50
    label_key_pattern: str = r"[a-z][a-z0-9_-]{0,62}"
    label_value_pattern: str = r"[a-z0-9_-]{0,63}"
    batch_read_size: int = 1
    _compiled: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False, compare=False)

    def _match(self, pattern: str, text: str) -> bool:
        compiled = self._compiled.get(pattern)
        if compiled is None:
            compiled = self._compiled[pattern] = re.compile(pattern)
        return compiled.fullmatch(text) is not None

    def name_ok(self, name: str) -> bool:
        """Tell whether the service accepts this secret name.

        Args:
            name: A secret name.

        Returns:
            True when the name fits the pattern and the length.
        """
        return len(name) <= self.max_name_length and self._match(self.name_pattern, name)

    def label_ok(self, key: str, value: str) -> bool:
        """Tell whether the service accepts this label.

        Args:
            key: Label key.
            value: Label value.

        Returns:
            True when both fit the service's rules.
        """
        return self._match(self.label_key_pattern, key) and self._match(self.label_value_pattern, value)


@dataclass(frozen=True)
class StoredSecret:
    """One secret as a driver returns it.

    Attributes:
        name: The backend name of the secret.
        payload: The opaque text the dispatcher stored (the envelope).
        labels: The labels (tags) stored with it.
        version: The service's version id, when it has one (diagnostics only).
    """

    name: str
    payload: str = field(repr=False)
    labels: Mapping[str, str] = field(default_factory=dict)
    version: str | None = None


@runtime_checkable
class SecretsDriver(Protocol):
    """Operations a backend implements, on opaque payloads and labels.

    Contract for every method: raise only `multicloud_store.errors` classes, chaining the SDK's exception
    (``raise SecretNotFoundError(...) from exc``). Never put a payload into a message or a log line. Be safe to call
    from many threads at once. Create SDK clients lazily, on the first call, so that constructing a driver does no
    network I/O; accept an injected client for tests.

    Class attributes:
        backend_name: The name users select it by (``MULTICLOUD_STORE_BACKEND``).
        settings_class: The `multicloud_store.settings.EnvSettings` subclass (a settings model: `Field`, `SecretStr`, validators) that reads
            ``MULTICLOUD_STORE_<BACKEND>_*``. The driver is built as ``driver_class(settings_class.from_environ())``.

    Optional: ``location() -> tuple``, what identifies the store from settings alone (no network call), which
    `SecretsStore.store_identity` uses so that ``migrate`` refuses to copy a store onto itself.
    """

    backend_name: ClassVar[str]
    settings_class: ClassVar[type[EnvSettings]]

    @property
    def limits(self) -> DriverLimits:
        """What this backend accepts."""
        ...

    def create(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Create a secret that must not exist yet.

        Raises:
            SecretExistsError: A secret of that name exists, or is soft-deleted in a way that blocks the name.
        """
        ...

    def read(self, name: str) -> StoredSecret:
        """Read the current payload and labels in one round trip.

        Raises:
            SecretNotFoundError: No such secret (or it is scheduled for deletion).
            SecretIncompleteError: The secret exists but holds no value (a create of several calls interrupted
                in between); carries the labels the empty secret has.
        """
        ...

    def replace(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Replace the payload of an existing secret, atomically for readers.

        The dispatcher has just read the secret to prove ownership. A service whose write is an upsert (Azure)
        cannot always tell that the secret vanished in between; raise where the service can tell.

        Raises:
            SecretNotFoundError: No such secret, where the service says so.
        """
        ...

    def delete(self, name: str) -> None:
        """Delete a secret so that its name can be created again at once (where the service allows).

        The dispatcher reads the secret (to prove ownership) just before, so a service that reports success for
        a missing name (AWS with ``ForceDeleteWithoutRecovery``) need not spend a round trip to tell.

        Raises:
            SecretNotFoundError: No such secret, where the service says so.
        """
        ...

    def list_names(self, labels: Mapping[str, str]) -> Iterator[str]:
        """Yield the names of the secrets carrying all of these labels, fetching page by page, lazily.

        Args:
            labels: Labels every listed secret must carry (exact match).
        """
        ...

    def read_many(self, names: list[str]) -> Mapping[str, StoredSecret | Exception]:
        """Read several secrets; a driver with a batch call uses it, others may call `read_many_sequential`.

        Returns:
            For each name, the secret or the error (from `multicloud_store.errors`) its read raised.
        """
        ...

    def health_check(self) -> None:
        """Make one cheap authenticated call to prove the backend is reachable and we may use it.

        Raises:
            BackendError: The backend cannot be used.
        """
        ...

    def close(self) -> None:
        """Release clients, connections and threads. The driver may not be used afterwards."""
        ...


@runtime_checkable
class OwnedWrites(Protocol):
    """Optional: update and delete that prove ownership and write in one round trip, atomically.

    Without it the dispatcher proves ownership with a `read` (the envelope inside the payload names the deployment
    and the id) and then calls `replace` or `delete`: two round trips, with a window between them. A service that
    can read a secret and then write it on the condition that it is still the version read, in one transaction or
    one call, implements these two methods, and `multicloud_store.store.SecretsStore` calls them instead.

    Each method reads the secret as `read` would (raising what `read` raises: `SecretNotFoundError`,
    `SecretCorruptedError`, ...), calls ``check`` with it, and writes only if ``check`` returned and the secret is
    still the version that was checked (a compare-and-swap, or a lock held until the write). ``check`` is the
    dispatcher's ownership check: it raises (`SecretNotFoundError` for another deployment's secret,
    `SecretCorruptedError` for an unreadable payload labelled as ours) to refuse, and then nothing is written and
    the error propagates unchanged. Each method is used when present; see docs/writing-a-driver.md.
    """

    def replace_owned(
        self, name: str, payload: str, labels: Mapping[str, str], check: Callable[[StoredSecret], object]
    ) -> None:
        """Replace the payload of ``name`` if ``check`` accepts the secret as it is, atomically for readers.

        Args:
            name: The secret's backend name.
            payload: The new payload.
            labels: The labels the secret carries afterwards.
            check: Called with the current secret before the write; raises to refuse it.

        Raises:
            SecretNotFoundError: No such secret, or ``check`` refused it; nothing was written.
        """
        ...

    def delete_owned(self, name: str, check: Callable[[StoredSecret], object]) -> None:
        """Delete ``name`` if ``check`` accepts the secret as it is.

        Args:
            name: The secret's backend name.
            check: Called with the current secret before the delete; raises to refuse it.

        Raises:
            SecretNotFoundError: No such secret, or ``check`` refused it; nothing was deleted.
        """
        ...


def read_many_sequential(driver: SecretsDriver, names: list[str]) -> dict[str, StoredSecret | Exception]:
    """Read names one by one, collecting per-name outcomes: a `read_many` for drivers without a batch call.

    Args:
        driver: The driver to read with.
        names: Backend names.

    Returns:
        Name to secret, or to the `MultiCloudStoreError` its read raised.
    """
    from multicloud_store.errors import MultiCloudStoreError

    out: dict[str, StoredSecret | Exception] = {}
    for name in names:
        try:
            out[name] = driver.read(name)
        except MultiCloudStoreError as exc:
            out[name] = exc
    return out

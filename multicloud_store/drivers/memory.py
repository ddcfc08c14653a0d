"""The ``memory`` backend: a process-local dict, for tests and examples.

It also lets tests make the next calls fail (`MemoryDriver.fail_next`), make writes commit and then lose their
answer (`MemoryDriver.lose_next_answers`), and counts calls (`MemoryDriver.calls`), so the dispatcher's error
paths and round-trip counts can be checked without a cloud.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import ClassVar

from multicloud_store.driver import DriverLimits, StoredSecret, read_many_sequential
from multicloud_store.errors import BackendUnavailableError, SecretExistsError, SecretNotFoundError
from multicloud_store.settings import EnvSettings, Field, SettingsConfigDict

__all__ = ["MemoryDriver", "MemorySettings"]


class MemorySettings(EnvSettings):
    """Settings of the ``memory`` backend (``MULTICLOUD_STORE_MEMORY_*``).

    Attributes:
        max_payload_bytes: The limit to declare; defaults to the strictest of the clouds' (Azure) so that
            what fits here fits everywhere.
        page_size: Names per page when listing, to exercise paging.
    """

    model_config = SettingsConfigDict(env_prefix="MULTICLOUD_STORE_MEMORY_")

    max_payload_bytes: int = Field(default=25_000, ge=256)
    page_size: int = Field(default=100, ge=1)


class MemoryDriver:
    """Secrets in a dict guarded by a lock. Every instance is its own backend unless given a shared ``data``.

    Args:
        settings: Its settings.
        data: A dict to share between instances (two deployments on one "account").
    """

    backend_name: ClassVar[str] = "memory"
    settings_class: ClassVar[type[EnvSettings]] = MemorySettings

    def __init__(
        self, settings: MemorySettings | None = None, *, data: dict[str, StoredSecret] | None = None
    ) -> None:
        self.settings = settings or MemorySettings()
        self._data: dict[str, StoredSecret] = data if data is not None else {}
        self._lock = threading.Lock()
        self._limits = DriverLimits(max_payload_bytes=self.settings.max_payload_bytes)
        self._faults: list[tuple[Callable[[], Exception], Collection[str] | None]] = []
        self._lost: list[Collection[str] | None] = []
        self.calls: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"MemoryDriver(secrets={len(self._data)})"

    @property
    def limits(self) -> DriverLimits:
        """What this backend accepts."""
        return self._limits

    def location(self) -> tuple[int, ...]:
        """Identify the store for `SecretsStore.store_identity`: the dict that holds the secrets.

        Returns:
            ``(id of the shared dict,)``: drivers sharing one ``data`` are one store.
        """
        return (id(self._data),)

    def fail_next(
        self,
        error: Callable[[], Exception],
        *,
        times: int = 1,
        operations: Collection[str] | None = None,
    ) -> None:
        """Make the next ``times`` matching calls raise ``error()`` instead of running.

        Args:
            error: Builds the exception to raise, e.g. ``lambda: BackendUnavailableError("down")``.
            times: How many calls fail.
            operations: Operation names (``create``, ``read``, ``replace``, ``delete``, ``list``, ``health``);
                None for any.
        """
        with self._lock:
            self._faults.extend([(error, operations)] * times)

    def lose_next_answers(self, *, times: int = 1, operations: Collection[str] | None = None) -> None:
        """Let the next ``times`` matching writes commit, then lose their answers.

        The caller gets `BackendUnavailableError`, as if the answer (and every retry's) was lost on the way back.
        A write that fails for its own reason (exists, not found) raises that instead and uses up no lost answer.

        Args:
            times: How many writes lose their answer.
            operations: ``create``, ``replace``, ``delete``; None for any of them.
        """
        with self._lock:
            self._lost.extend([operations] * times)

    def clear_faults(self) -> None:
        """Forget every pending `fail_next` and `lose_next_answers`."""
        with self._lock:
            self._faults.clear()
            self._lost.clear()

    def _answer(self, operation: str) -> None:
        """Called under the lock right after a write committed: drop its answer if a lost answer is pending."""
        for index, operations in enumerate(self._lost):
            if operations is None or operation in operations:
                del self._lost[index]
                raise BackendUnavailableError(f"injected: the {operation} committed but its answer was lost")

    def _enter(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1
            for index, (error, operations) in enumerate(self._faults):
                if operations is None or operation in operations:
                    del self._faults[index]
                    raise error()

    def create(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Create a secret; see `SecretsDriver.create`."""
        self._enter("create")
        with self._lock:
            if name in self._data:
                raise SecretExistsError(f"secret {name!r} already exists")
            self._data[name] = StoredSecret(name, payload, dict(labels))
            self._answer("create")

    def read(self, name: str) -> StoredSecret:
        """Read a secret; see `SecretsDriver.read`."""
        self._enter("read")
        try:
            return self._data[name]
        except KeyError:
            raise SecretNotFoundError(f"secret {name!r} not found") from None

    def replace(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
        """Replace a secret's payload; see `SecretsDriver.replace`."""
        self._enter("replace")
        with self._lock:
            if name not in self._data:
                raise SecretNotFoundError(f"secret {name!r} not found")
            self._data[name] = StoredSecret(name, payload, dict(labels))
            self._answer("replace")

    def delete(self, name: str) -> None:
        """Delete a secret; see `SecretsDriver.delete`."""
        self._enter("delete")
        with self._lock:
            if self._data.pop(name, None) is None:
                raise SecretNotFoundError(f"secret {name!r} not found")
            self._answer("delete")

    def list_names(self, labels: Mapping[str, str]) -> Iterator[str]:
        """List names by labels, a page at a time; see `SecretsDriver.list_names`."""
        after = ""
        size = self.settings.page_size
        while True:
            self._enter("list")
            with self._lock:
                page = sorted(
                    name
                    for name, secret in self._data.items()
                    if name > after and all(secret.labels.get(k) == v for k, v in labels.items())
                )[:size]
            yield from page
            if len(page) < size:
                return
            after = page[-1]

    def read_many(self, names: list[str]) -> Mapping[str, StoredSecret | Exception]:
        """Read several secrets one by one; see `SecretsDriver.read_many`."""
        return read_many_sequential(self, names)

    def health_check(self) -> None:
        """Always healthy, unless a fault was injected for ``health``."""
        self._enter("health")

    def close(self) -> None:
        """Nothing to release."""

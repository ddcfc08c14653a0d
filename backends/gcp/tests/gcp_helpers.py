"""Helpers shared by the GCP backend's tests (a module of its own: ``conftest`` is not importable by name)."""

from __future__ import annotations

from typing import Any

from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store_gcp.driver import GcpDriver
from multicloud_store_gcp.settings import GcpSettings
from multicloud_store_gcp.testing import SecretManagerEmulator

PROJECT = "test-project"
PARENT = f"projects/{PROJECT}"

# Small backoff and retry deadline: a test that exhausts the retries takes half a second, not thirty. The
# per-call timeout is generous: no call here is meant to time out unless its test says so.
FAST_RETRY: dict[str, Any] = {
    "retry_deadline": 0.5,
    "retry_initial_backoff": 0.01,
    "retry_max_backoff": 0.05,
    "timeout": 60.0,
}


def grpc_settings(emulator: SecretManagerEmulator, **overrides: Any) -> GcpSettings:
    """Settings for the emulator's gRPC front end, built directly."""
    values: dict[str, Any] = {
        "project_id": PROJECT,
        "endpoint": emulator.grpc_endpoint,
        "transport": "grpc",
        "anonymous": True,
        **FAST_RETRY,
    }
    values.update(overrides)
    return GcpSettings(**values)


def rest_env(emulator: SecretManagerEmulator, **extra: str) -> dict[str, str]:
    """The environment variables that select the emulator's REST front end."""
    env = {
        "MULTICLOUD_STORE_BACKEND": "gcp",
        "MULTICLOUD_STORE_GCP_ENDPOINT": emulator.rest_endpoint,
        "MULTICLOUD_STORE_GCP_TRANSPORT": "rest",
        "MULTICLOUD_STORE_GCP_ANONYMOUS": "true",
        "MULTICLOUD_STORE_GCP_PROJECT_ID": PROJECT,
        **{f"MULTICLOUD_STORE_GCP_{key.upper()}": str(value) for key, value in FAST_RETRY.items()},
    }
    env.update(extra)
    return env


def clear_faults(emulator: SecretManagerEmulator) -> None:
    """Drop pending injected faults but keep every secret."""
    emulator.clear_faults()


class EmulatorFaults:
    """The contract suite's `FaultInjector`, on the emulator."""

    def __init__(self, emulator: SecretManagerEmulator) -> None:
        self.emulator = emulator

    def unavailable(self) -> None:
        # Far more failures than any retry deadline in these tests can use up.
        self.emulator.inject_fault("UNAVAILABLE", times=10_000)

    def permission_denied(self) -> None:
        self.emulator.inject_fault("PERMISSION_DENIED", times=10_000)

    def clear(self) -> None:
        clear_faults(self.emulator)


def store_on(driver: GcpDriver, deployment: str = "test") -> SecretsStore:
    """A store of one deployment on a driver (closing the store would close the shared driver: do not)."""
    return SecretsStore(StoreSettings(backend="gcp", deployment_id=deployment), driver=driver)


class EmulatorLostAnswers:
    """The contract suite's `LostAnswerInjector`, on the emulator: the driver operation's calls commit, and
    every answer to them (retries included) is lost."""

    # The calls that make up each driver operation. A create is two calls; losing both answers is the worst case.
    _METHODS = {
        "create": frozenset({"CreateSecret", "AddSecretVersion"}),
        "replace": frozenset({"AddSecretVersion"}),
        "delete": frozenset({"DeleteSecret"}),
    }

    def __init__(self, emulator: SecretManagerEmulator) -> None:
        self.emulator = emulator

    def lose_answers(self, operation: str) -> None:
        self.emulator.lose_answers(times=10_000, methods=self._METHODS[operation])

    def clear(self) -> None:
        clear_faults(self.emulator)

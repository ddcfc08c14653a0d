"""Fixtures for the Azure backend's tests: one Key Vault emulator for the session, reset after every test.

The emulator serves HTTPS on 127.0.0.1 with its own CA, and the same vault in-process through an azure-core
transport; every test goes through the real ``azure.keyvault.secrets.SecretClient``.
"""

from __future__ import annotations

import os
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("azure.keyvault.secrets")

from azure.keyvault.secrets import SecretClient
from azure_clock import VirtualClock, virtual_datetime

import multicloud_store_azure.driver as azure_driver
import multicloud_store_azure.emulator.model as emulator_model
from multicloud_store_azure.driver import AzureDriver, client_options
from multicloud_store_azure.settings import AzureSettings
from multicloud_store_azure.testing import (
    DEFAULT_TOKEN,
    IN_PROCESS_VAULT_URL,
    KeyVaultEmulator,
    StaticTokenCredential,
)

# Never let a developer's own configuration leak into the tests.
for _name in [n for n in os.environ if n.startswith("MULTICLOUD_STORE_")]:
    del os.environ[_name]

# Retries stay on (their behaviour is under test) but their pauses are kept tiny.
FAST_RETRIES = {
    "MULTICLOUD_STORE_AZURE_RETRY_BACKOFF_FACTOR": "0.001",
    "MULTICLOUD_STORE_AZURE_RETRY_BACKOFF_MAX": "2",
    # The emulator stamps versions and Date headers from one clock.
    "MULTICLOUD_STORE_AZURE_CLOCK_SKEW": "0",
}


class EmulatorFaults:
    """The contract suite's `FaultInjector`, on the emulator's fault queue."""

    # More than any test's calls, each retried `retry_total` times.
    _MANY = 100_000

    def __init__(self, emulator: KeyVaultEmulator) -> None:
        self.emulator = emulator

    def unavailable(self) -> None:
        self.clear()
        self.emulator.inject_fault(503, times=self._MANY)

    def permission_denied(self) -> None:
        self.clear()
        self.emulator.inject_fault(403, times=self._MANY)

    def clear(self) -> None:
        clear_faults(self.emulator)


class EmulatorLostAnswers:
    """The contract suite's `LostAnswerInjector`: the emulator commits each write, then loses its answer."""

    # Each driver operation's one write request; its retries are lost too, until `clear`.
    _ROUTES = {
        "create": "PUT /secrets/{name}",
        "replace": "PUT /secrets/{name}",
        "delete": "DELETE /secrets/{name}",
    }

    def __init__(self, emulator: KeyVaultEmulator) -> None:
        self.emulator = emulator

    def lose_answers(self, operation: str) -> None:
        self.emulator.lose_answers(self._ROUTES[operation], times=100_000)

    def clear(self) -> None:
        self.emulator.clear_faults()


def clear_faults(emulator: KeyVaultEmulator) -> None:
    """Drop pending injected faults but keep the vault's secrets."""
    emulator.clear_faults()


# Test modules whose every test runs on the real clock: the concurrent-create protocol's own tests (races between
# threads and processes, whose outcome depends on real time passing) and the emulator's tests.
REAL_CLOCK_MODULES = {"test_consistency.py", "test_emulator.py"}
# The contract suite's races (threads creating one id, a store shared by threads): real time too.
REAL_CLOCK_TESTS = {"test_concurrent_store_of_one_id_has_one_winner", "test_concurrent_use_from_threads"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_clock: run on the real clock, not the shared virtual one (races, timed waits)"
    )


@pytest.fixture(autouse=True)
def virtual_clock(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> VirtualClock | None:
    """Put the driver and the emulator on a `VirtualClock`, except where the real clock matters."""
    if (
        request.node.path.name in REAL_CLOCK_MODULES
        or getattr(request.node, "originalname", request.node.name) in REAL_CLOCK_TESTS
        or request.node.get_closest_marker("real_clock")
    ):
        return None
    clock = VirtualClock()
    monkeypatch.setattr(
        azure_driver,
        "time",
        types.SimpleNamespace(time=clock.time, monotonic=clock.monotonic, sleep=clock.sleep),
    )
    monkeypatch.setattr(azure_driver, "datetime", virtual_datetime(clock))
    monkeypatch.setattr(
        emulator_model,
        "time",
        types.SimpleNamespace(time=clock.time, monotonic=clock.monotonic, sleep=time.sleep),
    )
    monkeypatch.setattr(
        emulator_model,
        "email",
        types.SimpleNamespace(utils=types.SimpleNamespace(formatdate=clock.formatdate)),
    )
    return clock


@pytest.fixture(scope="session")
def emulator() -> Iterator[KeyVaultEmulator]:
    with KeyVaultEmulator(token=DEFAULT_TOKEN) as emu:
        yield emu


@pytest.fixture(autouse=True)
def _fresh_emulator(emulator: KeyVaultEmulator) -> Iterator[None]:
    yield
    emulator.reset()


@pytest.fixture
def faults(emulator: KeyVaultEmulator) -> EmulatorFaults:
    return EmulatorFaults(emulator)


@pytest.fixture
def lost_answers(emulator: KeyVaultEmulator) -> EmulatorLostAnswers:
    return EmulatorLostAnswers(emulator)


@pytest.fixture
def https_env(emulator: KeyVaultEmulator) -> Callable[..., dict[str, str]]:
    """Build the variables that select the emulator over HTTPS; keyword arguments add or override some."""

    def build(**overrides: str) -> dict[str, str]:
        env = {
            "MULTICLOUD_STORE_BACKEND": "azure",
            "MULTICLOUD_STORE_AZURE_VAULT_URL": emulator.vault_url,
            "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN": DEFAULT_TOKEN,
            "MULTICLOUD_STORE_AZURE_CA_BUNDLE": emulator.ca_cert_path,
            **FAST_RETRIES,
        }
        env.update(overrides)
        return {key: value for key, value in env.items() if value is not None}

    return build


def inprocess_settings(**overrides: Any) -> AzureSettings:
    """Settings for the in-process vault, read from nothing but these values."""
    values: dict[str, Any] = {
        "vault_url": IN_PROCESS_VAULT_URL,
        "access_token": DEFAULT_TOKEN,
        "retry_backoff_factor": 0.001,
        "retry_backoff_max": 2.0,
        "clock_skew": 0,
    }
    values.update(overrides)
    return AzureSettings.from_environ({}, **values)


@pytest.fixture
def make_driver(emulator: KeyVaultEmulator) -> Iterator[Callable[..., AzureDriver]]:
    """Build drivers with an injected ``SecretClient`` on the in-process transport; all closed afterwards.

    ``transport=`` replaces the emulator's transport (for wrappers); other keywords override settings.
    """
    made: list[tuple[AzureDriver, SecretClient]] = []

    def make(*, transport: Any = None, **overrides: Any) -> AzureDriver:
        settings = inprocess_settings(**overrides)
        client = SecretClient(
            IN_PROCESS_VAULT_URL,
            StaticTokenCredential(),
            transport=transport if transport is not None else emulator.transport(),
            **client_options(settings),
        )
        driver = AzureDriver(settings, client=client)
        made.append((driver, client))
        return driver

    yield make
    for driver, client in made:
        driver.close()
        client.close()


@pytest.fixture
def raw_client(emulator: KeyVaultEmulator) -> Iterator[SecretClient]:
    """A plain SDK client on the same vault, to look behind the driver's back."""
    client = SecretClient(
        IN_PROCESS_VAULT_URL, StaticTokenCredential(), transport=emulator.transport(), retry_total=0
    )
    yield client
    client.close()

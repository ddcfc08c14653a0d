"""Fixtures for the GCP backend's tests: one Secret Manager emulator per test module, and ways to reach it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("google.cloud.secretmanager")

from gcp_helpers import clear_faults, grpc_settings
from google.cloud import secretmanager

from multicloud_store_gcp.driver import GcpDriver
from multicloud_store_gcp.testing import SecretManagerEmulator

# Never let a developer's own configuration leak into the tests.
for _name in [n for n in os.environ if n.startswith("MULTICLOUD_STORE_")]:
    del os.environ[_name]


@pytest.fixture(scope="module")
def emulator() -> Iterator[SecretManagerEmulator]:
    with SecretManagerEmulator() as emu:
        yield emu


@pytest.fixture(autouse=True)
def _no_pending_faults(emulator: SecretManagerEmulator) -> Iterator[None]:
    yield
    clear_faults(emulator)
    emulator.corrupt_checksums(False)
    emulator.latency = 0.0


@pytest.fixture
def raw_client(emulator: SecretManagerEmulator) -> Iterator[secretmanager.SecretManagerServiceClient]:
    """A plain client library client on the emulator, to look behind the driver's back."""
    with emulator.client("grpc") as client:
        yield client


@pytest.fixture(params=["grpc", "rest"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_driver(emulator: SecretManagerEmulator, transport: str) -> Iterator[Any]:
    """Build drivers on the emulator over the ``transport`` under test; all are closed afterwards."""
    drivers: list[GcpDriver] = []

    def make(**overrides: Any) -> GcpDriver:
        if transport == "grpc":
            settings = grpc_settings(emulator, **overrides)
        else:
            settings = grpc_settings(emulator, transport="rest", endpoint=emulator.rest_endpoint, **overrides)
        driver = GcpDriver(settings)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.close()

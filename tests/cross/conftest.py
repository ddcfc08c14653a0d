"""Servers for the cross-backend tests: moto, the GCP and Azure emulators, OpenBao and PostgreSQL on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from multicloud_store.sealing import Keyring

pytest.importorskip("multicloud_store_aws")
pytest.importorskip("multicloud_store_gcp")
pytest.importorskip("multicloud_store_azure")
pytest.importorskip("multicloud_store_vault")
pytest.importorskip("multicloud_store_sql")
pytest.importorskip("moto")


@pytest.fixture(scope="session", autouse=True)
def _thread_safe_moto() -> Iterator[None]:
    """moto's backend is not safe for concurrent requests (it iterates a dict others write); real AWS is."""
    from multicloud_store_aws.testing import thread_safe_moto

    with thread_safe_moto():
        yield


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def gcp_emulator() -> Iterator[object]:
    from multicloud_store_gcp.testing import SecretManagerEmulator

    emulator = SecretManagerEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def azure_emulator() -> Iterator[object]:
    from multicloud_store_azure.testing import KeyVaultEmulator

    emulator = KeyVaultEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def openbao() -> Iterator[object]:
    from multicloud_store_vault.testing import OpenBaoServer

    with OpenBaoServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (or MULTICLOUD_STORE_TEST_POSTGRES_URL), for the sql backend."""
    external = os.environ.get("MULTICLOUD_STORE_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    from multicloud_store_sql.testing import PostgresServer

    server = PostgresServer().start()
    try:
        yield server.create_database()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def backend_envs(
    moto_endpoint: str,
    gcp_emulator: object,
    azure_emulator: object,
    openbao: object,
    postgres_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, str]]:
    """The variables a user would set to reach each backend; nothing else configures the stores."""
    local_dir: Path = tmp_path_factory.mktemp("local")
    return {
        "local": {
            "MULTICLOUD_STORE_BACKEND": "local",
            "MULTICLOUD_STORE_LOCAL_PATH": str(local_dir / "s.db"),
        },
        "aws": {
            "MULTICLOUD_STORE_BACKEND": "aws",
            "MULTICLOUD_STORE_AWS_ENDPOINT_URL": moto_endpoint,
            "MULTICLOUD_STORE_AWS_REGION": "us-east-1",
            "MULTICLOUD_STORE_AWS_ACCESS_KEY_ID": "testing",
            "MULTICLOUD_STORE_AWS_SECRET_ACCESS_KEY": "testing",
        },
        "gcp-grpc": {
            "MULTICLOUD_STORE_BACKEND": "gcp",
            "MULTICLOUD_STORE_GCP_ENDPOINT": gcp_emulator.grpc_endpoint,  # type: ignore[attr-defined]
            "MULTICLOUD_STORE_GCP_TRANSPORT": "grpc",
            "MULTICLOUD_STORE_GCP_ANONYMOUS": "true",
            "MULTICLOUD_STORE_GCP_PROJECT_ID": "cross",
        },
        "gcp-rest": {
            "MULTICLOUD_STORE_BACKEND": "gcp",
            "MULTICLOUD_STORE_GCP_ENDPOINT": gcp_emulator.rest_endpoint,  # type: ignore[attr-defined]
            "MULTICLOUD_STORE_GCP_TRANSPORT": "rest",
            "MULTICLOUD_STORE_GCP_ANONYMOUS": "true",
            # Another project on the same emulator, so the two transports are two separate backends.
            "MULTICLOUD_STORE_GCP_PROJECT_ID": "cross-rest",
        },
        "azure": {
            "MULTICLOUD_STORE_BACKEND": "azure",
            "MULTICLOUD_STORE_AZURE_VAULT_URL": azure_emulator.vault_url,  # type: ignore[attr-defined]
            "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN": "emulator-token",
            "MULTICLOUD_STORE_AZURE_CA_BUNDLE": azure_emulator.ca_cert_path,  # type: ignore[attr-defined]
            # The emulator shares this machine's clock: no skew to wait out in the exclusive-create protocol.
            "MULTICLOUD_STORE_AZURE_CLOCK_SKEW": "0",
        },
        "vault": {
            "MULTICLOUD_STORE_BACKEND": "vault",
            "MULTICLOUD_STORE_VAULT_URL": openbao.url,  # type: ignore[attr-defined]
            "MULTICLOUD_STORE_VAULT_TOKEN": openbao.root_token,  # type: ignore[attr-defined]
        },
        "sql": {
            "MULTICLOUD_STORE_BACKEND": "sql",
            "MULTICLOUD_STORE_SQL_URL": postgres_url,
            "MULTICLOUD_STORE_SQL_KEY": Keyring.generate("cross").dumps(),
        },
    }


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MULTICLOUD_STORE_")]:
        monkeypatch.delenv(name)

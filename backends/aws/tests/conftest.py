"""Fixtures for the AWS backend tests: moto in-process and over HTTP, and faults injected through botocore.

Faults are injected at botocore's ``before-send`` event, the last step before the HTTP request: the handler
returns the error response AWS would send, so botocore parses it, runs its real retry logic (every retry passes
through the handler again and is counted) and raises what it raises against AWS.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from moto.server import ThreadedMotoServer

from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store_aws import AwsDriver, AwsSettings
from multicloud_store_aws.testing import LostAnswers

REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing-secret-key"


@pytest.fixture(scope="session", autouse=True)
def _thread_safe_moto() -> Iterator[None]:
    """moto's backend is not safe for concurrent requests (it iterates a dict others write); real AWS is."""
    from multicloud_store_aws.testing import thread_safe_moto

    with thread_safe_moto():
        yield


@pytest.fixture(scope="module", autouse=True)
def _clean_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the developer's AWS setup out: no variables, no config files, no instance metadata lookups."""
    empty = tmp_path_factory.getbasetemp() / "no-aws-config"
    empty.touch()
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("MULTICLOUD_STORE_", "AWS_")):
                patch.delenv(name)
        patch.setenv("AWS_CONFIG_FILE", str(empty))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


class _Body:
    """The raw body `AWSResponse` reads (it calls ``stream()``)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


@dataclass(frozen=True)
class Fault:
    """An error response: HTTP status, AWS error code and message, and the operations it applies to."""

    status: int
    code: str
    message: str = "injected by the test"
    operations: frozenset[str] | None = None


class BotocoreFaults:
    """A `FaultInjector` for boto3 clients, also counting every attempt and every call per operation.

    Attributes:
        attempts: HTTP attempts per operation (retries included), faulted or not.
        calls: Parameters of every API call per operation (one entry per call, before retries).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self.attempts: Counter[str] = Counter()
        self.calls: dict[str, list[dict[str, Any]]] = {}

    def attach(self, client: Any) -> None:
        """Hook into a client's events (more specific than moto's own ``before-send``, so it runs first)."""
        client.meta.events.register("before-send.secrets-manager", self._before_send)
        client.meta.events.register("before-parameter-build.secrets-manager", self._before_build)

    # -- the FaultInjector protocol ------------------------------------------------------------------------

    def unavailable(self) -> None:
        """Every call fails with HTTP 503, which botocore retries."""
        self.fail(503, "ServiceUnavailable", "Service Unavailable")

    def permission_denied(self) -> None:
        """Every call fails with AccessDeniedException, which botocore does not retry."""
        self.fail(
            400,
            "AccessDeniedException",
            "User: arn:aws:iam::123456789012:user/tester is not authorized to perform: secretsmanager:* "
            "because no identity-based policy allows it",
        )

    def clear(self) -> None:
        """Stop failing."""
        with self._lock:
            self._fault = None

    # -- more ------------------------------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        code: str,
        message: str = "injected by the test",
        operations: set[str] | None = None,
    ) -> None:
        """Fail every matching call with this error until `clear`."""
        with self._lock:
            self._fault = Fault(status, code, message, frozenset(operations) if operations else None)

    def reset_counts(self) -> None:
        """Forget the counted attempts and calls."""
        with self._lock:
            self.attempts.clear()
            self.calls.clear()

    def _before_build(self, params: dict[str, Any], event_name: str, **_: Any) -> None:
        with self._lock:
            self.calls.setdefault(event_name.rsplit(".", 1)[-1], []).append(dict(params))

    def _before_send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            self.attempts[operation] += 1
            fault = self._fault
        if fault is None or (fault.operations is not None and operation not in fault.operations):
            return None
        # moto's in-process stubber listens on the same event and would still run the request: give it a URL
        # it serves nothing for, so a denied or failed call has no side effect there either.
        request.url = "http://fault-injected.invalid/"
        body = json.dumps({"__type": fault.code, "message": fault.message}).encode()
        headers: Any = {"x-amzn-ErrorType": fault.code, "Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, fault.status, headers, _Body(body))


@pytest.fixture
def faults() -> BotocoreFaults:
    """A fault injector; attach it to the clients it should affect."""
    return BotocoreFaults()


def _static_settings(**overrides: Any) -> AwsSettings:
    values: dict[str, Any] = {
        "region": REGION,
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
        "max_attempts": 2,
        # Generous: no call here is meant to time out unless its test sets a short timeout itself.
        "connect_timeout": 60.0,
        "read_timeout": 120.0,
    }
    values.update(overrides)
    return AwsSettings(**values)


@pytest.fixture
def aws_settings() -> Callable[..., AwsSettings]:
    """``aws_settings(**overrides)``: settings with the test keys and region, two attempts per call."""
    return _static_settings


StoreMaker = Callable[..., SecretsStore]


@pytest.fixture
def moto_in_process(faults: BotocoreFaults) -> Iterator[StoreMaker]:
    """Inside moto's in-process mock: ``make(deployment_id="...", **settings)`` builds a store on a new driver."""
    from moto import mock_aws

    stores: list[SecretsStore] = []

    def make(deployment_id: str = "tests", **overrides: Any) -> SecretsStore:
        driver = AwsDriver(_static_settings(**overrides))
        faults.attach(driver.client)
        store = SecretsStore(StoreSettings(backend="aws", deployment_id=deployment_id), driver=driver)
        stores.append(store)
        return store

    with mock_aws():
        yield make
        for store in stores:
            store.close()


@pytest.fixture(scope="class")
def shared_moto_driver() -> Iterator[tuple[AwsDriver, BotocoreFaults]]:
    """moto in-process for a whole test class: one driver (building its own client) and a fault injector on it."""
    from moto import mock_aws

    injector = BotocoreFaults()
    with mock_aws():
        driver = AwsDriver(_static_settings())
        injector.attach(driver.client)
        yield driver, injector
        driver.close()


@pytest.fixture(scope="class")
def shared_lost_answers(shared_moto_driver: tuple[AwsDriver, BotocoreFaults]) -> Iterator[LostAnswers]:
    """A `LostAnswers` attached once to the class's shared driver."""
    lost = LostAnswers()
    lost.attach(shared_moto_driver[0].client)
    yield lost
    lost.close()


@pytest.fixture
def lost_answers() -> Iterator[LostAnswers]:
    """A `LostAnswers` injector; attach it to the clients it should affect."""
    lost = LostAnswers()
    yield lost
    lost.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 and a free port, for the whole session; yields its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def server_environ(moto_server: str) -> Callable[..., dict[str, str]]:
    """``server_environ(deployment_id, **extra)``: the variables a user sets to use the moto server.

    The server is not emptied between tests: every test uses fresh deployment ids and secret ids.
    """

    def environ(deployment_id: str = "tests", **extra: str) -> dict[str, str]:
        values = {
            "MULTICLOUD_STORE_BACKEND": "aws",
            "MULTICLOUD_STORE_DEPLOYMENT_ID": deployment_id,
            "MULTICLOUD_STORE_AWS_ENDPOINT_URL": moto_server,
            "MULTICLOUD_STORE_AWS_REGION": REGION,
            "MULTICLOUD_STORE_AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "MULTICLOUD_STORE_AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "MULTICLOUD_STORE_AWS_MAX_ATTEMPTS": "2",
            "MULTICLOUD_STORE_AWS_CONNECT_TIMEOUT": "2",
            "MULTICLOUD_STORE_AWS_READ_TIMEOUT": "5",
        }
        values.update(extra)
        return values

    return environ


@pytest.fixture
def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port

"""Key Vault specific behaviour of the ``azure`` backend, through the real SecretClient against the emulator."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.pipeline.transport import HttpTransport
from azure.keyvault.secrets import SecretClient
from azure_clock import VirtualClock

from multicloud_store.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    MultiCloudStoreError,
    SecretExistsError,
    SecretNotFoundError,
    SecretStateError,
)
from multicloud_store.settings import StoreSettings
from multicloud_store.store import LABEL_DEPLOYMENT, LABEL_MANAGED_BY, LABEL_SECRET_ID, SecretsStore
from multicloud_store_azure.driver import (
    WRITER_TAG,
    AzureDriver,
    build_credential,
    create_client,
    environment_proxies,
)
from multicloud_store_azure.errors import TLS_HINT, translate
from multicloud_store_azure.settings import AzureSettings
from multicloud_store_azure.testing import DEFAULT_TOKEN, KeyVaultEmulator

SENTINEL = "sentinel-credential-must-never-leak-93b2"


def _store(driver: AzureDriver, deployment: str = "azure-tests") -> SecretsStore:
    return SecretsStore(StoreSettings(backend="azure", deployment_id=deployment), driver=driver)


def _calls(emulator: KeyVaultEmulator, route: str) -> int:
    return emulator.calls.count(route)


class _Wrapper(HttpTransport):  # type: ignore[type-arg]
    """An azure-core transport around another one; subclasses look at (or tamper with) each exchange."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __enter__(self) -> _Wrapper:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def send(self, request: Any, **kwargs: Any) -> Any:
        return self.after(request, self.inner.send(request, **kwargs), **kwargs)

    def after(self, request: Any, response: Any, **kwargs: Any) -> Any:
        return response


# -- creating -----------------------------------------------------------------------------------------------


def test_store_never_overwrites(make_driver: Callable[..., AzureDriver], raw_client: SecretClient) -> None:
    store = _store(make_driver())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "first"})
    with pytest.raises(SecretExistsError):
        store.store_secret_values(sid, {"v": "second"})
    assert store.get_secret_values(sid) == {"v": "first"}
    # Refused before writing: the secret still has its one version.
    versions = list(raw_client.list_properties_of_secret_versions(store.secret_name(sid)))
    assert len(versions) == 1


def test_secret_layout(make_driver: Callable[..., AzureDriver], raw_client: SecretClient) -> None:
    store = _store(make_driver(), deployment="layout")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"user": "admin"})
    secret = raw_client.get_secret(store.secret_name(sid))
    assert secret.properties.content_type == "application/json"
    tags = dict(secret.properties.tags or {})
    assert len(tags.pop(WRITER_TAG)) == 32  # the creator's random id (see "Concurrent creates")
    assert tags == {
        LABEL_MANAGED_BY: "multicloud-store",
        LABEL_DEPLOYMENT: "layout",
        LABEL_SECRET_ID: str(sid),
    }
    assert json.loads(secret.value or "")  # the envelope is JSON text


def test_read_is_one_round_trip(make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator) -> None:
    store = _store(make_driver())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    before = len(emulator.calls)
    assert store.get_secret_values(sid) == {"v": "1"}
    assert emulator.calls[before:] == ["GET /secrets/{name}"]


class _Gate(_Wrapper):
    """Holds its client after the existence check and after the write until every racer got there."""

    def __init__(self, inner: Any, checked: threading.Barrier, written: threading.Barrier) -> None:
        super().__init__(inner)
        self.checked, self.written = checked, written
        self.gated: set[str] = set()

    def after(self, request: Any, response: Any, **kwargs: Any) -> Any:
        if response.status_code == 401:  # the authentication challenge, not a real exchange
            return response
        # Only the existence check and the first write; a loser's later calls pass.
        if request.method == "GET" and "/versions" in request.url and "check" not in self.gated:
            self.gated.add("check")
            self.checked.wait(timeout=60)
        elif request.method == "PUT" and "write" not in self.gated:
            self.gated.add("write")
            self.written.wait(timeout=60)
        return response


@pytest.mark.real_clock  # a race: real time passes between the racers' calls
def test_concurrent_creates_from_separate_processes_have_one_winner(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator, raw_client: SecretClient
) -> None:
    # Separate drivers share no lock, as separate processes would not. The gates force the race the lock
    # cannot see: every writer checks before any writes, and every write lands before any confirmation.
    racers = 4
    checked, written = threading.Barrier(racers), threading.Barrier(racers)
    stores = [
        _store(make_driver(transport=_Gate(emulator.transport(), checked, written))) for _ in range(racers)
    ]
    sid = uuid.uuid4()
    start = threading.Barrier(racers)

    def attempt(n: int) -> bool:
        start.wait(timeout=60)
        try:
            stores[n].store_secret_values(sid, {"winner": str(n)})
        except SecretExistsError:
            return False
        return True

    results: list[bool] = [False] * racers

    def run(n: int) -> None:
        results[n] = attempt(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results.count(True) == 1
    winner = results.index(True)
    assert stores[0].get_secret_values(sid) == {"winner": str(winner)}
    # The losers' versions are disabled: nothing but the winner's values can be read, not even by version id
    # (a loser whose version was current wrote the winner's values back on top, untagged).
    name = stores[0].secret_name(sid)
    versions = list(raw_client.list_properties_of_secret_versions(name))
    assert sum(1 for v in versions if WRITER_TAG in (v.tags or {})) == racers
    assert sum(1 for v in versions if v.enabled and WRITER_TAG in (v.tags or {})) == 1
    for version in versions:
        if version.enabled:
            assert json.loads(raw_client.get_secret(name, version.version).value or "")["values"] == {
                "winner": str(winner)
            }


class _PauseAfterCheck(_Wrapper):
    def __init__(self, inner: Any, checked: threading.Event, proceed: threading.Event) -> None:
        super().__init__(inner)
        self.checked, self.proceed = checked, proceed

    def after(self, request: Any, response: Any, **kwargs: Any) -> Any:
        if response.status_code != 401 and request.method == "GET" and "/versions" in request.url:
            self.checked.set()
            self.proceed.wait(timeout=60)
        return response


# -- deleting, purging, recovering --------------------------------------------------------------------------


def test_delete_purges_by_default(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    store = _store(make_driver())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    store.delete_secret_values(sid)
    assert emulator.secret_names() == []
    assert emulator.deleted_names() == []
    assert _calls(emulator, "DELETE /deletedsecrets/{name}") == 1


def test_delete_waits_for_a_slow_soft_delete(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator, virtual_clock: VirtualClock
) -> None:
    store = _store(make_driver())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    emulator.delete_delay = 0.3
    # Measured on the clock the driver waits by and the emulator settles deletes by.
    started = virtual_clock.monotonic()
    store.delete_secret_values(sid)
    assert virtual_clock.monotonic() - started >= 0.3
    assert emulator.deleted_names() == []
    store.store_secret_values(sid, {"v": "2"})  # at once
    assert store.get_secret_values(sid) == {"v": "2"}


@pytest.mark.parametrize("refusal", ["purge_protection", "deny_purge"])
def test_refused_purge_keeps_it_soft_deleted_and_a_new_store_recovers_and_overwrites(
    make_driver: Callable[..., AzureDriver],
    emulator: KeyVaultEmulator,
    raw_client: SecretClient,
    caplog: pytest.LogCaptureFixture,
    refusal: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    setattr(emulator, refusal, True)
    store = _store(make_driver())
    sid, other = uuid.uuid4(), uuid.uuid4()
    name = store.secret_name(sid)
    store.store_secret_values(sid, {"old": SENTINEL})
    store.store_secret_values(other, {"x": "y"})
    store.delete_secret_values(sid)
    store.delete_secret_values(other)
    assert name in emulator.deleted_names()
    assert not store.secret_exists(sid)
    # One warning per driver, however many deletes.
    assert (
        sum("refused to purge" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 1
    )

    store.store_secret_values(sid, {"new": "values"})
    assert store.get_secret_values(sid) == {"new": "values"}
    assert name not in emulator.deleted_names()
    assert _calls(emulator, "POST /deletedsecrets/{name}/recover") == 1
    # The recovered versions are still there, under the new current one.
    assert len(list(raw_client.list_properties_of_secret_versions(name))) == 2
    assert SENTINEL not in caplog.text


def test_without_purge_on_delete_nothing_is_purged(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    store = _store(make_driver(purge_on_delete=False))
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    store.delete_secret_values(sid)
    assert emulator.deleted_names() == [store.secret_name(sid)]
    store.store_secret_values(sid, {"v": "2"})
    assert store.get_secret_values(sid) == {"v": "2"}
    assert _calls(emulator, "DELETE /deletedsecrets/{name}") == 0  # recovered, never purged


def test_store_over_a_soft_deleted_secret_purges_it_first(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator, raw_client: SecretClient
) -> None:
    store = _store(make_driver())
    sid = uuid.uuid4()
    name = store.secret_name(sid)
    raw_client.set_secret(name, "left behind by someone else")
    raw_client.begin_delete_secret(name).wait()
    store.store_secret_values(sid, {"v": "mine"})
    assert store.get_secret_values(sid) == {"v": "mine"}
    assert len(list(raw_client.list_properties_of_secret_versions(name))) == 1  # purged, not recovered
    assert _calls(emulator, "POST /deletedsecrets/{name}/recover") == 0


def test_store_waits_while_a_recovery_settles(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    emulator.purge_protection = True
    emulator.delete_delay = 0.2  # deletions and recoveries stay in progress this long
    store = _store(make_driver())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    store.delete_secret_values(sid)
    store.store_secret_values(sid, {"v": "2"})
    assert store.get_secret_values(sid) == {"v": "2"}


def test_failed_write_after_a_recovery_deletes_the_recovered_secret_again(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    emulator.purge_protection = True
    store = _store(make_driver(retry_total=0))
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "deleted values"})
    store.delete_secret_values(sid)
    emulator.inject_fault(500, times=5, methods=["PUT"])
    with pytest.raises(BackendUnavailableError):
        store.store_secret_values(sid, {"v": "new"})
    # The recovered secret must not stay alive with its deleted values.
    assert emulator.secret_names() == []
    assert not store.secret_exists(sid)


class _LoseFirstDeleteAnswer(_Wrapper):
    """The first DELETE of a secret goes through, but its answer is replaced by a 503 (lost on the way)."""

    def __init__(self, inner: Any, emulator: KeyVaultEmulator) -> None:
        super().__init__(inner)
        self.emulator = emulator
        self.lost = False

    def after(self, request: Any, response: Any, **kwargs: Any) -> Any:
        if (
            not self.lost
            and request.method == "DELETE"
            and "/secrets/" in request.url
            and response.status_code == 200
        ):
            self.lost = True
            self.emulator.inject_fault(503)
            return self.inner.send(request, **kwargs)  # the same DELETE again, answered by the fault
        return response


def test_retried_delete_whose_first_answer_was_lost(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    transport = _LoseFirstDeleteAnswer(emulator.transport(), emulator)
    store = _store(make_driver(transport=transport))
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    store.delete_secret_values(sid)  # the retry's 404 is the answer to our own first attempt
    assert transport.lost
    assert emulator.secret_names() == []
    assert emulator.deleted_names() == []


# -- secret states ------------------------------------------------------------------------------------------


def test_disabled_secret_is_a_state_error(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    store = _store(make_driver())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    emulator.disable(store.secret_name(sid))
    with pytest.raises(SecretStateError, match="disabled in Key Vault") as info:
        store.get_secret_values(sid)
    assert not isinstance(info.value, KeyError)
    with pytest.raises(SecretStateError):
        store.update_secret_values(sid, {"v": "2"})
    with pytest.raises(SecretExistsError):
        store.store_secret_values(sid, {"v": "3"})


def test_read_returns_what_the_sdk_reads(
    make_driver: Callable[..., AzureDriver], raw_client: SecretClient
) -> None:
    # The driver reads the service's JSON through SecretClient.send_request, not the SDK's models: the payload,
    # the tags and the version must be exactly what get_secret gives.
    driver = make_driver()
    sid = uuid.uuid4()
    store = _store(driver)
    store.store_secret_values(sid, {"v": "1"})
    store.update_secret_values(sid, {"v": "2"})
    name = store.secret_name(sid)
    read = driver.read(name)
    expected = raw_client.get_secret(name)
    assert read.payload == expected.value
    assert dict(read.labels) == expected.properties.tags
    assert read.version is not None and read.version == expected.properties.version


class _Truncating(_Wrapper):
    """Cuts the body of every successful secret read short, as a connection dropped mid-answer would."""

    def after(self, request: Any, response: Any, **kwargs: Any) -> Any:
        if request.method == "GET" and response.status_code == 200 and "/secrets/" in request.url:
            response._content = response._content[:-40]
        return response


def test_a_read_answer_that_is_not_json_never_carries_the_value(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    # A 200's body is the secret value: no part of the error raised for an unparsable one may keep it, not even
    # a chained exception (azure-core's DecodeError repeats up to 2 KB of the body in its str()).
    value = "V" * 300
    writer = _store(make_driver())
    sid = uuid.uuid4()
    writer.store_secret_values(sid, {"v": value})
    driver = make_driver(transport=_Truncating(emulator.transport()))
    with pytest.raises(MultiCloudStoreError) as info:
        driver.read(writer.secret_name(sid))
    seen: list[str] = []
    error: BaseException | None = info.value
    while error is not None:
        seen += [str(error), repr(error), repr(vars(error)), repr(error.args)]
        error = error.__cause__ or error.__context__
    assert "VVVVVVVVVV" not in "\n".join(seen)


def test_expired_secret_is_a_state_error(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    emulator.enforce_expiry = True  # a vault that refuses expired secrets itself: 403 SecretExpired
    store = _store(make_driver())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    emulator.expire(store.secret_name(sid))
    with pytest.raises(SecretStateError, match="expired"):
        store.get_secret_values(sid)


def test_expiry_is_enforced_even_when_the_service_serves_the_secret(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    emulator.enforce_expiry = False  # as the real service: expired secrets are still returned
    strict, lenient = _store(make_driver()), _store(make_driver(enforce_expiry=False))
    sid = uuid.uuid4()
    strict.store_secret_values(sid, {"v": "1"})
    emulator.expire(strict.secret_name(sid))
    with pytest.raises(SecretStateError, match="expired"):
        strict.get_secret_values(sid)
    assert lenient.get_secret_values(sid) == {"v": "1"}


def test_not_yet_valid_secret_is_a_state_error(
    make_driver: Callable[..., AzureDriver], raw_client: SecretClient
) -> None:
    store = _store(make_driver())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    future = datetime.now(timezone.utc) + timedelta(days=1)
    raw_client.update_secret_properties(store.secret_name(sid), not_before=future)
    with pytest.raises(SecretStateError, match="not valid yet"):
        store.get_secret_values(sid)


# -- throttling, failures, timeouts -------------------------------------------------------------------------


def test_throttling_is_retried_honouring_retry_after(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    store = _store(make_driver())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    before = _calls(emulator, "GET /secrets/{name}")
    emulator.inject_fault(429, times=2, retry_after=0.25)
    started = time.monotonic()
    assert store.get_secret_values(sid) == {"v": "1"}
    assert time.monotonic() - started >= 0.5
    assert _calls(emulator, "GET /secrets/{name}") - before == 3


def test_persistent_throttling_is_unavailable(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    store = _store(make_driver(retry_total=2))
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    before = _calls(emulator, "GET /secrets/{name}")
    emulator.inject_fault(429, times=100, retry_after=0.01)
    with pytest.raises(BackendUnavailableError, match="throttled") as info:
        store.get_secret_values(sid)
    assert isinstance(info.value.__cause__, HttpResponseError)
    assert _calls(emulator, "GET /secrets/{name}") - before == 3  # the first try and two retries


def test_retry_after_longer_than_the_longest_backoff_fails_at_once(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    store = _store(make_driver(retry_backoff_max=1.0))
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    emulator.inject_fault(429, times=100, retry_after=120)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        store.get_secret_values(sid)
    # Far below the 120 s asked for, with room for a loaded machine: honouring it would take 120 s.
    assert time.monotonic() - started < 60


def test_forbidden_is_a_permission_error(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    store = _store(make_driver())
    sid = uuid.uuid4()
    emulator.inject_fault(403, times=10)
    with pytest.raises(BackendPermissionError, match="permission denied") as info:
        store.get_secret_values(sid)
    assert not isinstance(info.value, KeyError)
    with pytest.raises(BackendPermissionError):
        store.check()


def test_unreachable_vault_is_unavailable() -> None:
    store = SecretsStore.from_env(
        {
            "MULTICLOUD_STORE_BACKEND": "azure",
            "MULTICLOUD_STORE_AZURE_VAULT_URL": "https://127.0.0.1:1",
            "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN": DEFAULT_TOKEN,
            "MULTICLOUD_STORE_AZURE_RETRY_TOTAL": "1",
            "MULTICLOUD_STORE_AZURE_RETRY_BACKOFF_FACTOR": "0.001",
        }
    )
    with pytest.raises(BackendUnavailableError, match="could not be reached"):
        store.check()
    store.close()


def test_read_timeout_applies(https_env: Callable[..., dict[str, str]], emulator: KeyVaultEmulator) -> None:
    # The test is about the read timeout, so it is short; the retries (kept) let the set-up calls ride out a
    # slow moment on a loaded machine. No timed assertion: with a latency far beyond the timeout, the read would
    # get its answer (not found) if the timeout did not apply; only the timeout turns it into unavailable.
    store = SecretsStore.from_env(
        https_env(MULTICLOUD_STORE_AZURE_READ_TIMEOUT="0.2", MULTICLOUD_STORE_AZURE_RETRY_TOTAL="3")
    )
    store.check()  # connect and authenticate first
    emulator.latency = 5.0
    with pytest.raises(BackendUnavailableError):
        store.get_secret_values(uuid.uuid4())
    store.close()


# -- proxies and the environment --------------------------------------------------------------------------


class _ConnectProxy:
    """A tiny HTTPS proxy on 127.0.0.1: answers CONNECT, records the target, then relays bytes both ways."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target = head.split(b" ", 2)[:2]
            if method != b"CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.targets.append(target.decode())
            host, port = target.decode().rsplit(":", 1)
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                relay = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
                relay.start()
                self._pipe(client, upstream)
                relay.join(timeout=60)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def connect_proxy() -> Iterator[_ConnectProxy]:
    proxy = _ConnectProxy()
    yield proxy
    proxy.close()


def _clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_https_proxy_from_the_environment_carries_the_calls(
    https_env: Callable[..., dict[str, str]], connect_proxy: _ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The transport ignores the environment per request (it is read once, when the client is built): the proxy
    # must still carry every call.
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    store = SecretsStore.from_env(https_env())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    assert store.get_secret_values(sid) == {"k": "v"}
    store.close()
    host = https_env()["MULTICLOUD_STORE_AZURE_VAULT_URL"].split("//", 1)[1]
    assert connect_proxy.targets and set(connect_proxy.targets) == {host}


def test_no_proxy_from_the_environment_bypasses_the_proxy(
    https_env: Callable[..., dict[str, str]], connect_proxy: _ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    store = SecretsStore.from_env(https_env())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    assert store.get_secret_values(sid) == {"k": "v"}
    store.close()
    assert connect_proxy.targets == []


def test_proxy_variables_are_read_once_when_the_client_is_built(
    https_env: Callable[..., dict[str, str]], connect_proxy: _ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As docs/backends/azure.md promises: not on every request (requests would scan the environment per call),
    # so a proxy named after the client was built does not apply to that store.
    _clear_proxy_env(monkeypatch)
    store = SecretsStore.from_env(https_env())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    monkeypatch.setenv("https_proxy", connect_proxy.url)
    store.update_secret_values(sid, {"k": "w"})
    assert store.get_secret_values(sid) == {"k": "w"}
    store.close()
    assert connect_proxy.targets == []


def test_requests_ca_bundle_from_the_environment_is_trusted(
    https_env: Callable[..., dict[str, str]], emulator: KeyVaultEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without MULTICLOUD_STORE_AZURE_CA_BUNDLE, requests' own variable still names the CA to trust.
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_cert_path)
    env = https_env()
    del env["MULTICLOUD_STORE_AZURE_CA_BUNDLE"]
    store = SecretsStore.from_env(env)
    with pytest.raises(SecretNotFoundError):
        store.get_secret_values(uuid.uuid4())
    store.close()


def test_environment_proxies_resolve_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", ".internal.example")
    assert environment_proxies("https://v.vault.azure.net") == {"https": "http://proxy.example:3128"}
    assert environment_proxies("https://v.internal.example") == {}


# -- TLS and tokens -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("trust", ["system store", "another CA"])
def test_untrusted_certificate_says_how_to_fix_it(
    https_env: Callable[..., dict[str, str]], tmp_path: Path, trust: str
) -> None:
    env = https_env()
    if trust == "another CA":
        # A CA file that exists, but whose CA did not sign this vault's certificate.
        other_ca = tmp_path / "other-ca.pem"
        with KeyVaultEmulator() as other:
            other_ca.write_bytes(Path(other.ca_cert_path).read_bytes())
        env["MULTICLOUD_STORE_AZURE_CA_BUNDLE"] = str(other_ca)
    else:
        del env["MULTICLOUD_STORE_AZURE_CA_BUNDLE"]
    store = SecretsStore.from_env(env)
    with pytest.raises(BackendUnavailableError) as info:
        store.get_secret_values(uuid.uuid4())
    assert TLS_HINT in str(info.value)
    store.close()


def test_wrong_token_is_a_permission_error(https_env: Callable[..., dict[str, str]]) -> None:
    store = SecretsStore.from_env(https_env(MULTICLOUD_STORE_AZURE_ACCESS_TOKEN=SENTINEL))
    with pytest.raises(BackendPermissionError, match="not authenticated") as info:
        store.get_secret_values(uuid.uuid4())
    assert isinstance(info.value.__cause__, ClientAuthenticationError)
    assert SENTINEL not in str(info.value)
    assert SENTINEL not in repr(store.driver)
    store.close()


# -- settings and credentials -------------------------------------------------------------------------------

_VAULT = {"MULTICLOUD_STORE_AZURE_VAULT_URL": "https://myvault.vault.azure.net"}
_SP = {"MULTICLOUD_STORE_AZURE_CLIENT_ID": "app-id", "MULTICLOUD_STORE_AZURE_TENANT_ID": "tenant-id"}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "MULTICLOUD_STORE_AZURE_VAULT_URL"),
        ({**_VAULT, "MULTICLOUD_STORE_AZURE_VAULT_NAME": "myvault"}, "MULTICLOUD_STORE_AZURE_VAULT_URL"),
        (
            {"MULTICLOUD_STORE_AZURE_VAULT_URL": "http://myvault.vault.azure.net"},
            "MULTICLOUD_STORE_AZURE_VAULT_URL",
        ),
        ({"MULTICLOUD_STORE_AZURE_VAULT_URL": "myvault"}, "MULTICLOUD_STORE_AZURE_VAULT_URL"),
        ({"MULTICLOUD_STORE_AZURE_VAULT_NAME": "my_vault"}, "MULTICLOUD_STORE_AZURE_VAULT_NAME"),
        ({**_VAULT, "MULTICLOUD_STORE_AZURE_CLIENT_SECRET": SENTINEL}, "MULTICLOUD_STORE_AZURE_CLIENT_ID"),
        (
            {
                **_VAULT,
                "MULTICLOUD_STORE_AZURE_CLIENT_SECRET": SENTINEL,
                "MULTICLOUD_STORE_AZURE_CLIENT_ID": "a",
            },
            "MULTICLOUD_STORE_AZURE_TENANT_ID",
        ),
        (
            {
                **_VAULT,
                **_SP,
                "MULTICLOUD_STORE_AZURE_CLIENT_SECRET": SENTINEL,
                "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN": "t",
            },
            "MULTICLOUD_STORE_AZURE_CLIENT_SECRET",
        ),
        (
            {
                **_VAULT,
                "MULTICLOUD_STORE_AZURE_CREDENTIAL": "managed_identity",
                "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN": SENTINEL,
            },
            "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN",
        ),
        (
            {**_VAULT, "MULTICLOUD_STORE_AZURE_CREDENTIAL": "access_token"},
            "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN",
        ),
        ({**_VAULT, "MULTICLOUD_STORE_AZURE_CREDENTIAL": "password"}, "MULTICLOUD_STORE_AZURE_CREDENTIAL"),
        (
            {**_VAULT, "MULTICLOUD_STORE_AZURE_CREDENTIAL": "workload_identity"},
            "MULTICLOUD_STORE_AZURE_TENANT_ID",
        ),
        (
            {**_VAULT, "MULTICLOUD_STORE_AZURE_CA_BUNDLE": "/nonexistent/ca.pem"},
            "MULTICLOUD_STORE_AZURE_CA_BUNDLE",
        ),
        ({**_VAULT, "MULTICLOUD_STORE_AZURE_RETRY_TOTAL": "-1"}, "MULTICLOUD_STORE_AZURE_RETRY_TOTAL"),
        ({**_VAULT, "MULTICLOUD_STORE_AZURE_READ_TIMEOUT": "0"}, "MULTICLOUD_STORE_AZURE_READ_TIMEOUT"),
        (
            {**_VAULT, "MULTICLOUD_STORE_AZURE_PURGE_ON_DELETE": "perhaps"},
            "MULTICLOUD_STORE_AZURE_PURGE_ON_DELETE",
        ),
    ],
)
def test_settings_errors_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError) as info:
        SecretsStore.from_env({"MULTICLOUD_STORE_BACKEND": "azure", **env})
    assert info.value.variable == variable
    assert variable in str(info.value)
    assert SENTINEL not in str(info.value)


def test_vault_name_gives_the_url() -> None:
    settings = AzureSettings.from_environ({"MULTICLOUD_STORE_AZURE_VAULT_NAME": "my-vault"})
    assert settings.resolved_vault_url() == "https://my-vault.vault.azure.net"
    sovereign = AzureSettings.from_environ(
        {
            "MULTICLOUD_STORE_AZURE_VAULT_NAME": "my-vault",
            "MULTICLOUD_STORE_AZURE_VAULT_DNS_SUFFIX": "vault.azure.cn",
        }
    )
    assert sovereign.resolved_vault_url() == "https://my-vault.vault.azure.cn"


def test_building_a_store_does_no_network_io() -> None:
    store = SecretsStore.from_env(
        {"MULTICLOUD_STORE_BACKEND": "azure", "MULTICLOUD_STORE_AZURE_VAULT_URL": "https://nowhere.invalid"}
    )
    driver = store.driver
    assert isinstance(driver, AzureDriver)
    assert driver._client is None  # created on the first call
    store.close()


def test_workload_identity_from_the_aks_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("federated-token")
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-id")
    monkeypatch.setenv("AZURE_CLIENT_ID", "client-id")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    settings = AzureSettings.from_environ(
        {**_VAULT, "MULTICLOUD_STORE_AZURE_CREDENTIAL": "workload-identity"}
    )
    assert type(build_credential(settings)).__name__ == "WorkloadIdentityCredential"


@pytest.mark.parametrize(
    ("env", "kind", "credential_class"),
    [
        ({}, "default", "DefaultAzureCredential"),
        ({"MULTICLOUD_STORE_AZURE_CLIENT_ID": "user-assigned"}, "default", "DefaultAzureCredential"),
        (
            {**_SP, "MULTICLOUD_STORE_AZURE_CLIENT_SECRET": SENTINEL},
            "client_secret",
            "ClientSecretCredential",
        ),
        (
            {"MULTICLOUD_STORE_AZURE_MANAGED_IDENTITY_CLIENT_ID": "mi"},
            "managed_identity",
            "ManagedIdentityCredential",
        ),
        (
            {"MULTICLOUD_STORE_AZURE_CREDENTIAL": "managed_identity"},
            "managed_identity",
            "ManagedIdentityCredential",
        ),
        ({"MULTICLOUD_STORE_AZURE_CREDENTIAL": "azure_cli"}, "azure_cli", "AzureCliCredential"),
        ({"MULTICLOUD_STORE_AZURE_ACCESS_TOKEN": SENTINEL}, "access_token", "_StaticTokenCredential"),
    ],
)
def test_credential_selection(env: dict[str, str], kind: str, credential_class: str) -> None:
    settings = AzureSettings.from_environ({**_VAULT, **env})
    assert settings.resolved_credential() == kind
    credential = build_credential(settings)
    assert type(credential).__name__ == credential_class
    assert SENTINEL not in repr(credential)
    close = getattr(credential, "close", None)
    if close is not None:
        close()


def test_credentials_never_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for env in (
        {**_SP, "MULTICLOUD_STORE_AZURE_CLIENT_SECRET": SENTINEL},
        {"MULTICLOUD_STORE_AZURE_ACCESS_TOKEN": SENTINEL},
    ):
        settings = AzureSettings.from_environ({**_VAULT, **env})
        driver = AzureDriver(settings)
        client = create_client(settings)
        texts = [repr(settings), str(settings), str(settings.redacted()), repr(driver), repr(client)]
        assert not [text for text in texts if SENTINEL in text]
        client.close()
        driver.close()
    assert SENTINEL not in caplog.text


def test_unavailable_credential_is_a_configuration_error() -> None:
    from azure.identity import CredentialUnavailableError

    error = translate(CredentialUnavailableError("no managed identity endpoint"), operation="read", name="x")
    assert isinstance(error, ConfigurationError)
    assert "MULTICLOUD_STORE_AZURE_CREDENTIAL" in str(error)
    chained = ClientAuthenticationError(
        message="DefaultAzureCredential failed to retrieve a token from the included credentials."
    )
    assert isinstance(translate(chained, operation="read"), ConfigurationError)
    assert isinstance(
        translate(ClientAuthenticationError("AADSTS7000215: bad secret"), operation="read"),
        BackendPermissionError,
    )


# -- listing ------------------------------------------------------------------------------------------------


def test_listing_ignores_secrets_that_are_not_ours(
    make_driver: Callable[..., AzureDriver], raw_client: SecretClient
) -> None:
    store = _store(make_driver(), deployment="mine")
    ours = {uuid.uuid4() for _ in range(3)}
    for sid in ours:
        store.store_secret_values(sid, {"i": str(sid)})
    raw_client.set_secret("hand-made", "x")
    raw_client.set_secret(
        f"multicloud-store-{uuid.uuid4()}",
        "x",
        tags={LABEL_MANAGED_BY: "multicloud-store", LABEL_DEPLOYMENT: "theirs"},
    )
    assert set(store.list_secret_ids()) == ours


def test_missing_secret_is_not_found(make_driver: Callable[..., AzureDriver]) -> None:
    store = _store(make_driver())
    with pytest.raises(SecretNotFoundError) as info:
        store.get_secret_values(uuid.uuid4())
    assert isinstance(info.value, KeyError)


# -- isolation ----------------------------------------------------------------------------------------------


def test_selecting_azure_loads_no_other_cloud_sdk(https_env: Callable[..., dict[str, str]]) -> None:
    code = """
import sys, uuid
from multicloud_store import SecretsStore
store = SecretsStore.from_env()
store.check()
sid = uuid.uuid4()
store.store_secret_values(sid, {"k": "v"})
assert store.get_secret_values(sid) == {"k": "v"}
store.delete_secret_values(sid)
store.close()
roots = {name.split(".")[0] for name in sys.modules}
print(",".join(sorted(roots & {"boto3", "botocore", "google", "grpc", "googleapiclient"})))
"""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MULTICLOUD_STORE_")}
    env.update(https_env())
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""

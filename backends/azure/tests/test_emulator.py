"""The Key Vault emulator, driven through the real azure-keyvault-secrets SecretClient.

Every behavioural test runs twice: against the HTTPS server (real sockets, TLS, the requests transport) and
against the in-process transport.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

pytest.importorskip("azure.keyvault.secrets")

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretClient

from multicloud_store_azure.testing import (
    DEFAULT_TOKEN,
    IN_PROCESS_VAULT_URL,
    MAX_VALUE_BYTES,
    KeyVaultEmulator,
    StaticTokenCredential,
)

VERSION_RE = re.compile(r"^[0-9a-f]{32}$")
# Small retry settings keep fault tests fast; the SDK defaults would sleep for seconds.
FAST_RETRY: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.01, "retry_backoff_max": 0.05}
POLL = {"_polling_interval": 0.02}


def _clear_challenge_cache() -> None:
    # The SDK caches challenges per vault host for the whole process; clear it so every test starts cold.
    from azure.keyvault.secrets._shared import http_challenge_cache

    http_challenge_cache.clear()


class Vault:
    """One emulator plus a way to build SecretClients that reach it in the chosen mode."""

    def __init__(self, emu: KeyVaultEmulator, mode: str) -> None:
        self.emu = emu
        self.mode = mode
        self.credential = StaticTokenCredential()
        self._clients: list[SecretClient] = []

    @property
    def url(self) -> str:
        return self.emu.vault_url if self.mode == "https" else IN_PROCESS_VAULT_URL

    @property
    def scope(self) -> str:
        return self.emu.token_scope if self.mode == "https" else "https://emulator.test/.default"

    def client(self, credential: StaticTokenCredential | None = None, **kwargs: Any) -> SecretClient:
        options = {**FAST_RETRY, **kwargs}
        cred = credential or self.credential
        if self.mode == "https":
            options.setdefault("connection_verify", self.emu.ca_cert_path)
            client = SecretClient(self.url, cred, **options)
        else:
            client = SecretClient(self.url, cred, transport=self.emu.transport(), **options)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture(scope="module")
def https_emulator() -> Iterator[KeyVaultEmulator]:
    with KeyVaultEmulator() as emu:
        yield emu


@pytest.fixture(params=["https", "in-process"])
def vault(request: pytest.FixtureRequest) -> Iterator[Vault]:
    _clear_challenge_cache()
    if request.param == "https":
        emu = request.getfixturevalue("https_emulator")
        emu.reset()
    else:
        emu = KeyVaultEmulator()
    v = Vault(emu, request.param)
    yield v
    v.close()
    emu.reset()


@pytest.fixture
def client(vault: Vault) -> SecretClient:
    return vault.client()


def _inner_code(exc: HttpResponseError) -> str | None:
    assert exc.error is not None
    inner = exc.error.innererror or {}
    code = inner.get("code")
    return str(code) if code is not None else None


# ---- basic CRUD --------------------------------------------------------------------------------------------


def test_set_and_get_round_trip(vault: Vault, client: SecretClient) -> None:
    secret = client.set_secret("db-password", "hunter2", tags={"owner": "me"}, content_type="text/plain")

    assert secret.value == "hunter2"
    assert secret.name == "db-password"
    assert secret.properties.version is not None
    assert VERSION_RE.match(secret.properties.version)
    assert secret.id == f"{vault.url}/secrets/db-password/{secret.properties.version}"
    assert secret.properties.vault_url == vault.url
    assert secret.properties.tags == {"owner": "me"}
    assert secret.properties.content_type == "text/plain"
    assert secret.properties.enabled is True
    assert secret.properties.recovery_level == "Recoverable+Purgeable"
    assert secret.properties.recoverable_days == 90
    created = secret.properties.created_on
    assert created is not None
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 5
    assert secret.properties.updated_on == created

    fetched = client.get_secret("db-password")
    assert fetched.value == "hunter2"
    assert fetched.id == secret.id
    assert fetched.properties.tags == {"owner": "me"}
    assert vault.emu.secret_names() == ["db-password"]


def test_names_are_case_insensitive(client: SecretClient) -> None:
    client.set_secret("MixedCase", "one")
    assert client.get_secret("mixedcase").value == "one"
    client.set_secret("MIXEDCASE", "two")
    assert client.get_secret("MixedCase").value == "two"
    assert len(list(client.list_properties_of_secret_versions("mixedcase"))) == 2


def test_versions(vault: Vault, client: SecretClient) -> None:
    first = client.set_secret("rotating", "v1")
    second = client.set_secret("rotating", "v2")
    third = client.set_secret("rotating", "v3")
    versions = [s.properties.version for s in (first, second, third)]
    assert len(set(versions)) == 3

    assert client.get_secret("rotating").value == "v3"
    assert client.get_secret("rotating", first.properties.version).value == "v1"
    assert client.get_secret("rotating", second.properties.version).value == "v2"

    listed = list(client.list_properties_of_secret_versions("rotating", max_page_size=2))
    # Paged in version id order, as the real service does, not in creation order.
    assert [p.version for p in listed] == sorted(versions)
    assert all(p.id == f"{vault.url}/secrets/rotating/{p.version}" for p in listed)
    assert Counter(vault.emu.calls)["GET /secrets/{name}/versions"] == 2

    with pytest.raises(ResourceNotFoundError):
        client.get_secret("rotating", "0" * 32)
    with pytest.raises(ResourceNotFoundError):
        list(client.list_properties_of_secret_versions("no-such-secret"))


def test_update_properties(client: SecretClient) -> None:
    old = client.set_secret("config", "a", tags={"k": "v"})
    new = client.set_secret("config", "b")
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)

    updated = client.update_secret_properties(
        "config", content_type="application/json", tags={"k2": "v2"}, expires_on=expires
    )
    assert updated.version == new.properties.version
    assert updated.content_type == "application/json"
    assert updated.tags == {"k2": "v2"}
    assert updated.expires_on == expires
    assert updated.enabled is True

    # Only the named version changes.
    client.update_secret_properties("config", old.properties.version, enabled=False)
    assert client.get_secret("config").value == "b"
    with pytest.raises(HttpResponseError) as info:
        client.get_secret("config", old.properties.version)
    assert info.value.status_code == 403

    # Omitted fields are left alone.
    again = client.update_secret_properties("config", enabled=True)
    assert again.tags == {"k2": "v2"}
    assert again.content_type == "application/json"

    with pytest.raises(ResourceNotFoundError):
        client.update_secret_properties("missing", enabled=False)


def test_list_paging(vault: Vault, client: SecretClient) -> None:
    names = [f"secret-{i:02d}" for i in range(30)]
    for name in names:
        client.set_secret(name, "x", tags={"n": name})
    client.begin_delete_secret("secret-00", **POLL).wait()

    before = Counter(vault.emu.calls)["GET /secrets"]
    pages = [list(page) for page in client.list_properties_of_secrets(max_page_size=10).by_page()]
    assert [len(p) for p in pages] == [10, 10, 9]
    listed = [str(p.name) for page in pages for p in page]
    assert sorted(listed) == names[1:]
    assert Counter(vault.emu.calls)["GET /secrets"] - before == 3
    item = pages[0][0]
    assert item.id == f"{vault.url}/secrets/{item.name}"
    assert item.version is None
    assert item.tags == {"n": item.name}
    assert not hasattr(item, "value")  # listing never carries values

    # Default page size is the service's 25.
    default_pages = [list(p) for p in client.list_properties_of_secrets().by_page()]
    assert [len(p) for p in default_pages] == [25, 4]


def test_bad_page_size_is_rejected(client: SecretClient) -> None:
    with pytest.raises(HttpResponseError) as info:
        list(client.list_properties_of_secrets(max_page_size=26))
    assert info.value.status_code == 400


# ---- soft delete, purge, recover ---------------------------------------------------------------------------


def test_soft_delete_then_purge(vault: Vault, client: SecretClient) -> None:
    client.set_secret("doomed", "bye", tags={"t": "1"})

    poller = client.begin_delete_secret("doomed", **POLL)
    poller.wait()
    deleted = poller.result()
    assert deleted.name == "doomed"
    assert deleted.recovery_id == f"{vault.url}/deletedsecrets/doomed"
    assert deleted.deleted_date is not None
    assert deleted.scheduled_purge_date is not None
    assert deleted.scheduled_purge_date - deleted.deleted_date == timedelta(days=90)
    assert deleted.properties.tags == {"t": "1"}

    with pytest.raises(ResourceNotFoundError):
        client.get_secret("doomed")
    with pytest.raises(ResourceNotFoundError):
        client.begin_delete_secret("doomed")
    assert vault.emu.secret_names() == []
    assert vault.emu.deleted_names() == ["doomed"]

    got = client.get_deleted_secret("doomed")
    assert got.recovery_id == deleted.recovery_id
    assert [d.name for d in client.list_deleted_secrets()] == ["doomed"]

    client.purge_deleted_secret("doomed")
    assert vault.emu.deleted_names() == []
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret("doomed")
    with pytest.raises(ResourceNotFoundError):
        client.purge_deleted_secret("doomed")

    # The name is free again at once.
    assert client.set_secret("doomed", "again").value == "again"


def test_delete_delay_exercises_the_poller(vault: Vault, client: SecretClient) -> None:
    vault.emu.delete_delay = 0.15
    client.set_secret("slow", "x")
    before = Counter(vault.emu.calls)["GET /deletedsecrets/{name}"]

    poller = client.begin_delete_secret("slow", **POLL)
    # While the deletion is in progress the name cannot be reused, purged or fetched as deleted.
    with pytest.raises(ResourceExistsError) as info:
        client.set_secret("slow", "y")
    assert _inner_code(info.value) == "ObjectIsBeingDeleted"
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret("slow")
    poller.wait()

    assert poller.done()
    polls = Counter(vault.emu.calls)["GET /deletedsecrets/{name}"] - before
    assert polls >= 3  # the direct call above, at least one 404 poll, and the final 200
    assert client.get_deleted_secret("slow").name == "slow"


def test_recover_restores_all_versions(vault: Vault, client: SecretClient) -> None:
    v1 = client.set_secret("phoenix", "one")
    v2 = client.set_secret("phoenix", "two")
    client.begin_delete_secret("phoenix", **POLL).wait()

    poller = client.begin_recover_deleted_secret("phoenix", **POLL)
    poller.wait()
    recovered = poller.result()
    assert recovered.name == "phoenix"
    assert recovered.version == v2.properties.version

    assert client.get_secret("phoenix").value == "two"
    assert client.get_secret("phoenix", v1.properties.version).value == "one"
    assert len(list(client.list_properties_of_secret_versions("phoenix"))) == 2
    assert vault.emu.deleted_names() == []
    with pytest.raises(ResourceNotFoundError):
        client.begin_recover_deleted_secret("phoenix")


def test_recover_with_delay_polls_until_ready(vault: Vault, client: SecretClient) -> None:
    vault.emu.delete_delay = 0.1
    client.set_secret("late", "x")
    client.begin_delete_secret("late", **POLL).wait()
    poller = client.begin_recover_deleted_secret("late", **POLL)
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("late")
    poller.wait()
    assert client.get_secret("late").value == "x"


def test_set_on_soft_deleted_name_conflicts(client: SecretClient) -> None:
    client.set_secret("ghost", "boo")
    client.begin_delete_secret("ghost", **POLL).wait()

    with pytest.raises(ResourceExistsError) as info:
        client.set_secret("ghost", "again")
    assert info.value.status_code == 409
    assert info.value.error is not None
    assert info.value.error.code == "Conflict"
    assert _inner_code(info.value) == "ObjectIsDeletedButRecoverable"


def test_purge_protection_forbids_purge(vault: Vault, client: SecretClient) -> None:
    vault.emu.purge_protection = True
    secret = client.set_secret("kept", "x")
    assert secret.properties.recovery_level == "Recoverable"
    client.begin_delete_secret("kept", **POLL).wait()

    with pytest.raises(HttpResponseError) as info:
        client.purge_deleted_secret("kept")
    assert info.value.status_code == 403
    assert info.value.error is not None
    assert info.value.error.code == "Forbidden"
    assert "purge protection" in str(info.value)
    assert vault.emu.deleted_names() == ["kept"]


def test_deny_purge_is_a_permission_error(vault: Vault, client: SecretClient) -> None:
    vault.emu.deny_purge = True
    client.set_secret("locked", "x")
    client.begin_delete_secret("locked", **POLL).wait()

    with pytest.raises(HttpResponseError) as info:
        client.purge_deleted_secret("locked")
    assert info.value.status_code == 403
    assert not isinstance(info.value, ResourceNotFoundError)
    assert "purge permission" in str(info.value)


# ---- service semantics -------------------------------------------------------------------------------------


def test_missing_secret_is_404(client: SecretClient) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        client.get_secret("nope")
    assert info.value.status_code == 404
    assert info.value.error is not None
    assert info.value.error.code == "SecretNotFound"


def test_disabled_secret_is_403(vault: Vault, client: SecretClient) -> None:
    client.set_secret("off", "x")
    vault.emu.disable("off")

    with pytest.raises(HttpResponseError) as info:
        client.get_secret("off")
    assert info.value.status_code == 403
    assert not isinstance(info.value, ResourceNotFoundError)
    assert info.value.error is not None
    assert info.value.error.code == "Forbidden"
    assert info.value.error.message == "Operation get is not allowed on a disabled secret."
    assert _inner_code(info.value) == "SecretDisabled"

    # Properties stay listable and updatable.
    (props,) = list(client.list_properties_of_secrets())
    assert props.enabled is False
    client.update_secret_properties("off", enabled=True)
    assert client.get_secret("off").value == "x"


def test_disabled_at_creation(client: SecretClient) -> None:
    client.set_secret("born-off", "x", enabled=False)
    with pytest.raises(HttpResponseError) as info:
        client.get_secret("born-off")
    assert info.value.status_code == 403


def test_expired_secret_is_served_unless_expiry_is_enforced(vault: Vault, client: SecretClient) -> None:
    client.set_secret("stale", "x")
    vault.emu.expire("stale")
    assert client.get_secret("stale").value == "x"  # the real service's documented behaviour
    vault.emu.enforce_expiry = True
    with pytest.raises(HttpResponseError) as info:
        client.get_secret("stale")
    assert info.value.status_code == 403
    assert _inner_code(info.value) == "SecretExpired"

    past = datetime.now(timezone.utc) - timedelta(hours=1)
    client.set_secret("born-stale", "x", expires_on=past)
    with pytest.raises(HttpResponseError):
        client.get_secret("born-stale")

    vault.emu.enforce_expiry = False
    assert client.get_secret("stale").value == "x"


def test_invalid_name_is_400(client: SecretClient) -> None:
    with pytest.raises(HttpResponseError) as info:
        client.set_secret("not_valid", "x")
    assert info.value.status_code == 400
    assert info.value.error is not None
    assert info.value.error.code == "BadParameter"
    with pytest.raises(HttpResponseError) as info:
        client.set_secret("a" * 128, "x")
    assert info.value.status_code == 400
    assert client.set_secret("a" * 127, "x").value == "x"


def test_value_size_limit(vault: Vault, client: SecretClient) -> None:
    assert client.set_secret("big", "x" * MAX_VALUE_BYTES).value == "x" * MAX_VALUE_BYTES
    with pytest.raises(HttpResponseError) as info:
        client.set_secret("bigger", "x" * (MAX_VALUE_BYTES + 1))
    assert info.value.status_code == 400
    # The limit counts bytes, not characters.
    with pytest.raises(HttpResponseError):
        client.set_secret("wide", "é" * (MAX_VALUE_BYTES // 2 + 1))
    assert vault.emu.secret_names() == ["big"]


def test_unicode_value_round_trips(client: SecretClient) -> None:
    value = '{"pässwörd": "秘密", "emoji": "🔑"}'
    client.set_secret("unicode", value)
    assert client.get_secret("unicode").value == value


# ---- authentication ----------------------------------------------------------------------------------------


def test_bearer_challenge_flow(vault: Vault, client: SecretClient) -> None:
    client.set_secret("first", "x")
    # The first request goes out without a token or body, draws the 401 challenge, then is resent with both.
    assert vault.emu.calls == ["PUT /secrets/{name}", "PUT /secrets/{name}"]
    assert vault.emu.challenges == 1
    assert vault.credential.requested_scopes == [vault.scope]

    client.get_secret("first")
    assert vault.emu.calls[2:] == ["GET /secrets/{name}"]
    assert vault.emu.challenges == 1
    assert vault.credential.requested_scopes == [vault.scope]


def test_wrong_token_is_rejected(vault: Vault) -> None:
    client = vault.client(StaticTokenCredential("not-the-token"))
    with pytest.raises(ClientAuthenticationError) as info:
        client.set_secret("x", "y")
    assert info.value.status_code == 401
    assert vault.emu.secret_names() == []


def test_any_token_accepted_when_token_is_none(vault: Vault) -> None:
    vault.emu.token = None
    client = vault.client(StaticTokenCredential("whatever"))
    assert client.set_secret("x", "y").value == "y"


def test_static_credential_hides_its_token() -> None:
    cred = StaticTokenCredential("s3cr3t")
    assert "s3cr3t" not in repr(cred)
    assert cred.get_token("scope/.default").token == "s3cr3t"
    info = cred.get_token_info("other/.default", options={"enable_cae": True})
    assert info.token == "s3cr3t"
    assert info.expires_on > time.time() + 600
    assert cred.requested_scopes == ["scope/.default", "other/.default"]
    with pytest.raises(ValueError):
        StaticTokenCredential("")


# ---- faults ------------------------------------------------------------------------------------------------


def test_throttling_is_retried_after_retry_after(vault: Vault, client: SecretClient) -> None:
    vault.emu.inject_fault(429, times=2, retry_after=0.1)
    start = time.monotonic()
    assert client.set_secret("busy", "x").value == "x"
    elapsed = time.monotonic() - start

    assert elapsed >= 0.18  # two Retry-After waits
    # Two throttled attempts, then the challenge round trip and the authorised request.
    assert vault.emu.calls == ["PUT /secrets/{name}"] * 4
    assert vault.emu.secret_names() == ["busy"]


def test_server_errors_exhaust_retries(vault: Vault) -> None:
    client = vault.client(retry_total=2)
    client.set_secret("flaky", "x")
    before = len(vault.emu.calls)
    vault.emu.inject_fault(503, times=3, methods=["GET"])

    with pytest.raises(HttpResponseError) as info:
        client.get_secret("flaky")
    assert info.value.status_code == 503
    assert info.value.error is not None
    assert info.value.error.code == "ServiceUnavailable"
    assert len(vault.emu.calls) - before == 3  # one try and two retries

    assert client.get_secret("flaky").value == "x"  # faults used up


def test_fault_filters_by_method(vault: Vault, client: SecretClient) -> None:
    client.set_secret("f", "x")
    vault.emu.inject_fault(500, methods=["PUT"])
    assert client.get_secret("f").value == "x"
    client2 = vault.client(retry_total=0)
    with pytest.raises(HttpResponseError) as info:
        client2.set_secret("f", "y")
    assert info.value.status_code == 500
    assert client2.set_secret("f", "y").value == "y"


def test_injected_forbidden(vault: Vault, client: SecretClient) -> None:
    client.set_secret("f", "x")
    vault.emu.inject_fault(403)
    with pytest.raises(HttpResponseError) as info:
        client.get_secret("f")
    assert info.value.status_code == 403
    assert info.value.error is not None
    assert info.value.error.code == "Forbidden"


def test_inject_fault_validates() -> None:
    emu = KeyVaultEmulator()
    with pytest.raises(ValueError):
        emu.inject_fault(200)
    with pytest.raises(ValueError):
        emu.inject_fault(500, times=0)


def test_latency(vault: Vault, client: SecretClient) -> None:
    client.set_secret("lag", "x")
    vault.emu.latency = 0.1
    start = time.monotonic()
    client.get_secret("lag")
    assert time.monotonic() - start >= 0.1


def test_reset_forgets_everything(vault: Vault, client: SecretClient) -> None:
    client.set_secret("a", "x")
    client.set_secret("b", "x")
    client.begin_delete_secret("b", **POLL).wait()
    vault.emu.inject_fault(500)
    vault.emu.purge_protection = True
    vault.emu.latency = 0.5

    vault.emu.reset()
    assert vault.emu.secret_names() == []
    assert vault.emu.deleted_names() == []
    assert vault.emu.calls == []
    assert vault.emu.latency == 0
    assert vault.emu.purge_protection is False
    assert client.set_secret("b", "fresh").value == "fresh"


def test_concurrent_writers(vault: Vault, client: SecretClient) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(5):
                client.set_secret("shared", f"{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    client.set_secret("shared", "seed")
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list(client.list_properties_of_secret_versions("shared"))) == 31


# ---- HTTPS specifics ---------------------------------------------------------------------------------------


def test_lose_answers_commits_then_drops_the_answer(vault: Vault) -> None:
    client = vault.client(retry_total=0)
    vault.emu.lose_answers("PUT /secrets/{name}", times=1)
    with pytest.raises(ServiceResponseError):
        client.set_secret("lost", "v1")
    assert client.get_secret("lost").value == "v1"  # committed all the same
    # Only the chosen route: reads answer normally, and the knob is used up.
    client.set_secret("lost", "v2")
    assert client.get_secret("lost").value == "v2"
    with pytest.raises(ValueError):
        vault.emu.lose_answers(times=0)


def test_lost_answers_are_retried_by_the_sdk_and_each_retry_commits(vault: Vault) -> None:
    client = vault.client()  # 3 retries
    vault.emu.lose_answers("PUT /secrets/{name}", times=2)
    client.set_secret("retried", "v")
    assert len(list(client.list_properties_of_secret_versions("retried"))) == 3


def test_interleave_makes_writers_meet(vault: Vault) -> None:
    clients = [vault.client(), vault.client()]
    with pytest.raises(ResourceNotFoundError):  # the authentication challenge, out of the way
        clients[0].get_secret("met")
    vault.emu.interleave("PUT /secrets/{name}", parties=2, reverse=True)
    puts_before = vault.emu.calls.count("PUT /secrets/{name}")

    def write(n: int) -> None:
        clients[n].set_secret("met", f"writer-{n}")

    first = threading.Thread(target=write, args=(0,))
    first.start()
    # Writer 0 is held at the gate (its request was received, not served) until writer 1 arrives.
    assert _await(lambda: vault.emu.calls.count("PUT /secrets/{name}") > puts_before, timeout=60)
    assert first.is_alive()
    second = threading.Thread(target=write, args=(1,))
    second.start()
    for thread in (first, second):
        thread.join(timeout=120)
    # Served last-arrived first: writer 1, then writer 0, whose version is the current one.
    assert clients[0].get_secret("met").value == "writer-0"
    # Later writes of that name pass freely.
    clients[0].set_secret("met", "later")
    assert clients[0].get_secret("met").value == "later"
    with pytest.raises(ValueError):
        vault.emu.interleave(parties=1)


def test_interleave_serves_whoever_came_when_a_party_never_does(vault: Vault) -> None:
    # The test is about that timeout: the gate must give up waiting for a party that never comes. Short, so
    # the test does not idle; the outcome (served alone) does not depend on how fast the machine is.
    vault.emu.interleave("PUT /secrets/{name}", parties=2, timeout=0.2)
    client = vault.client()
    client.set_secret("alone", "v")
    assert client.get_secret("alone").value == "v"


def test_responses_carry_the_service_clock(vault: Vault, client: SecretClient) -> None:
    dates: list[str] = []
    client.set_secret("clock", "v", raw_response_hook=lambda r: dates.append(r.http_response.headers["Date"]))
    assert dates and dates[-1].endswith("GMT")


def _https_client(emu: KeyVaultEmulator, **kwargs: Any) -> SecretClient:
    return SecretClient(emu.vault_url, StaticTokenCredential(), retry_total=0, **kwargs)


@pytest.mark.parametrize("verify", ["system-trust", "other-ca"])
def test_wrong_ca_fails_certificate_verification(https_emulator: KeyVaultEmulator, verify: str) -> None:
    _clear_challenge_cache()
    with KeyVaultEmulator() as other:
        option: Any = True if verify == "system-trust" else other.ca_cert_path
        with _https_client(https_emulator, connection_verify=option) as client:
            with pytest.raises(ServiceRequestError) as info:
                client.get_secret("anything")
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate verify failed" in str(info.value)


def test_latency_beyond_read_timeout_is_a_service_response_error(https_emulator: KeyVaultEmulator) -> None:
    _clear_challenge_cache()
    https_emulator.reset()
    # Set up (and pass the authentication challenge) with a generous read timeout: only the call under test
    # may time out.
    with _https_client(
        https_emulator, connection_verify=https_emulator.ca_cert_path, read_timeout=120
    ) as client:
        client.set_secret("slow", "x")
    # The test is about the read timeout: a short one, and a latency far beyond it, so the call times out on
    # any machine, however slow.
    with _https_client(
        https_emulator, connection_verify=https_emulator.ca_cert_path, read_timeout=0.2
    ) as client:
        https_emulator.latency = 3.0
        try:
            with pytest.raises(ServiceResponseError):
                client.get_secret("slow")
        finally:
            https_emulator.reset()


def test_wire_protocol_keep_alive_and_challenge(https_emulator: KeyVaultEmulator) -> None:
    https_emulator.reset()
    context = ssl.create_default_context(cafile=https_emulator.ca_cert_path)
    host, port = https_emulator.vault_url.removeprefix("https://").rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=120)
    try:
        conn.request("GET", "/secrets?api-version=7.6")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 401
        assert resp.getheader("Content-Length") == str(len(body))
        challenge = resp.getheader("WWW-Authenticate") or ""
        assert challenge.startswith('Bearer authorization="https://login.microsoftonline.com/')
        assert f'resource="https://0.0.1:{port}"' in challenge

        # Same connection, now authorised: keep-alive works.
        conn.request("GET", "/secrets?api-version=7.6", headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200
        assert resp.getheader("Content-Length") == str(len(body))
        assert resp.getheader("Content-Type", "").startswith("application/json")

        conn.request("GET", "/secrets", headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 400  # no api-version
    finally:
        conn.close()


def test_plain_http_client_does_not_break_the_server(https_emulator: KeyVaultEmulator) -> None:
    host, port = https_emulator.vault_url.removeprefix("https://").rsplit(":", 1)

    def plain_http_get() -> bytes:
        # Generous: the server closes the connection on the failed handshake; a timeout would pass too (OSError).
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            conn.request("GET", "/secrets?api-version=7.6")
            return conn.getresponse().read()
        finally:
            conn.close()

    with pytest.raises((OSError, http.client.HTTPException)):
        plain_http_get()
    _clear_challenge_cache()
    with _https_client(https_emulator, connection_verify=https_emulator.ca_cert_path) as client:
        assert list(client.list_properties_of_secrets()) == []


def test_lifecycle() -> None:
    emu = KeyVaultEmulator()
    with pytest.raises(RuntimeError):
        _ = emu.vault_url
    with emu:
        ca_path = emu.ca_cert_path
        assert os.path.exists(ca_path)
        assert re.match(r"^https://127\.0\.0\.1:\d+$", emu.vault_url)
        with pytest.raises(RuntimeError):
            emu.start()
    assert not os.path.exists(ca_path)
    emu.stop()  # idempotent


def test_in_process_transport_needs_no_server() -> None:
    _clear_challenge_cache()
    emu = KeyVaultEmulator()
    with SecretClient(IN_PROCESS_VAULT_URL, StaticTokenCredential(), transport=emu.transport()) as client:
        client.set_secret("x", "y")
        assert client.get_secret("x").value == "y"
    assert emu.secret_names() == ["x"]


def test_command_line_serves_in_the_foreground() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with subprocess.Popen(
        [sys.executable, "-m", "multicloud_store_azure.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            url_line = proc.stdout.readline()
            ca_line = proc.stdout.readline()
            assert url_line.startswith("vault URL:"), url_line + (proc.stderr.read() if proc.stderr else "")
            url = url_line.split(":", 1)[1].strip()
            ca_path = ca_line.split(":", 1)[1].strip()
            _clear_challenge_cache()
            with SecretClient(
                url, StaticTokenCredential(), connection_verify=ca_path, retry_total=0
            ) as client:
                client.set_secret("cli", "works")
                assert client.get_secret("cli").value == "works"
            proc.terminate()
            assert proc.wait(timeout=120) == 0
            assert not os.path.exists(ca_path)  # SIGTERM still cleans up the key and certificates
        finally:
            if proc.poll() is None:
                proc.kill()


def _await(predicate: Callable[[], bool], timeout: float = 120.0) -> bool:
    """Poll ``predicate`` until it holds or a generous deadline passes (a loaded machine is slow, not broken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_stop_closes_keep_alive_connections() -> None:
    _clear_challenge_cache()
    before = threading.active_count()
    emu = KeyVaultEmulator().start()
    client = SecretClient(emu.vault_url, StaticTokenCredential(), connection_verify=emu.ca_cert_path)
    client.set_secret("x", "y")  # leaves a pooled keep-alive connection and its handler thread
    emu.stop()
    client.close()
    assert _await(lambda: threading.active_count() <= before)

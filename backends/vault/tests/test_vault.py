"""Vault-specific behaviour, against the real OpenBao server: settings, KV v2 layout, check-and-set, listing,
retries, token renewal and re-login, TLS with a CA bundle, and Kubernetes auth against a TokenReview stand-in."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.adapters
from hvac import exceptions as hvac_exceptions
from vault_helpers import FAST, FAST_ENV, new_policy

from multicloud_store.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    SecretExistsError,
    SecretNotFoundError,
)
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store_vault import VaultDriver, VaultSettings
from multicloud_store_vault import driver as driver_module
from multicloud_store_vault.errors import ERROR_TABLE, translate
from multicloud_store_vault.testing import (
    STORE_POLICY,
    OpenBaoServer,
    TokenReviewStandIn,
    free_port_pair,
    service_account_jwt,
)

StoreMaker = Callable[..., SecretsStore]
LABELS = {"mcs_managed_by": "multicloud-store", "mcs_deployment": "tests", "mcs_secret_id": "x"}


def _name() -> str:
    return f"multicloud-store-{uuid.uuid4()}"


class RequestCounter:
    """Counts the HTTP requests a driver's session sends (a response hook sees each final answer)."""

    def __init__(self, driver: VaultDriver) -> None:
        self.requests: list[tuple[str, str]] = []
        driver.client.adapter.session.hooks["response"].append(self._hook)

    def _hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.requests.append((str(response.request.method), str(response.request.url)))


# -- settings -------------------------------------------------------------------------------------------------


def test_settings_fall_back_to_vaults_own_variables(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-")
    settings = VaultSettings.from_environ(
        {"VAULT_ADDR": "https://vault.example:8200/", "VAULT_TOKEN": " t0ken \n", "VAULT_NAMESPACE": "team-a"}
        | {"VAULT_CACERT": str(ca)}
    )
    assert settings.url == "https://vault.example:8200"
    assert settings.token is not None and settings.token.get_secret_value() == "t0ken"
    assert settings.namespace == "team-a"
    assert settings.ca_bundle == ca
    ours = VaultSettings.from_environ(
        {
            "VAULT_ADDR": "https://theirs:8200",
            "MULTICLOUD_STORE_VAULT_URL": "https://ours:8200",
            "VAULT_TOKEN": "theirs",
            "MULTICLOUD_STORE_VAULT_TOKEN": "ours",
        }
    )
    assert ours.url == "https://ours:8200"
    assert ours.token is not None and ours.token.get_secret_value() == "ours"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"VAULT_TOKEN": "t"}, "MULTICLOUD_STORE_VAULT_URL"),
        ({"VAULT_ADDR": "http://x:1"}, "MULTICLOUD_STORE_VAULT_TOKEN"),
        (
            {"VAULT_ADDR": "http://x:1", "MULTICLOUD_STORE_VAULT_AUTH_METHOD": "approle"},
            "MULTICLOUD_STORE_VAULT_ROLE_ID",
        ),
        (
            {"VAULT_ADDR": "http://x:1", "MULTICLOUD_STORE_VAULT_AUTH_METHOD": "kubernetes"},
            "MULTICLOUD_STORE_VAULT_KUBERNETES_ROLE",
        ),
        (
            {
                "VAULT_ADDR": "http://x:1",
                "MULTICLOUD_STORE_VAULT_AUTH_METHOD": "kubernetes",
                "MULTICLOUD_STORE_VAULT_KUBERNETES_ROLE": "r",
                "MULTICLOUD_STORE_VAULT_KUBERNETES_TOKEN_FILE": "/no/such/token",
            },
            "MULTICLOUD_STORE_VAULT_KUBERNETES_TOKEN_FILE",
        ),
        ({"VAULT_ADDR": "ftp://x", "VAULT_TOKEN": "t"}, "MULTICLOUD_STORE_VAULT_URL"),
        (
            {"VAULT_ADDR": "http://x:1", "VAULT_TOKEN": "t", "MULTICLOUD_STORE_VAULT_MOUNT": "a b"},
            "MULTICLOUD_STORE_VAULT_MOUNT",
        ),
        (
            {"VAULT_ADDR": "http://x:1", "VAULT_TOKEN": "t", "VAULT_CACERT": "/no/such/ca.pem"},
            "MULTICLOUD_STORE_VAULT_CA_BUNDLE",
        ),
        (
            {
                "VAULT_ADDR": "http://x:1",
                "MULTICLOUD_STORE_VAULT_AUTH_METHOD": "approle",
                "MULTICLOUD_STORE_VAULT_ROLE_ID": "r",
                "MULTICLOUD_STORE_VAULT_SECRET_ID": "s",
                "MULTICLOUD_STORE_VAULT_SECRET_ID_FILE": "/etc/hostname",
            },
            "MULTICLOUD_STORE_VAULT_SECRET_ID",
        ),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        VaultSettings.from_environ(environ)
    assert info.value.variable == variable
    assert variable in str(info.value)


@pytest.mark.parametrize(
    "variable", ["MULTICLOUD_STORE_VAULT_TOKEN", "VAULT_TOKEN", "MULTICLOUD_STORE_VAULT_SECRET_ID"]
)
def test_credentials_with_control_characters_are_refused_without_echo(variable: str) -> None:
    environ = {
        "VAULT_ADDR": "http://x:1",
        "MULTICLOUD_STORE_VAULT_AUTH_METHOD": "approle" if "SECRET_ID" in variable else "token",
        "MULTICLOUD_STORE_VAULT_ROLE_ID": "r",
        variable: "s3cr3t-VALUE\x1bpart",
    }
    with pytest.raises(ConfigurationError) as info:
        VaultSettings.from_environ(environ)
    assert "s3cr3t-VALUE" not in str(info.value)
    assert "control characters" in str(info.value)


def test_url_with_a_password_is_refused_without_echo() -> None:
    with pytest.raises(ConfigurationError) as info:
        VaultSettings.from_environ({"VAULT_ADDR": "https://user:hunter2@vault:8200", "VAULT_TOKEN": "t"})
    assert "hunter2" not in str(info.value)


def test_credentials_are_hidden_in_repr_and_redacted_view() -> None:
    settings = VaultSettings(url="http://x:1", token="tok-SECRET-1")
    driver = VaultDriver(settings)
    texts = [repr(settings), str(settings.redacted()), repr(driver)]
    assert not [text for text in texts if "tok-SECRET-1" in text]


def test_error_table_maps_each_status() -> None:
    expected = {
        403: BackendPermissionError,
        404: SecretNotFoundError,
        429: BackendUnavailableError,
        500: BackendUnavailableError,
        502: BackendUnavailableError,
        503: BackendUnavailableError,
    }
    for status, error in expected.items():
        assert ERROR_TABLE[status].error is error
        exc = hvac_exceptions.VaultError.from_status(status, errors=["boom"], method="get", url="u")
        assert isinstance(translate(exc, action="read", name="n"), error)
    mismatch = hvac_exceptions.InvalidRequest(
        errors=["check-and-set parameter did not match the current version"]
    )
    assert isinstance(translate(mismatch, action="create", name="n"), SecretExistsError)


# -- the KV v2 layout ------------------------------------------------------------------------------------------


@pytest.fixture
def driver(vault_settings: Callable[..., VaultSettings]) -> Iterator[VaultDriver]:
    """A root-token driver on the session's server."""
    driver = VaultDriver(vault_settings())
    yield driver
    driver.close()


def test_create_is_exclusive_and_idempotent_for_its_own_payload(driver: VaultDriver) -> None:
    name = _name()
    driver.create(name, "payload-1", LABELS)
    # The same payload and labels again: a retry whose first answer was lost; it succeeds.
    driver.create(name, "payload-1", LABELS)
    with pytest.raises(SecretExistsError):
        driver.create(name, "payload-2", LABELS)
    assert driver.read(name).payload == "payload-1"


def test_read_is_one_request_returning_payload_and_labels(driver: VaultDriver) -> None:
    name = _name()
    driver.create(name, "payload", LABELS)
    counter = RequestCounter(driver)
    stored = driver.read(name)
    assert (stored.payload, dict(stored.labels)) == ("payload", LABELS)
    assert len(counter.requests) == 1


def test_labels_are_custom_metadata_and_history_is_bounded(
    bao: OpenBaoServer, vault_settings: Callable[..., VaultSettings]
) -> None:
    driver = VaultDriver(vault_settings(max_versions=2))
    name = _name()
    driver.create(name, "v0", LABELS)
    for i in range(1, 5):
        driver.read(name)
        driver.replace(name, f"v{i}", LABELS)
    metadata = bao.api("GET", f"secret/metadata/{name}")["data"]
    assert metadata["custom_metadata"] == LABELS
    assert metadata["max_versions"] == 2
    assert metadata["current_version"] == 5
    assert len(metadata["versions"]) == 2
    assert driver.read(name).payload == "v4"
    driver.close()


def test_delete_removes_every_version_and_the_name_is_free_at_once(
    bao: OpenBaoServer, driver: VaultDriver
) -> None:
    name = _name()
    driver.create(name, "v1", LABELS)
    driver.read(name)
    driver.replace(name, "v2", LABELS)
    driver.delete(name)
    with pytest.raises(RuntimeError, match="404"):
        bao.api("GET", f"secret/metadata/{name}")
    with pytest.raises(SecretNotFoundError):
        driver.read(name)
    driver.create(name, "again", LABELS)
    assert driver.read(name).payload == "again"


def test_replace_after_a_concurrent_writer_of_the_same_owner_wins(
    bao: OpenBaoServer, driver: VaultDriver
) -> None:
    name = _name()
    driver.create(name, "v1", LABELS)
    driver.read(name)  # the dispatcher's ownership read: version 1
    other = VaultDriver(driver.settings)
    other.read(name)
    other.replace(name, "theirs", LABELS)  # version 2, same deployment (another replica)
    counter = RequestCounter(driver)
    driver.replace(name, "mine", LABELS)  # cas=1 fails, re-read, same labels, cas=2
    assert driver.read(name).payload == "mine"
    assert [method for method, _ in counter.requests] == ["POST", "GET", "POST", "GET"]
    other.close()


def test_replace_never_overwrites_a_secret_that_changed_owner(
    bao: OpenBaoServer, driver: VaultDriver
) -> None:
    name = _name()
    driver.create(name, "v1", LABELS)
    driver.read(name)  # version 1
    # Deleted, stored again and updated by another deployment between our ownership read and our write.
    bao.api("DELETE", f"secret/metadata/{name}")
    theirs = {**LABELS, "mcs_deployment": "other"}
    bao.api("POST", f"secret/data/{name}", {"data": {"payload": "theirs", "labels": theirs}})
    bao.api("POST", f"secret/data/{name}", {"data": {"payload": "theirs-2", "labels": theirs}})
    with pytest.raises(SecretNotFoundError):
        driver.replace(name, "mine", LABELS)  # cas=1 fails, the re-read shows other labels
    assert bao.api("GET", f"secret/data/{name}")["data"]["data"]["payload"] == "theirs-2"


def test_replace_of_a_deleted_secret_is_not_found(bao: OpenBaoServer, driver: VaultDriver) -> None:
    name = _name()
    driver.create(name, "v1", LABELS)
    driver.read(name)
    bao.api("DELETE", f"secret/metadata/{name}")
    with pytest.raises(SecretNotFoundError):
        driver.replace(name, "mine", LABELS)
    with pytest.raises(SecretNotFoundError):
        driver.read(name)


# -- listing ---------------------------------------------------------------------------------------------------


def test_listing_pages_and_skips_foreign_keys_and_folders(
    bao: OpenBaoServer, vault_settings: Callable[..., VaultSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = f"kv-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": "2"}})
    driver = VaultDriver(vault_settings(mount=mount))
    ours = {_name() for _ in range(12)}
    for name in ours:
        driver.create(name, "p", LABELS)
    driver.create(_name(), "p", {**LABELS, "mcs_deployment": "other"})
    bao.api("POST", f"{mount}/data/unrelated", {"data": {"x": "y"}})
    bao.api("POST", f"{mount}/data/folder/inner", {"data": {"x": "y"}})
    # Written by hand without custom_metadata (as after a failed metadata write): the data's labels count.
    half = _name()
    bao.api("POST", f"{mount}/data/{half}", {"data": {"payload": "p", "labels": LABELS}})
    monkeypatch.setattr(driver_module, "_PAGE", 5)
    counter = RequestCounter(driver)
    listed = list(driver.list_names({"mcs_deployment": "tests"}))
    assert sorted(listed) == sorted(ours | {half})
    assert sum(method == "LIST" for method, _ in counter.requests) >= 3  # 16 keys, 5 a page
    driver.close()


def test_listing_an_empty_mount(bao: OpenBaoServer, vault_settings: Callable[..., VaultSettings]) -> None:
    mount = f"kv-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": "2"}})
    driver = VaultDriver(vault_settings(mount=mount))
    assert list(driver.list_names({"mcs_deployment": "tests"})) == []
    driver.close()


class _IgnorePaging(requests.adapters.HTTPAdapter):
    """Drops ``after`` and ``limit`` from LIST requests, as HashiCorp Vault (which does not page KV lists) does."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if request.method == "LIST" and request.url:
            request.url = request.url.split("?", 1)[0]
        return super().send(request, *args, **kwargs)


def test_listing_on_a_server_that_does_not_page(
    bao: OpenBaoServer, vault_settings: Callable[..., VaultSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = f"kv-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": "2"}})
    driver = VaultDriver(vault_settings(mount=mount))
    ours = {_name() for _ in range(7)}
    for name in ours:
        driver.create(name, "p", LABELS)
    driver.client.adapter.session.mount("http://", _IgnorePaging())
    monkeypatch.setattr(driver_module, "_PAGE", 3)
    counter = RequestCounter(driver)
    assert sorted(driver.list_names({"mcs_deployment": "tests"})) == sorted(ours)
    # Every key came in the first answer; the second asks after the last one and gets nothing new.
    assert sum(method == "LIST" for method, _ in counter.requests) == 2
    driver.close()


def test_namespace(bao: OpenBaoServer, vault_settings: Callable[..., VaultSettings]) -> None:
    namespace = f"team-{uuid.uuid4().hex[:6]}"
    bao.api("POST", f"sys/namespaces/{namespace}", {})
    bao.api("POST", "sys/mounts/kv", {"type": "kv", "options": {"version": "2"}}, namespace=namespace)
    settings = VaultSettings.from_environ(
        {
            "VAULT_ADDR": bao.url,
            "VAULT_TOKEN": bao.root_token,
            "VAULT_NAMESPACE": namespace,
            "MULTICLOUD_STORE_VAULT_MOUNT": "kv",
        }
    )
    with SecretsStore(StoreSettings(backend="vault"), driver=VaultDriver(settings)) as store:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"in": "namespace"})
        assert store.get_secret_values(sid) == {"in": "namespace"}
        name = store.secret_name(sid)
    assert bao.api("GET", f"kv/data/{name}", namespace=namespace)["data"]["metadata"]["version"] == 1
    with pytest.raises(RuntimeError, match="404"):
        bao.api("GET", f"kv/data/{name}")  # not at the root namespace


# -- failures and retries --------------------------------------------------------------------------------------


def test_sealed_vault_is_unavailable_after_urllib3s_retries(
    bao: OpenBaoServer, driver: VaultDriver, caplog: pytest.LogCaptureFixture
) -> None:
    name = _name()
    driver.create(name, "p", LABELS)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    bao.seal()
    try:
        with pytest.raises(BackendUnavailableError, match="sealed"):
            driver.read(name)
    finally:
        bao.unseal()
    retries = [r for r in caplog.records if "Incremented Retry" in r.getMessage()]
    assert len(retries) == FAST["max_retries"]
    assert driver.read(name).payload == "p"


def test_unreachable_server_is_unavailable() -> None:
    driver = VaultDriver(VaultSettings(url=f"http://127.0.0.1:{free_port_pair()}", token="t", **FAST))
    with pytest.raises(BackendUnavailableError, match="cannot reach"):
        driver.read(_name())


def test_wrong_token_is_permission_error_and_never_shown(
    bao: OpenBaoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    driver = VaultDriver(VaultSettings(url=bao.url, token="hvs.NOT-A-REAL-TOKEN-42", **FAST))
    with pytest.raises(BackendPermissionError) as info:
        driver.read(_name())
    assert "NOT-A-REAL-TOKEN-42" not in str(info.value) + repr(info.value) + caplog.text


# -- AppRole: renewal and re-login -----------------------------------------------------------------------------


@pytest.fixture
def approle_store(bao: OpenBaoServer) -> Iterator[Callable[..., SecretsStore]]:
    """``make(token_ttl, token_max_ttl, **variables)``: a store logging in with a fresh AppRole role."""
    stores: list[SecretsStore] = []

    def make(token_ttl: str = "1h", token_max_ttl: str = "4h", **variables: str) -> SecretsStore:
        policy = new_policy(bao)
        role_id, secret_id = bao.approle(
            f"r-{uuid.uuid4().hex[:8]}", policies=[policy], token_ttl=token_ttl, token_max_ttl=token_max_ttl
        )
        environ = {
            "MULTICLOUD_STORE_BACKEND": "vault",
            "VAULT_ADDR": bao.url,
            "MULTICLOUD_STORE_VAULT_AUTH_METHOD": "approle",
            "MULTICLOUD_STORE_VAULT_ROLE_ID": role_id,
            "MULTICLOUD_STORE_VAULT_SECRET_ID": secret_id,
            **FAST_ENV,
            **variables,
        }
        store = SecretsStore.from_env(environ)
        store.policy = policy  # type: ignore[attr-defined]
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def _driver(store: SecretsStore) -> VaultDriver:
    assert isinstance(store.driver, VaultDriver)
    return store.driver


def _until(condition: Callable[[], bool], deadline: float = 90.0) -> None:
    """Poll (bounded) until the condition holds; the server's clock, not ours, decides when a token expires."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not met within the deadline"
        time.sleep(0.2)


def test_approle_token_is_renewed_before_it_expires(approle_store: Callable[..., SecretsStore]) -> None:
    store = approle_store(token_ttl="3s", token_max_ttl="10m")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    driver = _driver(store)
    token = driver.client.token
    # Each call checks the token's age; after two thirds of 3 s the next call renews it.
    _until(lambda: store.get_secret_values(sid) == {"v": "1"} and driver.renewals >= 1)
    assert driver.logins == 1
    assert driver.client.token == token


def test_renewal_due_under_concurrent_calls_renews_once_per_period(
    approle_store: Callable[..., SecretsStore],
) -> None:
    store = approle_store(token_ttl="3s", token_max_ttl="10m")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    driver = _driver(store)

    def hammer_until_renewed() -> bool:
        with ThreadPoolExecutor(8) as pool:
            assert all(v == {"v": "1"} for v in pool.map(lambda _: store.get_secret_values(sid), range(16)))
        return driver.renewals >= 1

    _until(hammer_until_renewed)
    # Threads that found the token due waited for the one renewing it; none logged in on its own.
    assert driver.logins == 1


def test_expired_token_is_replaced_by_a_new_login(
    bao: OpenBaoServer, approle_store: Callable[..., SecretsStore]
) -> None:
    store = approle_store(token_ttl="2s", token_max_ttl="2s")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    driver = _driver(store)
    token = driver.client.token

    def expired() -> bool:
        try:
            bao.api("POST", "auth/token/lookup", {"token": token})
        except RuntimeError:
            return True
        return False

    _until(expired)
    assert store.get_secret_values(sid) == {"v": "1"}
    assert driver.logins == 2
    assert driver.client.token != token


def test_revoked_token_is_replaced_by_a_new_login(
    bao: OpenBaoServer, approle_store: Callable[..., SecretsStore]
) -> None:
    store = approle_store()
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    driver = _driver(store)
    bao.api("POST", "auth/token/revoke", {"token": driver.client.token})
    assert store.get_secret_values(sid) == {"v": "1"}  # 403, new login, the same call again
    assert driver.logins == 2


def test_revoked_token_under_concurrent_calls_logs_in_once(
    bao: OpenBaoServer, approle_store: Callable[..., SecretsStore]
) -> None:
    store = approle_store()
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    driver = _driver(store)
    bao.api("POST", "auth/token/revoke", {"token": driver.client.token})
    with ThreadPoolExecutor(8) as pool:
        assert all(v == {"v": "1"} for v in pool.map(lambda _: store.get_secret_values(sid), range(16)))
    # Every thread refused the revoked token reuses the one new login.
    assert driver.logins == 2


def test_denied_after_a_new_login_is_permission_error(
    bao: OpenBaoServer, approle_store: Callable[..., SecretsStore]
) -> None:
    store = approle_store()
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    bao.deny(store.policy)  # type: ignore[attr-defined]
    try:
        with pytest.raises(BackendPermissionError):
            store.get_secret_values(sid)
    finally:
        bao.write_policy(store.policy, STORE_POLICY)  # type: ignore[attr-defined]
    assert _driver(store).logins == 2
    assert store.get_secret_values(sid) == {"v": "1"}


def test_refused_login_is_permission_error_and_never_shows_the_secret_id(
    approle_store: Callable[..., SecretsStore], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = approle_store(MULTICLOUD_STORE_VAULT_SECRET_ID="wrong-SECRET-ID-77")
    with pytest.raises(BackendPermissionError) as info:
        store.get_secret_values(uuid.uuid4())
    assert "approle" in str(info.value)
    assert "wrong-SECRET-ID-77" not in str(info.value) + repr(info.value) + caplog.text


def test_secret_id_from_a_file(bao: OpenBaoServer, tmp_path: Path) -> None:
    policy = new_policy(bao)
    role_id, secret_id = bao.approle(f"r-{uuid.uuid4().hex[:8]}", policies=[policy])
    path = tmp_path / "secret-id"
    path.write_text(secret_id + "\n")
    settings = VaultSettings(url=bao.url, auth_method="approle", role_id=role_id, secret_id_file=path, **FAST)
    with SecretsStore(StoreSettings(backend="vault"), driver=VaultDriver(settings)) as store:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        assert store.get_secret_values(sid) == {"v": "1"}


# -- TLS -------------------------------------------------------------------------------------------------------


def test_tls_with_the_ca_bundle(bao: OpenBaoServer) -> None:
    assert bao.tls_url is not None and bao.ca_path is not None
    environ = {
        "MULTICLOUD_STORE_BACKEND": "vault",
        "MULTICLOUD_STORE_VAULT_URL": bao.tls_url,
        "MULTICLOUD_STORE_VAULT_TOKEN": bao.root_token,
        **FAST_ENV,
    }
    with SecretsStore.from_env({**environ, "VAULT_CACERT": str(bao.ca_path)}) as store:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"over": "tls"})
        assert store.get_secret_values(sid) == {"over": "tls"}
    with (
        SecretsStore.from_env(environ) as untrusting,
        pytest.raises(BackendUnavailableError, match="CA_BUNDLE"),
    ):
        untrusting.get_secret_values(uuid.uuid4())


# -- Kubernetes ------------------------------------------------------------------------------------------------


def test_kubernetes_login_against_a_token_review_stand_in(bao: OpenBaoServer, tmp_path: Path) -> None:
    assert bao.ca_path is not None
    policy = new_policy(bao)
    mount = f"k8s-{uuid.uuid4().hex[:8]}"
    with TokenReviewStandIn() as review:
        bao.enable_auth("kubernetes", mount)
        # The stand-in is plain HTTP; Vault insists on a CA when it cannot read the pod's own, so give it one.
        bao.api(
            "POST",
            f"auth/{mount}/config",
            {
                "kubernetes_host": review.url,
                "disable_local_ca_jwt": True,
                "kubernetes_ca_cert": bao.ca_path.read_text(),
            },
        )
        bao.api(
            "POST",
            f"auth/{mount}/role/zenml",
            {
                "bound_service_account_names": ["zenml-server"],
                "bound_service_account_namespaces": ["zenml"],
                "token_policies": [policy],
                "token_ttl": "1h",
            },
        )
        jwt = service_account_jwt("zenml", "zenml-server", uid="uid-1")
        review.allow(jwt, "zenml", "zenml-server", "uid-1")
        token_file = tmp_path / "token"
        token_file.write_text(jwt)
        environ = {
            "MULTICLOUD_STORE_BACKEND": "vault",
            "VAULT_ADDR": bao.url,
            "MULTICLOUD_STORE_VAULT_AUTH_METHOD": "kubernetes",
            "MULTICLOUD_STORE_VAULT_KUBERNETES_ROLE": "zenml",
            "MULTICLOUD_STORE_VAULT_KUBERNETES_MOUNT": mount,
            "MULTICLOUD_STORE_VAULT_KUBERNETES_TOKEN_FILE": str(token_file),
            **FAST_ENV,
        }
        with SecretsStore.from_env(environ) as store:
            sid = uuid.uuid4()
            store.store_secret_values(sid, {"from": "a pod"})
            assert store.get_secret_values(sid) == {"from": "a pod"}
            assert review.reviews == 1
            # The service account's token is no longer valid: the next login is refused.
            review.revoke(jwt)
            bao.api("POST", "auth/token/revoke", {"token": _driver(store).client.token})
            with pytest.raises(BackendPermissionError, match="kubernetes"):
                store.get_secret_values(sid)

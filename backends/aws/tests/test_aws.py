"""AWS-specific behaviour, observed through real boto3 clients talking to moto."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.credentials
import pytest
from botocore.exceptions import ClientError

from multicloud_store.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    SecretExistsError,
    SecretNotFoundError,
    SecretStateError,
)
from multicloud_store.store import (
    LABEL_DEPLOYMENT,
    LABEL_MANAGED_BY,
    LABEL_SECRET_ID,
    MANAGED_BY,
    SecretsStore,
)
from multicloud_store_aws import AwsDriver, AwsSettings

REGION = "us-east-1"
ACCOUNT = "123456789012"
SENTINEL = "sentinel-VALUE-must-never-leak-7c1f"

StoreMaker = Callable[..., SecretsStore]


def driver_of(store: SecretsStore) -> AwsDriver:
    driver = store.driver
    assert isinstance(driver, AwsDriver)
    return driver


def raw_client(service: str = "secretsmanager", access_key_id: str = "x") -> Any:
    """A plain boto3 client on the same (mocked) account, to look behind the store's back."""
    session = boto3.session.Session(aws_access_key_id=access_key_id, aws_secret_access_key="y")
    return session.client(service, region_name=REGION)  # type: ignore[call-overload]


# -- what is written --------------------------------------------------------------------------------------


def test_tags_are_written(moto_in_process: StoreMaker) -> None:
    store = moto_in_process("team-a")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    described = raw_client().describe_secret(SecretId=store.secret_name(sid))
    assert {tag["Key"]: tag["Value"] for tag in described["Tags"]} == {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_DEPLOYMENT: "team-a",
        LABEL_SECRET_ID: str(sid),
    }
    assert "KmsKeyId" not in described  # the account's default key unless one is configured


def test_payload_is_the_envelope_in_secret_string(moto_in_process: StoreMaker) -> None:
    store = moto_in_process("team-a")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    value = raw_client().get_secret_value(SecretId=store.secret_name(sid))
    assert json.loads(value["SecretString"]) == {
        "multicloud-store": 1,
        "deployment": "team-a",
        "id": str(sid),
        "values": {"k": "v"},
    }


def test_kms_key_is_used_on_create_only(moto_in_process: StoreMaker, faults: Any) -> None:
    kms = raw_client("kms")
    key_id = kms.create_key(Description="multicloud-store test")["KeyMetadata"]["KeyId"]
    store = moto_in_process("team-a", kms_key_id=key_id)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"k": "v"})
    store.update_secret_values(sid, {"k": "w"})
    assert store.get_secret_values(sid) == {"k": "w"}
    assert raw_client().describe_secret(SecretId=store.secret_name(sid))["KmsKeyId"] == key_id
    assert [call.get("KmsKeyId") for call in faults.calls["CreateSecret"]] == [key_id]
    assert "KmsKeyId" not in faults.calls["PutSecretValue"][0]


def test_client_request_token_is_left_to_boto3(moto_in_process: StoreMaker, faults: Any) -> None:
    store = moto_in_process()
    store.store_secret_values(uuid.uuid4(), {"k": "v"})
    # Our parameters carry no token; botocore adds a fresh one (and reuses it across its own retries).
    assert "ClientRequestToken" not in faults.calls["CreateSecret"][0]


# -- deletion and recovery windows ------------------------------------------------------------------------


def test_default_delete_is_immediate(moto_in_process: StoreMaker, faults: Any) -> None:
    store = moto_in_process()
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    store.delete_secret_values(sid)
    assert faults.calls["DeleteSecret"] == [
        {"SecretId": store.secret_name(sid), "ForceDeleteWithoutRecovery": True}
    ]
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        raw_client().describe_secret(SecretId=store.secret_name(sid))


def test_recovery_window_delete_then_store_again_explains_itself(moto_in_process: StoreMaker) -> None:
    store = moto_in_process(recovery_window_days=7)
    sid = uuid.uuid4()
    name = store.secret_name(sid)
    store.store_secret_values(sid, {"v": SENTINEL})
    store.delete_secret_values(sid)
    deleted = raw_client().describe_secret(SecretId=name)["DeletedDate"]
    assert deleted > dt.datetime.now(deleted.tzinfo) + dt.timedelta(days=6)

    with pytest.raises(SecretExistsError) as info:
        store.store_secret_values(sid, {"v": "2"})
    message = str(info.value)
    assert "scheduled for deletion until" in message
    assert deleted.isoformat(timespec="seconds") in message
    assert f"aws secretsmanager restore-secret --secret-id {name}" in message
    assert "MULTICLOUD_STORE_AWS_RECOVERY_WINDOW_DAYS" in message
    assert SENTINEL not in message and SENTINEL not in repr(info.value)
    assert not isinstance(info.value, KeyError)

    raw_client().restore_secret(SecretId=name)
    assert store.get_secret_values(sid) == {"v": SENTINEL}


def test_create_over_scheduled_secret_as_aws_reports_it(moto_in_process: StoreMaker, faults: Any) -> None:
    # AWS answers InvalidRequestException here (moto says ResourceExistsException): both give the same message.
    store = moto_in_process(recovery_window_days=30)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    store.delete_secret_values(sid)
    faults.fail(
        400,
        "InvalidRequestException",
        "You can't create this secret because a secret with this name is already scheduled for deletion.",
        operations={"CreateSecret"},
    )
    with pytest.raises(SecretExistsError, match="scheduled for deletion until") as info:
        store.store_secret_values(sid, {"v": "2"})
    assert "restore-secret" in str(info.value)


def test_existing_secret_is_reported_plainly(moto_in_process: StoreMaker) -> None:
    store = moto_in_process()
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    with pytest.raises(SecretExistsError) as info:
        store.store_secret_values(sid, {"v": "2"})
    assert "already exists" in str(info.value)
    assert "scheduled" not in str(info.value)
    cause = info.value.__cause__
    assert isinstance(cause, ClientError) and cause.response["Error"]["Code"] == "ResourceExistsException"


@pytest.fixture
def scheduled(moto_in_process: StoreMaker) -> tuple[SecretsStore, uuid.UUID]:
    """A store with a 7-day recovery window and one of its secrets scheduled for deletion."""
    store = moto_in_process(recovery_window_days=7)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    store.delete_secret_values(sid)
    return store, sid


def test_scheduled_secret_is_missing_for_the_store(scheduled: tuple[SecretsStore, uuid.UUID]) -> None:
    store, sid = scheduled
    for call in (
        lambda: store.get_secret_values(sid),
        lambda: store.update_secret_values(sid, {"v": "2"}),
        lambda: store.delete_secret_values(sid),
    ):
        with pytest.raises(SecretNotFoundError):
            call()
    assert not store.secret_exists(sid)
    assert store.get_many([sid])[sid].status == "not_found"
    assert sid not in set(store.list_secret_ids())


def test_scheduled_secret_is_missing_for_the_driver(scheduled: tuple[SecretsStore, uuid.UUID]) -> None:
    store, sid = scheduled
    driver, name = driver_of(store), store.secret_name(sid)
    with pytest.raises(SecretNotFoundError, match="scheduled for deletion"):
        driver.read(name)
    with pytest.raises(SecretNotFoundError):
        driver.delete(name)  # with a recovery window: AWS refuses to schedule it twice
    assert isinstance(driver.read_many([name])[name], SecretNotFoundError)


@pytest.mark.xfail(
    strict=True,
    reason="moto accepts PutSecretValue on a secret scheduled for deletion; AWS answers InvalidRequestException. "
    "If this passes, moto was fixed: drop the xfail.",
)
def test_replace_of_scheduled_secret_is_refused_by_the_service(
    scheduled: tuple[SecretsStore, uuid.UUID],
) -> None:
    store, sid = scheduled
    with pytest.raises(SecretNotFoundError):
        driver_of(store).replace(store.secret_name(sid), "{}", {})


def test_replace_of_scheduled_secret_as_aws_reports_it(
    scheduled: tuple[SecretsStore, uuid.UUID], faults: Any
) -> None:
    store, sid = scheduled
    faults.fail(
        400,
        "InvalidRequestException",
        "You can't perform this operation on the secret because it was marked for deletion.",
        operations={"PutSecretValue"},
    )
    with pytest.raises(SecretNotFoundError, match="scheduled for deletion"):
        driver_of(store).replace(store.secret_name(sid), "{}", {})


# -- other deployments ------------------------------------------------------------------------------------


def test_other_deployments_secret_is_never_read_overwritten_or_deleted(
    moto_in_process: StoreMaker, faults: Any
) -> None:
    ours, theirs = moto_in_process("ours"), moto_in_process("theirs")
    sid = uuid.uuid4()
    theirs.store_secret_values(sid, {"theirs": SENTINEL})
    name = theirs.secret_name(sid)
    before = raw_client().get_secret_value(SecretId=name)
    tags_before = raw_client().describe_secret(SecretId=name)["Tags"]
    faults.reset_counts()

    for call in (
        lambda: ours.get_secret_values(sid),
        lambda: ours.update_secret_values(sid, {"mine": "1"}),
        lambda: ours.delete_secret_values(sid),
    ):
        with pytest.raises(SecretNotFoundError) as info:
            call()
        assert SENTINEL not in str(info.value)
    with pytest.raises(SecretExistsError):
        ours.store_secret_values(sid, {"mine": "1"})
    outcome = ours.get_many([sid])[sid]
    assert outcome.status == "not_ours" and outcome.values is None

    # Only reads (and the refused create) reached AWS: nothing was written or deleted.
    assert set(faults.attempts) <= {"GetSecretValue", "BatchGetSecretValue", "CreateSecret", "DescribeSecret"}
    after = raw_client().get_secret_value(SecretId=name)
    assert (after["VersionId"], after["SecretString"]) == (before["VersionId"], before["SecretString"])
    assert raw_client().describe_secret(SecretId=name)["Tags"] == tags_before


def test_listing_compares_every_tag_exactly(moto_in_process: StoreMaker) -> None:
    short, longer = moto_in_process("team"), moto_in_process("team-b")
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    short.store_secret_values(mine, {"k": "v"})
    longer.store_secret_values(theirs, {"k": "v"})
    # Tag filters are prefix matches and not paired: this secret matches every filter of "team" with crossed tags.
    crossed = uuid.uuid4()
    raw_client().create_secret(
        Name=short.secret_name(crossed),
        SecretString="{}",
        Tags=[
            {"Key": LABEL_MANAGED_BY, "Value": "team"},
            {"Key": LABEL_DEPLOYMENT, "Value": MANAGED_BY},
        ],
    )
    assert list(short.list_secret_ids()) == [mine]
    assert list(longer.list_secret_ids()) == [theirs]


# -- batch reads ------------------------------------------------------------------------------------------


def test_get_many_uses_batch_get_secret_value_20_at_a_time(moto_in_process: StoreMaker, faults: Any) -> None:
    store = moto_in_process()
    sids = [uuid.uuid4() for _ in range(45)]
    for sid in sids:
        store.store_secret_values(sid, {"id": str(sid)})
    missing = uuid.uuid4()
    faults.reset_counts()

    outcomes = store.get_many([*sids, missing])

    assert all(outcomes[sid].values == {"id": str(sid)} for sid in sids)
    assert outcomes[missing].status == "not_found"
    sizes = sorted(len(call["SecretIdList"]) for call in faults.calls["BatchGetSecretValue"])
    assert sizes == [6, 20, 20]
    assert "GetSecretValue" not in faults.calls


def test_read_many_maps_batch_errors_per_name(moto_in_process: StoreMaker) -> None:
    store = moto_in_process()
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    name, missing = store.secret_name(sid), store.secret_name(uuid.uuid4())
    result = driver_of(store).read_many([name, missing])
    found = result[name]
    assert not isinstance(found, Exception) and json.loads(found.payload)["values"] == {"v": "1"}
    assert isinstance(result[missing], SecretNotFoundError)


def test_batch_call_denied_fails_every_id(moto_in_process: StoreMaker, faults: Any) -> None:
    store = moto_in_process()
    sids = [uuid.uuid4() for _ in range(3)]
    faults.permission_denied()
    outcomes = store.get_many(sids)
    assert all(isinstance(outcomes[sid].error, BackendPermissionError) for sid in sids)


# -- failures, retries, timeouts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "retry_mode"),
    [
        (400, "ThrottlingException", "standard"),
        (500, "InternalServiceError", "standard"),
        (503, "ServiceUnavailable", "legacy"),
    ],
)
def test_throttling_and_5xx_are_retried_then_unavailable(
    moto_in_process: StoreMaker, faults: Any, status: int, code: str, retry_mode: str
) -> None:
    store = moto_in_process(max_attempts=3, retry_mode=retry_mode)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    faults.reset_counts()
    faults.fail(status, code)
    with pytest.raises(BackendUnavailableError) as info:
        store.get_secret_values(sid)
    assert faults.attempts["GetSecretValue"] == 3
    assert code in str(info.value)
    assert info.value.__cause__ is not None
    faults.clear()
    assert store.get_secret_values(sid) == {"v": "1"}


def test_access_denied_is_a_permission_error_and_not_retried(
    moto_in_process: StoreMaker, faults: Any
) -> None:
    store = moto_in_process(max_attempts=3)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    faults.reset_counts()
    faults.permission_denied()
    with pytest.raises(BackendPermissionError) as info:
        store.get_secret_values(sid)
    assert not isinstance(info.value, KeyError)
    assert faults.attempts["GetSecretValue"] == 1
    assert "AccessDeniedException" in str(info.value) and "not authorized" in str(info.value)
    with pytest.raises(BackendPermissionError):
        store.check()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("DecryptionFailure", BackendPermissionError),
        ("KMSAccessDeniedException", BackendPermissionError),
        ("ExpiredTokenException", BackendPermissionError),
        ("UnrecognizedClientException", BackendPermissionError),
        ("KMSDisabledException", BackendError),
        ("InvalidParameterException", BackendError),
        ("InvalidRequestException", SecretStateError),
        ("LimitExceededException", BackendUnavailableError),
        ("SomethingNewException", BackendError),
    ],
)
def test_error_codes_map_onto_the_hierarchy(
    moto_in_process: StoreMaker, faults: Any, code: str, expected: type[Exception]
) -> None:
    store = moto_in_process(max_attempts=1)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    # As if AWS echoed a parameter: the message is quoted only for codes whose messages never carry input.
    faults.fail(400, code, f"details mentioning {SENTINEL}", operations={"GetSecretValue"})
    with pytest.raises(expected) as info:
        store.get_secret_values(sid)
    assert type(info.value) is expected or expected is BackendError
    assert not isinstance(info.value, SecretNotFoundError)
    assert code in str(info.value) and store.secret_name(sid) in str(info.value)
    if code in ("InvalidParameterException", "SomethingNewException"):
        assert SENTINEL not in str(info.value)


def test_connection_refused_is_unavailable_within_the_timeout(aws_settings: Any, free_port: int) -> None:
    driver = AwsDriver(
        aws_settings(endpoint_url=f"http://127.0.0.1:{free_port}", max_attempts=2, connect_timeout=60.0)
    )
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="cannot reach the endpoint") as info:
        driver.read("multicloud-store-x")
    # A refusal is reported at once, not after the 60 s connect timeout: two attempts and one backoff of at
    # most 1 s take seconds even on a loaded machine, so the bound says "did not wait" without timing the machine.
    assert time.monotonic() - started < 30
    assert info.value.__cause__ is not None


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_read_timeout_is_unavailable_within_the_timeout(aws_settings: Any, silent_server: int) -> None:
    driver = AwsDriver(
        aws_settings(endpoint_url=f"http://127.0.0.1:{silent_server}", max_attempts=2, read_timeout=0.5)
    )
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="read timeout"):
        driver.read("multicloud-store-x")
    elapsed = time.monotonic() - started
    # The test is about the read timeout (short on purpose): both attempts waited it out. The upper bound only
    # tells "gave up" from "hung" (the server never answers), with room for a loaded machine.
    assert 2 * 0.5 <= elapsed < 30


def test_no_credentials_is_a_configuration_error(free_port: int) -> None:
    driver = AwsDriver(AwsSettings(region=REGION, endpoint_url=f"http://127.0.0.1:{free_port}"))
    with pytest.raises(ConfigurationError) as info:
        driver.read("multicloud-store-x")
    assert info.value.variable == "MULTICLOUD_STORE_AWS_ACCESS_KEY_ID"
    assert "MULTICLOUD_STORE_AWS_PROFILE" in str(info.value)


# -- settings and configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"SECRET_ACCESS_KEY": SENTINEL}, "MULTICLOUD_STORE_AWS_ACCESS_KEY_ID"),
        ({"ACCESS_KEY_ID": "AKIAEXAMPLE"}, "MULTICLOUD_STORE_AWS_SECRET_ACCESS_KEY"),
        ({"SESSION_TOKEN": SENTINEL}, "MULTICLOUD_STORE_AWS_SESSION_TOKEN"),
        (
            {"PROFILE": "dev", "ACCESS_KEY_ID": "AKIAEXAMPLE", "SECRET_ACCESS_KEY": SENTINEL},
            "MULTICLOUD_STORE_AWS_PROFILE",
        ),
        ({"ROLE_EXTERNAL_ID": "ext-1"}, "MULTICLOUD_STORE_AWS_ROLE_ARN"),
        ({"ROLE_ARN": "admin"}, "MULTICLOUD_STORE_AWS_ROLE_ARN"),
        ({"ROLE_SESSION_NAME": "has spaces"}, "MULTICLOUD_STORE_AWS_ROLE_SESSION_NAME"),
        ({"RECOVERY_WINDOW_DAYS": "3"}, "MULTICLOUD_STORE_AWS_RECOVERY_WINDOW_DAYS"),
        ({"RECOVERY_WINDOW_DAYS": "31"}, "MULTICLOUD_STORE_AWS_RECOVERY_WINDOW_DAYS"),
        ({"RETRY_MODE": "aggressive"}, "MULTICLOUD_STORE_AWS_RETRY_MODE"),
        ({"MAX_ATTEMPTS": "0"}, "MULTICLOUD_STORE_AWS_MAX_ATTEMPTS"),
        ({"CONNECT_TIMEOUT": "-1"}, "MULTICLOUD_STORE_AWS_CONNECT_TIMEOUT"),
        ({"READ_TIMEOUT": "soon"}, "MULTICLOUD_STORE_AWS_READ_TIMEOUT"),
        ({"REGION": "Mars"}, "MULTICLOUD_STORE_AWS_REGION"),
        ({"ENDPOINT_URL": "ftp://example.com"}, "MULTICLOUD_STORE_AWS_ENDPOINT_URL"),
        ({"ENDPOINT_URL": f"https://user:{SENTINEL}@example.com"}, "MULTICLOUD_STORE_AWS_ENDPOINT_URL"),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], variable: str) -> None:
    full = {"MULTICLOUD_STORE_BACKEND": "aws", "MULTICLOUD_STORE_AWS_REGION": REGION}
    full.update({f"MULTICLOUD_STORE_AWS_{key}": value for key, value in environ.items()})
    with pytest.raises(ConfigurationError) as info:
        SecretsStore.from_env(full)
    assert info.value.variable == variable
    assert variable in str(info.value)
    assert SENTINEL not in str(info.value)


def test_blank_variables_count_as_unset() -> None:
    settings = AwsSettings.from_environ(
        {"MULTICLOUD_STORE_AWS_REGION": "", "MULTICLOUD_STORE_AWS_SECRET_ACCESS_KEY": " "}
    )
    assert settings.region is None and settings.secret_access_key is None


def test_missing_region_is_reported_at_construction() -> None:
    with pytest.raises(ConfigurationError) as info:
        SecretsStore.from_env({"MULTICLOUD_STORE_BACKEND": "aws"})
    assert info.value.variable == "MULTICLOUD_STORE_AWS_REGION"


def test_region_from_the_aws_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    driver = AwsDriver(AwsSettings())
    assert driver.client.meta.region_name == "eu-west-3"


def test_unknown_profile_is_reported_at_construction() -> None:
    with pytest.raises(ConfigurationError) as info:
        AwsDriver(AwsSettings(region=REGION, profile="nope"))
    assert info.value.variable == "MULTICLOUD_STORE_AWS_PROFILE"


def test_credentials_never_in_reprs(aws_settings: Any) -> None:
    settings = aws_settings(secret_access_key=SENTINEL, session_token=SENTINEL + "-token")
    driver = AwsDriver(settings)
    store = SecretsStore.from_env(
        {
            "MULTICLOUD_STORE_BACKEND": "aws",
            "MULTICLOUD_STORE_AWS_REGION": REGION,
            "MULTICLOUD_STORE_AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "MULTICLOUD_STORE_AWS_SECRET_ACCESS_KEY": SENTINEL,
            "MULTICLOUD_STORE_AWS_SESSION_TOKEN": SENTINEL,
        }
    )
    texts = [
        repr(settings),
        str(settings),
        repr(driver),
        repr(store),
        repr(store.driver),
        str(settings.redacted()),
    ]
    assert not [text for text in texts if SENTINEL in text]
    assert settings.redacted()["MULTICLOUD_STORE_AWS_SECRET_ACCESS_KEY"] == "**********"


def test_settings_client_configuration(aws_settings: Any) -> None:
    settings = aws_settings(retry_mode="adaptive", max_attempts=7, connect_timeout=1.5, read_timeout=2.5)
    config: Any = AwsDriver(settings).client.meta.config  # botocore's Config sets its attributes dynamically
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert (config.connect_timeout, config.read_timeout) == (1.5, 2.5)
    assert "multicloud-store/" in (config.user_agent_extra or "")


# -- the client ---------------------------------------------------------------------------------------------


def test_client_is_created_once_and_shared_by_threads(
    aws_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    driver = AwsDriver(aws_settings())
    barrier = threading.Barrier(8)
    seen: list[Any] = []

    def grab() -> None:
        barrier.wait()
        seen.append(driver.client)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in seen}) == 1
    # A session of its own: boto3's default session is never created or used.
    assert boto3.DEFAULT_SESSION is None


def test_close_closes_only_a_client_it_created(moto_in_process: StoreMaker, aws_settings: Any) -> None:
    injected = raw_client()
    driver = AwsDriver(aws_settings(), client=injected)
    driver.close()
    injected.list_secrets(MaxResults=1)  # still usable: the driver does not own it
    with pytest.raises(BackendError, match="closed"):
        driver.read("multicloud-store-x")

    store = moto_in_process()
    own = driver_of(store)
    store.close()
    with pytest.raises(BackendError, match="closed"):
        own.read("multicloud-store-x")


class _FastForward(dt.tzinfo):
    """UTC, except that "now" in it is 55 minutes later (botocore reads its clock as ``now(tzlocal())``)."""

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, when: dt.datetime | None) -> str:
        return "UTC+55min"

    def fromutc(self, when: dt.datetime) -> dt.datetime:
        return when + dt.timedelta(minutes=55)


def test_assumed_role_is_used_and_refreshed_before_expiry(
    moto_in_process: StoreMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sts.models import sts_backends

    role_arn = f"arn:aws:iam::{ACCOUNT}:role/mcs-role"
    store = moto_in_process(role_arn=role_arn, role_external_id="ext-1234", role_session_name="mcs-test")
    signing_keys: list[str] = []

    def record_key(request: Any, **_: Any) -> None:
        authorization = request.headers["Authorization"]
        authorization = authorization.decode() if isinstance(authorization, bytes) else authorization
        signing_keys.append(authorization.split("Credential=")[1].split("/")[0])

    driver_of(store).client.meta.events.register("before-send.secrets-manager", record_key)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})

    sts = raw_client("sts", access_key_id=signing_keys[0])
    assert sts.get_caller_identity()["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/mcs-role/mcs-test"
    assumed = sts_backends[ACCOUNT]["aws"].assumed_roles
    assert [(role.role_arn, role.external_id) for role in assumed] == [(role_arn, "ext-1234")]

    store.get_secret_values(sid)
    assert len(set(signing_keys)) == 1 and len(assumed) == 1  # the cached credentials are reused

    # Move botocore's credential clock 55 minutes on: the one-hour credentials are now due for a refresh.
    monkeypatch.setattr(botocore.credentials, "tzlocal", _FastForward)
    assert store.get_secret_values(sid) == {"v": "1"}
    assert len(assumed) == 2
    assert len(set(signing_keys)) == 2


def test_selecting_aws_loads_no_other_cloud_sdk(tmp_path: Any) -> None:
    code = (
        "import json, sys\n"
        "from multicloud_store import SecretsStore\n"
        "store = SecretsStore.from_env({'MULTICLOUD_STORE_BACKEND': 'aws', 'MULTICLOUD_STORE_AWS_REGION': 'us-east-1'})\n"
        "store.driver.client\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path
    )
    loaded = set(json.loads(result.stdout))
    roots = {name.split(".")[0] for name in loaded}
    assert {"boto3", "botocore", "multicloud_store_aws"} <= roots
    assert not {"google", "azure", "grpc"} & roots
    # The registry may read other backends' SDK-free settings modules (to know their variables), never a driver.
    assert not {"multicloud_store_gcp.driver", "multicloud_store_azure.driver"} & loaded


def test_debug_logs_hold_no_values_or_credentials(
    moto_in_process: StoreMaker, caplog: pytest.LogCaptureFixture
) -> None:
    from moto.sts.models import sts_backends

    caplog.set_level("DEBUG")
    store = moto_in_process(role_arn=f"arn:aws:iam::{ACCOUNT}:role/mcs-role")
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"password": SENTINEL})
    store.update_secret_values(sid, {"password": SENTINEL + "-2"})
    assert store.get_secret_values(sid) == {"password": SENTINEL + "-2"}
    assert store.get_many([sid])[sid].values == {"password": SENTINEL + "-2"}
    role = sts_backends[ACCOUNT]["aws"].assumed_roles[0]
    logged = caplog.text
    for secret in (SENTINEL, role.secret_access_key, role.session_token):
        assert secret not in logged
    assert "redacted by multicloud-store" in logged  # botocore did log those bodies and headers


def test_thread_safe_moto_wraps_and_restores() -> None:
    from moto.secretsmanager.models import SecretsManagerBackend

    from multicloud_store_aws.testing import thread_safe_moto

    # The session fixture already holds it; nested use must wrap again and restore to what was there.
    before = SecretsManagerBackend.create_secret
    with thread_safe_moto():
        assert SecretsManagerBackend.create_secret is not before
        assert SecretsManagerBackend.create_secret.__name__ == "create_secret"
    assert SecretsManagerBackend.create_secret is before

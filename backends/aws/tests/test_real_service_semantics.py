"""Issue 10 on AWS: what Secrets Manager documents and moto does not show by itself, through SecretsStore and boto3.

Asynchronous forced deletion and lost answers are made visible with `multicloud_store_aws.testing`; credentials,
endpoints, logs and the connection pool are checked against the real SDK talking to moto.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from multicloud_store.errors import (
    BackendUnavailableError,
    ConfigurationError,
    SecretExistsError,
    SecretStateError,
)
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store_aws import AwsDriver, AwsSettings
from multicloud_store_aws._redact import RedactingFilter
from multicloud_store_aws.testing import LostAnswers, asynchronous_deletion

REGION = "us-east-1"
SENTINEL = "sentinel-VALUE-must-never-leak-7c1f"

StoreMaker = Callable[..., SecretsStore]


def driver_of(store: SecretsStore) -> AwsDriver:
    driver = store.driver
    assert isinstance(driver, AwsDriver)
    return driver


# -- 1. a forced delete finishes in the background ------------------------------------------------------------


def test_store_after_forced_delete_retries_until_aws_has_deleted(
    moto_in_process: StoreMaker, faults: Any
) -> None:
    store = moto_in_process()
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    with asynchronous_deletion(refusals=3):
        store.delete_secret_values(sid)
        faults.reset_counts()
        store.store_secret_values(sid, {"v": "2"})
    assert store.get_secret_values(sid) == {"v": "2"}
    assert faults.attempts["CreateSecret"] == 4  # three refusals, then the create that AWS accepted
    assert (
        faults.attempts["DescribeSecret"] == 1
    )  # once, to tell a deletion in progress from a recovery window


def test_store_after_forced_delete_waits_a_given_time(moto_in_process: StoreMaker) -> None:
    store = moto_in_process()
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    with asynchronous_deletion(1.0):
        store.delete_secret_values(sid)
        store.store_secret_values(sid, {"v": "2"})
    assert store.get_secret_values(sid) == {"v": "2"}


def test_a_deletion_that_does_not_finish_is_a_state_error(moto_in_process: StoreMaker, faults: Any) -> None:
    store = moto_in_process(recreate_wait_seconds=0.5)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": SENTINEL})
    with asynchronous_deletion(3600):
        store.delete_secret_values(sid)
        with pytest.raises(SecretStateError) as info:
            store.store_secret_values(sid, {"v": SENTINEL})
    message = str(info.value)
    assert "ForceDeleteWithoutRecovery" in message
    assert "still finishing that deletion in the background" in message
    assert "MULTICLOUD_STORE_AWS_RECREATE_WAIT_SECONDS=0.5" in message
    assert "recovery window" not in message
    assert SENTINEL not in message
    assert not isinstance(info.value, (SecretExistsError, KeyError))
    assert faults.attempts["CreateSecret"] >= 1


def test_no_wait_when_recreate_wait_is_zero(moto_in_process: StoreMaker, faults: Any) -> None:
    store = moto_in_process(recreate_wait_seconds=0)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    with asynchronous_deletion(refusals=1):
        store.delete_secret_values(sid)
        faults.reset_counts()
        with pytest.raises(SecretStateError):
            store.store_secret_values(sid, {"v": "2"})
        store.store_secret_values(sid, {"v": "2"})  # the caller's own retry, once AWS has finished
    assert faults.attempts["CreateSecret"] == 2


def test_a_recovery_window_is_not_waited_for(moto_in_process: StoreMaker, faults: Any) -> None:
    store = moto_in_process(recovery_window_days=7)
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    store.delete_secret_values(sid)
    faults.reset_counts()
    with pytest.raises(SecretExistsError, match="scheduled for deletion until"):
        store.store_secret_values(sid, {"v": "2"})
    assert faults.attempts["CreateSecret"] == 1


def test_forced_delete_then_store_over_the_wire(
    server_environ: Callable[..., dict[str, str]],
) -> None:
    environ = server_environ("async-delete", MULTICLOUD_STORE_AWS_RECREATE_WAIT_SECONDS="60")
    with SecretsStore.from_env(environ) as store:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        with asynchronous_deletion(refusals=2):
            store.delete_secret_values(sid)
            store.store_secret_values(sid, {"v": "2"})
        assert store.get_secret_values(sid) == {"v": "2"}
        with asynchronous_deletion(3600):
            store.delete_secret_values(sid)
            short = SecretsStore.from_env({**environ, "MULTICLOUD_STORE_AWS_RECREATE_WAIT_SECONDS": "0.3"})
            with short, pytest.raises(SecretStateError):
                short.store_secret_values(sid, {"v": "3"})


# -- 4. lost answers -------------------------------------------------------------------------------------------


@pytest.fixture(params=["in_process", "server"])
def lossy_store(
    request: pytest.FixtureRequest, lost_answers: LostAnswers, server_environ: Callable[..., dict[str, str]]
) -> Iterator[SecretsStore]:
    """A store whose client loses answers on demand (three attempts per call), in-process and over the wire."""
    if request.param == "in_process":
        store = request.getfixturevalue("moto_in_process")(max_attempts=3)
    else:
        store = SecretsStore.from_env(server_environ("lossy", MULTICLOUD_STORE_AWS_MAX_ATTEMPTS="3"))
    lost_answers.attach(driver_of(store).client)
    yield store
    store.close()


def test_every_lost_answer_is_verified(lossy_store: SecretsStore, lost_answers: LostAnswers) -> None:
    store, sid = lossy_store, uuid.uuid4()
    lost_answers.lose_answers("create")
    store.store_secret_values(sid, {"v": "1"})
    # botocore retried twice with the same ClientRequestToken; AWS (and moto) accept such a retry idempotently.
    assert lost_answers.lost["CreateSecret"] == 3
    lost_answers.clear()
    assert store.get_secret_values(sid) == {"v": "1"}
    store.store_secret_values(sid, {"v": "1"})  # the caller's own retry: its values are there, success
    with pytest.raises(SecretExistsError):
        store.store_secret_values(sid, {"v": "other"})

    lost_answers.lose_answers("replace")
    store.update_secret_values(sid, {"v": "2"})
    assert lost_answers.lost["PutSecretValue"] == 3
    lost_answers.clear()
    assert store.get_secret_values(sid) == {"v": "2"}

    lost_answers.lose_answers("delete")
    store.delete_secret_values(sid)
    assert lost_answers.lost["DeleteSecret"] == 3
    lost_answers.clear()
    assert not store.secret_exists(sid)


def test_a_write_that_did_not_commit_is_still_unavailable(moto_in_process: StoreMaker, faults: Any) -> None:
    store = moto_in_process()
    sid = uuid.uuid4()
    faults.unavailable()
    with pytest.raises(BackendUnavailableError):
        store.store_secret_values(sid, {"v": "1"})
    faults.clear()
    assert not store.secret_exists(sid)


# -- 8. credentials and endpoints never echoed ---------------------------------------------------------------


def _keys(**extra: str) -> dict[str, str]:
    values = {
        "MULTICLOUD_STORE_AWS_REGION": REGION,
        "MULTICLOUD_STORE_AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "MULTICLOUD_STORE_AWS_SECRET_ACCESS_KEY": "secret-key",
    }
    values.update(extra)
    return values


def test_surrounding_whitespace_of_credentials_is_stripped() -> None:
    settings = AwsSettings.from_environ(
        _keys(
            MULTICLOUD_STORE_AWS_ACCESS_KEY_ID=" AKIAEXAMPLE\n",
            MULTICLOUD_STORE_AWS_SECRET_ACCESS_KEY="\tsecret-key\r\n",
            MULTICLOUD_STORE_AWS_SESSION_TOKEN="token-from-a-file\n",
        )
    )
    assert settings.access_key_id == "AKIAEXAMPLE"
    assert settings.secret_access_key is not None
    assert settings.secret_access_key.get_secret_value() == "secret-key"
    assert settings.session_token is not None
    assert settings.session_token.get_secret_value() == "token-from-a-file"


@pytest.mark.parametrize("field", ["ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN", "ROLE_EXTERNAL_ID"])
@pytest.mark.parametrize("inner", ["\n", "\r", "\t", "\x00", "\x7f"])
def test_inner_control_characters_in_credentials_are_refused(field: str, inner: str) -> None:
    variable = f"MULTICLOUD_STORE_AWS_{field}"
    environ = _keys(**{variable: f"{SENTINEL}{inner}tail"})
    if field == "ROLE_EXTERNAL_ID":
        environ["MULTICLOUD_STORE_AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/r"
    with pytest.raises(ConfigurationError) as info:
        SecretsStore.from_env({"MULTICLOUD_STORE_BACKEND": "aws", **environ})
    assert info.value.variable == variable
    assert variable in str(info.value)
    assert SENTINEL not in str(info.value) and SENTINEL not in repr(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"htps://user:{SENTINEL}@secretsmanager.example.com",
        f"https//user:{SENTINEL}@secretsmanager.example.com",
        f"user:{SENTINEL}@secretsmanager.example.com",
        f"https:/user:{SENTINEL}@secretsmanager.example.com",
        f"https://user:{SENTINEL}@secretsmanager.example.com",
    ],
)
def test_endpoint_with_user_info_is_never_echoed(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SecretsStore.from_env(
            {"MULTICLOUD_STORE_BACKEND": "aws", **_keys(MULTICLOUD_STORE_AWS_ENDPOINT_URL=url)}
        )
    assert info.value.variable == "MULTICLOUD_STORE_AWS_ENDPOINT_URL"
    assert SENTINEL not in str(info.value) and SENTINEL not in repr(info.value)


def test_a_token_with_a_newline_works_and_never_reaches_the_debug_log(
    server_environ: Callable[..., dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = f"{SENTINEL}-token"
    environ = server_environ("token", MULTICLOUD_STORE_AWS_SESSION_TOKEN=f"{token}\n")
    with SecretsStore.from_env(environ) as store:
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"v": "1"})
        assert store.get_secret_values(sid) == {"v": "1"}
    assert caplog.text
    assert token not in caplog.text


def test_the_log_filter_covers_tracebacks(
    moto_server: str, aws_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A client built by hand (not through the settings) with a malformed token: the SDK fails while sending and
    # logs the exception, whose text quotes the header value, with its traceback.
    caplog.set_level(logging.DEBUG)
    session = boto3.session.Session(
        aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="k", aws_session_token=f"{SENTINEL}\nx"
    )
    client = session.client(
        "secretsmanager",
        region_name=REGION,
        endpoint_url=moto_server,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    store = SecretsStore(StoreSettings(backend="aws"), driver=AwsDriver(aws_settings(), client=client))
    with pytest.raises(BackendUnavailableError) as info:
        store.get_secret_values(uuid.uuid4())
    assert "Traceback" in caplog.text  # the SDK did log a traceback
    assert SENTINEL not in caplog.text
    assert SENTINEL not in str(info.value)


def test_the_log_filter_is_on_every_sdk_logger(aws_settings: Any) -> None:
    AwsDriver(aws_settings())
    names = [
        n for n in logging.Logger.manager.loggerDict if n.startswith(("botocore.", "urllib3.", "boto3."))
    ]
    names += ["botocore.httpsession", "urllib3.connectionpool", "botocore.endpoint", "botocore.auth"]
    unfiltered = [
        name
        for name in names
        if not any(isinstance(f, RedactingFilter) for f in logging.getLogger(name).filters)
    ]
    assert unfiltered == []


def test_configured_credentials_are_blanked_wherever_they_appear(
    aws_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    AwsDriver(aws_settings(secret_access_key=f"{SENTINEL}-key", session_token=f"{SENTINEL}-tok"))
    logging.getLogger("botocore.credentials").debug("found %s and %s", f"{SENTINEL}-key", f"{SENTINEL}-tok")
    try:
        raise ValueError(f"bad header {SENTINEL}-tok")
    except ValueError:
        logging.getLogger("urllib3.connectionpool").debug("failed", exc_info=True)
    assert "found" in caplog.text and "bad header" in caplog.text
    assert SENTINEL not in caplog.text


# -- 9. connection pools sized to the concurrency ------------------------------------------------------------


def test_pool_size_follows_max_workers_or_its_own_setting(aws_settings: Any) -> None:
    base = {"MULTICLOUD_STORE_BACKEND": "aws", **_keys()}
    config: Any = SecretsStore.from_env(
        {**base, "MULTICLOUD_STORE_MAX_WORKERS": "16"}
    ).driver.client.meta.config  # type: ignore[attr-defined]
    assert config.max_pool_connections == 16
    config = SecretsStore.from_env(base).driver.client.meta.config  # type: ignore[attr-defined]
    assert config.max_pool_connections == 10  # never fewer than botocore's own default
    explicit = {
        **base,
        "MULTICLOUD_STORE_MAX_WORKERS": "16",
        "MULTICLOUD_STORE_AWS_MAX_POOL_CONNECTIONS": "40",
    }
    config = SecretsStore.from_env(explicit).driver.client.meta.config  # type: ignore[attr-defined]
    assert config.max_pool_connections == 40
    with pytest.raises(ConfigurationError) as info:
        AwsSettings.from_environ({"MULTICLOUD_STORE_AWS_MAX_POOL_CONNECTIONS": "0"})
    assert info.value.variable == "MULTICLOUD_STORE_AWS_MAX_POOL_CONNECTIONS"


def test_sixteen_threads_reuse_their_connections(
    server_environ: Callable[..., dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    threads = 16
    with SecretsStore.from_env(
        {**server_environ("pool"), "MULTICLOUD_STORE_MAX_WORKERS": str(threads)}
    ) as store:
        ids = [uuid.uuid4() for _ in range(threads)]
        for sid in ids:
            store.store_secret_values(sid, {"v": str(sid)})
        barrier = threading.Barrier(threads)
        errors: list[BaseException] = []

        def work(sid: uuid.UUID) -> None:
            try:
                barrier.wait()
                for _ in range(10):
                    assert store.get_secret_values(sid) == {"v": str(sid)}
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(sid,)) for sid in ids]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert errors == []
    assert "Connection pool is full" not in caplog.text

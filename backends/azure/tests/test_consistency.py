"""Real-service semantics (issue 10) on the ``azure`` backend: racing creators, lost answers, credentials, pools.

Every test goes through `SecretsStore` and the real ``SecretClient`` against the emulator, using the knobs that show
what the real service does: `KeyVaultEmulator.interleave` (concurrent writers meet at a chosen request) and
`KeyVaultEmulator.lose_answers` (a write commits and its answer is lost).
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from azure.keyvault.secrets import SecretClient
from conftest import inprocess_settings

from multicloud_store.errors import ConfigurationError, SecretExistsError
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store_azure.driver import WRITER_TAG, AzureDriver, client_options, create_client
from multicloud_store_azure.settings import AzureSettings
from multicloud_store_azure.testing import KeyVaultEmulator, StaticTokenCredential

PUT = "PUT /secrets/{name}"
CHECK = "GET /secrets/{name}/versions"


def _store(driver: AzureDriver, deployment: str = "azure-consistency") -> SecretsStore:
    return SecretsStore(StoreSettings(backend="azure", deployment_id=deployment), driver=driver)


def _race(stores: list[SecretsStore], sid: uuid.UUID) -> list[BaseException | None]:
    """Let every store create ``sid`` at once, each with its own values; return what each call raised."""
    outcomes: list[BaseException | None] = [None] * len(stores)
    start = threading.Barrier(len(stores))

    def run(n: int) -> None:
        start.wait(timeout=60)
        try:
            stores[n].store_secret_values(sid, {"writer": str(n)})
        except BaseException as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


# -- 5. concurrent creates: exactly one winner, and its values stay ----------------------------------------------


@pytest.mark.parametrize(
    ("point", "reverse", "skew"),
    [(CHECK, False, 0), (PUT, False, 0), (PUT, True, 0), (PUT, True, 1)],
    ids=["checks-before-writes", "writes-back-to-back", "writes-reversed", "default-clock-skew"],
)
def test_racing_creators_have_one_winner_whose_values_stay(
    make_driver: Callable[..., AzureDriver],
    emulator: KeyVaultEmulator,
    raw_client: SecretClient,
    point: str,
    reverse: bool,
    skew: int,
) -> None:
    # Separate drivers share no lock, as separate processes would not.
    emulator.interleave(point, parties=3, reverse=reverse)
    stores = [_store(make_driver(clock_skew=skew)) for _ in range(3)]
    sid = uuid.uuid4()
    outcomes = _race(stores, sid)
    assert not [exc for exc in outcomes if exc is not None and not isinstance(exc, SecretExistsError)]
    winners = [n for n, exc in enumerate(outcomes) if exc is None]
    assert len(winners) == 1
    assert stores[0].get_secret_values(sid) == {"writer": str(winners[0])}
    # The losers' versions are disabled: only the winner's values can be read, even by version id.
    name = stores[0].secret_name(sid)
    for properties in raw_client.list_properties_of_secret_versions(name):
        if properties.enabled:
            assert json.loads(raw_client.get_secret(name, properties.version).value or "")["values"] == {
                "writer": str(winners[0])
            }


def test_a_writer_stalled_after_its_check_loses_to_a_whole_create(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    """The window the confirmation read of the old protocol left open: check, [another create], write."""
    from test_azure import _PauseAfterCheck

    checked, proceed = threading.Event(), threading.Event()
    slow = _store(make_driver(transport=_PauseAfterCheck(emulator.transport(), checked, proceed)))
    fast = _store(make_driver())
    sid = uuid.uuid4()
    outcome: list[BaseException | None] = []

    def slow_store() -> None:
        try:
            slow.store_secret_values(sid, {"by": "slow"})
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=slow_store)
    thread.start()
    assert checked.wait(timeout=60)
    fast.store_secret_values(sid, {"by": "fast"})  # check, write and settle, all inside the slow one's gap
    proceed.set()
    thread.join(timeout=120)
    assert len(outcome) == 1 and isinstance(outcome[0], SecretExistsError)
    assert fast.get_secret_values(sid) == {"by": "fast"}
    assert slow.get_secret_values(sid) == {"by": "fast"}


def test_a_single_create_costs_three_calls_and_tags_its_writer(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator, raw_client: SecretClient
) -> None:
    store = _store(make_driver())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    assert emulator.calls[-3:] == [CHECK, PUT, CHECK] and emulator.calls.count(PUT) == 1
    tags = raw_client.get_secret(store.secret_name(sid)).properties.tags or {}
    assert len(tags[WRITER_TAG]) == 32


_WORKER = r"""
import json, sys, uuid
from concurrent.futures import ThreadPoolExecutor
from multicloud_store import SecretsStore
from multicloud_store.errors import SecretExistsError

ids = [uuid.UUID(line) for line in open(sys.argv[1]).read().split()]
me = sys.argv[2]
store = SecretsStore.from_env()
store.check()
print("ready", flush=True)
sys.stdin.readline()

def one(sid):
    try:
        store.store_secret_values(sid, {"writer": me})
        return "stored"
    except SecretExistsError:
        return "exists"
    except Exception as exc:
        return "error: " + type(exc).__name__ + ": " + str(exc)

with ThreadPoolExecutor(int(sys.argv[3])) as pool:
    results = dict(zip(map(str, ids), pool.map(one, ids)))
store.close()
print(json.dumps(results), flush=True)
"""


@pytest.mark.parametrize(("point", "reverse"), [(None, False), (CHECK, False), (PUT, True)])
def test_two_processes_racing_for_150_ids(
    https_env: Callable[..., dict[str, str]],
    emulator: KeyVaultEmulator,
    tmp_path: Any,
    point: str | None,
    reverse: bool,
) -> None:
    """Two processes store the same 150 new ids at the same instant, through one emulator server."""
    if point is not None:
        emulator.interleave(point, parties=2, reverse=reverse, timeout=60)
    ids = [uuid.uuid4() for _ in range(150)]
    id_file = tmp_path / "ids.txt"
    id_file.write_text("\n".join(map(str, ids)))
    env = {key: value for key, value in os.environ.items() if not key.startswith("MULTICLOUD_STORE_")}
    env.update(https_env(MULTICLOUD_STORE_DEPLOYMENT_ID="racing", MULTICLOUD_STORE_MAX_WORKERS="16"))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(id_file), str(n), "16"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready", worker.stderr.read() if worker.stderr else ""
        for worker in workers:  # the same instant, as near as two pipes allow
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    results = []
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    reader = SecretsStore.from_env(https_env(MULTICLOUD_STORE_DEPLOYMENT_ID="racing"))
    doubles, wrong_values, errors = [], [], []
    for sid in ids:
        outcome = [results[n][str(sid)] for n in range(2)]
        errors += [o for o in outcome if o.startswith("error")]
        stored = [n for n in range(2) if outcome[n] == "stored"]
        if len(stored) != 1:
            doubles.append((sid, outcome))
            continue
        if reader.get_secret_values(sid) != {"writer": str(stored[0])}:
            wrong_values.append(sid)
    reader.close()
    assert errors == []
    # Exactly one success per id, never two, never none; and the values left are the reported winner's.
    assert not doubles, f"{len(doubles)} of {len(ids)} ids without exactly one winner, e.g. {doubles[:3]}"
    assert not wrong_values, f"{len(wrong_values)} of {len(ids)} ids hold another writer's values"


# -- 8. credentials: stripped, refused when malformed, never echoed -------------------------------------------

SENTINEL = "sentinel-credential-must-never-leak-93b2"


def test_a_credential_read_from_a_file_loses_its_trailing_newline(
    https_env: Callable[..., dict[str, str]],
) -> None:
    # A Kubernetes secret made with --from-file keeps the file's final newline.
    store = SecretsStore.from_env(https_env(MULTICLOUD_STORE_AZURE_ACCESS_TOKEN=" emulator-token\n"))
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    assert store.get_secret_values(sid) == {"v": "1"}
    store.close()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MULTICLOUD_STORE_AZURE_ACCESS_TOKEN", f"{SENTINEL}\n{SENTINEL}"),
        ("MULTICLOUD_STORE_AZURE_ACCESS_TOKEN", f"{SENTINEL}\x07"),
        ("MULTICLOUD_STORE_AZURE_ACCESS_TOKEN", f"{SENTINEL} {SENTINEL}"),  # not a bearer token
        ("MULTICLOUD_STORE_AZURE_CLIENT_SECRET", f"{SENTINEL}\r\n{SENTINEL}"),
    ],
)
def test_a_malformed_credential_is_refused_naming_the_variable_never_the_value(
    https_env: Callable[..., dict[str, str]], variable: str, value: str
) -> None:
    env = https_env(**{variable: value})
    if variable.endswith("CLIENT_SECRET"):
        del env["MULTICLOUD_STORE_AZURE_ACCESS_TOKEN"]
        env.update(MULTICLOUD_STORE_AZURE_CLIENT_ID="app", MULTICLOUD_STORE_AZURE_TENANT_ID="tenant")
    with pytest.raises(ConfigurationError) as info:
        SecretsStore.from_env(env)
    assert info.value.variable == variable
    assert variable in str(info.value)
    assert SENTINEL not in str(info.value) and SENTINEL not in repr(info.value)


def test_cli_never_prints_a_malformed_token_nor_calls_it_unavailable(
    https_env: Callable[..., dict[str, str]],
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MULTICLOUD_STORE_")}
    env.update(https_env(MULTICLOUD_STORE_AZURE_ACCESS_TOKEN=f"{SENTINEL}\n{SENTINEL}\n"))
    result = subprocess.run(
        [sys.executable, "-m", "multicloud_store.cli", "get", str(uuid.uuid4())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert SENTINEL not in result.stdout + result.stderr
    assert "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN" in result.stderr
    assert result.returncode not in (0, 6)  # a configuration error, not "unavailable"


def test_a_token_no_header_can_carry_is_a_configuration_error_at_once(
    emulator: KeyVaultEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # A credential of the caller's own making (here: a static one) hands out a token with a line break.
    caplog.set_level(logging.DEBUG)
    settings = inprocess_settings(vault_url=emulator.vault_url, ca_bundle=emulator.ca_cert_path)
    client = SecretClient(
        emulator.vault_url,
        StaticTokenCredential(f"{SENTINEL}\n"),
        **client_options(settings),  # the CA bundle, the retries
    )
    store = _store(AzureDriver(settings, client=client))
    with pytest.raises(ConfigurationError) as info:
        store.get_secret_values(uuid.uuid4())
    assert SENTINEL not in str(info.value)
    # Refused before it left the process, and not retried: at most the token-less challenge was served (the SDK
    # caches a vault's challenge per process, so an earlier test may have spared it).
    assert emulator.calls in ([], ["GET /secrets/{name}"])
    assert SENTINEL not in caplog.text
    client.close()


def test_sdk_logs_never_show_a_credential_tracebacks_included(
    https_env: Callable[..., dict[str, str]], emulator: KeyVaultEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.token = SENTINEL
    caplog.set_level(logging.DEBUG)
    settings = AzureSettings.from_environ(https_env(MULTICLOUD_STORE_AZURE_ACCESS_TOKEN=SENTINEL))
    # The network trace (logging_enable) prints every header, Authorization included, unless filtered.
    client = create_client(settings, logging_enable=True)
    store = _store(AzureDriver(settings, client=client))
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    assert store.get_secret_values(sid) == {"v": "1"}
    assert "Authorization" in caplog.text  # the trace was on
    # A record with a traceback whose text holds the token, on an SDK logger.
    try:
        raise ValueError(
            f"Invalid return character or leading space in header: Authorization: Bearer {SENTINEL}"
        )
    except ValueError:
        logging.getLogger("urllib3.connectionpool").debug("request failed", exc_info=True)
        logging.getLogger("azure.core.pipeline.policies._retry").warning("retrying", exc_info=True)
    assert "request failed" in caplog.text
    handler = logging.StreamHandler(io.StringIO())
    for record in caplog.records:
        assert SENTINEL not in handler.format(record)
    assert SENTINEL not in caplog.text
    client.close()


# -- 9. the connection pool is sized for the store's threads ----------------------------------------------------


def test_a_store_shared_by_16_threads_reuses_its_connections(
    https_env: Callable[..., dict[str, str]], emulator: KeyVaultEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    store = SecretsStore.from_env(https_env(MULTICLOUD_STORE_MAX_WORKERS="16"))
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    emulator.latency = 0.05  # every thread holds its connection at the same time
    start = threading.Barrier(16)
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            start.wait(timeout=60)
            for _ in range(5):
                assert store.get_secret_values(sid) == {"v": "1"}
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    store.close()
    assert failures == []
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]


def test_the_pool_size_follows_the_settings() -> None:
    base = {
        "MULTICLOUD_STORE_AZURE_VAULT_URL": "https://v.vault.azure.net",
        "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN": "t",
    }
    assert AzureSettings.from_environ(base).pool_size() == 10
    assert AzureSettings.from_environ({**base, "MULTICLOUD_STORE_MAX_WORKERS": "32"}).pool_size() == 32
    assert (
        AzureSettings.from_environ({**base, "MULTICLOUD_STORE_AZURE_MAX_CONNECTIONS": "4"}).pool_size() == 4
    )


# -- 4. lost answers: the write committed, its answer did not come back -------------------------------------------


def test_a_create_whose_every_answer_was_lost_is_verified_by_one_read(
    https_env: Callable[..., dict[str, str]], emulator: KeyVaultEmulator
) -> None:
    store = SecretsStore.from_env(https_env())
    sid = uuid.uuid4()
    emulator.lose_answers(PUT, times=4)  # the first try and azure-core's 3 retries: each commits a version
    store.store_secret_values(sid, {"v": "1"})  # reported as stored, not as unavailable
    # (A first call of the process may be preceded by the authentication challenge.)
    assert emulator.calls[-6:] == [
        CHECK,
        PUT,
        PUT,
        PUT,
        PUT,
        "GET /secrets/{name}",
    ]  # then one verification read
    assert store.get_secret_values(sid) == {"v": "1"}
    # And the caller's own retry of that store is idempotent.
    store.store_secret_values(sid, {"v": "1"})
    with pytest.raises(SecretExistsError):
        store.store_secret_values(sid, {"v": "2"})
    assert store.get_secret_values(sid) == {"v": "1"}
    store.close()


def test_a_create_whose_first_answer_was_lost_settles_on_its_own_versions(
    https_env: Callable[..., dict[str, str]], emulator: KeyVaultEmulator, raw_client: SecretClient
) -> None:
    store = SecretsStore.from_env(https_env())
    sid = uuid.uuid4()
    emulator.lose_answers(PUT, times=1)  # azure-core's retry writes a second version of the same writer
    store.store_secret_values(sid, {"v": "1"})
    assert store.get_secret_values(sid) == {"v": "1"}
    versions = list(raw_client.list_properties_of_secret_versions(store.secret_name(sid)))
    assert len(versions) == 2 and len({(v.tags or {})[WRITER_TAG] for v in versions}) == 1
    store.close()


def test_an_update_and_a_delete_whose_answers_were_lost_are_verified(
    https_env: Callable[..., dict[str, str]], emulator: KeyVaultEmulator
) -> None:
    store = SecretsStore.from_env(https_env())
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"v": "1"})
    emulator.lose_answers(PUT, times=4)
    store.update_secret_values(sid, {"v": "2"})
    assert store.get_secret_values(sid) == {"v": "2"}
    emulator.lose_answers("DELETE /secrets/{name}", times=4)
    store.delete_secret_values(sid)
    assert not store.secret_exists(sid)
    store.store_secret_values(sid, {"v": "again"})  # the soft-deleted leftover is purged first
    assert store.get_secret_values(sid) == {"v": "again"}
    store.close()


def test_racing_creators_over_a_soft_deleted_secret_that_cannot_be_purged(
    make_driver: Callable[..., AzureDriver], emulator: KeyVaultEmulator
) -> None:
    # Purge refused: the name is freed by recovering the old secret, whose old versions must never win.
    emulator.deny_purge = True
    first = _store(make_driver())
    sid = uuid.uuid4()
    first.store_secret_values(sid, {"writer": "old"})
    first.delete_secret_values(sid)
    emulator.interleave(PUT, parties=3)
    stores = [_store(make_driver()) for _ in range(3)]
    outcomes = _race(stores, sid)
    assert not [exc for exc in outcomes if exc is not None and not isinstance(exc, SecretExistsError)]
    winners = [n for n, exc in enumerate(outcomes) if exc is None]
    assert len(winners) == 1
    assert first.get_secret_values(sid) == {"writer": str(winners[0])}

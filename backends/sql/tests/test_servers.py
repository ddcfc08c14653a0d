"""Several replicas on one database, and database servers restarted under a running store."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest

from multicloud_store.errors import BackendUnavailableError
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore
from multicloud_store_sql import SqlDriver
from multicloud_store_sql.testing import (
    MariaDBServer,
    PostgresServer,
    ServerStartError,
    replica_worker,
    unique_table_name,
)

REPLICAS = 4
OWN_PER_REPLICA = 40
SHARED_IDS = 60


def test_four_replica_processes_lose_nothing_and_have_one_winner_per_id(
    postgres_url: str, key_text: str
) -> None:
    environ = {
        "MULTICLOUD_STORE_BACKEND": "sql",
        "MULTICLOUD_STORE_DEPLOYMENT_ID": "replicas",
        "MULTICLOUD_STORE_SQL_URL": postgres_url,
        "MULTICLOUD_STORE_SQL_KEY": key_text,
        # A fresh table: the replicas also race to create it and its meta rows.
        "MULTICLOUD_STORE_SQL_TABLE": unique_table_name(),
        "MULTICLOUD_STORE_SQL_POOL_SIZE": "2",
    }
    shared = [str(uuid.uuid4()) for _ in range(SHARED_IDS)]
    start_at = time.time() + 10  # every replica connected and set up by then, even on a loaded machine
    with ProcessPoolExecutor(REPLICAS, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            pool.submit(replica_worker, environ, index, OWN_PER_REPLICA, shared, start_at)
            for index in range(REPLICAS)
        ]
        results = [future.result(timeout=600) for future in futures]

    assert [r["errors"] for r in results] == [[]] * REPLICAS
    wins = Counter(sid for r in results for sid in r["won"])
    assert set(wins) == set(shared) and set(wins.values()) == {1}  # exactly one winner per id
    for r in results:
        assert set(r["won"]) | set(r["lost"]) == set(shared) and not set(r["won"]) & set(r["lost"])

    store = SecretsStore.from_env(environ)
    try:
        winner_of = {sid: index for index, r in enumerate(results) for sid in r["won"]}
        for sid, index in winner_of.items():
            assert store.get_secret_values(uuid.UUID(sid)) == {
                "winner": str(index)
            }  # the winner's values remain
        expected = {sid: values for r in results for sid, values in r["own"].items()}
        assert len(expected) == REPLICAS * OWN_PER_REPLICA
        outcomes = store.get_many([uuid.UUID(sid) for sid in expected])
        lost = [sid for sid, values in expected.items() if outcomes[uuid.UUID(sid)].values != values]
        assert lost == []  # 0 lost writes: every replica's last update is what is stored
        assert set(map(str, store.list_secret_ids())) == set(expected) | set(shared)
    finally:
        store.close()


@pytest.fixture(params=["postgresql", "mariadb"])
def own_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer | MariaDBServer]:
    """A server of its own for the restart test (the session's servers keep running for the other tests)."""
    server: PostgresServer | MariaDBServer = (
        PostgresServer() if request.param == "postgresql" else MariaDBServer()
    )
    try:
        server.start()
    except ServerStartError as exc:
        server.stop()
        pytest.fail(f"cannot start {request.param}: {exc}", pytrace=False)
    yield server
    server.stop()


def test_server_restart_in_the_middle_of_a_run(
    own_server: PostgresServer | MariaDBServer, make_driver: Callable[..., SqlDriver]
) -> None:
    """Calls that overlap the restart fail as unavailable (nothing else); every call after it succeeds."""
    # Generous connect timeout: the server is down only while it restarts; the test counts outcomes, not time.
    driver = make_driver(own_server.url(), pool_size=4, connect_timeout=60)
    store = SecretsStore(StoreSettings(backend="sql", deployment_id="restart"), driver=driver)
    before = [uuid.uuid4() for _ in range(20)]
    for n, sid in enumerate(before):
        store.store_secret_values(sid, {"n": str(n)})

    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    unexpected: list[BaseException] = []

    def hammer() -> None:
        # Keep every pooled connection busy, so the restart cuts connections that are in use and in the pool.
        while not stop.is_set():
            try:
                store.get_secret_values(before[outcomes.total() % len(before)])
                outcomes["ok"] += 1
            except BackendUnavailableError:
                outcomes["unavailable"] += 1
            except BaseException as exc:
                unexpected.append(exc)
                return

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while outcomes["ok"] < 20 and not unexpected:
        assert time.monotonic() < deadline, f"no 20 successful reads before the restart: {outcomes}"
        time.sleep(0.01)
    own_server.restart()
    stop.set()
    for thread in threads:
        thread.join()
    assert unexpected == []

    # After the restart every call succeeds, the first one included: the pool's pre-ping replaces the
    # connections the restart broke.
    assert store.get_secret_values(before[0]) == {"n": "0"}
    after = uuid.uuid4()
    store.store_secret_values(after, {"new": "1"})
    store.update_secret_values(before[1], {"n": "changed"})
    store.delete_secret_values(before[2])
    assert store.get_secret_values(after) == {"new": "1"}
    assert store.get_secret_values(before[1]) == {"n": "changed"}
    assert [store.get_secret_values(sid) for sid in before[3:]] == [{"n": str(n)} for n in range(3, 20)]
    assert len(list(store.list_secret_ids())) == 20

"""The local backend under load: closing mid-flight, bounded connections, many processes opening a new file."""

from __future__ import annotations

import contextlib
import multiprocessing
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from multicloud_store.drivers.local import LocalDriver, LocalSettings
from multicloud_store.errors import SecretExistsError
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore

_CLOSE_SCRIPT = textwrap.dedent(
    """
    import sys, threading, uuid
    from multicloud_store.drivers.local import LocalDriver, LocalSettings
    from multicloud_store.settings import StoreSettings
    from multicloud_store.store import SecretsStore

    store = SecretsStore(StoreSettings(backend="local"), driver=LocalDriver(LocalSettings(path=sys.argv[1])))
    ids = [uuid.uuid4() for _ in range(8)]
    for sid in ids:
        store.store_secret_values(sid, {"n": "0"})
    started = threading.Barrier(9)
    busy = threading.Semaphore(0)
    unexpected = []

    def work(sid):
        started.wait()
        n = 0
        while True:
            n += 1
            try:
                store.update_secret_values(sid, {"n": str(n)})
                store.get_secret_values(sid)
                list(store.list_secret_ids())
            except Exception as exc:
                if "closed" not in str(exc):
                    unexpected.append(f"{type(exc).__name__}: {exc}")
                return
            if n == 3:
                busy.release()

    threads = [threading.Thread(target=work, args=(sid,)) for sid in ids]
    for thread in threads:
        thread.start()
    started.wait()
    for _ in threads:
        busy.acquire()  # every thread is in its loop: close now, mid-flight
    store.close()
    for thread in threads:
        thread.join()
    if unexpected:
        print("\\n".join(unexpected))
        sys.exit(3)
    """
)


def test_close_while_threads_are_in_flight(tmp_path: Path) -> None:
    """20 processes, each with 8 threads updating and reading while the main thread closes the store."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CLOSE_SCRIPT, str(tmp_path / f"close-{i}.db")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(20)
    ]
    results = [(p.wait(timeout=300), p.stdout.read() if p.stdout else "") for p in processes]
    assert [code for code, _ in results] == [0] * 20, [out for _, out in results if out]


_FD_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading, uuid
    from multicloud_store.drivers.local import LocalDriver, LocalSettings
    from multicloud_store.settings import StoreSettings
    from multicloud_store.store import SecretsStore

    def fds():
        return len(os.listdir("/proc/self/fd"))

    def rss_kib():
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))

    store = SecretsStore(StoreSettings(backend="local"), driver=LocalDriver(LocalSettings(path=sys.argv[1])))
    sid = uuid.uuid4()
    store.store_secret_values(sid, {"a": "b" * 1000})
    for _ in range(100):  # warm up allocator and caches with a few threads first
        t = threading.Thread(target=store.get_secret_values, args=(sid,)); t.start(); t.join()
    before = (fds(), rss_kib())
    errors = []

    def work():
        try:
            assert store.get_secret_values(sid) == {"a": "b" * 1000}
        except Exception as exc:
            errors.append(repr(exc))

    for _ in range(2000 // 50):  # a thread per request, 50 at a time
        batch = [threading.Thread(target=work) for _ in range(50)]
        for t in batch:
            t.start()
        for t in batch:
            t.join()
    after = (fds(), rss_kib())
    print(json.dumps({"before": before, "after": after, "errors": errors}))
    """
)


def test_short_lived_threads_leave_descriptors_and_memory_flat(tmp_path: Path) -> None:
    import json

    output = subprocess.run(
        [sys.executable, "-c", _FD_SCRIPT, str(tmp_path / "fds.db")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    result = json.loads(output)
    assert result["errors"] == []
    (fds_before, rss_before), (fds_after, rss_after) = result["before"], result["after"]
    # A pool of 8 connections, each a database and a WAL descriptor: the count cannot grow beyond that.
    assert fds_after - fds_before <= 2 * 8
    assert rss_after - rss_before < 30 * 1024  # KiB; one connection per thread grew by over 200 MiB


_EMFILE_SCRIPT = textwrap.dedent(
    """
    import os, resource, sys, uuid
    from multicloud_store.drivers.local import LocalDriver, LocalSettings
    from multicloud_store.errors import BackendUnavailableError

    key = sys.argv[2]
    LocalDriver(LocalSettings(path=sys.argv[1], key=key)).create("a", "{}", {})
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    outcomes = []
    for path in (sys.argv[1], sys.argv[1] + ".new"):
        try:
            LocalDriver(LocalSettings(path=path, key=key)).create("b", "{}", {})
            outcomes.append("no error")
        except BackendUnavailableError as exc:
            outcomes.append("unavailable: " + str(exc))
        except Exception as exc:
            outcomes.append(f"{type(exc).__name__}: {exc}")
    for descriptor in held:
        os.close(descriptor)
    print("\\n".join(outcomes))
    """
)


def test_running_out_of_descriptors_is_unavailable_with_the_os_error(tmp_path: Path, random_key: str) -> None:
    output = subprocess.run(
        [sys.executable, "-c", _EMFILE_SCRIPT, str(tmp_path / "emfile.db"), random_key],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    lines = output.strip().splitlines()
    assert len(lines) == 2, output
    for line in lines:
        assert line.startswith("unavailable: "), line
        assert "Too many open files" in line, line
        assert "MULTICLOUD_STORE_LOCAL_PATH" not in line, line


def test_pool_size_defaults_to_the_store_workers_and_can_be_set() -> None:
    assert LocalSettings.from_environ({}).pool_size == 8
    assert LocalSettings.from_environ({"MULTICLOUD_STORE_MAX_WORKERS": "3"}).pool_size == 3
    assert LocalSettings.from_environ({"MULTICLOUD_STORE_LOCAL_POOL_SIZE": "2"}).pool_size == 2


def _open_rounds(directory: str, ids: list[str], key: str, barrier: object, failures: object) -> None:
    for round_number in range(25):
        path = Path(directory) / f"round-{round_number}.db"
        # 20 rounds with the key in the environment (setup races at full speed), then 5 that race to make a key file.
        settings = LocalSettings(path=path, key=key if round_number < 20 else None)
        # Everything built before the barrier, so the processes reach the new file within microseconds.
        store = SecretsStore(StoreSettings(backend="local"), driver=LocalDriver(settings))
        barrier.wait()  # type: ignore[attr-defined]
        try:
            for text in ids:
                with contextlib.suppress(SecretExistsError):  # another process stored it first: expected
                    store.store_secret_values(uuid.UUID(text), {"round": str(round_number)})
            for text in ids:
                assert store.get_secret_values(uuid.UUID(text)) == {"round": str(round_number)}
        except Exception as exc:
            failures.put(f"round {round_number}: {type(exc).__name__}: {exc}")  # type: ignore[attr-defined]
        finally:
            store.close()


def test_many_processes_open_a_new_database_at_once(tmp_path: Path, random_key: str) -> None:
    """8 processes x 25 rounds, each round a database none of them has written yet, the same 20 ids at once."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(8)
    failures = context.Queue()
    ids = [str(uuid.uuid4()) for _ in range(20)]
    processes = [
        context.Process(target=_open_rounds, args=(str(tmp_path), ids, random_key, barrier, failures))
        for _ in range(8)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=600)
    reported = []
    while not failures.empty():
        reported.append(failures.get())
    assert [p.exitcode for p in processes] == [0] * 8
    assert reported == []


def test_reading_while_listing_with_a_pool_of_one(tmp_path: Path) -> None:
    """A listing holds no connection between pages, so reads inside the loop do not wait for it."""
    settings = LocalSettings(path=tmp_path / "one.db", pool_size=1, page_size=3)
    store = SecretsStore(StoreSettings(backend="local"), driver=LocalDriver(settings))
    ids = [uuid.uuid4() for _ in range(10)]
    for sid in ids:
        store.store_secret_values(sid, {"sid": str(sid)})
    seen = {sid: store.get_secret_values(sid)["sid"] for sid in store.list_secret_ids()}
    assert seen == {sid: str(sid) for sid in ids}
    assert len(store.get_many(ids)) == 10  # the worker pool's threads share the one connection
    store.close()

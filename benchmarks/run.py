"""The benchmark suite (`nox -s bench`): every figure is a ratio or distribution from interleaved runs.

Writes docs/benchmarks.md with the machine and versions. Nothing here is a test: no figure fails the build.

    python benchmarks/run.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AWS_KEYS = {
    "MULTICLOUD_STORE_AWS_REGION": "us-east-1",
    "MULTICLOUD_STORE_AWS_ACCESS_KEY_ID": "testing",
    "MULTICLOUD_STORE_AWS_SECRET_ACCESS_KEY": "testing",
}


@dataclass
class Backend:
    """One backend under benchmark: how to build our store and the raw SDK read it is compared with."""

    name: str
    env: dict[str, str]
    raw_read: Callable[[str], Any]  # backend name -> parsed JSON, with the SDK alone
    notes: str = ""


@dataclass
class Report:
    """Sections of docs/benchmarks.md."""

    sections: list[str] = field(default_factory=list)

    def add(self, title: str, intro: str, header: list[str], rows: list[list[str]]) -> None:
        lines = [f"## {title}", "", intro, "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        self.sections.append("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def p90_us(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1] * 1e6


def interleaved(a: Callable[[], Any], b: Callable[[], Any], n: int) -> tuple[list[float], list[float]]:
    """Time ``a`` and ``b`` alternately, in a random order each round, so drift hits both alike."""
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(10):  # warm-up: connections, caches
        a()
        b()
    for _ in range(n):
        pair = [(a, ta), (b, tb)]
        random.shuffle(pair)
        for func, out in pair:
            start = time.perf_counter()
            func()
            out.append(time.perf_counter() - start)
    return ta, tb


# -- backends ---------------------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(
    command: list[str], wanted: list[str], timeout: float = 120
) -> tuple[subprocess.Popen[str], list[str]]:
    """Start a server process and return it with the first output line containing each of ``wanted``."""
    import queue
    import threading

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout
    # A reader thread: select() on the pipe misses lines already in the text wrapper's buffer.
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(wanted):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"server did not start: {command}")
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        for key in wanted:
            if key in line and key not in found:
                found[key] = line.strip()
    return process, [found[key] for key in wanted]


def _wait_http(url: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def start_server(name: str, latency: float = 0.0) -> tuple[Backend, Callable[[], None]]:
    """Start one backend's server in its own process (so it does not share this process's GIL)."""
    python = sys.executable
    if name == "aws":
        import boto3

        port = _free_port()
        process = subprocess.Popen(
            [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        endpoint = f"http://127.0.0.1:{port}"
        _wait_http(endpoint + "/moto-api/")
        client = boto3.session.Session().client(
            "secretsmanager",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        backend = Backend(
            "aws",
            {"MULTICLOUD_STORE_BACKEND": "aws", "MULTICLOUD_STORE_AWS_ENDPOINT_URL": endpoint, **AWS_KEYS},
            lambda secret: json.loads(client.get_secret_value(SecretId=secret)["SecretString"]),
            notes="moto server process; raw = boto3 GetSecretValue",
        )
    elif name == "gcp":
        import grpc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.secretmanager import SecretManagerServiceClient
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        process, (line,) = _spawn(
            [
                python,
                "-m",
                "multicloud_store_gcp.testing",
                "--grpc-port",
                "0",
                "--rest-port",
                "0",
                "--latency",
                str(latency),
            ],
            ["gRPC "],
        )
        endpoint = line.split("gRPC ")[1].split(",")[0].strip()
        gclient = SecretManagerServiceClient(
            transport=SecretManagerServiceGrpcTransport(
                channel=grpc.insecure_channel(endpoint),
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            )
        )

        def gcp_raw(secret: str) -> Any:
            response = gclient.access_secret_version(
                name=f"projects/bench/secrets/{secret}/versions/latest", retry=None
            )
            return json.loads(response.payload.data.decode())

        backend = Backend(
            "gcp",
            {
                "MULTICLOUD_STORE_BACKEND": "gcp",
                "MULTICLOUD_STORE_GCP_ENDPOINT": endpoint,
                "MULTICLOUD_STORE_GCP_TRANSPORT": "grpc",
                "MULTICLOUD_STORE_GCP_ANONYMOUS": "true",
                "MULTICLOUD_STORE_GCP_PROJECT_ID": "bench",
            },
            gcp_raw,
            notes="emulator process over gRPC; raw = AccessSecretVersion",
        )
    elif name == "azure":
        from azure.keyvault.secrets import SecretClient

        from multicloud_store_azure.testing import StaticTokenCredential

        process, (url_line, ca_line) = _spawn(
            [python, "-m", "multicloud_store_azure.testing", "--latency", str(latency)],
            ["vault URL:", "CA cert path:"],
        )
        vault_url = url_line.split("vault URL:")[1].strip()
        ca_path = ca_line.split("CA cert path:")[1].strip()
        aclient = SecretClient(
            vault_url=vault_url, credential=StaticTokenCredential(), connection_verify=ca_path
        )
        backend = Backend(
            "azure",
            {
                "MULTICLOUD_STORE_BACKEND": "azure",
                "MULTICLOUD_STORE_AZURE_VAULT_URL": vault_url,
                "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN": "emulator-token",
                "MULTICLOUD_STORE_AZURE_CA_BUNDLE": ca_path,
            },
            lambda secret: json.loads(aclient.get_secret(secret).value or "{}"),
            notes="emulator process over HTTPS; raw = SecretClient.get_secret",
        )
    elif name == "vault":
        import hvac

        from multicloud_store_vault.testing import OpenBaoServer

        bao = OpenBaoServer()
        bao.start()  # its own process: `bao server -dev`, in-memory storage
        vclient = hvac.Client(url=bao.url, token=bao.root_token)

        def vault_raw(secret: str) -> Any:
            answer = vclient.secrets.kv.v2.read_secret_version(
                path=secret, mount_point="secret", raise_on_deleted_version=True
            )
            return json.loads(answer["data"]["data"]["payload"])

        backend = Backend(
            "vault",
            {
                "MULTICLOUD_STORE_BACKEND": "vault",
                "MULTICLOUD_STORE_VAULT_URL": bao.url,
                "MULTICLOUD_STORE_VAULT_TOKEN": bao.root_token,
            },
            vault_raw,
            notes="OpenBao dev server process over HTTP; raw = hvac kv.v2.read_secret_version",
        )
        return backend, bao.stop
    elif name == "sql":
        from sqlalchemy import create_engine, text

        from multicloud_store.sealing import Keyring
        from multicloud_store_sql.testing import PostgresServer

        postgres = PostgresServer().start()  # its own process: a throwaway PostgreSQL 15 cluster
        url = postgres.create_database()
        keyring = Keyring.generate("bench")
        # The raw side: SQLAlchemy Core on a pooled engine with pre-ping (as the driver's), the same row, then
        # the AES-GCM open and json.loads the driver and the dispatcher do.
        engine = create_engine(url, pool_pre_ping=True)
        query = text(
            "SELECT key_id, nonce, ciphertext, labels FROM multicloud_store_secrets WHERE name = :name"
        )

        def sql_raw(secret: str) -> Any:
            with engine.connect() as connection:
                key_id, nonce, ciphertext, labels = connection.execute(query, {"name": secret}).one()
            aad = secret.encode() + b"\x00" + labels.encode()
            return json.loads(keyring.open_parts(key_id, nonce, ciphertext, aad))

        def stop_sql() -> None:
            engine.dispose()
            postgres.stop()

        backend = Backend(
            "sql",
            {
                "MULTICLOUD_STORE_BACKEND": "sql",
                "MULTICLOUD_STORE_SQL_URL": url,
                "MULTICLOUD_STORE_SQL_KEY": keyring.dumps(),
            },
            sql_raw,
            notes="PostgreSQL 15 server process over TCP (psycopg 3); raw = SQLAlchemy Core SELECT + AES-GCM open",
        )
        return backend, stop_sql
    else:
        raise ValueError(name)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

    return backend, stop


@contextmanager
def backends(tmp: Path, wanted: set[str]) -> Iterator[list[Backend]]:
    found: list[Backend] = []
    stack: list[Callable[[], None]] = []
    try:
        if "local" in wanted:
            from multicloud_store.drivers.local import LocalDriver, LocalSettings

            path = tmp / "bench.db"
            raw_driver = LocalDriver(LocalSettings(path=path))
            stack.append(raw_driver.close)
            found.append(
                Backend(
                    "local",
                    {"MULTICLOUD_STORE_BACKEND": "local", "MULTICLOUD_STORE_LOCAL_PATH": str(path)},
                    lambda name: json.loads(raw_driver.read(name).payload),
                    notes="raw = SQLite SELECT + AES-GCM decrypt (the driver's read)",
                )
            )
        for name in ("aws", "gcp", "azure", "vault", "sql"):
            if name in wanted:
                backend, stop = start_server(name)
                stack.append(stop)
                found.append(backend)
        yield found
    finally:
        for close in reversed(stack):
            try:
                close()
            except Exception as exc:  # a benchmark must still write what it measured
                print(f"cleanup failed: {type(exc).__name__}", file=sys.stderr)


def store_for(backend: Backend, **extra: str) -> Any:
    from multicloud_store import SecretsStore

    return SecretsStore.from_env({**backend.env, "MULTICLOUD_STORE_DEPLOYMENT_ID": "bench", **extra})


# -- the figures ------------------------------------------------------------------------------------------------


def bench_overhead(found: list[Backend], report: Report, n: int) -> None:
    rows = []
    for backend in found:
        store = store_for(backend)
        sid = uuid.uuid4()
        store.store_secret_values(
            sid, {"username": "bench", "password": "x" * 64, "url": "https://example.test"}
        )
        name = store.secret_name(sid)
        ours, raw = interleaved(
            lambda store=store, sid=sid: store.get_secret_values(sid),
            lambda read=backend.raw_read, name=name: read(name),
            n,
        )
        rows.append(
            [
                backend.name,
                f"{median_us(ours):.0f}",
                f"{median_us(raw):.0f}",
                f"**{statistics.median(ours) / statistics.median(raw):.3f}**",
                f"{p90_us(ours):.0f} / {p90_us(raw):.0f}",
                backend.notes,
            ]
        )
        store.close()
    report.add(
        "Dispatcher overhead",
        f"`SecretsStore.get_secret_values` against the raw SDK call plus `json.loads`, same server, {n} calls "
        "each, interleaved in random order. Target: ratio at most 1.05.",
        ["backend", "ours median µs", "raw median µs", "ratio", "p90 ours / raw µs", "setup"],
        rows,
    )


def bench_zenml(found: list[Backend], report: Report, n: int) -> None:
    aws = next((b for b in found if b.name == "aws"), None)
    if aws is None:
        return
    try:
        from zenml.zen_stores.secrets_stores.aws_secrets_store import (
            AWSSecretsStore,
            AWSSecretsStoreConfiguration,
        )
    except ImportError:
        report.sections.append(
            "## Against ZenML's AWSSecretsStore\n\nzenml is not installed here; skipped.\n"
        )
        return

    class _Info:
        id = uuid.uuid4()

    class _ZenStore:
        def get_store_info(self) -> _Info:
            return _Info()

    # ZenML's store has no endpoint setting: botocore's own variables point it (and its STS account check) at moto.
    os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = aws.env["MULTICLOUD_STORE_AWS_ENDPOINT_URL"]
    os.environ["AWS_ENDPOINT_URL_STS"] = aws.env["MULTICLOUD_STORE_AWS_ENDPOINT_URL"]
    theirs = AWSSecretsStore(
        zen_store=_ZenStore(),
        config=AWSSecretsStoreConfiguration(
            auth_method="secret-key",
            auth_config={
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
                "region": "us-east-1",
            },
        ),
    )
    ours = store_for(aws, MULTICLOUD_STORE_DEPLOYMENT_ID=str(_Info.id))
    values = {"username": "bench", "password": "x" * 64}
    rows = []

    # Interleave in blocks of 10 full cycles so both see the same server state and load.
    ours_t: dict[str, list[float]] = {k: [] for k in ("store", "get", "update", "delete")}
    theirs_t: dict[str, list[float]] = {k: [] for k in ours_t}
    for _ in range(max(1, n // 10)):
        for target, out in random.sample([(ours, ours_t), (theirs, theirs_t)], 2):
            for op, samples in _cycle_block(target, values).items():
                out[op] += samples
    for op in ("get", "store", "update", "delete"):
        ratio = statistics.median(ours_t[op]) / statistics.median(theirs_t[op])
        rows.append(
            [op, f"{median_us(ours_t[op]):.0f}", f"{median_us(theirs_t[op]):.0f}", f"**{ratio:.2f}**"]
        )
    report.add(
        "Against ZenML 0.98's built-in AWSSecretsStore",
        f"Same moto server, blocks of 10 store/get/update/delete cycles alternating between the two stores, "
        f"{len(ours_t['get'])} cycles each. Target: at most 0.6 for get (one round trip against ZenML's two: "
        "GetSecretValue + DescribeSecret).",
        ["operation", "ours median µs", "ZenML median µs", "ours / ZenML"],
        rows,
    )
    ours.close()


def _cycle_block(store: Any, values: dict[str, str]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"store": [], "get": [], "update": [], "delete": []}
    for _ in range(10):
        sid = uuid.uuid4()
        for op, call in (
            ("store", lambda sid=sid: store.store_secret_values(sid, values)),
            ("get", lambda sid=sid: store.get_secret_values(sid)),
            ("update", lambda sid=sid: store.update_secret_values(sid, {**values, "password": "y"})),
            ("delete", lambda sid=sid: store.delete_secret_values(sid)),
        ):
            start = time.perf_counter()
            call()
            times[op].append(time.perf_counter() - start)
    return times


def bench_cache(report: Report, n: int) -> None:
    from multicloud_store import SecretsStore, StoreSettings
    from multicloud_store.drivers.local import LocalDriver, LocalSettings

    with tempfile.TemporaryDirectory() as tmp:
        driver = LocalDriver(LocalSettings(path=Path(tmp) / "cache.db"))
        cached = SecretsStore(StoreSettings(backend="local", cache_ttl_seconds=3600), driver=driver)
        plain = SecretsStore(StoreSettings(backend="local"), driver=driver)
        sid = uuid.uuid4()
        cached.store_secret_values(sid, {"username": "bench", "password": "x" * 64})
        hits, misses = interleaved(
            lambda: cached.get_secret_values(sid), lambda: plain.get_secret_values(sid), n * 10
        )
        driver.close()
    report.add(
        "Read cache",
        f"Cache hit against an uncached read of the local file, {n * 10} calls each, interleaved. Target: hit "
        "median under 5 µs.",
        ["hit median µs", "hit p90 µs", "miss (local read) median µs", "miss / hit"],
        [
            [
                f"**{median_us(hits):.2f}**",
                f"{p90_us(hits):.2f}",
                f"{median_us(misses):.1f}",
                f"{statistics.median(misses) / statistics.median(hits):.0f}x",
            ]
        ],
    )


def bench_get_many(found: list[Backend], report: Report, latencies: tuple[float, ...]) -> None:
    rows = []
    runs = [
        (b, latency)
        for b in found
        if b.name != "local"
        for latency in (latencies if b.name not in ("aws", "vault", "sql") else (0.0,))
    ]
    for existing, latency in runs:
        if existing.name == "local":
            continue
        # GCP and Azure: a fresh server process with the injected latency; AWS: the same moto server.
        # vault: the same OpenBao server too (it has no latency injection).
        # sql: the same PostgreSQL server (a real server over TCP; no latency injection).
        reuse = existing.name in ("aws", "vault", "sql")
        backend, stop = (existing, None) if reuse else start_server(existing.name, latency)
        store = store_for(backend)
        ids = [uuid.uuid4() for _ in range(100)]
        for sid in ids:
            store.store_secret_values(sid, {"id": str(sid)})
        singles, batch = [], []
        for _ in range(5):
            start = time.perf_counter()
            for sid in ids:
                store.get_secret_values(sid)
            singles.append(time.perf_counter() - start)
            start = time.perf_counter()
            outcomes = store.get_many(ids)
            batch.append(time.perf_counter() - start)
            assert all(o.status == "ok" for o in outcomes.values())
        speedup = statistics.median(singles) / statistics.median(batch)
        how = "BatchGetSecretValue, 20 per call" if backend.name == "aws" else "thread pool (8 workers)"
        if backend.name == "sql":
            how = "SELECT ... WHERE name IN (...), 100 per statement"
        extra = "" if backend.name in ("aws", "sql") else f" + {latency * 1000:.0f} ms injected latency"
        rows.append(
            [
                backend.name,
                f"{statistics.median(singles) * 1000:.1f}",
                f"{statistics.median(batch) * 1000:.1f}",
                f"**{speedup:.1f}x**",
                how + extra,
            ]
        )
        for sid in ids:
            store.delete_secret_values(sid)
        store.close()
        if stop is not None:
            stop()
    report.add(
        "get_many",
        "100 secrets: `get_many` against 100 single `get_secret_values`, median of 5 alternating rounds. Targets: "
        "at least 5x on AWS, 3x on the GCP and Azure emulators with 2 ms injected latency. The 20 ms rows show "
        "how the pool scales when the network, not the client's own CPU, dominates a call (a real region).",
        ["backend", "100 singles ms", "get_many ms", "speed-up", "how"],
        rows,
    )


COLD_SDK = {
    "local": None,
    "aws": "boto3",
    "gcp": "google.cloud.secretmanager",
    "azure": "azure.keyvault.secrets",
    "sql": "sqlalchemy",
}


def _wall(code: str, env: dict[str, str] | None = None, runs: int = 7) -> tuple[float, int]:
    times = []
    modules = 0
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code + "\nimport sys; print(len(sys.modules))"],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            check=True,
        )
        times.append(time.perf_counter() - start)
        modules = int(out.stdout.split()[-1])
    return statistics.median(times), modules


def bench_cold_start(found: list[Backend], report: Report) -> None:
    rows = []
    base, base_modules = _wall("pass")
    rows.append(["(python -c pass)", f"{base * 1000:.0f}", str(base_modules), "", ""])
    imp, imp_modules = _wall("import multicloud_store")
    rows.append(["`import multicloud_store`", f"{imp * 1000:.0f}", str(imp_modules), "", ""])
    for backend in found:
        sid = uuid.uuid4()
        store = store_for(backend)
        store.store_secret_values(sid, {"a": "b"})
        store.close()
        env = {**backend.env, "MULTICLOUD_STORE_DEPLOYMENT_ID": "bench"}
        code = (
            "import uuid\nfrom multicloud_store import SecretsStore\n"
            f"SecretsStore.from_env().get_secret_values(uuid.UUID('{sid}'))"
        )
        ours, ours_modules = _wall(code, env)
        sdk = COLD_SDK[backend.name]
        if sdk:
            bare, bare_modules = _wall(f"import {sdk}")
            rows.append(
                [
                    f"{backend.name}: build store + one get",
                    f"{ours * 1000:.0f}",
                    str(ours_modules),
                    f"`import {sdk}`: {bare * 1000:.0f} ms, {bare_modules} modules",
                    f"{ours / bare:.2f}",
                ]
            )
        else:
            rows.append(
                [f"{backend.name}: build store + one get", f"{ours * 1000:.0f}", str(ours_modules), "", ""]
            )
    report.add(
        "Cold start",
        "Wall time of a fresh `python -c` (median of 7), and the modules loaded. The cloud rows include the "
        "network round trip to the local emulator.",
        ["what", "ms", "modules", "bare SDK import", "ours / bare"],
        rows,
    )


MIGRATE_CHILD = r"""
import json, os, resource, sys, time
from multicloud_store import SecretsStore
from multicloud_store.migrate import migrate
source = SecretsStore.from_env(json.loads(sys.argv[1]))
target = SecretsStore.from_env(json.loads(sys.argv[2]))
start = time.perf_counter()
report = migrate(source, target, workers=8)
seconds = time.perf_counter() - start
first = next(iter(report.failed.values()), "")
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec from the (large) benchmark parent.
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"n": report.total, "failed": len(report.failed), "first_error": first, "seconds": seconds,
                  "rss_kb": hwm}))
"""


def bench_migrate(found: list[Backend], report: Report, counts: list[int], tmp: Path) -> None:
    from multicloud_store import SecretsStore

    rows = []
    for count in counts:
        source_path = tmp / f"migrate-source-{count}.db"
        source_env = {"MULTICLOUD_STORE_BACKEND": "local", "MULTICLOUD_STORE_LOCAL_PATH": str(source_path)}
        source = SecretsStore.from_env(source_env)
        for i in range(count):
            source.store_secret_values(uuid.uuid4(), {"index": str(i), "password": "x" * 32})
        source.close()
        for backend in found:
            target_env = (
                {
                    "MULTICLOUD_STORE_BACKEND": "local",
                    "MULTICLOUD_STORE_LOCAL_PATH": str(tmp / f"t-{count}.db"),
                }
                if backend.name == "local"
                else {**backend.env, "MULTICLOUD_STORE_DEPLOYMENT_ID": f"migrate-{count}"}
            )
            out = subprocess.run(
                [sys.executable, "-c", MIGRATE_CHILD, json.dumps(source_env), json.dumps(target_env)],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                rows.append([f"local → {backend.name}", str(count), "crashed", out.stderr.strip()[-200:], ""])
                continue
            result = json.loads(out.stdout.splitlines()[-1])
            rows.append(
                [
                    f"local → {backend.name}",
                    str(count),
                    f"{result['n'] / result['seconds']:.0f}",
                    f"{result['rss_kb'] / 1024:.1f}",
                    f"{result['failed']}" + (f" ({result['first_error'][:80]})" if result["failed"] else ""),
                ]
            )
    report.add(
        "Migration",
        "`migrate` (8 workers, verify by read-back) from a local file into each backend, in a child process; "
        "peak RSS is the child's high-water mark (`VmHWM`). Peak RSS must not grow with the count (ids are "
        "streamed). Each secret costs four round trips (read source, read target, write, read back).",
        ["direction", "secrets", "secrets/s", "peak RSS MiB", "failed"],
        rows,
    )


def _versions() -> str:
    names = [
        "multicloud-store",
        "boto3",
        "moto",
        "google-cloud-secret-manager",
        "grpcio",
        "azure-keyvault-secrets",
    ]
    names += ["azure-core", "zenml", "pydantic-settings", "cryptography", "sqlalchemy", "psycopg"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations, for a smoke run")
    parser.add_argument("--only", nargs="*", default=["local", "aws", "gcp", "azure", "vault", "sql"])
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    n = 50 if args.quick else 500
    counts = [200, 1000] if args.quick else [1000, 10000]
    report = Report()
    started = time.time()

    def write() -> None:
        # Written after every section, so a failure late in the run keeps what was measured.
        header = [
            "# Benchmarks",
            "",
            "Generated by `nox -s bench` (`python benchmarks/run.py`); do not edit by hand. Every figure is a ratio "
            "or a distribution measured side by side in one run, so a slow or noisy machine shifts both sides "
            "alike. The cloud backends run against a moto server and the project's own emulators on 127.0.0.1, "
            "each in its own process, so absolute latencies are those of this machine, not of a cloud region.",
            "",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}; run took "
            f"{time.time() - started:.0f} s" + (" (quick mode)" if args.quick else ""),
            f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
            f"- Python {platform.python_version()}; {_versions()}",
            "",
        ]
        Path(args.output).write_text("\n".join(header) + "\n" + "\n".join(report.sections))

    with tempfile.TemporaryDirectory() as tmp_name, backends(Path(tmp_name), set(args.only)) as found:
        tmp = Path(tmp_name)
        for step in (
            lambda: bench_overhead(found, report, n),
            lambda: bench_zenml(found, report, n // 5),
            lambda: bench_cache(report, n),
            lambda: bench_get_many(found, report, (0.002, 0.020)),
            lambda: bench_cold_start(found, report),
            lambda: bench_migrate(found, report, counts, tmp),
        ):
            try:
                step()
            except Exception as exc:  # keep going: the other figures are still worth writing
                import traceback

                traceback.print_exc()
                report.sections.append(f"## A section failed\n\n`{type(exc).__name__}`: {str(exc)[:300]}\n")
            write()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

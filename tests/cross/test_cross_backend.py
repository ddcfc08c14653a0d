"""One behaviour on every backend, one environment variable to switch, and migration between every pair."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from multicloud_store import SecretsStore
from multicloud_store.errors import InvalidSecretError, MultiCloudStoreError
from multicloud_store.migrate import migrate

BACKENDS = ["local", "aws", "gcp-grpc", "gcp-rest", "azure", "vault", "sql"]


def _store(envs: dict[str, dict[str, str]], backend: str, deployment: str) -> SecretsStore:
    return SecretsStore.from_env({**envs[backend], "MULTICLOUD_STORE_DEPLOYMENT_ID": deployment})


def _scenario(store: SecretsStore, other: SecretsStore) -> list[Any]:
    """A fixed script of calls; records each outcome as data so backends can be compared."""
    trace: list[Any] = []

    def step(label: str, call: Any) -> None:
        try:
            result = call()
        except MultiCloudStoreError as exc:
            trace.append((label, "error", type(exc).__name__, isinstance(exc, KeyError)))
        else:
            if isinstance(result, dict):
                result = sorted(result.items())
            trace.append((label, "ok", result))

    a, b, missing = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    step("store a", lambda: store.store_secret_values(a, {"user": "admin", "pw": "p@ss wörd 🔑"}))
    step("store a again", lambda: store.store_secret_values(a, {"x": "y"}))
    step("get a", lambda: store.get_secret_values(a))
    step("update a", lambda: store.update_secret_values(a, {"pw": "new"}))
    step("get a", lambda: store.get_secret_values(a))
    step("store b empty", lambda: store.store_secret_values(b, {}))
    step("get b", lambda: store.get_secret_values(b))
    step("other sees a", lambda: other.get_secret_values(a))
    step("other updates a", lambda: other.update_secret_values(a, {"hijack": "1"}))
    step("other deletes a", lambda: other.delete_secret_values(a))
    step("other stores a", lambda: other.store_secret_values(a, {"hijack": "1"}))
    step("get missing", lambda: store.get_secret_values(missing))
    step("update missing", lambda: store.update_secret_values(missing, {"a": "b"}))
    step("delete missing", lambda: store.delete_secret_values(missing))
    step("list", lambda: sorted(map(str, store.list_secret_ids())) == sorted([str(a), str(b)]))
    step(
        "get_many",
        lambda: (
            {str(k): v.status for k, v in store.get_many([a, missing]).items()}
            == {
                str(a): "ok",
                str(missing): "not_found",
            }
        ),
    )
    step("delete a", lambda: store.delete_secret_values(a))
    step("store a again after delete", lambda: store.store_secret_values(a, {"back": "again"}))
    step("get a", lambda: store.get_secret_values(a))
    step("bad id", lambda: store.get_secret_values("nope"))  # type: ignore[arg-type]
    step("bad value", lambda: store.store_secret_values(uuid.uuid4(), {"k": 1}))  # type: ignore[dict-item]
    return trace


def test_every_backend_behaves_the_same(backend_envs: dict[str, dict[str, str]], clean_environ: None) -> None:
    traces = {}
    for backend in BACKENDS:
        deployment = f"cross-{uuid.uuid4().hex[:8]}"
        store = _store(backend_envs, backend, deployment)
        other = _store(backend_envs, backend, f"other-{uuid.uuid4().hex[:8]}")
        traces[backend] = _scenario(store, other)
        store.close()
        other.close()
    reference = traces["local"]
    assert ("get missing", "error", "SecretNotFoundError", True) in reference
    assert ("store a again", "error", "SecretExistsError", False) in reference
    for backend in BACKENDS[1:]:
        assert traces[backend] == reference, backend


def test_one_variable_switches_the_backend(backend_envs: dict[str, dict[str, str]], tmp_path: Path) -> None:
    """The same program, run with different environments only, writes into the selected backend."""
    program = textwrap.dedent(
        """
        import json, sys, uuid
        from multicloud_store import SecretsStore
        store = SecretsStore.from_env()
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"where": store.backend})
        print(json.dumps({"id": str(sid), "name": store.secret_name(sid), "backend": store.backend}))
        """
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("MULTICLOUD_STORE_")}
    for backend in BACKENDS:
        env = {**base, **backend_envs[backend], "MULTICLOUD_STORE_DEPLOYMENT_ID": "switch"}
        out = subprocess.run(
            [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["backend"] == backend.split("-")[0]
        # Read it back through a store built in this process from the same variables.
        store = _store(backend_envs, backend, "switch")
        assert store.get_secret_values(uuid.UUID(result["id"])) == {"where": result["backend"]}
        store.close()


def test_migration_ring_preserves_ids_and_values(
    backend_envs: dict[str, dict[str, str]], clean_environ: None
) -> None:
    deployment = f"ring-{uuid.uuid4().hex[:8]}"
    ring = ["local", "aws", "gcp-grpc", "azure", "gcp-rest"]
    first = _store(backend_envs, ring[0], deployment)
    expected = {uuid.uuid4(): {"n": str(i), "text": "ünïcødé\n"} for i in range(40)}
    for sid, values in expected.items():
        first.store_secret_values(sid, values)
    for source_name, target_name in itertools.pairwise(ring):
        source = _store(backend_envs, source_name, deployment)
        target = _store(backend_envs, target_name, deployment)
        report = migrate(source, target, workers=4)
        assert report.ok and report.created == len(expected), (source_name, target_name, report.failed)
        assert set(target.list_secret_ids()) == set(expected)
        for sid, values in expected.items():
            assert target.get_secret_values(sid) == values


def test_cli_migrate_between_clouds_with_env_files(
    backend_envs: dict[str, dict[str, str]], tmp_path: Path, clean_environ: None
) -> None:
    deployment = f"cli-{uuid.uuid4().hex[:8]}"
    source = _store(backend_envs, "aws", deployment)
    ids = [uuid.uuid4() for _ in range(15)]
    for sid in ids:
        source.store_secret_values(sid, {"id": str(sid)})
    src, dst = tmp_path / "aws.env", tmp_path / "azure.env"
    src.write_text(
        "".join(
            f"{k}={v}\n"
            for k, v in {**backend_envs["aws"], "MULTICLOUD_STORE_DEPLOYMENT_ID": deployment}.items()
        )
    )
    dst.write_text(
        "".join(
            f"{k}={v}\n"
            for k, v in {**backend_envs["azure"], "MULTICLOUD_STORE_DEPLOYMENT_ID": deployment}.items()
        )
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("MULTICLOUD_STORE_")}
    command = [
        "multicloud-store",
        "migrate",
        "--source-env-file",
        str(src),
        "--target-env-file",
        str(dst),
        "--json",
    ]
    first = subprocess.run(command, env=base, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["created"] == 15
    second = subprocess.run(
        [*command, "--delete-source"], env=base, capture_output=True, text=True, timeout=300
    )
    summary = json.loads(second.stdout)
    assert (summary["skipped"], summary["deleted"]) == (15, 15)
    assert list(source.list_secret_ids()) == []
    target = _store(backend_envs, "azure", deployment)
    assert {str(s): target.get_secret_values(s) for s in ids} == {str(s): {"id": str(s)} for s in ids}


@pytest.mark.parametrize("backend", BACKENDS)
def test_size_limits_are_checked_before_the_network(
    backend_envs: dict[str, dict[str, str]], backend: str
) -> None:
    store = _store(backend_envs, backend, "limits")
    limit = store.driver.limits.max_payload_bytes
    sid = uuid.uuid4()
    fits = {"k": "x" * (limit - store.payload_size(sid, {"k": ""}))}
    store.store_secret_values(sid, fits)
    assert store.get_secret_values(sid) == fits
    with pytest.raises(InvalidSecretError, match=f"the limit is {limit} bytes"):
        store.update_secret_values(sid, {"k": fits["k"] + "x"})
    assert store.get_secret_values(sid) == fits
    # 30,000 bytes fit AWS, GCP and local, not Azure: the same call, refused only where it cannot be stored.
    portable = {"k": "y" * 30_000}
    other = uuid.uuid4()
    if limit < 30_100:
        with pytest.raises(InvalidSecretError):
            store.store_secret_values(other, portable)
    else:
        store.store_secret_values(other, portable)
        assert store.get_secret_values(other) == portable

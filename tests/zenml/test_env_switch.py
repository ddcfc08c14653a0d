"""One ZenML deployment switched between the four backends by environment variables alone.

The same driver script, the same ZenML configuration directory and database (so the same server id), one run
per backend: only the ``ZENML_SECRETS_STORE_*`` / ``MULTICLOUD_STORE_*`` variables differ between runs. Each run
creates and reads a secret; afterwards each secret is in its own backend and in no other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from zenml_flows import unique
from zenml_harness import CLASS_PATH, Backend, clean_env, new_sentinel, plugin_env, zenml_process

pytestmark = pytest.mark.timeout(300)

LABELS = ["local", "aws", "gcp-grpc", "azure"]


def test_same_code_any_backend_by_environment_alone(
    make_backend: Callable[[str], Backend], tmp_path: Path
) -> None:
    backends = [make_backend(label) for label in LABELS]
    base = clean_env(tmp_path)
    created: dict[str, tuple[str, dict[str, str]]] = {}
    server_ids = set()

    for backend in backends:
        env = {**base, **plugin_env(backend)}
        # Nothing but the secrets store variables differs from one run to the next.
        assert {k for k in env if env.get(k) != base.get(k)} <= {
            k for k in env if k.startswith(("ZENML_SECRETS_STORE_", "MULTICLOUD_STORE_"))
        }
        with zenml_process(env, tmp_path, name=f"run-{backend.label}") as process:
            info = process.run("info")
            assert info["secrets_store"] == CLASS_PATH
            server_ids.add(info["server_id"])
            name = unique(f"switch-{backend.kind}")
            values = {"backend": backend.kind, "token": new_sentinel(backend.kind)}
            sid = process.run("create", name=name, values=values)["id"]
            assert process.run("get", name=name)["values"] == values
            created[backend.label] = (sid, values)

    # One deployment: the same server id owns the secrets on every backend.
    assert len(server_ids) == 1
    server_id = server_ids.pop()
    for backend in backends:
        store = backend.store(server_id)
        names = backend.raw_names()
        for label, (sid, values) in created.items():
            if label == backend.label:
                assert store.get_secret_values(sid) == values
                assert store.secret_name(sid) in names
            else:
                assert not store.secret_exists(sid)
                assert store.secret_name(sid) not in names

"""The checks run on every backend, through ZenML's `Client` on a SQL store or on a ZenML server alike.

Each check drives ZenML in its `ZenmlProcess` and then looks behind ZenML's back: in the backend through our own
`SecretsStore` (owned by the ZenML server id) and through the service's own API, and in ZenML's files for values
that must not be there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zenml_harness import (
    Backend,
    ZenmlProcess,
    files_containing,
    new_sentinel,
    run_cli,
    write_env_file,
    zenml_connector_secret_id,
)

from multicloud_store.store import SecretsStore


def unique(prefix: str) -> str:
    """A secret or connector name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Scenario:
    """One running ZenML deployment on one backend.

    Attributes:
        process: The `Client` driver.
        backend: The backend the plug-in uses.
        server_id: The ZenML server id, which the plug-in uses as the owner of every secret.
        zenml_dirs: Everything ZenML writes (configuration, SQLite database, logs) for this deployment.
        db_path: ZenML's SQLite database.
    """

    process: ZenmlProcess
    backend: Backend
    server_id: str
    zenml_dirs: Sequence[Path]
    db_path: Path

    @property
    def store(self) -> SecretsStore:
        """Our own store on the same backend and deployment as the plug-in."""
        return self.backend.store(self.server_id)

    def leaks(self, value: str) -> list[str]:
        """The ZenML files that hold ``value`` (plainly or base64-encoded)."""
        return [hit for root in self.zenml_dirs for hit in files_containing(root, value)]


def check_crud(s: Scenario) -> None:
    """Create, get, update (add, change, remove keys), list and delete through ZenML; the backend follows."""
    p = s.process
    name = unique("crud")
    token, new_token = new_sentinel("token"), new_sentinel("new-token")
    first = {"user": "alice", "token": token}

    sid = p.run("create", name=name, values=first)["id"]
    assert s.store.get_secret_values(sid) == first
    assert s.store.secret_name(sid) in s.backend.raw_names()

    got = p.run("get", name=name)
    assert got["id"] == sid
    assert got["values"] == first

    second = {"token": new_token, "region": "eu-west-1"}
    updated = p.run("update", name=name, add={"token": new_token, "region": "eu-west-1"}, remove=["user"])
    assert updated["values"] == second
    # The backend holds the merged dict ZenML computed, whole: no stale key survives.
    assert s.store.get_secret_values(sid) == second
    assert p.run("get", name=name)["values"] == second

    listed = p.run("list")
    assert name in listed["names"]
    assert sid in listed["ids"]

    # Neither value ever reached ZenML's database, configuration or logs.
    assert s.leaks(token) == []
    assert s.leaks(new_token) == []

    p.run("delete", name=name)
    assert name not in p.run("list")["names"]
    assert p.fail("get", name=name).is_a("KeyError")
    assert not s.store.secret_exists(sid)
    assert s.store.secret_name(sid) not in s.backend.raw_names()


def check_connector(s: Scenario) -> None:
    """A service connector's credentials go through the secrets store and come back expanded."""
    p = s.process
    name = unique("registry")
    password = new_sentinel("registry-password")
    p.run(
        "connector_create", name=name, username="robot", password=password, registry="registry.invalid:5000"
    )

    configuration = p.run("connector_get", name=name)["configuration"]
    assert configuration["username"] == "robot"
    assert configuration["password"] == password
    assert configuration["registry"] == "registry.invalid:5000"

    # ZenML keeps the credentials in an internal secret: its values are in our backend, not in SQL.
    secret_id = zenml_connector_secret_id(s.db_path, name)
    assert s.store.get_secret_values(secret_id) == {"username": "robot", "password": password}
    assert s.leaks(password) == []


def check_lost_secret(s: Scenario, *, over_rest: bool, workdir: Path) -> None:
    """A secret deleted in the backend behind ZenML's back: ZenML's behaviour, at once, and the way back.

    ZenML 0.98 reports the secret as missing (`KeyError`; HTTP 404 on a server) on every read. `Client.update_secret`
    and `Client.delete_secret` read the values first, so they report the loss too. The zen store's own update
    creates the values afresh ("Creating a new secret instead") and its delete succeeds, but on a server the
    REST endpoints read the secret for their permission check first, so there every route answers 404 until the
    values are put back: ``multicloud-store put --id`` with the ZenML server id as deployment id does that.
    """
    p = s.process
    name = unique("lost")
    sid = p.run("create", name=name, values={"key": new_sentinel("lost")})["id"]
    s.backend.raw_delete(s.store.secret_name(sid))
    assert not s.store.secret_exists(sid)

    failing = [
        ("get", {"name": name}),
        ("store_get", {"id": sid}),
        ("update", {"name": name, "add": {"other": "x"}}),
        ("delete", {"name": name}),
    ]
    if over_rest:
        failing += [("store_update", {"id": sid, "values": {"other": "x"}}), ("store_delete", {"id": sid})]
    for op, args in failing:
        reply = p.fail(op, **args)
        assert reply.is_a("KeyError"), f"{op}: {reply.error}: {reply.message}"

    recreated = {"key": new_sentinel("recreated")}
    if over_rest:
        env_file = write_env_file(
            workdir / f"restore-{sid}.env", {**s.backend.env, "MULTICLOUD_STORE_DEPLOYMENT_ID": s.server_id}
        )
        done = run_cli(
            "put",
            "--id",
            sid,
            "--stdin",
            "--env-file",
            str(env_file),
            cwd=workdir,
            stdin=json.dumps(recreated),
        )
        assert done.returncode == 0, done.stderr
    else:
        reply = p.call("store_update", id=sid, values=recreated)
        assert reply.ok, f"{reply.error}: {reply.message}"
        assert reply.result["values"] == recreated
    assert s.store.get_secret_values(sid) == recreated
    assert p.run("get", name=name)["values"] == recreated

    if over_rest:
        p.run("delete", name=name)
    else:
        s.backend.raw_delete(s.store.secret_name(sid))
        reply = p.call("store_delete", id=sid)
        assert reply.ok, f"{reply.error}: {reply.message}"
    assert name not in p.run("list")["names"]
    assert s.store.secret_name(sid) not in s.backend.raw_names()


def check_too_large(s: Scenario, *, over_rest: bool) -> None:
    """Values over the backend's size limit: refused before any call to the backend, and ZenML keeps no row."""
    p = s.process
    name = unique("too-large")
    # Over every backend's limit (AWS, GCP, local and sql 65,536 bytes, Azure 25,000, vault 131,072); ZenML itself
    # sets none.
    reply = p.fail("create", name=name, values={"blob": "x" * 140_000})
    # Through a server the plug-in's InvalidSecretError (a ValueError) comes back as ZenML's ValueError.
    assert reply.is_a("ValueError"), f"{reply.error}: {reply.message}"
    assert over_rest or reply.is_a("InvalidSecretError")
    assert "too large" in reply.message
    assert "the limit is" in reply.message
    assert name not in p.run("list")["names"]

"""ZenML's backup secrets store (``ZENML_BACKUP_SECRETS_STORE_*``) with the plug-in on either side.

ZenML writes every secret to the primary and the backup store; a read that finds the values missing in the
primary (a `KeyError`) falls back to the backup and stores them in the primary again. Both directions are run:
the plug-in as backup of ZenML's SQL store, and ZenML's SQL store as backup of the plug-in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from zenml_flows import unique
from zenml_harness import (
    CLASS_PATH,
    Backend,
    clean_env,
    files_containing,
    lose_zenml_sql_values,
    new_sentinel,
    plugin_env,
    zenml_process,
    zenml_secret_exists,
    zenml_sql_values,
)

pytestmark = pytest.mark.timeout(240)

SQL_STORE = "zenml.zen_stores.secrets_stores.sql_secrets_store.SqlSecretsStore"


def test_plugin_as_backup_of_the_sql_store_then_primary(
    make_backend: Callable[[str], Backend], tmp_path: Path
) -> None:
    backup = make_backend("local")
    env = clean_env(tmp_path, **plugin_env(backup, prefix="ZENML_BACKUP_SECRETS_STORE_"))
    db = tmp_path / "zenml.db"
    with zenml_process(env, tmp_path, name="sql-primary") as process:
        info = process.run("info")
        assert (info["secrets_store"], info["backup_secrets_store"]) == (SQL_STORE, CLASS_PATH)
        server_id = info["server_id"]
        store = backup.store(server_id)

        name = unique("backed-up")
        values = {"token": new_sentinel("backed-up")}
        sid = process.run("create", name=name, values=values)["id"]
        # In both: ZenML's SQL store keeps it (base64, found by the same search that finds no leak elsewhere)...
        assert zenml_sql_values(db, sid) == values
        assert any(hit.startswith("zenml.db") for hit in files_containing(tmp_path, values["token"]))
        # ...and the backup has its own copy.
        assert store.get_secret_values(sid) == values

        # Lost in the primary: the read is served from the backup and heals the primary.
        lose_zenml_sql_values(db, sid)
        reply = process.call("get", name=name)
        assert reply.ok, reply.message
        assert reply.result["values"] == values
        assert zenml_sql_values(db, sid) == values

        updated = process.run("update", name=name, add={"extra": "1"})["values"]
        assert updated == {**values, "extra": "1"}
        assert store.get_secret_values(sid) == updated

        process.run("delete", name=name)
        assert not store.secret_exists(sid)

        # A secret the backup lacks (made before the backup was configured): `zenml secret backup` copies it.
        keeper = {"password": new_sentinel("keeper")}
        keeper_id = process.run("create", name="keeper", values=keeper)["id"]
        backup.raw_delete(store.secret_name(keeper_id))
        process.run("backup_secrets")
        assert store.get_secret_values(keeper_id) == keeper

    # The way off ZenML's SQL store: once backed up, the plug-in becomes the primary and serves the same ids.
    swapped = clean_env(tmp_path, **plugin_env(backup))
    with zenml_process(swapped, tmp_path, name="plugin-primary") as process:
        info = process.run("info")
        assert (info["secrets_store"], info["backup_secrets_store"]) == (CLASS_PATH, None)
        assert info["server_id"] == server_id
        got = process.run("get", name="keeper")
        assert (got["id"], got["values"]) == (keeper_id, keeper)


def test_sql_store_as_backup_of_the_plugin(make_backend: Callable[[str], Backend], tmp_path: Path) -> None:
    primary = make_backend("aws")
    env = clean_env(tmp_path, **plugin_env(primary, via="mcs"), ZENML_BACKUP_SECRETS_STORE_TYPE="sql")
    db = tmp_path / "zenml.db"
    with zenml_process(env, tmp_path) as process:
        info = process.run("info")
        assert (info["secrets_store"], info["backup_secrets_store"]) == (CLASS_PATH, SQL_STORE)
        store = primary.store(info["server_id"])

        name = unique("primary")
        values = {"token": new_sentinel("primary")}
        sid = process.run("create", name=name, values=values)["id"]
        assert store.get_secret_values(sid) == values
        assert zenml_sql_values(db, sid) == values

        # Lost in the primary (deleted in the cloud): served from the backup, and put back in the cloud.
        primary.raw_delete(store.secret_name(sid))
        assert not store.secret_exists(sid)
        reply = process.call("get", name=name)
        assert reply.ok, reply.message
        assert reply.result["values"] == values
        assert store.get_secret_values(sid) == values
        assert store.secret_name(sid) in primary.raw_names()

        updated = process.run("update", name=name, add={"token": "rotated"})["values"]
        assert updated == {"token": "rotated"}
        assert store.get_secret_values(sid) == updated
        assert zenml_sql_values(db, sid) == updated

        process.run("delete", name=name)
        assert not store.secret_exists(sid)
        assert not zenml_secret_exists(db, sid)

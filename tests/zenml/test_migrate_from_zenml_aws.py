"""From ZenML's built-in AWS secrets store to the plug-in, with ``multicloud-store migrate``.

ZenML's own `AWSSecretsStore` (``ZENML_SECRETS_STORE_TYPE=aws``) writes to the moto server: its service connector
builds a plain boto3 session, so the process is pointed at moto with ``AWS_ENDPOINT_URL``, which botocore honours.
Then the secrets are migrated (a dry run first) and ZenML is restarted on the same database with the plug-in:
every secret reads back through ZenML under the same UUID with the same values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from zenml_harness import (
    AWS_KEY_ID,
    AWS_REGION,
    AWS_SECRET_KEY,
    CLASS_PATH,
    Backend,
    clean_env,
    new_sentinel,
    plugin_env,
    run_cli,
    write_env_file,
    zenml_connector_secret_id,
    zenml_process,
)

# ZenML's AWS secrets store imports the AWS service connector, which needs aws-profile-manager: it comes with
# zenml[connectors-aws], not with zenml[server] or even zenml[secrets-aws].
pytest.importorskip(
    "aws_profile_manager",
    reason="ZenML 0.98's AWS secrets store needs aws-profile-manager (zenml[connectors-aws]), not installed here",
)

pytestmark = pytest.mark.timeout(300)

ZENML_AWS_STORE = "zenml.zen_stores.secrets_stores.aws_secrets_store.AWSSecretsStore"


def _migrate(workdir: Path, *extra: str) -> dict[str, Any]:
    done = run_cli(
        "migrate",
        "--source-env-file",
        str(workdir / "src.env"),
        "--source-layout",
        "zenml",
        "--target-env-file",
        str(workdir / "dst.env"),
        "--no-progress",
        "--json",
        *extra,
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_migrate_from_zenml_aws_store_keeps_ids_and_values(
    make_backend: Callable[[str], Backend], moto_url: str, tmp_path: Path
) -> None:
    target = make_backend("aws")
    secrets = {
        "database": {"user": "app", "password": new_sentinel("db-password")},
        "unicode": {"greeting": "grüß dich ✓", "key": "🔑" + new_sentinel("unicode")},
        "single": {"token": new_sentinel("token")},
    }
    registry_password = new_sentinel("registry-password")

    # 1. ZenML on its own AWS secrets store.
    zenml_aws = clean_env(
        tmp_path,
        ZENML_SECRETS_STORE_TYPE="aws",
        ZENML_SECRETS_STORE_AUTH_METHOD="secret-key",
        ZENML_SECRETS_STORE_AUTH_CONFIG=json.dumps(
            {"aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET_KEY, "region": AWS_REGION}
        ),
        AWS_ENDPOINT_URL=moto_url,
    )
    ids: dict[str, str] = {}
    with zenml_process(zenml_aws, tmp_path, name="zenml-aws-store") as process:
        info = process.run("info")
        assert info["secrets_store"] == ZENML_AWS_STORE
        server_id = info["server_id"]
        for name, values in secrets.items():
            ids[name] = process.run("create", name=name, values=values)["id"]
        process.run(
            "connector_create",
            name="registry",
            username="robot",
            password=registry_password,
            registry="registry.invalid",
        )
    connector_secret = zenml_connector_secret_id(tmp_path / "zenml.db", "registry")
    every_id = {*ids.values(), connector_secret}
    names = target.raw_names()
    assert {f"zenml/{sid}" for sid in every_id} <= names
    store = target.store(server_id)

    # 2. The migration: source is ZenML's layout of this server, target the plug-in's deployment.
    cloud = {k: v for k, v in target.env.items() if k != "MULTICLOUD_STORE_BACKEND"}
    write_env_file(
        tmp_path / "src.env",
        {"MULTICLOUD_STORE_BACKEND": "aws", "MULTICLOUD_STORE_ZENML_SERVER_ID": server_id, **cloud},
    )
    write_env_file(
        tmp_path / "dst.env",
        {"MULTICLOUD_STORE_BACKEND": "aws", "MULTICLOUD_STORE_DEPLOYMENT_ID": server_id, **cloud},
    )

    dry = _migrate(tmp_path, "--dry-run")
    assert dry["dry_run"] is True
    assert (dry["created"], dry["updated"], dry["skipped"], dry["failed"]) == (len(every_id), 0, 0, {})
    assert not any(store.secret_exists(sid) for sid in every_id)
    assert not {store.secret_name(sid) for sid in every_id} & target.raw_names()

    real = _migrate(tmp_path)
    assert (real["created"], real["failed"]) == (len(every_id), {})
    # A second run finds identical copies and writes nothing: an interrupted migration can be rerun.
    again = _migrate(tmp_path)
    assert (again["created"], again["updated"], again["skipped"]) == (0, 0, len(every_id))
    # Without --delete-source ZenML's copies stay, for a way back.
    assert {f"zenml/{sid}" for sid in every_id} <= target.raw_names()

    # 3. ZenML restarted on the same database, now with the plug-in on the migrated secrets.
    custom = {**clean_env(tmp_path), **plugin_env(target, via="mcs")}
    with zenml_process(custom, tmp_path, name="zenml-custom-store") as process:
        info = process.run("info")
        assert info["secrets_store"] == CLASS_PATH
        assert info["server_id"] == server_id
        for name, values in secrets.items():
            got = process.run("get", name=name)
            assert got["id"] == ids[name]
            assert got["values"] == values
        configuration = process.run("connector_get", name="registry")["configuration"]
        assert configuration["password"] == registry_password
        assert set(process.run("list")["ids"]) == set(ids.values())

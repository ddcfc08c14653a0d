"""``multicloud-store migrate --source-layout zenml`` from ZenML's own HashiCorp Vault secrets store.

ZenML is not installed here; the secrets are written to OpenBao exactly as ZenML 0.98's
``HashiCorpVaultSecretsStore`` writes them (``create_or_update_secret(path="zenml/<uuid>", cas=0,
secret={"zenml_secret_values": values, "zenml_secret_metadata": {"zenml": server_id, "zenml_secret_id": id}})``
on its mount point), then read back through our driver and migrated with the CLI.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pytest

from multicloud_store import SecretsStore
from multicloud_store.cli import main
from multicloud_store.errors import SecretNotFoundError
from multicloud_store.integrations.zenml_layout import ZenmlLayoutSource
from multicloud_store_vault.testing import OpenBaoServer


def _zenml_write(bao: OpenBaoServer, mount: str, server_id: uuid.UUID, values: dict[str, str]) -> uuid.UUID:
    sid = uuid.uuid4()
    bao.api(
        "POST",
        f"{mount}/data/zenml/{sid}",
        {
            "options": {"cas": 0},
            "data": {
                "zenml_secret_values": values,
                "zenml_secret_metadata": {"zenml": str(server_id), "zenml_secret_id": str(sid)},
            },
        },
    )
    return sid


@pytest.fixture
def zenml_mount(bao: OpenBaoServer) -> str:
    """A KV v2 mount of its own, as ZenML's ``mount_point``."""
    mount = f"zenml-kv-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": "2"}})
    return mount


def test_layout_source_reads_only_this_servers_secrets(bao: OpenBaoServer, zenml_mount: str) -> None:
    server, other = uuid.uuid4(), uuid.uuid4()
    ours = {_zenml_write(bao, zenml_mount, server, {"user": f"u{i}", "password": "p"}): i for i in range(3)}
    theirs = _zenml_write(bao, zenml_mount, other, {"x": "y"})
    bao.api("POST", f"{zenml_mount}/data/zenml/not-a-uuid", {"data": {"a": "b"}})
    bao.api("POST", f"{zenml_mount}/data/unrelated", {"data": {"a": "b"}})
    source = ZenmlLayoutSource.from_env(
        {
            "MULTICLOUD_STORE_BACKEND": "vault",
            "VAULT_ADDR": bao.url,
            "VAULT_TOKEN": bao.root_token,
            "MULTICLOUD_STORE_VAULT_MOUNT": zenml_mount,
            "MULTICLOUD_STORE_ZENML_SERVER_ID": str(server),
        }
    )
    assert set(source.list_secret_ids()) == set(ours)
    for sid, i in ours.items():
        assert source.get_secret_values(sid) == {"user": f"u{i}", "password": "p"}
    with pytest.raises(SecretNotFoundError):
        source.get_secret_values(theirs)
    source.close()


def test_cli_migrates_zenml_vault_secrets_under_the_same_ids(
    bao: OpenBaoServer, zenml_mount: str, tmp_path: Path
) -> None:
    server = uuid.uuid4()
    written = {
        _zenml_write(bao, zenml_mount, server, {"token": f"t-{i}"}): {"token": f"t-{i}"} for i in range(5)
    }
    source_env = tmp_path / "src.env"
    source_env.write_text(
        f"MULTICLOUD_STORE_BACKEND=vault\nVAULT_ADDR={bao.url}\nVAULT_TOKEN={bao.root_token}\n"
        f"MULTICLOUD_STORE_VAULT_MOUNT={zenml_mount}\nMULTICLOUD_STORE_ZENML_SERVER_ID={server}\n"
    )
    target = {
        "MULTICLOUD_STORE_BACKEND": "vault",
        "MULTICLOUD_STORE_VAULT_URL": bao.url,
        "MULTICLOUD_STORE_VAULT_TOKEN": bao.root_token,
        "MULTICLOUD_STORE_DEPLOYMENT_ID": f"zenml-{server.hex[:8]}",
    }
    target_env = tmp_path / "dst.env"
    target_env.write_text("".join(f"{k}={v}\n" for k, v in target.items()))
    out = io.StringIO()
    code = main(
        [
            "migrate",
            "--source-env-file",
            str(source_env),
            "--source-layout",
            "zenml",
            "--target-env-file",
            str(target_env),
            "--no-progress",
            "--json",
        ],
        stdout=out,
    )
    assert code == 0, out.getvalue()
    assert bao.root_token not in out.getvalue()
    json.loads(out.getvalue())
    with SecretsStore.from_env(target) as store:
        assert set(store.list_secret_ids()) >= set(written)
        for sid, values in written.items():
            assert store.get_secret_values(sid) == values

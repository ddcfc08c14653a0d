"""Import isolation: the core loads no cloud SDK; a local round trip neither."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

CLOUD_PREFIXES = ("boto3", "botocore", "google", "azure", "grpc", "moto")


def _modules_after(code: str) -> list[str]:
    script = textwrap.dedent(code) + textwrap.dedent(
        """
        import json, sys
        print(json.dumps(sorted(sys.modules)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(result.stdout.splitlines()[-1])


def _cloud(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in CLOUD_PREFIXES]


def test_import_loads_no_cloud_sdk_and_no_settings_library() -> None:
    modules = _modules_after("import multicloud_store")
    assert _cloud(modules) == []
    # Cold start: pydantic, the CLI's libraries and the crypto library load on first use, not at import.
    assert [
        m for m in modules if m.split(".")[0] in ("pydantic", "pydantic_settings", "rich", "cryptography")
    ] == []


def test_local_round_trip_loads_no_cloud_sdk(tmp_path: Path) -> None:
    modules = _modules_after(
        f"""
        import uuid
        from multicloud_store import SecretsStore
        store = SecretsStore.from_env({{"MULTICLOUD_STORE_LOCAL_PATH": {str(tmp_path / "s.db")!r}}})
        sid = uuid.uuid4()
        store.store_secret_values(sid, {{"a": "b"}})
        assert store.get_secret_values(sid) == {{"a": "b"}}
        store.update_secret_values(sid, {{"c": "d"}})
        list(store.list_secret_ids())
        store.delete_secret_values(sid)
        """
    )
    assert _cloud(modules) == []


def test_cli_info_loads_no_cloud_sdk(tmp_path: Path) -> None:
    modules = _modules_after(
        """
        import io
        from multicloud_store.cli import main
        assert main(["info"], stdout=io.StringIO()) == 0
        """
    )
    assert _cloud(modules) == []

"""Shared fixtures for the core tests."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

# Never let a developer's own MULTICLOUD_STORE_* variables leak into the tests.
for _name in [n for n in os.environ if n.startswith("MULTICLOUD_STORE_")]:
    del os.environ[_name]


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a local store in a temporary directory."""
    return {
        "MULTICLOUD_STORE_BACKEND": "local",
        "MULTICLOUD_STORE_LOCAL_PATH": str(tmp_path / "secrets.db"),
    }


@pytest.fixture
def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()

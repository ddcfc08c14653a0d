"""The "not installed" error prints the install command that works for how the core itself was installed.

Nothing is published on an index yet: a core installed from a checkout (PEP 610 ``direct_url.json`` with
``dir_info``) must point at the backend's directory in that checkout, not at an extra that resolves nothing.
The real thing, in a fresh virtual environment, is in tests/install.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import pytest

import multicloud_store.registry as registry
from multicloud_store.errors import BackendNotInstalledError


class _Dist:
    def __init__(self, direct_url: dict[str, Any] | None) -> None:
        self._text = None if direct_url is None else json.dumps(direct_url)

    def read_text(self, filename: str) -> str | None:
        return self._text if filename == "direct_url.json" else None


def _missing_aws(
    monkeypatch: pytest.MonkeyPatch, direct_url: dict[str, Any] | None
) -> BackendNotInstalledError:
    monkeypatch.setattr(registry, "_entry_points", dict)
    monkeypatch.setattr(registry, "_installed_known", lambda name: None)
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: _Dist(direct_url))
    with pytest.raises(BackendNotInstalledError) as info:
        registry.load_driver_class("aws")
    return info.value


def _checkout(tmp_path: Path) -> Path:
    root = tmp_path / "my checkout"
    (root / "backends" / "aws").mkdir(parents=True)
    return root


def test_from_an_index_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    error = _missing_aws(monkeypatch, None)
    assert "pip install 'multicloud-store[aws]'" in str(error)
    assert error.requirement == "multicloud-store[aws]"


def test_editable_checkout_names_the_backend_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = _checkout(tmp_path)
    error = _missing_aws(monkeypatch, {"url": root.as_uri(), "dir_info": {"editable": True}})
    backend = root / "backends" / "aws"
    assert f"pip install -e '{backend}'" in str(error)  # quoted: the path holds a space
    assert "multicloud-store[aws]" not in str(error)
    assert error.requirement == str(backend)


def test_plain_install_from_a_checkout_names_the_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = _checkout(tmp_path)
    error = _missing_aws(monkeypatch, {"url": root.as_uri(), "dir_info": {}})
    assert f"pip install '{root / 'backends' / 'aws'}'" in str(error)
    assert "-e" not in str(error).split("(")[0]


def test_checkout_gone_or_archive_falls_back_to_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gone = tmp_path / "deleted-checkout"
    assert "pip install 'multicloud-store[aws]'" in str(
        _missing_aws(monkeypatch, {"url": gone.as_uri(), "dir_info": {}})
    )
    wheel = {"url": "https://example.invalid/multicloud_store-0.1.0-py3-none-any.whl", "archive_info": {}}
    assert "pip install 'multicloud-store[aws]'" in str(_missing_aws(monkeypatch, wheel))


def test_unreadable_direct_url_falls_back_to_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_entry_points", dict)
    monkeypatch.setattr(registry, "_installed_known", lambda name: None)

    class _Broken:
        def read_text(self, filename: str) -> str:
            return "{not json"

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: _Broken())
    with pytest.raises(BackendNotInstalledError, match=r"pip install 'multicloud-store\[aws\]'"):
        registry.load_driver_class("aws")

"""Cold start and the read path: what a fresh process loads, and the settings' own environment source.

No timing here (speed belongs in benchmarks/run.py): these tests pin the behaviour the figures rest on.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Annotated

import pytest

from multicloud_store import envelope
from multicloud_store.errors import ConfigurationError
from multicloud_store.settings import (
    AliasChoices,
    EnvSettings,
    Field,
    NoDecode,
    SettingsConfigDict,
    StoreSettings,
    field_validator,
)


def _modules_after(code: str, env: dict[str, str] | None = None) -> list[str]:
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path[1:]), **(env or {})},
    )
    return list(json.loads(result.stdout.splitlines()[-1]))


def test_building_a_store_and_reading_imports_no_settings_library(tmp_path: Path) -> None:
    modules = _modules_after(
        f"""
        import uuid
        from multicloud_store import SecretsStore
        store = SecretsStore.from_env({{"MULTICLOUD_STORE_LOCAL_PATH": {str(tmp_path / "s.db")!r},
                                        "MULTICLOUD_STORE_DEPLOYMENT_ID": "cold"}})
        sid = uuid.uuid4()
        store.store_secret_values(sid, {{"a": "b"}})
        assert store.get_secret_values(sid) == {{"a": "b"}}
        """
    )
    # pydantic-settings imported asyncio, dotenv and its cloud secret sources on every start; pydantic itself
    # (import and schema builds) cost more than the rest of a cold start on top of a cloud SDK.
    assert [
        m
        for m in modules
        if m.split(".")[0] in ("pydantic", "pydantic_core", "pydantic_settings", "asyncio", "dotenv")
    ] == []


@pytest.mark.parametrize("backend", ["aws", "gcp", "azure", "vault", "sql"])
def test_building_each_backends_settings_imports_no_pydantic(backend: str) -> None:
    pytest.importorskip(f"multicloud_store_{backend}")
    environ = {
        "aws": {"MULTICLOUD_STORE_AWS_REGION": "eu-west-1"},
        "gcp": {"MULTICLOUD_STORE_GCP_PROJECT_ID": "p"},
        "azure": {"MULTICLOUD_STORE_AZURE_VAULT_NAME": "vault1"},
        "vault": {"MULTICLOUD_STORE_VAULT_URL": "http://127.0.0.1:1", "MULTICLOUD_STORE_VAULT_TOKEN": "t"},
        "sql": {"MULTICLOUD_STORE_SQL_URL": "sqlite:////tmp/x.db", "MULTICLOUD_STORE_SQL_KEY_FILE": "/tmp/k"},
    }[backend]
    modules = _modules_after(
        f"""
        import importlib
        from multicloud_store.settings import EnvSettings, StoreSettings
        module = importlib.import_module("multicloud_store_{backend}.settings")
        cls = next(v for v in vars(module).values()
                   if isinstance(v, type) and issubclass(v, EnvSettings) and v.__module__ == module.__name__
                   and not v.__name__.startswith("_"))
        StoreSettings.from_environ({{"MULTICLOUD_STORE_BACKEND": "{backend}"}})
        try:
            cls.from_environ({environ!r})
        except Exception as exc:  # a file the settings check may be missing: the import is what is measured
            print(type(exc).__name__)
        """
    )
    assert [m for m in modules if m.split(".")[0] in ("pydantic", "pydantic_core")] == []


def test_known_variables_do_not_load_every_backends_settings(tmp_path: Path) -> None:
    modules = _modules_after(
        f"""
        from multicloud_store import SecretsStore
        SecretsStore.from_env({{"MULTICLOUD_STORE_LOCAL_PATH": {str(tmp_path / "s.db")!r},
                               "MULTICLOUD_STORE_LOCAL_POOL_SIZE": "2", "MULTICLOUD_STORE_CACHE_TTL_SECONDS": "1"}})
        """
    )
    others = [m for m in modules if m.startswith("multicloud_store_") and m.endswith(".settings")]
    assert others == []
    assert "multicloud_store.integrations.zenml_layout" not in modules


def test_a_typo_still_warns_with_the_closest_name(caplog: pytest.LogCaptureFixture) -> None:
    from multicloud_store import settings

    variable = f"MULTICLOUD_STORE_CACHE_TTL_SECONDZ_{uuid.uuid4().hex[:6].upper()}"
    logger = logging.getLogger("multicloud_store")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="multicloud_store"):
            found = settings.warn_unknown_variables(
                # Only the core's own variables: the core session installs no backend (the cross session checks
                # backend variables).
                {variable: "1", "MULTICLOUD_STORE_BACKEND": "local", "MULTICLOUD_STORE_LOCAL_PATH": "/x.db"}
            )
    finally:
        logger.removeHandler(caplog.handler)
    assert list(found) == [variable]
    assert any(variable in record.getMessage() for record in caplog.records)


class _Demo(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="MULTICLOUD_STORE_DEMO_")

    url: str = "http://default"
    port: int = Field(default=1, ge=1)
    names: tuple[str, ...] = ()
    zones: Annotated[tuple[str, ...], NoDecode] = ()
    workers: int = Field(
        default=8, validation_alias=AliasChoices("MULTICLOUD_STORE_DEMO_WORKERS", "MAX_W", "workers")
    )

    @field_validator("zones", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(part.strip() for part in value.split(",")) if isinstance(value, str) else value


def test_env_source_reads_prefix_case_insensitively() -> None:
    settings = _Demo.from_environ(
        {"multicloud_store_demo_url": "http://x", "MULTICLOUD_STORE_DEMO_PORT": "8"}
    )
    assert (settings.url, settings.port) == ("http://x", 8)


def test_env_source_decodes_json_lists_unless_marked_no_decode() -> None:
    settings = _Demo.from_environ(
        {"MULTICLOUD_STORE_DEMO_NAMES": '["a", "b"]', "MULTICLOUD_STORE_DEMO_ZONES": "x, y"}
    )
    assert settings.names == ("a", "b")
    assert settings.zones == ("x", "y")
    with pytest.raises(ConfigurationError) as info:
        _Demo.from_environ({"MULTICLOUD_STORE_DEMO_NAMES": "a,b"})
    assert info.value.variable == "MULTICLOUD_STORE_DEMO_NAMES"


def test_env_source_tries_alias_names_in_order_and_names_the_first_in_errors() -> None:
    assert _Demo.from_environ({"MAX_W": "3"}).workers == 3
    assert _Demo.from_environ({"MAX_W": "3", "MULTICLOUD_STORE_DEMO_WORKERS": "4"}).workers == 4
    with pytest.raises(ConfigurationError) as info:
        _Demo.from_environ({"MAX_W": "many"})
    assert info.value.variable == "MULTICLOUD_STORE_DEMO_WORKERS"


def test_keywords_win_over_the_environment_by_name_or_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTICLOUD_STORE_DEMO_PORT", "9")
    monkeypatch.setenv("MULTICLOUD_STORE_DEMO_WORKERS", "5")
    assert _Demo().port == 9
    assert _Demo(port=2).port == 2
    assert _Demo(workers=6).workers == 6
    assert _Demo.from_environ({"MULTICLOUD_STORE_DEMO_WORKERS": "5"}, workers=7).workers == 7


def test_bad_values_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigurationError) as info:
        StoreSettings.from_environ({"MULTICLOUD_STORE_MAX_WORKERS": "s3cr3t-value"})
    assert info.value.variable == "MULTICLOUD_STORE_MAX_WORKERS"
    assert "s3cr3t-value" not in str(info.value)


def test_envelope_repr_never_shows_values() -> None:
    sid = uuid.uuid4()
    opened = envelope.decode(envelope.encode("prod", sid, {"token": "s3cr3t"}))
    assert opened.values == {"token": "s3cr3t"}
    assert (opened.deployment, opened.secret_id) == ("prod", str(sid))
    assert "s3cr3t" not in repr(opened)


def test_local_read_labels_are_parsed_on_demand(tmp_path: Path) -> None:
    from multicloud_store.drivers.local import LocalDriver, LocalSettings

    driver = LocalDriver(LocalSettings(path=tmp_path / "s.db"))
    try:
        driver.create("n-1", "payload", {"team": "a", "env": "prod"})
        labels = driver.read("n-1").labels
        assert dict(labels) == {"team": "a", "env": "prod"}
        assert labels == {"team": "a", "env": "prod"}
        assert labels.get("team") == "a" and labels.get("missing") is None
        assert len(labels) == 2 and sorted(labels) == ["env", "team"]
    finally:
        driver.close()


def test_our_backends_load_without_an_entry_point_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    from multicloud_store import registry

    def no_scan() -> dict[str, object]:
        raise AssertionError("the entry-point scan ran")

    monkeypatch.setattr(registry, "_entry_points", no_scan)
    for name in registry.KNOWN_DISTRIBUTIONS:
        if registry._installed_known(name) is not None:
            assert registry.load_driver_class(name).__name__.lower().startswith(name)


def test_the_shortcut_leads_where_each_distributions_entry_point_does() -> None:
    from importlib.metadata import entry_points

    from multicloud_store import registry

    registered = {ep.name: ep.value for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    for name, target in registry._KNOWN_TARGETS.items():
        if name in registered:
            assert registered[name] == target
    assert set(registry._KNOWN_TARGETS) == set(registry.KNOWN_DISTRIBUTIONS)

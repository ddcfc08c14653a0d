"""Settings from the environment, errors naming the variable, and the backend registry."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from multicloud_store.errors import BackendNotInstalledError, ConfigurationError
from multicloud_store.registry import available_backends, load_driver_class
from multicloud_store.settings import StoreSettings, read_env_file
from multicloud_store.store import SecretsStore


def test_defaults() -> None:
    settings = StoreSettings.from_environ({})
    assert settings.backend == "local"
    assert settings.deployment_id == "default"
    assert settings.name_prefix == "multicloud-store"
    assert settings.cache_ttl_seconds == 0


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTICLOUD_STORE_BACKEND", "Memory ")
    monkeypatch.setenv("MULTICLOUD_STORE_CACHE_TTL_SECONDS", "12.5")
    settings = StoreSettings.from_environ()
    assert (settings.backend, settings.cache_ttl_seconds) == ("memory", 12.5)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MULTICLOUD_STORE_DEPLOYMENT_ID", "Has Spaces"),
        ("MULTICLOUD_STORE_DEPLOYMENT_ID", "x" * 64),
        ("MULTICLOUD_STORE_DEPLOYMENT_ID", ""),
        ("MULTICLOUD_STORE_NAME_PREFIX", "bad_prefix"),
        ("MULTICLOUD_STORE_NAME_PREFIX", "1starts-with-digit"),
        ("MULTICLOUD_STORE_CACHE_TTL_SECONDS", "-1"),
        ("MULTICLOUD_STORE_CACHE_TTL_SECONDS", "soon"),
        ("MULTICLOUD_STORE_CACHE_MAX_ENTRIES", "0"),
        ("MULTICLOUD_STORE_CACHE_JITTER", "1.5"),
        ("MULTICLOUD_STORE_MAX_WORKERS", "1000"),
        ("MULTICLOUD_STORE_BACKEND", ""),
        ("MULTICLOUD_STORE_LOCAL_PAGE_SIZE", "0"),
        ("MULTICLOUD_STORE_LOCAL_BUSY_TIMEOUT_SECONDS", "never"),
        ("MULTICLOUD_STORE_MEMORY_MAX_PAYLOAD_BYTES", "1"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    environ = {variable: value}
    if variable.startswith("MULTICLOUD_STORE_MEMORY"):
        environ["MULTICLOUD_STORE_BACKEND"] = "memory"
    with pytest.raises(ConfigurationError) as info:
        SecretsStore.from_env(environ)
    assert variable in str(info.value)
    assert info.value.variable == variable


def test_credentials_are_not_echoed_in_configuration_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        SecretsStore.from_env({"MULTICLOUD_STORE_LOCAL_KEY": "c2VjcmV0LWtleS1tYXRlcmlhbA=="})
    assert "c2VjcmV0" not in str(info.value)


def test_redacted_view_hides_credentials(random_key: str) -> None:
    from multicloud_store.drivers.local import LocalSettings

    settings = LocalSettings.from_environ({"MULTICLOUD_STORE_LOCAL_KEY": random_key})
    assert random_key not in repr(settings)
    assert settings.redacted()["MULTICLOUD_STORE_LOCAL_KEY"] == "**********"


def test_env_file(tmp_path: Path) -> None:
    file = tmp_path / "target.env"
    file.write_text(
        "# comment\nexport MULTICLOUD_STORE_BACKEND=memory\nMULTICLOUD_STORE_DEPLOYMENT_ID='prod'\n"
    )
    assert read_env_file(file) == {
        "MULTICLOUD_STORE_BACKEND": "memory",
        "MULTICLOUD_STORE_DEPLOYMENT_ID": "prod",
    }
    with pytest.raises(ConfigurationError, match="not found"):
        read_env_file(tmp_path / "missing.env")


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_driver_class("nosuchcloud")
    assert not isinstance(info.value, BackendNotInstalledError)
    for name in ("local", "memory", "aws", "gcp", "azure"):
        assert name in str(info.value)
    assert info.value.variable == "MULTICLOUD_STORE_BACKEND"


def test_builtins_load_without_metadata() -> None:
    assert load_driver_class("memory").backend_name == "memory"
    assert load_driver_class("local").backend_name == "local"
    assert {"local", "memory", "aws", "gcp", "azure"} <= set(available_backends())


def _run(code: str, *, path: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join([*(path or []), *sys.path[1:]])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )


def test_known_but_missing_backend_names_the_distribution(tmp_path: Path) -> None:
    # Hide every installed multicloud_store_aws by shadowing the entry-point lookup with an empty group.
    result = _run(
        """
        import importlib.metadata as m
        import multicloud_store.registry as r
        r._entry_points = lambda: {}
        r._installed_known = lambda name: None
        # As if installed from an index: no PEP 610 direct_url.json (a checkout gets a path; test_install_hint).
        m.distribution = lambda name: type("D", (), {"read_text": staticmethod(lambda f: None)})()
        try:
            r.load_driver_class("aws")
        except r.BackendNotInstalledError as e:
            print("REQ", e.requirement, "|", e)
        """
    )
    assert (
        "REQ multicloud-store[aws] | backend 'aws' is not installed: pip install 'multicloud-store[aws]'"
        in result.stdout
    )


def test_third_party_driver_by_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "acme_driver").mkdir(parents=True)
    (site / "acme_driver" / "__init__.py").write_text(
        textwrap.dedent(
            """
            from multicloud_store.drivers.memory import MemoryDriver

            class AcmeDriver(MemoryDriver):
                backend_name = "acme"
            """
        )
    )
    (site / "acme_driver-1.0.dist-info").mkdir()
    (site / "acme_driver-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-driver\nVersion: 1.0\n"
    )
    (site / "acme_driver-1.0.dist-info" / "entry_points.txt").write_text(
        "[multicloud_store.backends]\nacme = acme_driver:AcmeDriver\nbroken = acme_missing_sdk:Driver\n"
    )
    result = _run(
        """
        import uuid
        from multicloud_store import SecretsStore, BackendNotInstalledError
        from multicloud_store.registry import available_backends
        store = SecretsStore.from_env({"MULTICLOUD_STORE_BACKEND": "acme"})
        sid = uuid.uuid4()
        store.store_secret_values(sid, {"a": "b"})
        print("VALUES", store.get_secret_values(sid), store.backend, "acme" in available_backends())
        try:
            SecretsStore.from_env({"MULTICLOUD_STORE_BACKEND": "broken"})
        except BackendNotInstalledError as e:
            print("BROKEN", e)
        """,
        path=[str(site)],
    )
    assert "VALUES {'a': 'b'} acme True" in result.stdout, result.stderr
    assert "BROKEN backend 'broken' cannot be imported (acme_missing_sdk)" in result.stdout


# -- issue 13.5 to 13.7: typos reported, empty paths refused, errors as sentences -------------------------------


def test_unknown_variable_is_a_warning_in_the_library_log(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.WARNING, logger="multicloud_store"):
        store = SecretsStore.from_env(
            {"MULTICLOUD_STORE_BACKEND": "memory", "MULTICLOUD_STORE_BAKEND": "aws"}
        )
    assert store.backend == "memory"  # warn, never fail
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "MULTICLOUD_STORE_BAKEND" in m and "did you mean MULTICLOUD_STORE_BACKEND?" in m for m in messages
    ), messages


def test_known_variables_cover_every_installed_backend_without_importing_an_sdk() -> None:
    code = textwrap.dedent(
        """
        import sys
        from multicloud_store.registry import known_variables, installed_backends
        names = known_variables()
        for backend in installed_backends():
            prefix = f"MULTICLOUD_STORE_{backend.upper()}_"
            assert backend == "memory" or any(n.startswith(prefix) for n in names), backend
        assert "MULTICLOUD_STORE_BACKEND" in names and "MULTICLOUD_STORE_ZENML_SERVER_ID" in names
        loaded = {m.split(".")[0] for m in sys.modules}
        assert not loaded & {"boto3", "botocore", "google", "azure", "grpc", "hvac", "sqlalchemy"}, loaded
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_unknown_variables_suggest_the_closest_name() -> None:
    from multicloud_store.settings import unknown_variables

    found = unknown_variables(
        {
            "MULTICLOUD_STORE_BAKEND": "aws",
            "MULTICLOUD_STORE_CACHE_TTL": "5",
            "MULTICLOUD_STORE_LOCAL_PAHT": "/x.db",
            "MULTICLOUD_STORE_SOMETHING_NEW": "1",
            "MULTICLOUD_STORE_BACKEND": "local",
            "MULTICLOUD_STORE_DEBUG": "1",
            "MULTICLOUD_STORE_TEST_POSTGRES_URL": "x",
            "OTHER": "x",
        }
    )
    assert found == {
        "MULTICLOUD_STORE_LOCAL_PAHT": "MULTICLOUD_STORE_LOCAL_PATH",
        "MULTICLOUD_STORE_BAKEND": "MULTICLOUD_STORE_BACKEND",
        "MULTICLOUD_STORE_CACHE_TTL": "MULTICLOUD_STORE_CACHE_TTL_SECONDS",
        "MULTICLOUD_STORE_SOMETHING_NEW": None,
    }


def test_zenml_options_are_checked_under_their_own_prefix() -> None:
    from multicloud_store.settings import unknown_variables

    found = unknown_variables(
        {
            "ZENML_SECRETS_STORE_TYPE": "custom",
            "ZENML_SECRETS_STORE_CLASS_PATH": "x",
            "ZENML_SECRETS_STORE_BACKEND": "local",
            "ZENML_SECRETS_STORE_LOCAL_PATH": "/x.db",
            "ZENML_SECRETS_STORE_BAKEND": "local",
        },
        prefix="ZENML_SECRETS_STORE_",
        also_known=("TYPE", "CLASS_PATH"),
    )
    assert found == {"ZENML_SECRETS_STORE_BAKEND": "ZENML_SECRETS_STORE_BACKEND"}


def test_empty_path_is_a_configuration_error_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError) as info:
        SecretsStore.from_env({"MULTICLOUD_STORE_LOCAL_PATH": ""})
    assert info.value.variable == "MULTICLOUD_STORE_LOCAL_PATH"
    assert "must not be empty" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value", "sentence"),
    [
        (
            "MULTICLOUD_STORE_DEPLOYMENT_ID",
            "Has Spaces",
            "MULTICLOUD_STORE_DEPLOYMENT_ID must be 1 to 63 lowercase",
        ),
        (
            "MULTICLOUD_STORE_NAME_PREFIX",
            "bad_prefix",
            "MULTICLOUD_STORE_NAME_PREFIX must be 1 to 48 letters",
        ),
        ("MULTICLOUD_STORE_CACHE_TTL_SECONDS", "-1", "MULTICLOUD_STORE_CACHE_TTL_SECONDS must be at least 0"),
        ("MULTICLOUD_STORE_CACHE_TTL_SECONDS", "soon", "MULTICLOUD_STORE_CACHE_TTL_SECONDS must be a number"),
        ("MULTICLOUD_STORE_MAX_WORKERS", "1000", "MULTICLOUD_STORE_MAX_WORKERS must be at most 64"),
        ("MULTICLOUD_STORE_MAX_WORKERS", "2.5", "MULTICLOUD_STORE_MAX_WORKERS must be a whole number"),
        ("MULTICLOUD_STORE_BACKEND", "", "MULTICLOUD_STORE_BACKEND must have at least 1 character"),
        ("MULTICLOUD_STORE_LOCAL_KEY", "abc", "MULTICLOUD_STORE_LOCAL_KEY must be base64"),
    ],
)
def test_field_errors_become_sentences_naming_the_variable(variable: str, value: str, sentence: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SecretsStore.from_env({variable: value})
    message = str(info.value)
    assert sentence in message
    for raw in ("Value error,", "String should", "Input should", "valid number, unable"):
        assert raw not in message
    assert value not in message.split(":", 1)[1] or value in sentence

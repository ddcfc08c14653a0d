"""Backend name -> driver class, imported only when that backend is selected.

Built-in drivers are listed here in code. Every other name (our cloud backends included, since each is its own
distribution) is looked up in the ``multicloud_store.backends`` entry-point group, and only when it is not a
built-in, so the common case reads no package metadata. A known backend whose distribution is missing gets an
install hint instead of a bare `ImportError`.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

from multicloud_store.errors import BackendNotInstalledError, ConfigurationError

if TYPE_CHECKING:
    from multicloud_store.driver import SecretsDriver

__all__ = [
    "ENTRY_POINT_GROUP",
    "KNOWN_DISTRIBUTIONS",
    "available_backends",
    "driver_from_environ",
    "install_command",
    "installed_backends",
    "known_variables",
    "load_driver_class",
    "opaque_variable_prefixes",
]

ENTRY_POINT_GROUP = "multicloud_store.backends"

# Imported in code: always there, no metadata scan.
_BUILTIN: dict[str, str] = {
    "memory": "multicloud_store.drivers.memory:MemoryDriver",
    "local": "multicloud_store.drivers.local:LocalDriver",
}

# The settings modules of the core's own families (MULTICLOUD_STORE_LOCAL_*, _MEMORY_*, _ZENML_*): importing them
# loads no SDK. Also read by settings.unknown_variables' quick check.
CORE_SETTINGS_MODULES: dict[str, str] = {
    "local": "multicloud_store.drivers.local",
    "memory": "multicloud_store.drivers.memory",
    "zenml": "multicloud_store.integrations.zenml_layout",
}

# Our own backends ship as separate distributions; these names get an install hint when missing.
KNOWN_DISTRIBUTIONS: dict[str, str] = {
    "aws": "multicloud-store-aws",
    "gcp": "multicloud-store-gcp",
    "azure": "multicloud-store-azure",
    "vault": "multicloud-store-vault",
    "sql": "multicloud-store-sql",
}


# Where each of our backends' entry point leads: importing it directly skips the entry-point scan, which reads the
# metadata of every installed distribution (tens of milliseconds of a cold start in a large environment).
_KNOWN_TARGETS: dict[str, str] = {
    "aws": "multicloud_store_aws.driver:AwsDriver",
    "gcp": "multicloud_store_gcp.driver:GcpDriver",
    "azure": "multicloud_store_azure.driver:AzureDriver",
    "vault": "multicloud_store_vault.driver:VaultDriver",
    "sql": "multicloud_store_sql.driver:SqlDriver",
}


def _installed_known(name: str) -> str | None:
    """The driver of one of our backends when its package is importable here (no metadata read), else None."""
    target = _KNOWN_TARGETS.get(name)
    if target is None:
        return None
    import importlib.util

    try:
        spec = importlib.util.find_spec(target.partition(".")[0])
    except (ImportError, ValueError):
        return None
    return target if spec is not None else None


def _import(target: str) -> object:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


def _entry_points() -> dict[str, object]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> list[str]:
    """List every backend name that can be selected here, installed or known.

    Returns:
        Sorted names: built-ins, installed third-party drivers, and our cloud backends.
    """
    return sorted({*_BUILTIN, *KNOWN_DISTRIBUTIONS, *_entry_points()})


def _install_hint(name: str) -> tuple[str, str]:
    """What installs backend ``name`` here, and the pip command for it, for how the core was installed.

    Nothing is published on an index yet, so for a core installed from a checkout (PEP 610 ``direct_url.json``
    names a local directory) the hint is the backend's directory in that checkout; otherwise the extra.
    """
    extra = f"multicloud-store[{name}]"
    # Imported here: only a missing backend pays for them.
    from importlib.metadata import distribution
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    try:
        direct_url = json.loads(distribution("multicloud-store").read_text("direct_url.json") or "{}")
    except (ImportError, OSError, ValueError):  # PackageNotFoundError is an ImportError
        return extra, f"pip install '{extra}'"
    url = str(direct_url.get("url", ""))
    if "dir_info" in direct_url and url.startswith("file:"):
        backend_dir = Path(url2pathname(urlparse(url).path)) / "backends" / name
        if backend_dir.is_dir():
            editable = "-e " if direct_url["dir_info"].get("editable") else ""
            import shlex

            return str(backend_dir), f"pip install {editable}{shlex.quote(str(backend_dir))}"
    return extra, f"pip install '{extra}'"


def installed_backends() -> list[str]:
    """List the backends that can be selected without installing anything.

    Returns:
        Sorted names: the built-ins and every backend registered in the entry-point group.
    """
    return sorted({*_BUILTIN, *_entry_points()})


def install_command(name: str) -> str | None:
    """Return the command that installs one of our backends that is not installed here.

    Args:
        name: A backend name from `KNOWN_DISTRIBUTIONS`.

    Returns:
        A pip command line, or None for a name we do not publish.
    """
    if name not in KNOWN_DISTRIBUTIONS:
        return None
    return _install_hint(name)[1]


def _settings_classes() -> list[type[object]]:
    """Every settings class we can load without importing a cloud SDK.

    The driver modules of our backends import their SDK, so each backend's settings are looked for in the
    ``settings`` module next to the entry point's module (the layout every backend here uses).
    """
    from multicloud_store.settings import EnvSettings, StoreSettings

    classes: list[type[object]] = [StoreSettings]
    modules = list(CORE_SETTINGS_MODULES.values())
    for entry_point in _entry_points().values():
        module_name = str(getattr(entry_point, "module", "") or "")
        package = module_name.rpartition(".")[0]
        if package:
            modules.append(f"{package}.settings")
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a broken or foreign layout: its variables are then never called typos
            logging.getLogger("multicloud_store").debug("no settings read from %s: %s", module_name, exc)
            continue
        for value in [item for item in vars(module).values() if isinstance(item, type)]:
            if issubclass(value, EnvSettings) and value is not EnvSettings:
                classes.append(value)
    return classes


@functools.lru_cache(maxsize=1)
def known_variables() -> frozenset[str]:
    """Every ``MULTICLOUD_STORE_*`` variable that some installed settings class reads (no SDK imported).

    Returns:
        The variable names.
    """
    from multicloud_store.settings import EnvSettings

    names: set[str] = set()
    for cls in _settings_classes():
        assert issubclass(cls, EnvSettings)
        names.update(cls.env_name(field) for field in cls.model_fields)
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def opaque_variable_prefixes() -> tuple[str, ...]:
    """Variable prefixes of installed backends whose settings could not be read (never reported as typos).

    Returns:
        Prefixes such as ``MULTICLOUD_STORE_ACME_``.
    """
    from multicloud_store.settings import ENV_PREFIX, EnvSettings

    prefixes = {
        str(cls.model_config.get("env_prefix") or "").upper()
        for cls in _settings_classes()
        if issubclass(cls, EnvSettings)
    }
    return tuple(
        f"{ENV_PREFIX}{name.upper()}_"
        for name in _entry_points()
        if f"{ENV_PREFIX}{name.upper()}_" not in prefixes
    )


def load_driver_class(name: str) -> type[SecretsDriver]:
    """Import and return the driver class of a backend.

    Args:
        name: The backend name, as in ``MULTICLOUD_STORE_BACKEND``.

    Returns:
        The driver class.

    Raises:
        BackendNotInstalledError: The backend is known but its distribution or SDK is not installed.
        ConfigurationError: No backend of that name exists.
    """
    if name in _BUILTIN:
        return cast("type[SecretsDriver]", _import(_BUILTIN[name]))
    distribution = KNOWN_DISTRIBUTIONS.get(name)
    known = _installed_known(name)
    if known is not None:
        try:
            return cast("type[SecretsDriver]", _import(known))
        except ImportError as exc:
            requirement, pip = _install_hint(name)
            raise _cannot_import(name, exc, requirement, pip) from exc
    entry_point = _entry_points().get(name)
    extra, command = _install_hint(name) if distribution else (None, None)
    if entry_point is None:
        if distribution:
            raise BackendNotInstalledError(
                f"backend {name!r} is not installed: {command} (distribution {distribution})",
                requirement=extra,
                backend=name,
            )
        raise ConfigurationError(
            f"MULTICLOUD_STORE_BACKEND={name!r} is not a known backend; known backends: "
            + ", ".join(available_backends()),
            variable="MULTICLOUD_STORE_BACKEND",
            backend=name,
        )
    try:
        loaded = entry_point.load()  # type: ignore[attr-defined]
    except ImportError as exc:
        raise _cannot_import(name, exc, extra, command or f"the SDK that backend {name!r} needs") from exc
    return cast("type[SecretsDriver]", loaded)


def _cannot_import(
    name: str, exc: ImportError, requirement: str | None, what: str
) -> BackendNotInstalledError:
    """The error for a driver that is there but whose SDK is not (a broken or partial install)."""
    return BackendNotInstalledError(
        f"backend {name!r} cannot be imported ({exc.name or exc}); install {what}",
        requirement=requirement,
        backend=name,
    )


def driver_from_environ(name: str, environ: Mapping[str, str] | None = None) -> SecretsDriver:
    """Build a backend's driver from its ``MULTICLOUD_STORE_<BACKEND>_*`` variables (no network call).

    Args:
        name: The backend name.
        environ: Variables to read instead of the process environment.

    Returns:
        The driver.
    """
    driver_class = load_driver_class(name)
    return driver_class(driver_class.settings_class.from_environ(environ))  # type: ignore[call-arg]

"""Configuration from the environment, typed and validated.

`StoreSettings` holds what the dispatcher needs (``MULTICLOUD_STORE_*``); each driver owns a settings class of its
own, derived from `EnvSettings`, for ``MULTICLOUD_STORE_<BACKEND>_*``. Every class can be read from the process
environment or from an explicit mapping (`EnvSettings.from_environ`), which is how the CLI reads a migration's
source and target side by side. A wrong value becomes a `ConfigurationError` that names the variable.

The models are this package's own (`multicloud_store._model`), spelled as pydantic's (`Field`, `SecretStr`,
`field_validator`, `model_validator`, `AliasChoices`): pydantic's import and schema building cost more than the rest
of a cold start (docs/decisions.md). Third-party drivers import these names from here.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import logging
import os
import threading
import typing
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from multicloud_store._model import (
    AliasChoices,
    Field,
    FieldInfo,
    Model,
    SecretStr,
    ValidationInfo,
    ValidationProblems,
    field_validator,
    model_validator,
)
from multicloud_store.errors import ConfigurationError

__all__ = [
    "ENV_PREFIX",
    "AliasChoices",
    "EnvSettings",
    "Field",
    "FieldInfo",
    "NoDecode",
    "SecretStr",
    "SettingsConfigDict",
    "StoreSettings",
    "ValidationInfo",
    "describe_settings",
    "field_validator",
    "model_validator",
    "read_env_file",
    "unknown_variables",
    "warn_unknown_variables",
]

logger = logging.getLogger("multicloud_store")

ENV_PREFIX = "MULTICLOUD_STORE_"

_S = TypeVar("_S", bound="EnvSettings")

# The mapping `from_environ` reads, handed to `settings_customise_sources` without global state.
_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "multicloud_store_environ", default=None
)


class SettingsConfigDict(typing.TypedDict, total=False):
    """A settings class's options (pydantic-settings' names).

    Attributes:
        env_prefix: Prepended to a field's name to give its variable (fields with a ``validation_alias`` are read
            from the alias's names instead, without the prefix).
        case_sensitive: Whether variable names are matched case-sensitively (default: no).
        env_ignore_empty: Treat a variable set to the empty string as unset (default: no).
        populate_by_name: A field with a ``validation_alias`` is also read from ``env_prefix + name``.
        frozen: Instances are immutable (default: yes).
        extra: Accepted for compatibility; unknown keywords are always ignored.
        validate_default: Accepted for compatibility; defaults always go through the validators.
        hide_input_in_errors: Accepted for compatibility; errors never show the input.
        arbitrary_types_allowed: Accepted for compatibility.
    """

    env_prefix: str
    case_sensitive: bool
    env_ignore_empty: bool
    populate_by_name: bool
    frozen: bool
    extra: str
    validate_default: bool
    hide_input_in_errors: bool
    arbitrary_types_allowed: bool


class NoDecode:
    """Mark a list or tuple field, ``Annotated[tuple[str, ...], NoDecode]``, whose variable is not JSON.

    Such a field gets the variable's raw text, for a ``mode="before"`` validator to split.
    """


def _is_complex(annotation: Any) -> bool:
    """Whether a field's variable holds JSON (a list, tuple, set, mapping or model), as pydantic-settings reads it."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_complex(typing.get_args(annotation)[0])
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return any(_is_complex(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    candidate = origin or annotation
    if isinstance(candidate, type):
        if issubclass(candidate, (Model, list, tuple, set, frozenset, dict)):
            return True
        return candidate.__module__ == "collections.abc" and candidate.__name__ in (
            "Mapping",
            "Sequence",
            "Set",
        )
    return False


def _environment_values(cls: type[EnvSettings], environ: Mapping[str, str]) -> dict[str, Any]:
    """Read ``cls``'s fields from ``environ``: what pydantic-settings' environment source does, without its import.

    A field is read from ``env_prefix + name``, or from each name of its ``validation_alias`` (first found wins);
    names fold case unless ``case_sensitive``; list, tuple, mapping and model fields are parsed as JSON unless
    marked `NoDecode`. The keys returned are the field names.
    """
    config = cls.model_config
    case_sensitive = bool(config.get("case_sensitive", False))
    prefix = str(config.get("env_prefix", "") or "")
    ignore_empty = bool(config.get("env_ignore_empty", False))
    by_name = bool(config.get("populate_by_name") or config.get("validate_by_name"))
    names = environ if case_sensitive else {key.lower(): value for key, value in environ.items()}
    out: dict[str, Any] = {}
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            variables = list(alias.choices)
        elif isinstance(alias, str):
            variables = [alias]
        else:
            variables = []
        if not variables or by_name:
            variables.append(prefix + name)
        for variable in variables:
            value = names.get(variable if case_sensitive else variable.lower())
            if value is None or (ignore_empty and value == ""):
                continue
            if _is_complex(field.annotation) and not any(
                marker is NoDecode or isinstance(marker, NoDecode) for marker in field.metadata
            ):
                try:
                    value = json.loads(value)
                except ValueError:
                    raise ConfigurationError(
                        f"invalid configuration: {variable.upper()} must be valid JSON",
                        variable=variable.upper(),
                    ) from None
            out[name] = value
            break
    return out


class EnvSettings(Model):
    """Base of every settings class: environment variables only, errors that name the variable.

    Subclasses set ``model_config = SettingsConfigDict(env_prefix="MULTICLOUD_STORE_<BACKEND>_")`` and declare
    fields as pydantic models do (annotations, `Field`, `field_validator`, `model_validator`). Keyword arguments
    win over the environment. Building one raises `ConfigurationError` naming each variable at fault.
    """

    # Errors name the variable, never the input (it may be a credential). extra, validate_default,
    # hide_input_in_errors and arbitrary_types_allowed are pydantic-settings' spelling of what is always so here.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
        frozen=True,
        hide_input_in_errors=True,
        arbitrary_types_allowed=True,
    )

    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **values: Any) -> None:
        """Read the fields from the environment; keywords (by field name or alias) win over it.

        Args:
            **values: Field values.

        Raises:
            ConfigurationError: A value is missing or invalid; the message names the variable.
        """
        cls = type(self)
        environ = _ENVIRON.get()
        found = _environment_values(cls, os.environ if environ is None else environ)
        if values:
            # A keyword names its field by name or alias: the environment's value for that field gives way.
            found.update(cls._by_name(values))
        try:
            cls._validate(found, into=self)
        except ValidationProblems as exc:
            raise cls._configuration_error(exc) from None

    @classmethod
    def model_validate(cls: type[_S], data: Mapping[str, Any]) -> _S:
        """Build the settings from a mapping of field names (or aliases), without reading the environment.

        Args:
            data: The values.

        Returns:
            The validated settings.

        Raises:
            ConfigurationError: A value is missing or invalid; the message names the variable.
        """
        try:
            return cls._validate(data)
        except ValidationProblems as exc:
            raise cls._configuration_error(exc) from None

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """Return the environment variable that sets a field.

        Args:
            field_name: The Python field name.

        Returns:
            The variable name, for example ``MULTICLOUD_STORE_AWS_REGION``.
        """
        prefix = cls.model_config.get("env_prefix") or ""
        return f"{prefix}{field_name}".upper()

    @classmethod
    def from_environ(cls: type[_S], environ: Mapping[str, str] | None = None, **overrides: Any) -> _S:
        """Build the settings from the process environment, or from ``environ`` when given.

        Args:
            environ: Variables to read instead of `os.environ` (the process environment is then ignored).
            **overrides: Field values that win over the environment.

        Returns:
            The validated settings.

        Raises:
            ConfigurationError: A value is missing or invalid; the message names the variable.
        """
        # Without a mapping, keep whatever `environ_scope` set (None there means the process environment).
        token = _ENVIRON.set(dict(environ)) if environ is not None else None
        try:
            return cls(**overrides)
        finally:
            if token is not None:
                _ENVIRON.reset(token)

    @classmethod
    def _configuration_error(cls, exc: ValidationProblems) -> ConfigurationError:
        problems = []
        first_variable: str | None = None
        for problem in exc.problems:
            field = problem.field
            variable = cls.env_name(field) if field in cls.model_fields else field or "(settings)"
            first_variable = first_variable or variable
            # The sentences describe the rule, never the input: the input may be a credential.
            problems.append(f"{variable} {problem.sentence}")
        return ConfigurationError("invalid configuration: " + "; ".join(problems), variable=first_variable)

    @field_validator("*", mode="before")
    @classmethod
    def _no_empty_path(cls, value: object, info: ValidationInfo) -> object:
        # An empty path would become Path("."), the working directory: refuse it instead of guessing.
        if value == "" and info.field_name is not None and _is_path_field(cls, info.field_name):
            raise ValueError("must not be empty (unset the variable to use the default)")
        return value

    def redacted(self) -> dict[str, str]:
        """Return the settings as ``{VARIABLE: text}`` with credentials replaced by ``**********``.

        Returns:
            A mapping safe to print.
        """
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                text = "(not set)"
            else:
                text = "**********" if isinstance(value, SecretStr) else str(value)
            out[self.env_name(name)] = text
        return out


def _is_path_field(cls: type[EnvSettings], name: str) -> bool:
    field = cls.model_fields.get(name)
    if field is None:
        return False
    annotation = field.annotation
    return annotation is Path or Path in getattr(annotation, "__args__", ())


class StoreSettings(EnvSettings):
    """The dispatcher's settings (``MULTICLOUD_STORE_*``).

    Attributes:
        backend: Which backend to use: ``local`` (default), ``memory``, ``aws``, ``gcp``, ``azure``, ``vault``,
            ``sql``, or a third-party name registered in the ``multicloud_store.backends`` entry-point group.
        deployment_id: Who owns the secrets this store writes. Two deployments can share one backend account
            without ever reading or changing each other's secrets. Lowercase letters, digits, ``-`` and ``_``, at
            most 63 characters (it is stored as a label, and GCP's label rules are the strictest).
        name_prefix: Backend names are ``{name_prefix}-{uuid}``. Letters, digits and ``-``.
        cache_ttl_seconds: Read cache lifetime; 0 (default) turns the cache off.
        cache_max_entries: Most secrets the cache holds.
        cache_jitter: Fraction of the TTL by which each entry's lifetime is randomly shortened.
        cache_negative_ttl_seconds: How long a "not found" is remembered (only while the cache is on).
        cache_stale_seconds: How long past its TTL a cached value may be served while the backend is unavailable;
            0 (default) never serves a stale value.
        max_workers: Threads for `SecretsStore.get_many` on backends without a batch read; also the default
            size of the ``local``, ``aws``, ``gcp`` (REST) and ``azure`` connection pools.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    backend: str = Field(default="local", min_length=1)
    deployment_id: str = Field(
        default="default",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        json_schema_extra={
            "rule": "1 to 63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
        },
    )
    name_prefix: str = Field(
        default="multicloud-store",
        pattern=r"^[A-Za-z][A-Za-z0-9-]{0,47}$",
        json_schema_extra={"rule": "1 to 48 letters, digits or '-', starting with a letter"},
    )
    cache_ttl_seconds: float = Field(default=0.0, ge=0, le=86400)
    cache_max_entries: int = Field(default=10_000, ge=1)
    cache_jitter: float = Field(default=0.1, ge=0, lt=1)
    cache_negative_ttl_seconds: float = Field(default=5.0, ge=0, le=3600)
    cache_stale_seconds: float = Field(default=0.0, ge=0, le=86400)
    max_workers: int = Field(default=8, ge=1, le=64)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> StoreSettings:
        """Build the settings, and warn about ``MULTICLOUD_STORE_*`` variables that no setting knows.

        Args:
            environ: Variables to read instead of `os.environ` (the process environment is then ignored).
            **overrides: Field values that win over the environment.

        Returns:
            The validated settings.

        Raises:
            ConfigurationError: A value is missing or invalid; the message names the variable.
        """
        settings = super().from_environ(environ, **overrides)
        scoped = _ENVIRON.get()
        warn_unknown_variables(
            environ if environ is not None else scoped if scoped is not None else os.environ
        )
        return settings

    @field_validator("backend")
    @classmethod
    def _normalise_backend(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("deployment_id", mode="before")
    @classmethod
    def _normalise_deployment(cls, value: object) -> object:
        # ZenML hands its deployment id over as a UUID; labels must be lower case.
        return str(value).strip().lower() if value is not None else value


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a dotenv-style file (``KEY=VALUE`` lines, ``#`` comments, optional quotes, optional ``export``).

    Args:
        path: The file.

    Returns:
        The variables it sets.

    Raises:
        ConfigurationError: The file cannot be read.
    """
    from dotenv import dotenv_values

    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"environment file not found: {file}")
    return {key: value for key, value in dotenv_values(file).items() if value is not None}


@contextmanager
def environ_scope(environ: Mapping[str, str] | None) -> Iterator[None]:
    """Make `EnvSettings.from_environ` (called without a mapping) read ``environ`` inside the block.

    Args:
        environ: The variables, or None for the process environment.

    Yields:
        Nothing.
    """
    token = _ENVIRON.set(dict(environ) if environ is not None else None)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def describe_settings(*settings: EnvSettings) -> dict[str, str]:
    """Merge the redacted views of several settings objects.

    Args:
        *settings: Settings to describe.

    Returns:
        ``{VARIABLE: text}``, credentials redacted.
    """
    out: dict[str, str] = {}
    for item in settings:
        out.update(item.redacted())
    return out


# Variables with our prefix that are not settings of any class but are still ours.
_EXTRA_KNOWN = frozenset({f"{ENV_PREFIX}DEBUG"})
# Whole families read elsewhere (the test suite's server addresses).
_KNOWN_FAMILIES = (f"{ENV_PREFIX}TEST_",)

_warned: set[str] = set()
_warned_lock = threading.Lock()


def unknown_variables(
    environ: Mapping[str, str],
    *,
    prefix: str = ENV_PREFIX,
    known: frozenset[str] | None = None,
    also_known: Collection[str] = (),
) -> dict[str, str | None]:
    """Find variables with our prefix that no setting of any installed backend reads.

    A variable of a backend whose settings cannot be read without importing its SDK counts as known: only
    what is certainly a typo is reported.

    Args:
        environ: The variables to inspect.
        prefix: The prefix to inspect (``ZENML_SECRETS_STORE_`` maps onto ``MULTICLOUD_STORE_`` names).
        known: The known variable names under ``MULTICLOUD_STORE_`` (default: every installed settings class).
        also_known: Names after ``prefix`` that its reader uses itself (ZenML's ``TYPE`` and ``CLASS_PATH``).

    Returns:
        ``{variable: closest known variable, or None}``, sorted by variable.
    """
    from multicloud_store.registry import known_variables, opaque_variable_prefixes

    def settled(variable: str, names: Collection[str], opaque: tuple[str, ...]) -> bool:
        upper = variable.upper()
        as_ours = ENV_PREFIX + upper[len(prefix) :]
        return (
            upper[len(prefix) :] in also_known
            or as_ours in names
            or as_ours in _EXTRA_KNOWN
            or as_ours.startswith((*_KNOWN_FAMILIES, *opaque))
        )

    ours = [variable for variable in sorted(environ) if variable.upper().startswith(prefix)]
    if known is None:
        # Cold start: most runs set only known variables. Check them against the settings classes of the
        # backends they name first; every installed backend's settings (and the entry-point scan) only for a
        # variable that is left over, which is rare: a typo, or a third-party backend's.
        quick = _variables_of_named_backends([ENV_PREFIX + v.upper()[len(prefix) :] for v in ours])
        ours = [variable for variable in ours if not settled(variable, quick, ())]
        if not ours:
            return {}
    names = known if known is not None else known_variables()
    opaque = opaque_variable_prefixes()
    out: dict[str, str | None] = {}
    for variable in ours:
        upper = variable.upper()
        if settled(variable, names, opaque):
            continue
        # Compare what follows the prefix: the shared prefix would make every name look close.
        suffixes = sorted(name[len(ENV_PREFIX) :] for name in names if name.startswith(ENV_PREFIX))
        typo = upper[len(prefix) :]
        # A name cut short (CACHE_TTL for CACHE_TTL_SECONDS) first, then difflib's closest spelling.
        import difflib  # only for a typo

        close = sorted((s for s in suffixes if s.startswith(typo + "_")), key=len)[:1] or (
            difflib.get_close_matches(typo, suffixes, n=1, cutoff=0.7)
        )
        out[variable] = (prefix + close[0]) if close else None
    return out


def _variables_of_named_backends(variables: Collection[str]) -> frozenset[str]:
    """The variables of the settings classes imported so far, plus those of the backends ``variables`` name.

    ``MULTICLOUD_STORE_AWS_*`` names ``aws``, whose settings module is imported by its path: no entry-point scan.
    """
    from multicloud_store.registry import CORE_SETTINGS_MODULES, KNOWN_DISTRIBUTIONS

    modules = {
        **CORE_SETTINGS_MODULES,
        **{name: f"multicloud_store_{name}.settings" for name in KNOWN_DISTRIBUTIONS},
    }
    for variable in variables:
        family = variable.upper().removeprefix(ENV_PREFIX).partition("_")[0].lower()
        module = modules.get(family)
        if module is not None:
            with contextlib.suppress(Exception):  # not installed, or broken: the full scan decides
                importlib.import_module(module)
    names: set[str] = set()
    pending: list[type[EnvSettings]] = [EnvSettings]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        names.update(cls.env_name(field) for field in cls.model_fields)
    return frozenset(names)


def unknown_variable_message(variable: str, suggestion: str | None) -> str:
    """Return the warning text for one unknown variable.

    Args:
        variable: The variable no setting reads.
        suggestion: The closest known variable, if any.

    Returns:
        One sentence.
    """
    hint = f"; did you mean {suggestion}?" if suggestion else ""
    return f"{variable} is set but no setting reads it (ignored){hint}"


def warn_unknown_variables(
    environ: Mapping[str, str], *, prefix: str = ENV_PREFIX, also_known: Collection[str] = ()
) -> dict[str, str | None]:
    """Log a warning, once per process and variable, for each unknown variable with our prefix.

    Warn, never fail: an image may carry variables meant for a newer version.

    Args:
        environ: The variables to inspect.
        prefix: ``MULTICLOUD_STORE_`` or ``ZENML_SECRETS_STORE_``.
        also_known: Names after ``prefix`` that are known without a setting (see `unknown_variables`).

    Returns:
        What `unknown_variables` found.
    """
    found = unknown_variables(environ, prefix=prefix, also_known=also_known)
    for variable, suggestion in found.items():
        with _warned_lock:
            if variable in _warned:
                continue
            _warned.add(variable)
        logger.warning("%s", unknown_variable_message(variable, suggestion))
    return found

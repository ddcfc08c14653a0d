"""Configuration from the environment, typed and validated by pydantic-settings.

`StoreSettings` holds what the dispatcher needs (``MULTICLOUD_STORE_*``); each driver owns a settings class of its
own, derived from `EnvSettings`, for ``MULTICLOUD_STORE_<BACKEND>_*``. Every class can be read from the process
environment or from an explicit mapping (`EnvSettings.from_environ`), which is how the CLI reads a migration's
source and target side by side. A wrong value becomes a `ConfigurationError` that names the variable.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from multicloud_store.errors import ConfigurationError

__all__ = ["ENV_PREFIX", "EnvSettings", "StoreSettings", "describe_settings", "read_env_file"]

ENV_PREFIX = "MULTICLOUD_STORE_"

_S = TypeVar("_S", bound="EnvSettings")

# The mapping `from_environ` reads, handed to `settings_customise_sources` without global state.
_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "multicloud_store_environ", default=None
)


class _MappingEnvSource(EnvSettingsSource):
    """The ordinary environment source, reading from a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # What pydantic-settings does with os.environ: fold case unless case-sensitive, drop empty values if asked.
        return {
            (key if self.case_sensitive else key.lower()): value
            for key, value in self._environ.items()
            if not (self.env_ignore_empty and value == "")
        }


class EnvSettings(BaseSettings):
    """Base of every settings class: environment variables only, errors that name the variable.

    Subclasses set ``model_config = SettingsConfigDict(env_prefix="MULTICLOUD_STORE_<BACKEND>_")``.
    """

    # hide_input_in_errors: a rejected value may be a credential; errors name the variable, never the input.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
        frozen=True,
        hide_input_in_errors=True,
    )

    secret_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read init arguments, then the environment (or the mapping given to `from_environ`); no dotenv."""
        environ = _ENVIRON.get()
        if environ is not None:
            return (init_settings, _MappingEnvSource(settings_cls, environ))
        return (init_settings, env_settings)

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
        except ValidationError as exc:
            raise cls._configuration_error(exc) from None
        finally:
            if token is not None:
                _ENVIRON.reset(token)

    @classmethod
    def _configuration_error(cls, exc: ValidationError) -> ConfigurationError:
        problems = []
        first_variable: str | None = None
        for error in exc.errors(include_input=False, include_url=False):
            loc = error.get("loc") or ()
            field = str(loc[0]) if loc else ""
            variable = cls.env_name(field) if field in cls.model_fields else field or "(settings)"
            first_variable = first_variable or variable
            # Only pydantic's description, never the input: the input may be a credential.
            problems.append(f"{variable}: {error.get('msg', 'invalid value')}")
        return ConfigurationError("invalid configuration: " + "; ".join(problems), variable=first_variable)

    def redacted(self) -> dict[str, str]:
        """Return the settings as ``{VARIABLE: text}`` with credentials replaced by ``**********``.

        Returns:
            A mapping safe to print.
        """
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            text = "**********" if (value is not None and _is_secret(value)) else str(value)
            if value is None:
                text = "(not set)"
            out[self.env_name(name)] = text
        return out


def _is_secret(value: object) -> bool:
    from pydantic import SecretBytes, SecretStr

    return isinstance(value, (SecretStr, SecretBytes))


class StoreSettings(EnvSettings):
    """The dispatcher's settings (``MULTICLOUD_STORE_*``).

    Attributes:
        backend: Which backend to use: ``local`` (default), ``memory``, ``aws``, ``gcp``, ``azure``, or a
            third-party name registered in the ``multicloud_store.backends`` entry-point group.
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
        max_workers: Threads for `SecretsStore.get_many` on backends without a batch read.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    backend: str = Field(default="local", min_length=1)
    deployment_id: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name_prefix: str = Field(default="multicloud-store", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,47}$")
    cache_ttl_seconds: float = Field(default=0.0, ge=0, le=86400)
    cache_max_entries: int = Field(default=10_000, ge=1)
    cache_jitter: float = Field(default=0.1, ge=0, lt=1)
    cache_negative_ttl_seconds: float = Field(default=5.0, ge=0, le=3600)
    cache_stale_seconds: float = Field(default=0.0, ge=0, le=86400)
    max_workers: int = Field(default=8, ge=1, le=64)

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

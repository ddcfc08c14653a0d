"""The settings model (multicloud_store._model): conversion, bounds, validators and errors, without pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal
from uuid import UUID

import pytest

from multicloud_store.errors import ConfigurationError
from multicloud_store.settings import (
    AliasChoices,
    EnvSettings,
    Field,
    NoDecode,
    SecretStr,
    SettingsConfigDict,
    ValidationInfo,
    field_validator,
    model_validator,
)


class _Sample(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="MCS_T_")

    label: ClassVar[str] = "not a field"

    name: str = Field(default="n", pattern=r"^[a-z]+$", json_schema_extra={"rule": "lowercase letters"})
    count: int = Field(default=1, ge=1, le=10)
    ratio: float = Field(default=0.5, gt=0, lt=1)
    flag: bool = False
    path: Path | None = None
    token: SecretStr | None = None
    mode: Literal["a", "b"] = "a"
    ident: UUID | None = None
    zones: Annotated[tuple[str, ...], NoDecode] = ()
    items: tuple[int, ...] = ()
    tags: tuple[str, ...] = Field(default=("t",), min_length=1)
    short: str | None = Field(default=None, max_length=3)
    first: str = "x"
    second: str = "y"
    workers: int = Field(default=8, validation_alias=AliasChoices("MCS_T_WORKERS", "OTHER_WORKERS"))

    @field_validator("zones", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(part.strip() for part in value.split(",")) if isinstance(value, str) else value

    @field_validator("second")
    @classmethod
    def _second_sees_first(cls, value: str, info: ValidationInfo) -> str:
        return f"{info.data['first']}+{value}"

    @model_validator(mode="after")
    def _not_both(self) -> _Sample:
        if self.flag and self.token is not None:
            raise ValueError("flag and token exclude each other")
        return self


def test_environment_strings_are_converted_to_the_field_types() -> None:
    sid = "12345678-1234-5678-1234-567812345678"
    settings = _Sample.from_environ(
        {
            "MCS_T_COUNT": " 7 ",
            "MCS_T_RATIO": "0.25",
            "MCS_T_FLAG": "Yes",
            "MCS_T_PATH": "/tmp/p",
            "MCS_T_MODE": "b",
            "MCS_T_IDENT": sid,
            "MCS_T_ZONES": "x, y",
            "MCS_T_ITEMS": "[1, 2]",
            "OTHER_WORKERS": "3",
        }
    )
    assert (settings.count, settings.ratio, settings.flag) == (7, 0.25, True)
    assert settings.path == Path("/tmp/p")
    assert (settings.mode, settings.ident) == ("b", UUID(sid))
    assert (settings.zones, settings.items, settings.workers) == (("x", "y"), (1, 2), 3)
    assert settings.second == "x+y"  # an after-validator sees the fields validated before it
    assert "label" not in _Sample.model_fields


@pytest.mark.parametrize(
    ("variable", "value", "sentence"),
    [
        ("MCS_T_COUNT", "0", "MCS_T_COUNT must be at least 1"),
        ("MCS_T_COUNT", "11", "MCS_T_COUNT must be at most 10"),
        ("MCS_T_COUNT", "2.5", "MCS_T_COUNT must be a whole number"),
        ("MCS_T_RATIO", "1", "MCS_T_RATIO must be less than 1"),
        ("MCS_T_RATIO", "nan", "MCS_T_RATIO must be greater than 0"),
        ("MCS_T_RATIO", "lots", "MCS_T_RATIO must be a number"),
        ("MCS_T_FLAG", "maybe", "MCS_T_FLAG must be true or false"),
        ("MCS_T_MODE", "c", "MCS_T_MODE must be one of 'a' or 'b'"),
        ("MCS_T_IDENT", "not-a-uuid", "MCS_T_IDENT must be a UUID"),
        ("MCS_T_NAME", "Upper", "MCS_T_NAME must be lowercase letters"),
        ("MCS_T_SHORT", "long", "MCS_T_SHORT must have at most 3 character(s)"),
        ("MCS_T_ITEMS", '[1, "x"]', "MCS_T_ITEMS must be a whole number"),
        ("MCS_T_TAGS", "[]", "MCS_T_TAGS must have at least 1 item(s)"),
    ],
)
def test_a_wrong_value_is_a_sentence_naming_the_variable_never_the_input(
    variable: str, value: str, sentence: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        _Sample.from_environ({variable: value})
    assert sentence in str(info.value)
    assert info.value.variable == variable
    if len(value) > 3:  # a short input could occur in any sentence
        assert value not in str(info.value).replace(variable, "")


def test_every_problem_is_reported_at_once_and_a_model_rule_after_the_fields() -> None:
    with pytest.raises(ConfigurationError) as info:
        _Sample.from_environ({"MCS_T_COUNT": "0", "MCS_T_FLAG": "maybe"})
    assert "MCS_T_COUNT must be at least 1; MCS_T_FLAG must be true or false" in str(info.value)
    with pytest.raises(ConfigurationError, match="flag and token exclude each other") as rule:
        _Sample.from_environ({"MCS_T_FLAG": "1", "MCS_T_TOKEN": "s3cr3t-value"})
    assert "s3cr3t-value" not in str(rule.value)


def test_credentials_never_print() -> None:
    settings = _Sample.from_environ({"MCS_T_TOKEN": "s3cr3t-value"})
    assert settings.token is not None and settings.token.get_secret_value() == "s3cr3t-value"
    for text in (
        repr(settings),
        str(settings),
        repr(settings.token),
        str(settings.token),
        str(settings.redacted()),
    ):
        assert "s3cr3t-value" not in text
    assert settings.redacted()["MCS_T_TOKEN"] == "**********"


def test_settings_are_immutable_and_compare_by_value() -> None:
    a = _Sample.from_environ({"MCS_T_COUNT": "2"})
    with pytest.raises(TypeError):
        a.count = 3
    assert a == _Sample.from_environ({"MCS_T_COUNT": "2"})
    assert a != _Sample.from_environ({"MCS_T_COUNT": "3"})


def test_keywords_and_model_validate_do_not_need_the_environment() -> None:
    assert _Sample.model_validate({"count": 4, "OTHER_WORKERS": 5}).workers == 5
    assert _Sample.model_validate({"count": 4}).count == 4
    with pytest.raises(ConfigurationError, match="MCS_T_COUNT must be at most 10"):
        _Sample.model_validate({"count": 40})
    with pytest.raises(ConfigurationError, match="MCS_T_COUNT must be at most 10"):
        _Sample(count=40)


class _Required(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="MCS_R_")

    url: SecretStr
    empty_dir: Path = Path("/tmp")


def test_a_required_field_and_an_empty_path_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="MCS_R_URL is required"):
        _Required.from_environ({})
    with pytest.raises(ConfigurationError, match="MCS_R_EMPTY_DIR must not be empty"):
        _Required.from_environ({"MCS_R_URL": "x", "MCS_R_EMPTY_DIR": ""})


def test_a_pydantic_style_secret_is_accepted_as_a_credential() -> None:
    class Foreign:  # what pydantic's SecretStr offers
        def get_secret_value(self) -> str:
            return "s3cr3t-value"

    settings = _Sample(token=Foreign())
    assert settings.token == SecretStr("s3cr3t-value")


class _Base(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="MCS_O_")

    trail: str = ""

    @field_validator("trail", mode="before")
    @classmethod
    def _base_mark(cls, value: object) -> object:
        return f"{value}b"


class _Derived(_Base):
    @field_validator("trail", mode="before")
    @classmethod
    def _derived_mark(cls, value: object) -> object:
        return f"{value}s"


def test_before_validators_run_subclass_first() -> None:
    assert _Derived.from_environ({"MCS_O_TRAIL": "x"}).trail == "xsb"  # pydantic's order: last defined first
    assert _Base.from_environ({"MCS_O_TRAIL": "x"}).trail == "xb"


class _Options(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="MCS_P_", populate_by_name=True, env_ignore_empty=True)

    port: int = Field(default=1, validation_alias="OTHER_PORT")
    host: str = "default-host"


class _CaseSensitive(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="MCS_C_", case_sensitive=True)

    host: str = "default-host"


def test_populate_by_name_empty_variables_and_case() -> None:
    assert _Options.from_environ({"OTHER_PORT": "2"}).port == 2
    assert _Options.from_environ({"MCS_P_PORT": "3"}).port == 3  # populate_by_name: the field's own variable
    assert _Sample.from_environ({"mcs_t_count": "4"}).count == 4  # case folds by default
    assert _Options.from_environ({"MCS_P_HOST": ""}).host == "default-host"  # env_ignore_empty
    assert _Sample.from_environ({"MCS_T_FIRST": ""}).first == ""  # without it, empty is a value
    assert _CaseSensitive.from_environ({"MCS_C_host": "h"}).host == "h"
    assert _CaseSensitive.from_environ({"MCS_C_HOST": "h"}).host == "default-host"


class _AliasOnly(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="MCS_A_")

    port: int = Field(default=1, validation_alias="OTHER_A_PORT")


def test_an_aliased_field_ignores_its_own_variable_without_populate_by_name() -> None:
    assert _AliasOnly.from_environ({"MCS_A_PORT": "3"}).port == 1


def test_a_json_field_that_does_not_decode_names_the_variable_not_the_input() -> None:
    with pytest.raises(ConfigurationError, match="MCS_T_ITEMS must be valid JSON") as info:
        _Sample.from_environ({"MCS_T_ITEMS": "[s3cr3t-value"})
    assert info.value.variable == "MCS_T_ITEMS"
    assert "s3cr3t-value" not in str(info.value)

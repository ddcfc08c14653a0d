"""Typed, validated settings models, small enough to import in a couple of milliseconds.

The settings classes used to be pydantic models. pydantic's import and the core schema it builds for each class
cost more than everything else a cold start does on top of a cloud SDK (docs/performance.md), so this module
implements the part of pydantic's model API that settings need, with the same spelling: `Field` with numeric
bounds, lengths, a pattern and a ``validation_alias``; `field_validator` (``before``/``after``, ``"*"``, an
optional `ValidationInfo`); `model_validator` (``before``/``after``); `SecretStr`; ``model_fields``,
``model_dump`` and ``model_validate``. Conversion follows pydantic's lax mode for the types settings use: ``str``,
``int``, ``float``, ``bool``, `pathlib.Path`, `uuid.UUID`, `SecretStr`, ``Literal[...]``, ``X | None``,
``tuple[X, ...]``, ``list[X]`` and ``Annotated[X, ...]``.

Every problem becomes a `FieldProblem`: the field and a sentence that follows the variable's name, never the input
(it may be a credential). `multicloud_store.settings` turns them into one `ConfigurationError`.
"""

from __future__ import annotations

import re
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar
from uuid import UUID

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+

__all__ = [
    "AliasChoices",
    "Field",
    "FieldInfo",
    "FieldProblem",
    "Model",
    "SecretStr",
    "ValidationInfo",
    "ValidationProblems",
    "field_validator",
    "model_validator",
]

_M = TypeVar("_M", bound="Model")
_F = TypeVar("_F")


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


_MISSING: Any = _Missing()


class SecretStr:
    """A string that prints as ``**********``: credentials in settings.

    ``repr()``, ``str()`` and the settings' ``repr`` never show the value; `get_secret_value` does.
    """

    __slots__ = ("_secret_value",)

    def __init__(self, secret_value: str) -> None:
        """Wrap a secret.

        Args:
            secret_value: The secret text.
        """
        self._secret_value = secret_value

    def get_secret_value(self) -> str:
        """Return the secret.

        Returns:
            The text this object hides.
        """
        return self._secret_value

    def __repr__(self) -> str:
        return "SecretStr('**********')" if self._secret_value else "SecretStr('')"

    def __str__(self) -> str:
        return "**********" if self._secret_value else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._secret_value == self._secret_value

    def __hash__(self) -> int:
        return hash(self._secret_value)

    def __len__(self) -> int:
        return len(self._secret_value)


class AliasChoices:
    """Names a field is read from, tried in order (the first is the one errors name).

    Args:
        *choices: Environment variable names (or the field's own name).
    """

    __slots__ = ("choices",)

    def __init__(self, *choices: str) -> None:
        self.choices: tuple[str, ...] = choices

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AliasChoices) and other.choices == self.choices

    def __hash__(self) -> int:
        return hash(self.choices)

    def __repr__(self) -> str:
        return f"AliasChoices{self.choices!r}"


class _FieldOptions(typing.TypedDict, total=False):
    """The keywords of `Field` (the one list of them; `FieldInfo` stores each as an attribute)."""

    ge: float | None
    gt: float | None
    le: float | None
    lt: float | None
    min_length: int | None
    max_length: int | None
    pattern: str | None
    validation_alias: str | AliasChoices | None
    json_schema_extra: dict[str, Any] | None
    description: str | None


class FieldInfo:
    """One field of a settings model: its default, bounds and the type it is converted to.

    Attributes:
        default: The default value (absent for a required field; see `required`).
        validation_alias: A name or `AliasChoices` the field is read from instead of its own name.
        json_schema_extra: Free-form extras; ``{"rule": "..."}`` phrases a pattern's rule for error messages.
        description: A human description.
    """

    __slots__ = (
        "_annotation",
        "_converter",
        "_owner",
        "default",
        "description",
        "ge",
        "gt",
        "json_schema_extra",
        "le",
        "lt",
        "max_length",
        "metadata",
        "min_length",
        "pattern",
        "validation_alias",
    )

    def __init__(self, default: Any = _MISSING, **options: Unpack[_FieldOptions]) -> None:
        unknown = options.keys() - _FieldOptions.__annotations__.keys()
        if unknown:  # what a keyword argument list would refuse (pydantic's alias=, say)
            raise TypeError(f"Field() got unexpected keyword(s): {', '.join(sorted(unknown))}")
        self.default = default
        self.ge, self.gt = options.get("ge"), options.get("gt")
        self.le, self.lt = options.get("le"), options.get("lt")
        self.min_length, self.max_length = options.get("min_length"), options.get("max_length")
        self.pattern = options.get("pattern")
        self.validation_alias = options.get("validation_alias")
        self.json_schema_extra = options.get("json_schema_extra")
        self.description = options.get("description")
        self.metadata: tuple[Any, ...] = ()
        self._annotation: Any = None
        self._owner: tuple[str, str] | None = None  # (module, raw annotation text) until resolved
        self._converter: Callable[[Any], Any] | None = None

    @property
    def required(self) -> bool:
        """Whether the field has no default."""
        return self.default is _MISSING

    def is_required(self) -> bool:
        """Tell whether the field has no default (pydantic's spelling).

        Returns:
            True when a value must be given.
        """
        return self.required

    @property
    def annotation(self) -> Any:
        """The field's type, without ``Annotated`` metadata (resolved on first use)."""
        if self._owner is not None:
            module, text = self._owner
            hint = eval(text, dict(vars(sys.modules[module])))  # noqa: S307 - our own annotation text
            self._owner = None
            self._set_annotation(hint)
        return self._annotation

    def _set_annotation(self, hint: Any) -> None:
        if typing.get_origin(hint) is typing.Annotated:
            base, *extra = typing.get_args(hint)
            self.metadata = tuple(extra)
            hint = base
        self._annotation = hint

    def convert(self, value: Any) -> Any:
        """Convert a value to the field's type and check its bounds.

        Args:
            value: The value after the ``before`` validators.

        Returns:
            The converted value.

        Raises:
            ValueError: With a sentence that follows the variable's name.
        """
        converter = self._converter
        if converter is None:
            converter = self._converter = _converter_for(self.annotation)
        value = converter(value)
        if value is not None:
            self._check_bounds(value)
        return value

    def _check_bounds(self, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # Written as "not (a >= b)" so that NaN fails every bound.
            if self.ge is not None and not value >= self.ge:
                raise ValueError(f"must be at least {self.ge}")
            if self.gt is not None and not value > self.gt:
                raise ValueError(f"must be greater than {self.gt}")
            if self.le is not None and not value <= self.le:
                raise ValueError(f"must be at most {self.le}")
            if self.lt is not None and not value < self.lt:
                raise ValueError(f"must be less than {self.lt}")
        if isinstance(value, (str, tuple, list)):
            unit = "character(s)" if isinstance(value, str) else "item(s)"
            if self.min_length is not None and len(value) < self.min_length:
                raise ValueError(f"must have at least {self.min_length} {unit}")
            if self.max_length is not None and len(value) > self.max_length:
                raise ValueError(f"must have at most {self.max_length} {unit}")
        if self.pattern is not None and isinstance(value, str) and not re.search(self.pattern, value):
            rule = (self.json_schema_extra or {}).get("rule")
            raise ValueError(f"must be {rule}" if rule else f"must match the pattern {self.pattern}")


def Field(default: Any = _MISSING, **options: Unpack[_FieldOptions]) -> Any:
    """Declare a field's default and constraints.

    Args:
        default: The default; omit it for a required field.
        **options: Any of the constraints below (`_FieldOptions`, checked by mypy and at run time).
        ge: Lowest allowed number.
        gt: Numbers must be greater than this.
        le: Highest allowed number.
        lt: Numbers must be less than this.
        min_length: Shortest allowed string or sequence.
        max_length: Longest allowed string or sequence.
        pattern: A regular expression a string must match (searched; anchor it with ``^...$``).
        validation_alias: The variable name(s) to read instead of the field's own.
        json_schema_extra: Extras; ``{"rule": "..."}`` words the pattern for error messages.
        description: A human description.

    Returns:
        The field's declaration (typed as ``Any`` so that ``x: int = Field(...)`` type-checks).
    """
    return FieldInfo(default, **options)


class ValidationInfo:
    """What a field validator may ask about the validation in progress.

    Attributes:
        field_name: The field being validated.
        data: The fields validated so far (declaration order), by name.
    """

    __slots__ = ("data", "field_name")

    def __init__(self, field_name: str, data: dict[str, Any]) -> None:
        self.field_name = field_name
        self.data = data


class _Decorated:
    """A validator while its class is being built; `Model.__init_subclass__` registers and unwraps it."""

    __slots__ = ("fields", "kind", "method", "mode")

    def __init__(self, method: Any, kind: str, mode: str, fields: tuple[str, ...]) -> None:
        self.method, self.kind, self.mode, self.fields = method, kind, mode, fields


def field_validator(*fields: str, mode: Literal["before", "after"] = "after") -> Callable[[_F], _F]:
    """Mark a classmethod as a validator of some fields (``"*"``: every field).

    ``before`` validators see the raw value (an environment string, a keyword's value) and run before the type
    conversion, the subclass's first; ``after`` validators see the converted value, in the order they are
    defined. A validator takes ``(cls, value)`` or ``(cls, value, info)`` and returns the value to keep; a
    `ValueError` or `AssertionError` it raises becomes an error naming the field's variable.

    Args:
        *fields: Field names.
        mode: ``before`` or ``after`` the conversion.

    Returns:
        The decorator.
    """

    def mark(method: _F) -> _F:
        return _Decorated(method, "field", mode, fields)  # type: ignore[return-value]

    return mark


def model_validator(*, mode: Literal["before", "after"]) -> Callable[[_F], _F]:
    """Mark a validator of the whole model.

    ``before``: a classmethod that takes and returns the input mapping (by field name). ``after``: a method that
    checks the built object and returns it.

    Args:
        mode: ``before`` or ``after`` the fields.

    Returns:
        The decorator.
    """

    def mark(method: _F) -> _F:
        return _Decorated(method, "model", mode, ())  # type: ignore[return-value]

    return mark


class FieldProblem:
    """One field's problem: the field and a sentence that follows its variable's name.

    Attributes:
        field: The field name ("" for the model as a whole).
        sentence: For example ``must be at least 1``; never the input.
    """

    __slots__ = ("field", "sentence")

    def __init__(self, field: str, sentence: str) -> None:
        self.field, self.sentence = field, sentence


class ValidationProblems(ValueError):
    """Raised by `Model.model_validate` with every problem found.

    Attributes:
        problems: The problems, in field order.
    """

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{problem.field} {problem.sentence}" for problem in problems))
        self.problems = problems


class Model:
    """Base of a typed, validated, immutable settings model (the subset of pydantic's API settings use).

    Attributes:
        model_config: Class options: ``frozen`` (default True), ``populate_by_name`` (a field with an alias can
            also be given by its own name) and the environment keys of `multicloud_store.settings`.
        model_fields: The fields, in declaration order (base classes first).
    """

    model_config: ClassVar[Mapping[str, Any]] = {}
    model_fields: ClassVar[dict[str, FieldInfo]] = {}
    _before_models: ClassVar[tuple[Callable[..., Any], ...]] = ()
    _after_models: ClassVar[tuple[Callable[..., Any], ...]] = ()
    _field_validators: ClassVar[tuple[tuple[str, str, tuple[str, ...], Callable[..., Any]], ...]] = ()
    _plans: ClassVar[dict[str, tuple[tuple[Callable[..., Any], ...], tuple[Callable[..., Any], ...]]] | None]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, FieldInfo] = {}
        for base in reversed(cls.__mro__[1:]):
            if issubclass(base, Model):
                fields.update(base.model_fields)
        own: dict[str, Any] = vars(cls).get("__annotations__", {})
        for name, hint in own.items():
            text = hint if isinstance(hint, str) else None
            if name.startswith("_") or (
                text is not None and text.startswith(("ClassVar", "typing.ClassVar"))
            ):
                continue
            if typing.get_origin(hint) is ClassVar:
                continue
            declared = vars(cls).get(name, _MISSING)
            info = declared if isinstance(declared, FieldInfo) else FieldInfo(declared)
            if text is not None:
                info._owner = (cls.__module__, text)
            else:
                info._set_annotation(hint)
            fields[name] = info
            if name in vars(cls):
                delattr(cls, name)  # the class attribute would shadow nothing, but keep instances the source
        cls.model_fields = fields
        before_models = list(cls._before_models)
        after_models = list(cls._after_models)
        validators = list(cls._field_validators)
        for attribute, value in list(vars(cls).items()):
            if not isinstance(value, _Decorated):
                continue
            setattr(cls, attribute, value.method)  # callable as written (a classmethod or a method)
            if value.kind == "model":
                (before_models if value.mode == "before" else after_models).append(value.method)
            else:
                validators.append((attribute, value.mode, value.fields, value.method))
        cls._before_models = tuple(before_models)
        cls._after_models = tuple(after_models)
        cls._field_validators = tuple(validators)
        cls._plans = None
        config = dict(getattr(cls.__mro__[1], "model_config", {}))
        config.update(vars(cls).get("model_config", {}))
        cls.model_config = config

    @classmethod
    def _plan(
        cls,
    ) -> dict[str, tuple[tuple[Callable[..., Any], ...], tuple[Callable[..., Any], ...]]]:
        """Each field's before and after validators, bound and ordered as pydantic orders them."""
        plans = cls.__dict__.get("_plans")
        if plans is not None:
            return plans  # type: ignore[no-any-return]
        plans = {}
        for name in cls.model_fields:
            before: list[Callable[..., Any]] = []
            after: list[Callable[..., Any]] = []
            for attribute, mode, fields, _method in cls._field_validators:
                if name in fields or "*" in fields:
                    bound = getattr(cls, attribute)
                    (before if mode == "before" else after).append(bound)
            before.reverse()  # pydantic runs "before" validators last-defined first
            plans[name] = (tuple(before), tuple(after))
        cls._plans = plans
        return plans

    @classmethod
    def model_validate(cls: type[_M], data: Mapping[str, Any]) -> _M:
        """Build an instance from a mapping of field names (or aliases) to values, without the environment.

        Args:
            data: The values.

        Returns:
            The validated instance.

        Raises:
            ValidationProblems: One or more fields are missing or invalid.
        """
        return cls._validate(data)

    @classmethod
    def _validate(cls: type[_M], data: Mapping[str, Any], into: _M | None = None) -> _M:
        """Validate ``data`` into a new instance, or into ``into`` (an instance being initialised)."""
        values = cls._by_name(dict(data))
        for hook in cls._before_models:
            values = hook.__get__(None, cls)(values) if isinstance(hook, classmethod) else hook(cls, values)
        problems: list[FieldProblem] = []
        done: dict[str, Any] = {}
        plans = cls._plan()
        for name, field in cls.model_fields.items():
            if name in values:
                value = values[name]
            elif field.required:
                problems.append(FieldProblem(name, "is required"))
                continue
            else:
                value = field.default
            before, after = plans[name]
            try:
                for check in before:
                    value = _call(check, value, name, done)
                value = field.convert(value)
                for check in after:
                    value = _call(check, value, name, done)
            except (ValueError, AssertionError) as exc:
                if _is_ours(exc):
                    raise
                problems.append(FieldProblem(name, str(exc) or "is not valid"))
                continue
            done[name] = value
        if problems:
            raise ValidationProblems(problems)
        instance = cls.__new__(cls) if into is None else into
        for name, value in done.items():
            object.__setattr__(instance, name, value)
        for hook in cls._after_models:
            try:
                instance = hook(instance)
            except (ValueError, AssertionError) as exc:
                if _is_ours(exc):
                    raise
                raise ValidationProblems([FieldProblem("", str(exc))]) from None
        return instance

    @classmethod
    def _by_name(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Key the input by field name: a value given under an alias goes to its field."""
        fields = cls.model_fields
        if all(key in fields for key in values):
            return values
        out: dict[str, Any] = {}
        for key, value in values.items():
            name = cls._field_of(key)
            if name is not None and name not in out:
                out[name] = value
        return out

    @classmethod
    def _field_of(cls, key: str) -> str | None:
        """The field a key sets: its name, or one of its ``validation_alias`` names."""
        if key in cls.model_fields:
            return key
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            if alias == key or (isinstance(alias, AliasChoices) and key in alias.choices):
                return name
        return None

    def model_dump(self) -> dict[str, Any]:
        """Return the fields as a dict (credentials stay `SecretStr`).

        Returns:
            ``{field: value}`` in declaration order.
        """
        return {name: getattr(self, name) for name in type(self).model_fields}

    def __setattr__(self, name: str, value: Any) -> None:
        if type(self).model_config.get("frozen", True):
            raise TypeError(f"{type(self).__name__} is immutable: build a new one")
        object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self) and isinstance(other, Model) and self.model_dump() == other.model_dump()
        )

    def __hash__(self) -> int:
        return hash((type(self), *(repr(v) for v in self.model_dump().values())))

    def __repr__(self) -> str:
        # SecretStr fields print as SecretStr('**********').
        body = ", ".join(f"{name}={value!r}" for name, value in self.model_dump().items())
        return f"{type(self).__name__}({body})"

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self.model_dump().items())


def _is_ours(exc: BaseException) -> bool:
    """A `MultiCloudStoreError` raised by a validator passes through (it names its own variable)."""
    from multicloud_store.errors import MultiCloudStoreError

    return isinstance(exc, MultiCloudStoreError)


def _call(check: Callable[..., Any], value: Any, name: str, done: dict[str, Any]) -> Any:
    function = getattr(check, "__func__", check)
    code = getattr(function, "__code__", None)
    if code is not None and code.co_argcount >= 3:
        return check(value, ValidationInfo(name, dict(done)))
    return check(value)


# -- conversion (pydantic's lax mode, for the types settings use) -------------------------------------------

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError("must be a string")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                pass
            else:
                if number.is_integer():
                    return int(number)
    raise ValueError("must be a whole number")


def _to_float(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError("must be a number")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError("must be true or false")


def _to_path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, str):
        return Path(value)
    raise ValueError("must be a path")


def _to_secret(value: Any) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        return SecretStr(value)
    reveal = getattr(value, "get_secret_value", None)  # pydantic's SecretStr, handed over by a caller
    if callable(reveal) and isinstance(text := reveal(), str):
        return SecretStr(text)
    raise ValueError("must be a string")


def _to_uuid(value: Any) -> UUID:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value.strip())
        except ValueError:
            pass
    raise ValueError("must be a UUID")


_SIMPLE: dict[Any, Callable[[Any], Any]] = {
    str: _to_str,
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
    Path: _to_path,
    SecretStr: _to_secret,
    UUID: _to_uuid,
    Any: lambda value: value,
    object: lambda value: value,
}


def _converter_for(hint: Any) -> Callable[[Any], Any]:
    """Build the function that converts a value to ``hint`` (raising `ValueError` with a sentence)."""
    simple = _SIMPLE.get(hint)
    if simple is not None:
        return simple
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return _converter_for(args[0])
    if origin is Literal:
        allowed = args
        words = [repr(arg) for arg in allowed]
        expected = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"

        def literal(value: Any) -> Any:
            for choice in allowed:
                if value == choice and type(value) is type(choice):
                    return choice
            raise ValueError(f"must be one of {expected}")

        return literal
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        options = [arg for arg in args if arg is not type(None)]
        optional = len(options) < len(args)
        inner = [_converter_for(arg) for arg in options]

        def union(value: Any) -> Any:
            if value is None and optional:
                return None
            first: ValueError | None = None
            for convert in inner:
                try:
                    return convert(value)
                except ValueError as exc:
                    first = first or exc
            raise first or ValueError("is not valid")

        return union
    if origin in (tuple, list, frozenset, set):
        item = _converter_for(args[0]) if args and args[0] is not Ellipsis else (lambda value: value)
        build: Callable[[Any], Any] = origin

        def sequence(value: Any) -> Any:
            if isinstance(value, (list, tuple, set, frozenset)):
                return build(item(element) for element in value)
            raise ValueError("must be a list")

        return sequence
    if isinstance(hint, type):

        def instance(value: Any) -> Any:
            if isinstance(value, hint):
                return value
            raise ValueError(f"must be a {hint.__name__}")

        return instance
    raise TypeError(f"settings cannot hold a {hint!r}")

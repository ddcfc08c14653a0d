"""The filter grammar of ``ListSecrets`` and ``ListSecretVersions``: the subset of AIP-160 the service accepts."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any, Final

from google.protobuf import timestamp_pb2

from multicloud_store_gcp.emulator.exceptions import RpcError, invalid

__all__ = ["compile_filter"]


_Predicate = Callable[[dict[str, Any]], bool]
_FILTER_OPERATORS: Final = ("<=", ">=", "!=", "=", ":", "<", ">")
_FIELD_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_BARE_VALUE_RE: Final = re.compile(r"[^\s()]+")


def _parse_time(text: str) -> int | None:
    """RFC 3339 -> nanoseconds since the epoch, or None when ``text`` is no timestamp."""
    stamp = timestamp_pb2.Timestamp()
    try:
        stamp.FromJsonString(text)
    except ValueError:
        return None
    return int(stamp.ToNanoseconds())


def _wildcard_regex(pattern: str, *, anchored: bool) -> re.Pattern[str]:
    body = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.compile(f"^{body}$" if anchored else body, re.IGNORECASE | re.DOTALL)


def _has(actual: Any, value: str) -> bool:
    """The ``:`` (has) operator: key of a map, element of a list, substring (with ``*``) of a string."""
    if isinstance(actual, dict):
        return value in actual
    if isinstance(actual, list):
        return any(_has(item, value) for item in actual)
    if isinstance(actual, str):
        return _wildcard_regex(value, anchored=False).search(actual) is not None
    return _equals(actual, value)


def _equals(actual: Any, value: str) -> bool:
    if isinstance(actual, list):
        return any(_equals(item, value) for item in actual)
    if isinstance(actual, bool):
        return str(actual).lower() == value.lower()
    if isinstance(actual, str):
        actual_time, value_time = _parse_time(actual), _parse_time(value)
        if actual_time is not None and value_time is not None:
            return actual_time == value_time
        return actual == value
    return str(actual) == value


def _compare(operator: str, actual: Any, value: str) -> bool:
    left: Any
    right: Any
    left, right = str(actual), value
    actual_time, value_time = _parse_time(str(actual)), _parse_time(value)
    if actual_time is not None and value_time is not None:
        left, right = actual_time, value_time
    else:
        with contextlib.suppress(ValueError):
            left, right = float(actual), float(value)
    if operator == "<":
        return bool(left < right)
    if operator == "<=":
        return bool(left <= right)
    if operator == ">":
        return bool(left > right)
    return bool(left >= right)


def _lookup(document: dict[str, Any], path: str) -> tuple[bool, Any]:
    current: Any = document
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return False, None
        current = current[part]
    return True, current


def _restriction(path: str, operator: str, value: str) -> _Predicate:
    # Accept the JSON spelling too (createTime for create_time) on everything but the label key.
    head, dot, rest = path.partition(".")
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", head).lower() + dot + rest

    def predicate(document: dict[str, Any]) -> bool:
        present, actual = _lookup(document, path)
        if not present and snake != path:
            present, actual = _lookup(document, snake)
        if operator == ":":
            if value == "*":
                return present
            return present and _has(actual, value)
        if operator == "!=":
            return not present or not _equals(actual, value)
        if not present:
            return False
        if operator == "=":
            return _equals(actual, value)
        return _compare(operator, actual, value)

    return predicate


class _FilterParser:
    """A recursive-descent parser for the subset of the AIP-160 filter language Secret Manager accepts.

    ``a b`` and ``a AND b`` are conjunctions, ``OR`` binds tighter than ``AND`` (as in AIP-160), ``NOT x`` and
    ``-x`` negate, parentheses group, and a restriction is ``field OP value`` with OP one of
    ``: = != < <= > >=``; ``field:*`` tests presence and ``*`` in a ``:`` value is a wildcard.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def parse(self) -> _Predicate:
        predicate = self._sequence()
        self._skip_space()
        if self._pos != len(self._text):
            raise self._error("unexpected input")
        return predicate

    def _error(self, problem: str) -> RpcError:
        return invalid(f"Invalid filter [{self._text}]: {problem} at position {self._pos}.")

    def _skip_space(self) -> None:
        while self._pos < len(self._text) and self._text[self._pos].isspace():
            self._pos += 1

    def _at_group_end(self) -> bool:
        self._skip_space()
        return self._pos >= len(self._text) or self._text[self._pos] == ")"

    def _keyword(self, word: str) -> bool:
        self._skip_space()
        end = self._pos + len(word)
        if self._text[self._pos : end] == word and (
            end == len(self._text) or self._text[end].isspace() or self._text[end] == "("
        ):
            self._pos = end
            return True
        return False

    def _sequence(self) -> _Predicate:
        terms = [self._term()]
        while not self._at_group_end():
            self._keyword("AND")
            terms.append(self._term())
        return lambda document: all(term(document) for term in terms)

    def _term(self) -> _Predicate:
        self._skip_space()
        negate = self._keyword("NOT")
        if not negate and self._text.startswith("-", self._pos):
            self._pos += 1
            negate = True
        inner = self._factor()
        if negate:
            return lambda document: not inner(document)
        return inner

    def _factor(self) -> _Predicate:
        alternatives = [self._primary()]
        while self._keyword("OR"):
            alternatives.append(self._primary())
        if len(alternatives) == 1:
            return alternatives[0]
        return lambda document: any(alternative(document) for alternative in alternatives)

    def _primary(self) -> _Predicate:
        self._skip_space()
        if self._text.startswith("(", self._pos):
            self._pos += 1
            inner = self._sequence()
            self._skip_space()
            if not self._text.startswith(")", self._pos):
                raise self._error("missing ')'")
            self._pos += 1
            return inner
        return self._restriction()

    def _restriction(self) -> _Predicate:
        match = _FIELD_RE.match(self._text, self._pos)
        if match is None:
            raise self._error("expected a field name")
        path = match.group()
        self._pos = match.end()
        self._skip_space()
        operator = next((op for op in _FILTER_OPERATORS if self._text.startswith(op, self._pos)), None)
        if operator is None:
            raise self._error(f"expected an operator after [{path}]")
        self._pos += len(operator)
        self._skip_space()
        return _restriction(path, operator, self._value())

    def _value(self) -> str:
        if self._text.startswith('"', self._pos):
            end = self._text.find('"', self._pos + 1)
            if end < 0:
                raise self._error("unterminated string")
            value = self._text[self._pos + 1 : end]
            self._pos = end + 1
            return value
        match = _BARE_VALUE_RE.match(self._text, self._pos)
        if match is None:
            raise self._error("expected a value")
        self._pos = match.end()
        return match.group()


def compile_filter(text: str) -> _Predicate | None:
    """Compile a filter into a predicate on a message as a dict; None for an empty filter.

    Raises:
        RpcError: ``INVALID_ARGUMENT``, the filter does not parse.
    """
    return _FilterParser(text).parse() if text.strip() else None

"""An in-process emulator of Google Cloud Secret Manager, for tests.

It serves the real wire protocols, so an unmodified ``SecretManagerServiceClient`` talks to it over gRPC or
over REST, the way moto serves AWS::

    from multicloud_store_gcp.testing import SecretManagerEmulator

    with SecretManagerEmulator() as emulator, emulator.client("rest") as client:  # or "grpc"
        client.create_secret(
            parent="projects/p", secret_id="s", secret={"replication": {"automatic": {}}}
        )
        emulator.inject_fault("UNAVAILABLE", methods={"AccessSecretVersion"})

To build a client yourself: over gRPC pass
``transport=SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(emulator.grpc_endpoint))``; over
REST pass ``transport="rest"``, ``credentials=AnonymousCredentials()`` and
``client_options={"api_endpoint": emulator.rest_endpoint}`` (an ``http://`` URL, which the transport keeps).

One in-memory backend, guarded by one lock, sits behind both front ends, so a secret written over gRPC is
readable over REST. Tests can inject faults, add latency, corrupt checksums and count round trips.

Run it beside an application with
``python -m multicloud_store_gcp.testing --grpc-port 8085 --rest-port 8086``.

This module does not import ``multicloud_store``: it emulates the cloud service, not the library.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import contextlib
import functools
import http.server
import json
import logging
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import grpc
from google.cloud.secretmanager_v1.types import resources, service
from google.protobuf import empty_pb2, json_format, timestamp_pb2

if TYPE_CHECKING:
    from google.cloud.secretmanager import SecretManagerServiceClient

__all__ = ["MAX_PAYLOAD_BYTES", "METHODS", "SERVICE_NAME", "SecretManagerEmulator", "crc32c", "main"]

_LOGGER = logging.getLogger(__name__)

SERVICE_NAME: Final = "google.cloud.secretmanager.v1.SecretManagerService"

# The raw protobuf classes behind the client library's proto-plus types: both front ends (de)serialize with
# them, so the wire format is by construction the one the client expects.
_SecretPb: Final[Any] = resources.Secret.pb()
_SecretVersionPb: Final[Any] = resources.SecretVersion.pb()
_State: Final[Any] = resources.SecretVersion.State

# method name -> (request class, response class)
_RPC_TYPES: Final[dict[str, tuple[Any, Any]]] = {
    "ListSecrets": (service.ListSecretsRequest.pb(), service.ListSecretsResponse.pb()),
    "CreateSecret": (service.CreateSecretRequest.pb(), _SecretPb),
    "AddSecretVersion": (service.AddSecretVersionRequest.pb(), _SecretVersionPb),
    "GetSecret": (service.GetSecretRequest.pb(), _SecretPb),
    "UpdateSecret": (service.UpdateSecretRequest.pb(), _SecretPb),
    "DeleteSecret": (service.DeleteSecretRequest.pb(), empty_pb2.Empty),
    "ListSecretVersions": (service.ListSecretVersionsRequest.pb(), service.ListSecretVersionsResponse.pb()),
    "GetSecretVersion": (service.GetSecretVersionRequest.pb(), _SecretVersionPb),
    "AccessSecretVersion": (
        service.AccessSecretVersionRequest.pb(),
        service.AccessSecretVersionResponse.pb(),
    ),
    "DisableSecretVersion": (service.DisableSecretVersionRequest.pb(), _SecretVersionPb),
    "EnableSecretVersion": (service.EnableSecretVersionRequest.pb(), _SecretVersionPb),
    "DestroySecretVersion": (service.DestroySecretVersionRequest.pb(), _SecretVersionPb),
}

METHODS: Final[frozenset[str]] = frozenset(_RPC_TYPES)
"""The RPC names the emulator serves (the names ``inject_fault`` and ``calls`` use)."""

# Canonical gRPC code -> HTTP status, as Google's REST front end (and google.rpc.Code) maps them.
_HTTP_STATUS: Final[dict[str, int]] = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}

MAX_PAYLOAD_BYTES: Final = 65536
_MAX_LABELS: Final = 64
_MAX_LABEL_CHARS: Final = 63
_MAX_ALIASES: Final = 50
_MAX_PAGE_SIZE: Final = 25000

_PARENT = r"projects/[^/]+(?:/locations/[^/]+)?"
_PARENT_RE: Final = re.compile(rf"^{_PARENT}$")
_SECRET_NAME_RE: Final = re.compile(rf"^({_PARENT})/secrets/([^/]+)$")
_VERSION_NAME_RE: Final = re.compile(rf"^({_PARENT}/secrets/[^/]+)/versions/([^/]+)$")
_SECRET_ID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_ALIAS_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_VERSION_NUMBER_RE: Final = re.compile(r"^[1-9][0-9]{0,17}$")

# Secret fields an UpdateSecret mask may name; everything else is immutable or output only.
_UPDATABLE_SECRET_FIELDS: Final = frozenset(
    {
        "labels",
        "annotations",
        "topics",
        "expire_time",
        "ttl",
        "rotation",
        "version_aliases",
        "version_destroy_ttl",
        "customer_managed_encryption",
    }
)


# --------------------------------------------------------------------------------------------------- CRC32C


@functools.lru_cache(maxsize=1)
def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


def crc32c(data: bytes) -> int:
    """Return the CRC32C (Castagnoli) checksum of ``data``, as Secret Manager's ``data_crc32c`` holds it.

    Pure Python, so the emulator needs no native extension; fast enough for payloads of at most 64 KiB.

    Args:
        data: The bytes to checksum.

    Returns:
        The checksum as an unsigned 32-bit integer.
    """
    table = _crc32c_table()
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --------------------------------------------------------------------------------------------------- errors


class _RpcError(Exception):
    """A failed call: a canonical gRPC status name and the message the client sees."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _invalid(message: str) -> _RpcError:
    return _RpcError("INVALID_ARGUMENT", message)


# --------------------------------------------------------------------------------------------------- filters

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

    def _error(self, problem: str) -> _RpcError:
        return _invalid(f"Invalid filter [{self._text}]: {problem} at position {self._pos}.")

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


def _compile_filter(text: str) -> _Predicate | None:
    return _FilterParser(text).parse() if text.strip() else None


# --------------------------------------------------------------------------------------------------- backend


@dataclass
class _Version:
    pb: Any  # a SecretVersion message; the payload lives beside it, as the service keeps it apart
    data: bytes


@dataclass
class _SecretRecord:
    pb: Any  # a Secret message
    versions: dict[int, _Version] = field(default_factory=dict)
    next_version: int = 1


@dataclass
class _Fault:
    code: str
    remaining: int
    methods: frozenset[str] | None


def _now_timestamp(now_ns: int) -> Any:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(now_ns)
    return stamp


def _new_etag() -> str:
    # Quoted, as AIP-154 and the service spell etags.
    return f'"{uuid.uuid4().hex[:16]}"'


def _copy(message: Any) -> Any:
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


def _encode_page_token(key: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode_page_token(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error) as exc:
        raise _invalid(f"Invalid page token [{token}].") from exc


def _page_size(requested: int) -> int:
    if requested < 0:
        raise _invalid("page_size must not be negative.")
    return min(requested or _MAX_PAGE_SIZE, _MAX_PAGE_SIZE)


def _label_text_ok(text: str) -> bool:
    # Lowercase letters (international ones included), digits, '_' and '-'.
    return all(char in "_-" or char.isdigit() or (char.isalpha() and not char.isupper()) for char in text)


def _validate_labels(labels: Any) -> None:
    if len(labels) > _MAX_LABELS:
        raise _invalid(f"A secret can have at most {_MAX_LABELS} labels, got {len(labels)}.")
    for key, value in labels.items():
        if not 1 <= len(key) <= _MAX_LABEL_CHARS or not key[0].isalpha() or key[0].isupper():
            raise _invalid(
                f"Invalid label key [{key}]: it must be 1 to {_MAX_LABEL_CHARS} characters and start with a "
                "lowercase letter."
            )
        if not _label_text_ok(key):
            raise _invalid(
                f"Invalid label key [{key}]: only lowercase letters, digits, '_' and '-' are allowed."
            )
        if len(value) > _MAX_LABEL_CHARS or not _label_text_ok(value):
            raise _invalid(
                f"Invalid value for label [{key}]: at most {_MAX_LABEL_CHARS} lowercase letters, digits, '_' "
                "and '-'."
            )


class _Backend:
    """The service's state and semantics; both front ends call ``invoke`` with protobuf requests."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._secrets: dict[str, _SecretRecord] = {}
        self._faults: list[_Fault] = []
        # The earliest moment a secret may expire or a version be due for destruction; None if never.
        self._next_deadline_ns: int | None = None
        self.calls: collections.Counter[str] = collections.Counter()
        self.latency = 0.0
        self.corrupt_checksums = False
        self._handlers: dict[str, Callable[[Any, int], Any]] = {
            "ListSecrets": self._list_secrets,
            "CreateSecret": self._create_secret,
            "AddSecretVersion": self._add_secret_version,
            "GetSecret": self._get_secret,
            "UpdateSecret": self._update_secret,
            "DeleteSecret": self._delete_secret,
            "ListSecretVersions": self._list_secret_versions,
            "GetSecretVersion": self._get_secret_version,
            "AccessSecretVersion": self._access_secret_version,
            "DisableSecretVersion": self._disable_secret_version,
            "EnableSecretVersion": self._enable_secret_version,
            "DestroySecretVersion": self._destroy_secret_version,
        }

    # ------------------------------------------------------------------------------------------ controls

    def reset(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._faults.clear()
            self._next_deadline_ns = None
            self.calls.clear()
            self.latency = 0.0
            self.corrupt_checksums = False

    def add_fault(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def secret_ids(self, parent: str) -> list[str]:
        with self._lock:
            self._sweep(time.time_ns())
            prefix = f"{parent}/secrets/"
            return sorted(name[len(prefix) :] for name in self._secrets if name.startswith(prefix))

    def invoke(self, method: str, request: Any) -> Any:
        """Serve one call: count it, wait out the latency, apply a pending fault, then run it.

        Raises:
            _RpcError: The call fails with that status.
        """
        with self._lock:
            self.calls[method] += 1
            latency = self.latency
        # Sleep outside the lock so that slow calls do not serialise the whole emulator.
        if latency > 0:
            time.sleep(latency)
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and (fault.methods is None or method in fault.methods):
                    fault.remaining -= 1
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    raise _RpcError(fault.code, f"Injected fault: {method} failed with {fault.code}.")
            now_ns = time.time_ns()
            self._sweep(now_ns)
            return self._handlers[method](request, now_ns)

    # ------------------------------------------------------------------------------------------ helpers

    def _note_deadline(self, deadline_ns: int) -> None:
        if self._next_deadline_ns is None or deadline_ns < self._next_deadline_ns:
            self._next_deadline_ns = deadline_ns

    def _sweep(self, now_ns: int) -> None:
        """Apply the service's timed transitions: expired secrets vanish, scheduled destructions happen."""
        # Scan only once a deadline has passed, so that a big store does not slow every call down.
        if self._next_deadline_ns is None or now_ns < self._next_deadline_ns:
            return
        self._next_deadline_ns = None
        for name in list(self._secrets):
            record = self._secrets[name]
            if record.pb.HasField("expire_time"):
                expire_ns = int(record.pb.expire_time.ToNanoseconds())
                if expire_ns <= now_ns:
                    del self._secrets[name]
                    continue
                self._note_deadline(expire_ns)
            for version in record.versions.values():
                if version.pb.HasField("scheduled_destroy_time"):
                    destroy_ns = int(version.pb.scheduled_destroy_time.ToNanoseconds())
                    if destroy_ns <= now_ns:
                        self._destroy_now(version, now_ns)
                    else:
                        self._note_deadline(destroy_ns)

    @staticmethod
    def _destroy_now(version: _Version, now_ns: int) -> None:
        version.pb.state = _State.DESTROYED
        version.pb.destroy_time.CopyFrom(_now_timestamp(now_ns))
        version.pb.ClearField("scheduled_destroy_time")
        version.data = b""

    def _secret(self, name: str) -> _SecretRecord:
        if not _SECRET_NAME_RE.match(name):
            raise _invalid(f"Invalid secret name [{name}]; expected projects/*/secrets/*.")
        record = self._secrets.get(name)
        if record is None:
            raise _RpcError("NOT_FOUND", f"Secret [{name}] not found.")
        return record

    def _version(self, name: str, *, allow_alias: bool) -> tuple[_SecretRecord, int, _Version]:
        match = _VERSION_NAME_RE.match(name)
        if match is None:
            raise _invalid(f"Invalid secret version name [{name}]; expected projects/*/secrets/*/versions/*.")
        secret_name, version_id = match.groups()
        record = self._secrets.get(secret_name)
        if record is None:
            raise _RpcError("NOT_FOUND", f"Secret [{secret_name}] not found or has no versions.")
        number: int | None = None
        if _VERSION_NUMBER_RE.match(version_id):
            number = int(version_id)
        elif not allow_alias:
            raise _invalid(f"Invalid secret version [{name}]: a version number is required.")
        elif version_id == "latest":
            # The service's 'latest' is the most recently created version whatever its state.
            number = max(record.versions, default=None)
            if number is None:
                raise _RpcError("NOT_FOUND", f"Secret [{secret_name}] not found or has no versions.")
        elif version_id in record.pb.version_aliases:
            number = int(record.pb.version_aliases[version_id])
        version = record.versions.get(number) if number is not None else None
        if number is None or version is None:
            raise _RpcError("NOT_FOUND", f"Secret Version [{name}] not found.")
        return record, number, version

    @staticmethod
    def _check_etag(given: str, current: str, name: str) -> None:
        if given and given != current:
            raise _RpcError(
                "FAILED_PRECONDITION",
                f"The etag [{given}] does not match the current etag of [{name}].",
            )

    @staticmethod
    def _validate_secret(secret: Any, record: _SecretRecord | None) -> None:
        _validate_labels(secret.labels)
        if len(secret.version_aliases) > _MAX_ALIASES:
            raise _invalid(f"A secret can have at most {_MAX_ALIASES} version aliases.")
        for alias, number in secret.version_aliases.items():
            if not _ALIAS_RE.match(alias) or alias in ("latest", "NEW"):
                raise _invalid(f"Invalid version alias [{alias}].")
            if record is None or number not in record.versions:
                raise _invalid(f"Version alias [{alias}] points to version {number}, which does not exist.")

    @staticmethod
    def _apply_ttl(secret: Any, now_ns: int) -> None:
        # ttl is input only: the service turns it into expire_time.
        if secret.HasField("ttl"):
            expire_ns = now_ns + int(secret.ttl.ToNanoseconds())
            secret.expire_time.CopyFrom(_now_timestamp(expire_ns))  # also clears the 'expiration' oneof's ttl

    @staticmethod
    def _paginate(
        items: Sequence[tuple[Any, Any]], page_size: int, page_token: str, descending: bool = False
    ) -> tuple[list[Any], str]:
        """One page of ``(key, message)`` items sorted by key, and the token of the next page."""
        size = _page_size(page_size)
        start = 0
        if page_token:
            after = _decode_page_token(page_token)
            # Secrets page by name (str), versions by number (int); a token of the other kind is not ours.
            if type(after) is not (int if descending else str):
                raise _invalid(f"Invalid page token [{page_token}].")
            # Keyset pagination: items created or deleted between pages neither repeat nor vanish.
            start = next(
                (
                    index
                    for index, (key, _) in enumerate(items)
                    if (key < after if descending else key > after)
                ),
                len(items),
            )
        page = items[start : start + size]
        more = start + size < len(items)
        token = _encode_page_token(page[-1][0]) if more and page else ""
        return [value for _, value in page], token

    # ------------------------------------------------------------------------------------------ secrets

    def _create_secret(self, request: Any, now_ns: int) -> Any:
        parent = request.parent
        if not _PARENT_RE.match(parent):
            raise _invalid(f"Invalid parent [{parent}]; expected projects/* or projects/*/locations/*.")
        if not _SECRET_ID_RE.match(request.secret_id):
            raise _invalid(
                f"Invalid secret id [{request.secret_id}]: it must be 1 to 255 letters, digits, '_' or '-'."
            )
        name = f"{parent}/secrets/{request.secret_id}"
        secret = _copy(request.secret)
        regional = "/locations/" in parent
        if regional and secret.HasField("replication"):
            raise _invalid("A regional secret cannot have a replication policy.")
        if not regional:
            policy = secret.replication.WhichOneof("replication")
            if policy is None:
                raise _invalid("Secret.replication must be specified (automatic or user_managed).")
            if policy == "user_managed" and not secret.replication.user_managed.replicas:
                raise _invalid("Secret.replication.user_managed.replicas must not be empty.")
        self._validate_secret(secret, None)
        if name in self._secrets:
            raise _RpcError("ALREADY_EXISTS", f"Secret [{name}] already exists.")
        secret.name = name
        secret.create_time.CopyFrom(_now_timestamp(now_ns))
        secret.etag = _new_etag()
        self._apply_ttl(secret, now_ns)
        if secret.HasField("expire_time"):
            self._note_deadline(int(secret.expire_time.ToNanoseconds()))
        self._secrets[name] = _SecretRecord(pb=secret)
        return _copy(secret)

    def _get_secret(self, request: Any, now_ns: int) -> Any:
        return _copy(self._secret(request.name).pb)

    def _update_secret(self, request: Any, now_ns: int) -> Any:
        record = self._secret(request.secret.name)
        self._check_etag(request.secret.etag, record.pb.etag, record.pb.name)
        paths = list(request.update_mask.paths)
        if not paths:
            raise _invalid("update_mask must name at least one field.")
        for path in paths:
            if path not in _UPDATABLE_SECRET_FIELDS:
                raise _invalid(f"Field [{path}] cannot be updated.")
        updated = _copy(record.pb)
        fields = set(paths)
        if fields & {"ttl", "expire_time"}:
            # ttl and expire_time share the 'expiration' oneof: either in the mask replaces the expiration,
            # and naming it with neither set in the request removes it.
            updated.ClearField("expire_time")
            fields.update(("ttl", "expire_time"))
        for path in sorted(fields):
            # Copy exactly one field from the request: clear it, then merge a message holding only it.
            part = _copy(request.secret)
            for descriptor in part.DESCRIPTOR.fields:
                if descriptor.name != path:
                    part.ClearField(descriptor.name)
            if path not in ("ttl", "expire_time"):
                updated.ClearField(path)
            updated.MergeFrom(part)
        self._apply_ttl(updated, now_ns)
        self._validate_secret(updated, record)
        updated.etag = _new_etag()
        if updated.HasField("expire_time"):
            self._note_deadline(int(updated.expire_time.ToNanoseconds()))
        record.pb = updated
        return _copy(updated)

    def _delete_secret(self, request: Any, now_ns: int) -> Any:
        record = self._secret(request.name)
        self._check_etag(request.etag, record.pb.etag, request.name)
        del self._secrets[request.name]
        return empty_pb2.Empty()

    def _list_secrets(self, request: Any, now_ns: int) -> Any:
        parent = request.parent
        if not _PARENT_RE.match(parent):
            raise _invalid(f"Invalid parent [{parent}]; expected projects/* or projects/*/locations/*.")
        predicate = _compile_filter(request.filter)
        prefix = f"{parent}/secrets/"
        items: list[tuple[str | int, Any]] = []
        for name in sorted(self._secrets):  # the service lists by name, ascending
            if not name.startswith(prefix) or "/" in name[len(prefix) :]:
                continue
            secret = self._secrets[name].pb
            if predicate is None or predicate(
                json_format.MessageToDict(secret, preserving_proto_field_name=True)
            ):
                items.append((name, secret))
        page, token = self._paginate(items, request.page_size, request.page_token)
        response = _RPC_TYPES["ListSecrets"][1]()
        response.secrets.extend(page)
        response.next_page_token = token
        # Documented: the total, but 0 when a filter is set.
        response.total_size = 0 if predicate is not None else len(items)
        return response

    # ------------------------------------------------------------------------------------------ versions

    def _add_secret_version(self, request: Any, now_ns: int) -> Any:
        record = self._secret(request.parent)
        payload = request.payload
        data = bytes(payload.data)
        if not data:
            raise _invalid("Field [payload] is required.")
        if len(data) > MAX_PAYLOAD_BYTES:
            raise _invalid(f"Secret payload is {len(data)} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes.")
        has_checksum = payload.HasField("data_crc32c")
        if has_checksum and payload.data_crc32c != crc32c(data):
            raise _invalid(
                "Checksum mismatch: the payload's data_crc32c does not match its data; the data may have "
                "been corrupted in transit."
            )
        number = record.next_version
        record.next_version += 1
        version = _SecretVersionPb(
            name=f"{request.parent}/versions/{number}",
            state=_State.ENABLED,
            etag=_new_etag(),
            client_specified_payload_checksum=has_checksum,
        )
        version.create_time.CopyFrom(_now_timestamp(now_ns))
        record.versions[number] = _Version(pb=version, data=data)
        return _copy(version)

    def _get_secret_version(self, request: Any, now_ns: int) -> Any:
        _, _, version = self._version(request.name, allow_alias=True)
        return _copy(version.pb)

    def _access_secret_version(self, request: Any, now_ns: int) -> Any:
        _, _, version = self._version(request.name, allow_alias=True)
        state = version.pb.state
        if state != _State.ENABLED:
            raise _RpcError(
                "FAILED_PRECONDITION",
                f"Secret Version [{version.pb.name}] is in {_State(state).name} state.",
            )
        checksum = crc32c(version.data)
        if self.corrupt_checksums:
            checksum ^= 0x1  # one flipped bit: the client's verification must notice
        response = _RPC_TYPES["AccessSecretVersion"][1](name=version.pb.name)
        response.payload.data = version.data
        response.payload.data_crc32c = checksum
        return response

    def _change_state(self, request: Any, now_ns: int, target: str) -> Any:
        record, _, version = self._version(request.name, allow_alias=False)
        self._check_etag(request.etag, version.pb.etag, request.name)
        if version.pb.state == _State.DESTROYED:
            raise _RpcError("FAILED_PRECONDITION", f"Secret Version [{request.name}] is in DESTROYED state.")
        if target == "ENABLED":
            version.pb.state = _State.ENABLED
            version.pb.ClearField("scheduled_destroy_time")  # enabling cancels a delayed destruction
        elif target == "DISABLED":
            version.pb.state = _State.DISABLED
        elif record.pb.HasField("version_destroy_ttl") and record.pb.version_destroy_ttl.ToNanoseconds() > 0:
            # Delayed destruction: disabled now, destroyed when the secret's version_destroy_ttl has passed.
            version.pb.state = _State.DISABLED
            destroy_ns = now_ns + int(record.pb.version_destroy_ttl.ToNanoseconds())
            version.pb.scheduled_destroy_time.CopyFrom(_now_timestamp(destroy_ns))
            self._note_deadline(destroy_ns)
        else:
            self._destroy_now(version, now_ns)
        version.pb.etag = _new_etag()  # every modification, even a no-op, renews the etag
        return _copy(version.pb)

    def _disable_secret_version(self, request: Any, now_ns: int) -> Any:
        return self._change_state(request, now_ns, "DISABLED")

    def _enable_secret_version(self, request: Any, now_ns: int) -> Any:
        return self._change_state(request, now_ns, "ENABLED")

    def _destroy_secret_version(self, request: Any, now_ns: int) -> Any:
        return self._change_state(request, now_ns, "DESTROYED")

    def _list_secret_versions(self, request: Any, now_ns: int) -> Any:
        record = self._secret(request.parent)
        predicate = _compile_filter(request.filter)
        items: list[tuple[str | int, Any]] = []
        for number in sorted(record.versions, reverse=True):  # newest first, as the service lists them
            version = record.versions[number].pb
            if predicate is None or predicate(
                json_format.MessageToDict(version, preserving_proto_field_name=True)
            ):
                items.append((number, version))
        page, token = self._paginate(items, request.page_size, request.page_token, descending=True)
        response = _RPC_TYPES["ListSecretVersions"][1]()
        response.versions.extend(page)
        response.next_page_token = token
        response.total_size = 0 if predicate is not None else len(items)
        return response


# --------------------------------------------------------------------------------------------------- gRPC


def _grpc_behavior(backend: _Backend, method: str) -> Callable[[Any, grpc.ServicerContext], Any]:
    def behavior(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return backend.invoke(method, request)
        except _RpcError as exc:
            context.abort(grpc.StatusCode[exc.code], exc.message)
            raise AssertionError("unreachable: context.abort raises") from exc  # pragma: no cover
        except Exception as exc:  # the emulator's own bug: answer like the service would, and log it
            _LOGGER.exception("Secret Manager emulator: unexpected error serving %s", method)
            context.abort(grpc.StatusCode.INTERNAL, "Internal error in the Secret Manager emulator.")
            raise AssertionError("unreachable: context.abort raises") from exc  # pragma: no cover

    return behavior


def _grpc_service(backend: _Backend) -> Any:
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            _grpc_behavior(backend, method),
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
        for method, (request_type, response_type) in _RPC_TYPES.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


# --------------------------------------------------------------------------------------------------- REST

_SECRET = rf"{_PARENT}/secrets/[^/:]+"
_VERSION = rf"{_SECRET}/versions/[^/:]+"


@dataclass(frozen=True)
class _Route:
    verb: str
    pattern: re.Pattern[str]
    method: str
    body: str | None  # the http rule's body: None, "*" or a field name
    path_field: str  # where the URL's resource name goes in the request


def _route(verb: str, resource: str, suffix: str, method: str, body: str | None, path_field: str) -> _Route:
    return _Route(
        verb, re.compile(f"^/v1/(?P<resource>{resource}){re.escape(suffix)}$"), method, body, path_field
    )


# The http rules of google/cloud/secretmanager/v1/service.proto, as the REST transport sends them.
_ROUTES: Final = (
    _route("POST", _PARENT, "/secrets", "CreateSecret", "secret", "parent"),
    _route("GET", _PARENT, "/secrets", "ListSecrets", None, "parent"),
    _route("GET", _SECRET, "", "GetSecret", None, "name"),
    _route("PATCH", _SECRET, "", "UpdateSecret", "secret", "secret.name"),
    _route("DELETE", _SECRET, "", "DeleteSecret", None, "name"),
    _route("POST", _SECRET, ":addVersion", "AddSecretVersion", "*", "parent"),
    _route("GET", _SECRET, "/versions", "ListSecretVersions", None, "parent"),
    _route("GET", _VERSION, "", "GetSecretVersion", None, "name"),
    _route("GET", _VERSION, ":access", "AccessSecretVersion", None, "name"),
    _route("POST", _VERSION, ":disable", "DisableSecretVersion", "*", "name"),
    _route("POST", _VERSION, ":enable", "EnableSecretVersion", "*", "name"),
    _route("POST", _VERSION, ":destroy", "DestroySecretVersion", "*", "name"),
)

# System parameters any Google REST API accepts; they are no fields of the request message.
_SYSTEM_PARAMETERS: Final = frozenset(
    {"alt", "key", "prettyPrint", "fields", "quotaUser", "access_token", "callback", "upload_protocol"}
)


def _query_to_dict(query: str) -> tuple[dict[str, Any], bool]:
    """Query string -> (request fields as a JSON-mapping dict, whether enums should be numbers)."""
    fields: dict[str, Any] = {}
    integer_enums = False
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "$alt":
            integer_enums = "enum-encoding=int" in value
            continue
        if key.startswith("$") or key in _SYSTEM_PARAMETERS:
            continue
        *parents, leaf = key.split(".")
        target = fields
        for part in parents:
            target = target.setdefault(part, {})
        if leaf in target:  # a repeated field given more than once
            existing = target[leaf]
            target[leaf] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            target[leaf] = value
    return fields, integer_enums


class _RestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries a Content-Length
    server_version = "SecretManagerEmulator"
    # Buffer writes so that a response's headers and body usually leave in one segment.
    wbufsize = 1 << 16
    server: _RestServer

    def setup(self) -> None:
        # Without TCP_NODELAY, Nagle plus the client's delayed ACK stall every keep-alive call by ~40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines only: bodies hold secret values and never reach a log.
        _LOGGER.debug("%s - " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # we cannot find the end of a chunked body we do not parse
            raise _invalid("Chunked request bodies are not supported by the emulator.")
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        try:
            # Read the body first, even for a request that fails, or keep-alive would desynchronise.
            body = self._read_body()
            response, integer_enums = self._dispatch(body)
            payload = json_format.MessageToJson(response, use_integers_for_enums=integer_enums).encode()
            self._send(200, payload)
        except _RpcError as exc:
            self._send_error(exc.code, exc.message)
        except Exception:  # the emulator's own bug: answer like the service would, and log it
            _LOGGER.exception(
                "Secret Manager emulator: unexpected error serving %s %s", self.command, self.path
            )
            self._send_error("INTERNAL", "Internal error in the Secret Manager emulator.")

    def _dispatch(self, body: bytes) -> tuple[Any, bool]:
        url = urlsplit(self.path)
        for route in _ROUTES:
            match = route.pattern.match(url.path)
            if match is not None and route.verb == self.command:
                break
        else:
            raise _RpcError("UNIMPLEMENTED", f"{self.command} {url.path} is not served by the emulator.")
        fields, integer_enums = _query_to_dict(url.query)
        try:
            content = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            raise _invalid(f"Invalid JSON payload received: {exc}.") from exc
        if route.body == "*":
            if not isinstance(content, dict):
                raise _invalid("Invalid JSON payload received: expected an object.")
            fields.update(content)
        elif route.body is not None:
            fields[route.body] = content
        # The resource name in the URL wins over one in the body, as in the service's transcoding.
        target = fields
        *parents, leaf = route.path_field.split(".")
        for part in parents:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[leaf] = unquote(match.group("resource"))
        request = _RPC_TYPES[route.method][0]()
        try:
            json_format.ParseDict(fields, request)
        except json_format.ParseError as exc:
            raise _invalid(f"Invalid request: {exc}") from exc
        return self.server.backend.invoke(route.method, request), integer_enums

    def _send_error(self, code: str, message: str) -> None:
        status = _HTTP_STATUS.get(code, 500)
        error = {"error": {"code": status, "message": message, "status": code}}
        self._send(status, json.dumps(error).encode())

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)


class _RestServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], backend: _Backend) -> None:
        self.backend = backend
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections, so that they end."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (say, on its own timeout) is routine, not a traceback on stderr.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            _LOGGER.debug("Secret Manager emulator: client %s went away", client_address)
            return
        _LOGGER.exception("Secret Manager emulator: error on a REST connection from %s", client_address)


# --------------------------------------------------------------------------------------------------- public


class SecretManagerEmulator:
    """A Secret Manager in this process, served over gRPC and REST on 127.0.0.1.

    Both front ends share one in-memory state. Faults, latency and checksum corruption apply to both.

    Example:
        >>> with SecretManagerEmulator() as emulator:  # doctest: +SKIP
        ...     client = emulator.client("grpc")
        ...     emulator.inject_fault("UNAVAILABLE", methods={"AccessSecretVersion"})

    Args:
        host: The address both servers bind to.
        grpc_port: The gRPC port; 0 picks a free one.
        rest_port: The REST port; 0 picks a free one.
    """

    def __init__(self, *, host: str = "127.0.0.1", grpc_port: int = 0, rest_port: int = 0) -> None:
        self._host = host
        self._requested_grpc_port = grpc_port
        self._requested_rest_port = rest_port
        self._backend = _Backend()
        self._grpc_server: Any = None
        self._grpc_executor: futures.ThreadPoolExecutor | None = None
        self._grpc_port = 0
        self._rest_server: _RestServer | None = None
        self._rest_thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> SecretManagerEmulator:
        """Start both servers.

        Returns:
            The emulator itself, so that ``emulator = SecretManagerEmulator().start()`` reads well.

        Raises:
            RuntimeError: The emulator is already running.
            OSError: A port could not be bound.
        """
        if self._grpc_server is not None:
            raise RuntimeError("The Secret Manager emulator is already running.")
        executor = futures.ThreadPoolExecutor(
            max_workers=16, thread_name_prefix="secretmanager-emulator-grpc"
        )
        # so_reuseport off: a busy fixed port must fail loudly, not be shared with another process.
        server = grpc.server(
            executor, handlers=[_grpc_service(self._backend)], options=[("grpc.so_reuseport", 0)]
        )
        try:
            port = server.add_insecure_port(f"{self._host}:{self._requested_grpc_port}")
        except RuntimeError as exc:
            executor.shutdown(wait=False)
            raise OSError(f"cannot bind the gRPC port {self._host}:{self._requested_grpc_port}") from exc
        if not port:
            executor.shutdown(wait=False)
            raise OSError(f"cannot bind the gRPC port {self._host}:{self._requested_grpc_port}")
        try:
            rest_server = _RestServer((self._host, self._requested_rest_port), self._backend)
        except OSError:
            executor.shutdown(wait=False)
            raise
        server.start()
        thread = threading.Thread(
            target=rest_server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="secretmanager-emulator-rest",
            daemon=True,
        )
        thread.start()
        self._grpc_server, self._grpc_executor, self._grpc_port = server, executor, port
        self._rest_server, self._rest_thread = rest_server, thread
        return self

    def stop(self) -> None:
        """Stop both servers and close their sockets; the state is kept. Stopping twice is harmless."""
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait()
            self._grpc_server = None
        if self._grpc_executor is not None:
            self._grpc_executor.shutdown(wait=False)
            self._grpc_executor = None
        if self._rest_server is not None:
            self._rest_server.shutdown()
            self._rest_server.close_connections()
            self._rest_server.server_close()
            self._rest_server = None
        if self._rest_thread is not None:
            self._rest_thread.join(timeout=5)
            self._rest_thread = None

    def __enter__(self) -> SecretManagerEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def grpc_endpoint(self) -> str:
        """``HOST:PORT`` of the gRPC server (plaintext, for ``grpc.insecure_channel``).

        Raises:
            RuntimeError: The emulator is not running.
        """
        if self._grpc_server is None:
            raise RuntimeError("The Secret Manager emulator is not running; call start() first.")
        return f"{self._host}:{self._grpc_port}"

    @property
    def rest_endpoint(self) -> str:
        """``http://HOST:PORT`` of the REST server, usable as the client's ``api_endpoint``.

        Raises:
            RuntimeError: The emulator is not running.
        """
        if self._rest_server is None:
            raise RuntimeError("The Secret Manager emulator is not running; call start() first.")
        return f"http://{self._host}:{self._rest_server.server_address[1]}"

    def client(self, transport: Literal["grpc", "rest"] = "grpc") -> SecretManagerServiceClient:
        """Build a ``SecretManagerServiceClient`` wired to this emulator, with anonymous credentials.

        The client should be closed (``with client:`` or ``client.transport.close()``) when done.

        Args:
            transport: ``"grpc"`` for a plaintext gRPC channel, ``"rest"`` for HTTP/1.1 with JSON.

        Returns:
            A client for the emulator.

        Raises:
            ValueError: ``transport`` is neither ``"grpc"`` nor ``"rest"``.
        """
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.secretmanager import SecretManagerServiceClient
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        if transport == "grpc":
            # The default gRPC channel is TLS with real credentials; the emulator speaks plaintext.
            channel = grpc.insecure_channel(self.grpc_endpoint)
            return SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))
        if transport == "rest":
            return SecretManagerServiceClient(
                transport="rest",
                # google.auth's credentials classes are untyped.
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": self.rest_endpoint},
            )
        raise ValueError(f"transport must be 'grpc' or 'rest', not {transport!r}")

    # ------------------------------------------------------------------------------------------ test knobs

    def reset(self) -> None:
        """Drop every secret, pending fault and call count; set latency to 0 and checksums back to correct."""
        self._backend.reset()

    def clear_faults(self) -> None:
        """Drop pending faults and keep everything stored (a test's outage is over)."""
        self._backend.clear_faults()

    def inject_fault(self, code: str, *, times: int = 1, methods: Collection[str] | None = None) -> None:
        """Make the next ``times`` matching calls fail, on either front end.

        Faults queue up: each call consumes the first pending fault that matches it. A faulted call still
        counts in ``calls`` and still waits out ``latency``, as a real failed round trip would.

        Args:
            code: A gRPC status name, such as ``"UNAVAILABLE"`` (HTTP 503), ``"RESOURCE_EXHAUSTED"`` (429),
                ``"PERMISSION_DENIED"`` (403), ``"INTERNAL"`` (500) or ``"DEADLINE_EXCEEDED"`` (504).
            times: How many calls fail.
            methods: RPC names (see ``METHODS``), such as ``{"AccessSecretVersion"}``; None means any call.

        Raises:
            ValueError: An unknown status or method name, ``"OK"``, or ``times`` below 1.
        """
        if code not in _HTTP_STATUS:
            raise ValueError(f"unknown or non-error gRPC status {code!r}; one of {sorted(_HTTP_STATUS)}")
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        selected: frozenset[str] | None = None
        if methods is not None:
            if isinstance(methods, str):
                raise ValueError("methods must be a collection of method names, not one string")
            selected = frozenset(methods)
            unknown = selected - METHODS
            if unknown:
                raise ValueError(f"unknown method names {sorted(unknown)}; known: {sorted(METHODS)}")
        self._backend.add_fault(_Fault(code=code, remaining=times, methods=selected))

    @property
    def latency(self) -> float:
        """Seconds added to every call on both front ends (before any fault applies)."""
        return self._backend.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"latency must not be negative, not {seconds}")
        self._backend.latency = float(seconds)

    def corrupt_checksums(self, enabled: bool = True) -> None:
        """Make ``AccessSecretVersion`` return a ``data_crc32c`` that does not match the data.

        Args:
            enabled: True to corrupt, False to return correct checksums again.
        """
        self._backend.corrupt_checksums = enabled

    @property
    def calls(self) -> collections.Counter[str]:
        """How many calls of each method the emulator received, faulted ones included (a snapshot copy)."""
        with self._backend._lock:
            return collections.Counter(self._backend.calls)

    def secret_names(self, project: str, *, location: str | None = None) -> list[str]:
        """The ids of the secrets that exist in a project, sorted.

        Args:
            project: The project id or number, exactly as the client used it.
            location: For regional secrets, the location; None for global secrets.

        Returns:
            Secret ids, the last segment of ``projects/P/secrets/ID``.
        """
        parent = f"projects/{project}" + (f"/locations/{location}" if location else "")
        return self._backend.secret_ids(parent)


# --------------------------------------------------------------------------------------------------- CLI


def main(argv: Iterable[str] | None = None) -> int:
    """Run the emulator in the foreground until interrupted.

    Args:
        argv: The command line arguments, without the program name; None for ``sys.argv[1:]``.

    Returns:
        The process exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m multicloud_store_gcp.testing",
        description="Serve an in-memory Google Cloud Secret Manager over gRPC and REST, for tests.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--grpc-port", type=int, default=8085, help="gRPC port, 0 for any (default: %(default)s)"
    )
    parser.add_argument(
        "--rest-port", type=int, default=8086, help="REST port, 0 for any (default: %(default)s)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every call (default: 0)")
    args = parser.parse_args(None if argv is None else list(argv))

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        # SIGTERM (docker stop, CI teardown) ends the emulator as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    emulator = SecretManagerEmulator(host=args.host, grpc_port=args.grpc_port, rest_port=args.rest_port)
    emulator.latency = args.latency
    with emulator:
        print(f"Secret Manager emulator: gRPC {emulator.grpc_endpoint}, REST {emulator.rest_endpoint}")
        print(f"  MULTICLOUD_STORE_GCP_ENDPOINT={emulator.grpc_endpoint} MULTICLOUD_STORE_GCP_TRANSPORT=grpc")
        print(f"  MULTICLOUD_STORE_GCP_ENDPOINT={emulator.rest_endpoint} MULTICLOUD_STORE_GCP_TRANSPORT=rest")
        print("  MULTICLOUD_STORE_GCP_ANONYMOUS=true; Ctrl-C to stop", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

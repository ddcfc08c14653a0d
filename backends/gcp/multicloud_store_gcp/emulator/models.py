"""The emulator's in-memory model: secrets, versions and the service's semantics, behind one lock.

Both wire front ends (`grpc_frontend`, `rest_frontend`) call `Backend.invoke` with protobuf requests, so a
secret written over gRPC is readable over REST. The test knobs (faults, latency, lost answers, a stale
``latest`` alias, corrupt checksums) live here too, so that they apply to both front ends alike.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import google_crc32c
from google.cloud.secretmanager_v1.types import resources, service
from google.protobuf import empty_pb2, json_format, timestamp_pb2

from multicloud_store_gcp.emulator.exceptions import RpcError, invalid
from multicloud_store_gcp.emulator.filters import compile_filter

LOGGER = logging.getLogger(__name__)

SERVICE_NAME: Final = "google.cloud.secretmanager.v1.SecretManagerService"

# The raw protobuf classes behind the client library's proto-plus types: both front ends (de)serialize with
# them, so the wire format is by construction the one the client expects.
_SecretPb: Final[Any] = resources.Secret.pb()
_SecretVersionPb: Final[Any] = resources.SecretVersion.pb()
_State: Final[Any] = resources.SecretVersion.State

# method name -> (request class, response class)
RPC_TYPES: Final[dict[str, tuple[Any, Any]]] = {
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

METHODS: Final[frozenset[str]] = frozenset(RPC_TYPES)
"""The RPC names the emulator serves (the names ``inject_fault`` and ``calls`` use)."""

# Canonical gRPC code -> HTTP status, as Google's REST front end (and google.rpc.Code) maps them.
HTTP_STATUS: Final[dict[str, int]] = {
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

PARENT = r"projects/[^/]+(?:/locations/[^/]+)?"
_PARENT_RE: Final = re.compile(rf"^{PARENT}$")
_SECRET_NAME_RE: Final = re.compile(rf"^({PARENT})/secrets/([^/]+)$")
_VERSION_NAME_RE: Final = re.compile(rf"^({PARENT}/secrets/[^/]+)/versions/([^/]+)$")
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


# --------------------------------------------------------------------------------------------------- backend


@dataclass
class _Version:
    pb: Any  # a SecretVersion message; the payload lives beside it, as the service keeps it apart
    data: bytes
    # When the 'latest' alias starts resolving to this version (the stale-latest knob delays it).
    visible_ns: int = 0


@dataclass
class _SecretRecord:
    pb: Any  # a Secret message
    versions: dict[int, _Version] = field(default_factory=dict)
    next_version: int = 1


@dataclass
class Fault:
    """A pending injected failure.

    Attributes:
        code: The gRPC status the client sees.
        remaining: How many more matching calls it fails.
        methods: The RPC names it applies to; None for every call.
        after_commit: Run the call (commit its effect) and then fail it: the answer is lost, not the request.
    """

    code: str
    remaining: int
    methods: frozenset[str] | None
    after_commit: bool = False


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
        raise invalid(f"Invalid page token [{token}].") from exc


def _page_size(requested: int) -> int:
    if requested < 0:
        raise invalid("page_size must not be negative.")
    return min(requested or _MAX_PAGE_SIZE, _MAX_PAGE_SIZE)


def _label_text_ok(text: str) -> bool:
    # Lowercase letters (international ones included), digits, '_' and '-'.
    return all(char in "_-" or char.isdigit() or (char.isalpha() and not char.isupper()) for char in text)


def _validate_labels(labels: Any) -> None:
    if len(labels) > _MAX_LABELS:
        raise invalid(f"A secret can have at most {_MAX_LABELS} labels, got {len(labels)}.")
    for key, value in labels.items():
        if not 1 <= len(key) <= _MAX_LABEL_CHARS or not key[0].isalpha() or key[0].isupper():
            raise invalid(
                f"Invalid label key [{key}]: it must be 1 to {_MAX_LABEL_CHARS} characters and start with a "
                "lowercase letter."
            )
        if not _label_text_ok(key):
            raise invalid(
                f"Invalid label key [{key}]: only lowercase letters, digits, '_' and '-' are allowed."
            )
        if len(value) > _MAX_LABEL_CHARS or not _label_text_ok(value):
            raise invalid(
                f"Invalid value for label [{key}]: at most {_MAX_LABEL_CHARS} lowercase letters, digits, '_' "
                "and '-'."
            )


class Backend:
    """The service's state and semantics; both front ends call ``invoke`` with protobuf requests."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._secrets: dict[str, _SecretRecord] = {}
        self._faults: list[Fault] = []
        # The earliest moment a secret may expire or a version be due for destruction; None if never.
        self._next_deadline_ns: int | None = None
        self.calls: collections.Counter[str] = collections.Counter()
        self.latency = 0.0
        self.corrupt_checksums = False
        # Seconds after AddSecretVersion during which 'latest' still resolves to the versions before it.
        self.stale_latest_seconds = 0.0
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
        """Drop every secret, fault and count; turn every knob back to its default."""
        with self._lock:
            self._secrets.clear()
            self._faults.clear()
            self._next_deadline_ns = None
            self.calls.clear()
            self.latency = 0.0
            self.corrupt_checksums = False
            self.stale_latest_seconds = 0.0

    def add_fault(self, fault: Fault) -> None:
        """Queue a fault; calls consume the first pending one that matches them."""
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Drop the pending faults."""
        with self._lock:
            self._faults.clear()

    def secret_ids(self, parent: str) -> list[str]:
        """The ids of the secrets under ``parent``, sorted."""
        with self._lock:
            self._sweep(time.time_ns())
            prefix = f"{parent}/secrets/"
            return sorted(name[len(prefix) :] for name in self._secrets if name.startswith(prefix))

    def invoke(self, method: str, request: Any) -> Any:
        """Serve one call: count it, wait out the latency, apply a pending fault, then run it.

        Raises:
            RpcError: The call fails with that status.
        """
        with self._lock:
            self.calls[method] += 1
            latency = self.latency
        # Sleep outside the lock so that slow calls do not serialise the whole emulator.
        if latency > 0:
            time.sleep(latency)
        with self._lock:
            fault = next(
                (f for f in self._faults if f.remaining > 0 and (f.methods is None or method in f.methods)),
                None,
            )
            if fault is not None:
                fault.remaining -= 1
                self._faults = [f for f in self._faults if f.remaining > 0]
                if not fault.after_commit:
                    raise RpcError(fault.code, f"Injected fault: {method} failed with {fault.code}.")
            now_ns = time.time_ns()
            self._sweep(now_ns)
            if fault is None:
                return self._handlers[method](request, now_ns)
            # A lost answer: the call takes effect (or fails on its own), and the client hears neither.
            with contextlib.suppress(RpcError):
                self._handlers[method](request, now_ns)
            raise RpcError(fault.code, f"Injected fault: the answer to {method} was lost ({fault.code}).")

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
            raise invalid(f"Invalid secret name [{name}]; expected projects/*/secrets/*.")
        record = self._secrets.get(name)
        if record is None:
            raise RpcError("NOT_FOUND", f"Secret [{name}] not found.")
        return record

    def _version(
        self, name: str, *, allow_alias: bool, now_ns: int = 0
    ) -> tuple[_SecretRecord, int, _Version]:
        match = _VERSION_NAME_RE.match(name)
        if match is None:
            raise invalid(f"Invalid secret version name [{name}]; expected projects/*/secrets/*/versions/*.")
        secret_name, version_id = match.groups()
        record = self._secrets.get(secret_name)
        if record is None:
            raise RpcError("NOT_FOUND", f"Secret [{secret_name}] not found or has no versions.")
        number: int | None = None
        if _VERSION_NUMBER_RE.match(version_id):
            number = int(version_id)
        elif not allow_alias:
            raise invalid(f"Invalid secret version [{name}]: a version number is required.")
        elif version_id == "latest":
            # The service's 'latest' is the most recently created version whatever its state; with the
            # stale-latest knob, the most recent one that has become visible to the alias.
            number = max((n for n, v in record.versions.items() if v.visible_ns <= now_ns), default=None)
            if number is None:
                raise RpcError("NOT_FOUND", f"Secret [{secret_name}] not found or has no versions.")
        elif version_id in record.pb.version_aliases:
            number = int(record.pb.version_aliases[version_id])
        version = record.versions.get(number) if number is not None else None
        if number is None or version is None:
            raise RpcError("NOT_FOUND", f"Secret Version [{name}] not found.")
        return record, number, version

    @staticmethod
    def _check_etag(given: str, current: str, name: str) -> None:
        if given and given != current:
            raise RpcError(
                "FAILED_PRECONDITION",
                f"The etag [{given}] does not match the current etag of [{name}].",
            )

    @staticmethod
    def _validate_secret(secret: Any, record: _SecretRecord | None) -> None:
        _validate_labels(secret.labels)
        if len(secret.version_aliases) > _MAX_ALIASES:
            raise invalid(f"A secret can have at most {_MAX_ALIASES} version aliases.")
        for alias, number in secret.version_aliases.items():
            if not _ALIAS_RE.match(alias) or alias in ("latest", "NEW"):
                raise invalid(f"Invalid version alias [{alias}].")
            if record is None or number not in record.versions:
                raise invalid(f"Version alias [{alias}] points to version {number}, which does not exist.")

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
                raise invalid(f"Invalid page token [{page_token}].")
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
            raise invalid(f"Invalid parent [{parent}]; expected projects/* or projects/*/locations/*.")
        if not _SECRET_ID_RE.match(request.secret_id):
            raise invalid(
                f"Invalid secret id [{request.secret_id}]: it must be 1 to 255 letters, digits, '_' or '-'."
            )
        name = f"{parent}/secrets/{request.secret_id}"
        secret = _copy(request.secret)
        regional = "/locations/" in parent
        if regional and secret.HasField("replication"):
            raise invalid("A regional secret cannot have a replication policy.")
        if not regional:
            policy = secret.replication.WhichOneof("replication")
            if policy is None:
                raise invalid("Secret.replication must be specified (automatic or user_managed).")
            if policy == "user_managed" and not secret.replication.user_managed.replicas:
                raise invalid("Secret.replication.user_managed.replicas must not be empty.")
        self._validate_secret(secret, None)
        if name in self._secrets:
            raise RpcError("ALREADY_EXISTS", f"Secret [{name}] already exists.")
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
            raise invalid("update_mask must name at least one field.")
        for path in paths:
            if path not in _UPDATABLE_SECRET_FIELDS:
                raise invalid(f"Field [{path}] cannot be updated.")
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
            raise invalid(f"Invalid parent [{parent}]; expected projects/* or projects/*/locations/*.")
        predicate = compile_filter(request.filter)
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
        response = RPC_TYPES["ListSecrets"][1]()
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
            raise invalid("Field [payload] is required.")
        if len(data) > MAX_PAYLOAD_BYTES:
            raise invalid(f"Secret payload is {len(data)} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes.")
        has_checksum = payload.HasField("data_crc32c")
        if has_checksum and payload.data_crc32c != google_crc32c.value(data):
            raise invalid(
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
        visible_ns = now_ns + int(self.stale_latest_seconds * 1e9)
        record.versions[number] = _Version(pb=version, data=data, visible_ns=visible_ns)
        return _copy(version)

    def _get_secret_version(self, request: Any, now_ns: int) -> Any:
        _, _, version = self._version(request.name, allow_alias=True, now_ns=now_ns)
        return _copy(version.pb)

    def _access_secret_version(self, request: Any, now_ns: int) -> Any:
        _, _, version = self._version(request.name, allow_alias=True, now_ns=now_ns)
        state = version.pb.state
        if state != _State.ENABLED:
            raise RpcError(
                "FAILED_PRECONDITION",
                f"Secret Version [{version.pb.name}] is in {_State(state).name} state.",
            )
        checksum = google_crc32c.value(version.data)
        if self.corrupt_checksums:
            checksum ^= 0x1  # one flipped bit: the client's verification must notice
        response = RPC_TYPES["AccessSecretVersion"][1](name=version.pb.name)
        response.payload.data = version.data
        response.payload.data_crc32c = checksum
        return response

    def _change_state(self, request: Any, now_ns: int, target: str) -> Any:
        record, _, version = self._version(request.name, allow_alias=False)
        self._check_etag(request.etag, version.pb.etag, request.name)
        if version.pb.state == _State.DESTROYED:
            raise RpcError("FAILED_PRECONDITION", f"Secret Version [{request.name}] is in DESTROYED state.")
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
        predicate = compile_filter(request.filter)
        items: list[tuple[str | int, Any]] = []
        for number in sorted(record.versions, reverse=True):  # newest first, as the service lists them
            version = record.versions[number].pb
            if predicate is None or predicate(
                json_format.MessageToDict(version, preserving_proto_field_name=True)
            ):
                items.append((number, version))
        page, token = self._paginate(items, request.page_size, request.page_token, descending=True)
        response = RPC_TYPES["ListSecretVersions"][1]()
        response.versions.extend(page)
        response.next_page_token = token
        response.total_size = 0 if predicate is not None else len(items)
        return response

"""The in-memory model of a Key Vault (secrets API): state, knobs, and the REST operations on it.

`VaultModel.handle` serves one HTTP request (method, URL, headers, body) and returns a `Response`; the HTTPS
front end (`multicloud_store_azure.emulator.server`) and the in-process transport
(`multicloud_store_azure.emulator.transport`) both call it, so every knob applies to both.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from azure.core.utils import case_insensitive_dict

_LOG = logging.getLogger("multicloud_store_azure.testing")

DEFAULT_TOKEN = "emulator-token"
"""The bearer token the emulator accepts unless told otherwise."""

EMULATOR_TENANT_ID = "00000000-0000-0000-0000-000000000000"
"""The tenant named in the emulator's authentication challenge; the SDK passes it to the credential."""

IN_PROCESS_VAULT_URL = "https://vault.emulator.test"
"""A vault URL for the in-process transport: ``.test`` never resolves, and its challenge passes the SDK."""

MAX_VALUE_BYTES = 25_000
"""Key Vault documents the secret value limit as "25k bytes"."""

_NAME_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_DEFAULT_PAGE_SIZE = 25
_MAX_PAGE_SIZE = 25
_MAX_TAGS = 15
_RETENTION_DAYS = 90
_MAX_REQUEST_BODY = 1 << 20
_SERVICE_VERSION = "1.9.0.0-emulator"
_JSON_TYPE = "application/json; charset=utf-8"
_NOT_FOUND_HINT = (
    "If you recently deleted this secret you may be able to recover it using the correct recovery command."
)

# Error codes for injected faults, as the service names them.
_FAULT_CODES: dict[int, tuple[str, str]] = {
    400: ("BadParameter", "Injected fault: bad request."),
    401: ("Unauthorized", "Injected fault: unauthorized."),
    403: ("Forbidden", "Injected fault: the caller does not have permission to perform this operation."),
    404: ("NotFound", "Injected fault: not found."),
    409: ("Conflict", "Injected fault: conflict."),
    429: ("Throttled", "Request was not processed because too many requests were received."),
    500: ("InternalServerError", "Injected fault: the service encountered an internal error."),
    502: ("BadGateway", "Injected fault: bad gateway."),
    503: ("ServiceUnavailable", "Injected fault: the service is temporarily unavailable."),
    504: ("GatewayTimeout", "Injected fault: gateway timeout."),
}


@dataclass
class _Version:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    enabled: bool
    nbf: int | None
    exp: int | None
    created: int
    updated: int
    seq: int


@dataclass
class _Secret:
    name: str
    versions: list[_Version]
    # Monotonic time before which a recovered secret is still "being recovered" (GET answers 404).
    ready_at: float = 0.0

    @property
    def latest(self) -> _Version:
        return self.versions[-1]


@dataclass
class _Deleted:
    secret: _Secret
    deleted_date: int
    scheduled_purge_date: int
    # Monotonic time before which the deletion is still in progress (GET deletedsecrets answers 404).
    ready_at: float


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: float | None
    methods: frozenset[str] | None


@dataclass
class _Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Committed, but the answer never reaches the client (`VaultModel.lose_answers`).
    lost: bool = False


@dataclass
class _LostAnswers:
    route: str
    remaining: int


class _Gate:
    """The first ``parties`` requests of one route for one secret, held until all arrived, then served in turn."""

    def __init__(self, parties: int, reverse: bool, timeout: float) -> None:
        self.parties = parties
        self.reverse = reverse
        self.deadline_after = timeout
        self.arrived = 0
        self.order: list[int] = []
        self.served = 0
        self.released = False
        self.condition = threading.Condition()

    def enter(self) -> int | None:
        """Take a ticket, or None once the gate has held its parties (later requests pass freely)."""
        with self.condition:
            if self.arrived >= self.parties:
                return None
            ticket = self.arrived
            self.arrived += 1
            if self.arrived == self.parties:
                self._release()
            else:
                deadline = time.monotonic() + self.deadline_after
                while not self.released and self.condition.wait(max(0.0, deadline - time.monotonic())):
                    pass
                if not self.released:  # a party never came: serve whoever is here
                    self.parties = self.arrived
                    self._release()
            # Wait for this ticket's turn in the serving order.
            while self.order[self.served] != ticket:
                self.condition.wait(1.0)
            return ticket

    def _release(self) -> None:
        tickets = list(range(self.arrived))
        self.order = tickets[::-1] if self.reverse else tickets
        self.released = True
        self.condition.notify_all()

    def leave(self) -> None:
        with self.condition:
            self.served += 1
            self.condition.notify_all()


class _BadRequest(Exception):
    """Raised while parsing a request; becomes a 400 BadParameter."""


def _error(
    status: int,
    code: str,
    message: str,
    inner: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> _Response:
    err: dict[str, Any] = {"code": code, "message": message}
    if inner:
        err["innererror"] = {"code": inner}
    response = _json_response(status, {"error": err})
    if headers:
        response.headers.update(headers)
    return response


def _json_response(status: int, payload: Mapping[str, Any]) -> _Response:
    return _Response(status, {"Content-Type": _JSON_TYPE}, json.dumps(payload).encode("utf-8"))


def _not_found(name: str) -> _Response:
    return _error(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {name} was not found in this key vault. {_NOT_FOUND_HINT}",
    )


def _deleted_not_found(name: str) -> _Response:
    return _error(404, "SecretNotFound", f"Deleted Secret not found: {name}")


def _format_seconds(seconds: float) -> str:
    return format(seconds, "g")


def _challenge_resource(netloc: str) -> str:
    # The SDK accepts a resource only if the vault host ends with "." + the resource's authority, so answer
    # with the parent domain, the way the service answers "vault.azure.net" for "myvault.vault.azure.net".
    _, dot, parent = netloc.partition(".")
    return f"https://{parent if dot and parent else netloc}"


def _encode_token(payload: Mapping[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_token(token: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise _BadRequest("The continuation token is invalid.") from exc
    if not isinstance(payload, dict):
        raise _BadRequest("The continuation token is invalid.")
    return payload


def _optional_int(attrs: Mapping[str, Any], key: str) -> int | None:
    value = attrs.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadRequest(f"Property attributes.{key} must be a unix timestamp.")
    return int(value)


def _parse_tags(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _BadRequest("Property tags must be an object of strings.")
    if len(value) > _MAX_TAGS:
        raise _BadRequest(f"A secret can have at most {_MAX_TAGS} tags.")
    return dict(value)


class _RequestContext:
    """What one request carries: method, base URL, path parts, query and parsed JSON body."""

    def __init__(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> None:
        parts = urlsplit(url)
        self.method = method.upper()
        self.netloc = parts.netloc
        self.base = f"https://{parts.netloc}"
        self.path = unquote(parts.path)
        self.query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.headers = case_insensitive_dict(headers)
        self.body = body

    def json_body(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            payload = json.loads(self.body)
        except ValueError as exc:
            raise _BadRequest("The request body is not valid JSON.") from exc
        if not isinstance(payload, dict):
            raise _BadRequest("The request body must be a JSON object.")
        return payload

    def page_size(self) -> int:
        raw = self.query.get("maxresults")
        if raw is None or raw == "":
            return _DEFAULT_PAGE_SIZE
        try:
            size = int(raw)
        except ValueError as exc:
            raise _BadRequest("maxresults must be an integer.") from exc
        if not 1 <= size <= _MAX_PAGE_SIZE:
            raise _BadRequest(f"maxresults must be between 1 and {_MAX_PAGE_SIZE}.")
        return size


def _route(method: str, path: str) -> tuple[str, list[str]]:
    """Map a request to its route kind (e.g. ``"GET /secrets/{name}"``) and path arguments."""
    segments = path[1:].split("/") if path.startswith("/") else path.split("/")
    head = segments[0].lower() if segments else ""
    if head == "secrets":
        if len(segments) == 1 or (len(segments) == 2 and segments[1] == "" and method == "GET"):
            return f"{method} /secrets", []
        if len(segments) == 2:
            return f"{method} /secrets/{{name}}", [segments[1]]
        if len(segments) == 3 and segments[2].lower() == "versions" and method == "GET":
            return f"{method} /secrets/{{name}}/versions", [segments[1]]
        if len(segments) == 3 and segments[2].lower() == "backup":
            return f"{method} /secrets/{{name}}/backup", [segments[1]]
        if len(segments) == 3:
            # An empty version segment ("/secrets/x/", as the SDK sends it) means the latest version.
            if segments[2] == "":
                return f"{method} /secrets/{{name}}", [segments[1]]
            return f"{method} /secrets/{{name}}/{{version}}", [segments[1], segments[2]]
    if head == "deletedsecrets":
        if len(segments) == 1 or (len(segments) == 2 and segments[1] == ""):
            return f"{method} /deletedsecrets", []
        if len(segments) == 2:
            return f"{method} /deletedsecrets/{{name}}", [segments[1]]
        if len(segments) == 3 and segments[2].lower() == "recover":
            return f"{method} /deletedsecrets/{{name}}/recover", [segments[1]]
    return f"{method} <unknown>", []


class VaultModel:
    """One vault's secrets, deleted secrets and knobs, guarded by one lock; see `KeyVaultEmulator`."""

    def __init__(
        self,
        *,
        token: str | None = DEFAULT_TOKEN,
        purge_protection: bool = False,
        delete_delay: float = 0.0,
    ) -> None:
        self.token = token
        self._initial_token = token
        self._initial_purge_protection = purge_protection
        self._initial_delete_delay = delete_delay
        self.purge_protection = purge_protection
        self.delete_delay = delete_delay
        self.deny_purge = False
        self.enforce_expiry = False
        self.latency = 0.0

        self._lock = threading.RLock()
        self._secrets: dict[str, _Secret] = {}
        self._deleted: dict[str, _Deleted] = {}
        self._faults: list[_Fault] = []
        self._calls: list[str] = []
        self._challenges = 0
        self._seq = 0
        self._lost: list[_LostAnswers] = []
        self._gates: dict[tuple[str, str], _Gate] = {}
        self._interleave: tuple[str, int, bool, float] | None = None

    # ---- knobs and inspection ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget all secrets, faults and recorded calls; restore every knob to its constructor value."""
        with self._lock:
            self._secrets.clear()
            self._deleted.clear()
            self._faults.clear()
            self._calls.clear()
            self._challenges = 0
            self.token = self._initial_token
            self.purge_protection = self._initial_purge_protection
            self.delete_delay = self._initial_delete_delay
            self.deny_purge = False
            self.enforce_expiry = False
            self.latency = 0.0
            self._lost.clear()
            self._gates.clear()
            self._interleave = None

    def clear_faults(self) -> None:
        """Drop pending injected faults, lost answers and interleavings; keep every secret (the outage is over)."""
        with self._lock:
            self._faults.clear()
            self._lost.clear()
            self._gates.clear()
            self._interleave = None

    def lose_answers(self, route: str = "PUT /secrets/{name}", *, times: int = 1) -> None:
        """Serve the next ``times`` requests of ``route`` in full, then lose their answers.

        The write commits (a PUT adds its version, a DELETE deletes), but the client never hears back: over
        HTTPS the connection is closed without a response, in-process the transport raises azure-core's
        `ServiceResponseError`, as a reset connection or a timeout would. The SDK's retries count as requests
        too, so ``times`` above its retry count makes the call fail after every retry committed.

        Args:
            route: A route kind as recorded in :attr:`calls`, such as ``"PUT /secrets/{name}"`` or
                ``"DELETE /secrets/{name}"``.
            times: How many answers to lose.

        Raises:
            ValueError: If ``times`` is below 1.
        """
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        with self._lock:
            self._lost.append(_LostAnswers(route, times))

    def interleave(
        self,
        route: str = "PUT /secrets/{name}",
        *,
        parties: int = 2,
        reverse: bool = False,
        timeout: float = 30.0,
    ) -> None:
        """Make concurrent writers of one secret meet at ``route`` before any of them is served.

        For every secret name, the first ``parties`` requests of ``route`` are held until all of them have
        arrived (or ``timeout`` seconds passed), then served one after another, in arrival order or reversed.
        Later requests of that route for that name pass freely. With ``"GET /secrets/{name}/versions"`` every
        creator's existence check is answered before any writes; with ``"PUT /secrets/{name}"`` the writes
        land back to back, usually within one second, so the versions' creation times tie.

        Args:
            route: The route kind where writers meet (as recorded in :attr:`calls`).
            parties: How many requests per secret to gather.
            reverse: Serve the last to arrive first.
            timeout: Seconds to wait for missing parties before serving those present.

        Raises:
            ValueError: If ``parties`` is below 2.
        """
        if parties < 2:
            raise ValueError(f"parties must be at least 2, got {parties}")
        with self._lock:
            self._gates.clear()
            self._interleave = (route, parties, reverse, timeout)

    def inject_fault(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        methods: Collection[str] | None = None,
    ) -> None:
        """Make the next ``times`` matching requests fail with ``status`` before any other processing.

        Faults queue up in the order injected; each request consumes at most one. The body carries the error
        code the service uses for that status (``Throttled`` for 429, ``Forbidden`` for 403, ...).

        Args:
            status: HTTP status to answer with (400-599).
            times: How many requests to fail.
            retry_after: If given, sent as the ``Retry-After`` header (seconds; fractions allowed).
            methods: Only requests with these HTTP methods match; ``None`` matches all.

        Raises:
            ValueError: If ``status`` or ``times`` is out of range.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        wanted = frozenset(m.upper() for m in methods) if methods is not None else None
        with self._lock:
            self._faults.append(_Fault(status, times, retry_after, wanted))

    @property
    def calls(self) -> list[str]:
        """A copy of the route kinds served so far, in order (e.g. ``"PUT /secrets/{name}"``)."""
        with self._lock:
            return list(self._calls)

    @property
    def challenges(self) -> int:
        """How many requests were answered with an authentication challenge (no ``Authorization`` header)."""
        with self._lock:
            return self._challenges

    def disable(self, name: str) -> None:
        """Mark the latest version of ``name`` disabled, as an operator might in the portal.

        Args:
            name: The secret name.

        Raises:
            KeyError: If there is no such (non-deleted) secret.
        """
        with self._lock:
            version = self._find_active(name).latest
            version.enabled = False
            version.updated = int(time.time())

    def expire(self, name: str) -> None:
        """Set the expiry of the latest version of ``name`` a minute in the past.

        Args:
            name: The secret name.

        Raises:
            KeyError: If there is no such (non-deleted) secret.
        """
        with self._lock:
            version = self._find_active(name).latest
            now = int(time.time())
            version.exp = now - 60
            version.updated = now

    def secret_names(self) -> list[str]:
        """Names of the secrets that exist (not deleted), sorted."""
        with self._lock:
            return sorted((s.name for s in self._secrets.values()), key=str.lower)

    def deleted_names(self) -> list[str]:
        """Names of the soft-deleted secrets (including deletions still in progress), sorted."""
        with self._lock:
            return sorted((d.secret.name for d in self._deleted.values()), key=str.lower)

    def _find_active(self, name: str) -> _Secret:
        secret = self._secrets.get(name.lower())
        if secret is None:
            raise KeyError(name)
        return secret

    # ---- request handling --------------------------------------------------------------------------------

    def _handle(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> _Response:
        """Serve one request; shared by the HTTPS server and the in-process transport."""
        if self.latency > 0:
            time.sleep(self.latency)
        # The service's clock, to the second, read before the request is served: a client that sees second T
        # knows the answer reflects every write made before T.
        date = email.utils.formatdate(usegmt=True)
        try:
            ctx = _RequestContext(method, url, headers, body)
            kind, args = _route(ctx.method, ctx.path)
            with self._lock:
                self._calls.append(kind)
                fault = self._take_fault(ctx.method)
            response = self._fault_response(fault) if fault is not None else self._authenticate(ctx)
            if response is None:
                gate = self._gate(kind, args)
                ticket = gate.enter() if gate is not None else None
                try:
                    response = self._serve(ctx, kind, args)
                finally:
                    if gate is not None and ticket is not None:
                        gate.leave()
                response.lost = self._take_lost(kind)
        except Exception:
            _LOG.exception("Key Vault emulator: internal error")
            response = _error(500, "InternalServerError", "The emulator failed to process the request.")
        response.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        response.headers.setdefault("x-ms-keyvault-service-version", _SERVICE_VERSION)
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers.setdefault("Date", date)
        return response

    def _gate(self, kind: str, args: list[str]) -> _Gate | None:
        with self._lock:
            if self._interleave is None or not args:
                return None
            route, parties, reverse, timeout = self._interleave
            if kind != route:
                return None
            key = (kind, args[0].lower())
            gate = self._gates.get(key)
            if gate is None:
                gate = self._gates[key] = _Gate(parties, reverse, timeout)
            return gate

    def _take_lost(self, kind: str) -> bool:
        with self._lock:
            for lost in self._lost:
                if lost.route == kind:
                    lost.remaining -= 1
                    if lost.remaining <= 0:
                        self._lost.remove(lost)
                    return True
        return False

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.methods is None or method in fault.methods:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _fault_response(self, fault: _Fault) -> _Response:
        code, message = _FAULT_CODES.get(fault.status, ("Error", "Injected fault."))
        inner = "AccessDenied" if fault.status == 403 else None
        headers = (
            {"Retry-After": _format_seconds(fault.retry_after)} if fault.retry_after is not None else None
        )
        return _error(fault.status, code, message, inner, headers)

    def _authenticate(self, ctx: _RequestContext) -> _Response | None:
        challenge = {
            "WWW-Authenticate": (
                f'Bearer authorization="https://login.microsoftonline.com/{EMULATOR_TENANT_ID}", '
                f'resource="{_challenge_resource(ctx.netloc)}"'
            )
        }
        header = ctx.headers.get("Authorization")
        if not header:
            with self._lock:
                self._challenges += 1
            return _error(
                401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", None, challenge
            )
        scheme, _, presented = header.strip().partition(" ")
        presented = presented.strip()
        if (
            scheme.lower() != "bearer"
            or not presented
            or (self.token is not None and presented != self.token)
        ):
            return _error(401, "Unauthorized", "AKV10032: Invalid bearer token.", None, challenge)
        return None

    def _serve(self, ctx: _RequestContext, kind: str, args: list[str]) -> _Response:
        handlers: dict[str, Callable[..., _Response]] = {
            "PUT /secrets/{name}": self._set_secret,
            "GET /secrets/{name}": self._get_secret,
            "GET /secrets/{name}/{version}": self._get_secret,
            "PATCH /secrets/{name}": self._update_secret,
            "PATCH /secrets/{name}/{version}": self._update_secret,
            "DELETE /secrets/{name}": self._delete_secret,
            "GET /secrets": self._list_secrets,
            "GET /secrets/{name}/versions": self._list_versions,
            "GET /deletedsecrets": self._list_deleted,
            "GET /deletedsecrets/{name}": self._get_deleted,
            "DELETE /deletedsecrets/{name}": self._purge_deleted,
            "POST /deletedsecrets/{name}/recover": self._recover_deleted,
        }
        if "api-version" not in ctx.query:
            return _error(400, "BadParameter", "The request URI contains an invalid or missing api-version.")
        handler = handlers.get(kind)
        if handler is None:
            if kind.endswith("/backup") or kind == "POST /secrets/{name}":
                return _error(501, "NotImplemented", "Backup and restore are not supported by the emulator.")
            if kind.endswith("<unknown>"):
                return _error(404, "NotFound", "The requested resource does not exist.")
            return _error(
                405, "MethodNotAllowed", f"The method {ctx.method} is not allowed on this resource."
            )
        if args and not _NAME_RE.match(args[0]):
            return _error(400, "BadParameter", f"The request URI contains an invalid name: {args[0]}")
        try:
            with self._lock:
                return handler(ctx, *args)
        except _BadRequest as exc:
            return _error(400, "BadParameter", str(exc))

    # ---- JSON shapes -------------------------------------------------------------------------------------

    def _recovery_level(self) -> str:
        return "Recoverable" if self.purge_protection else "Recoverable+Purgeable"

    def _attributes(self, version: _Version) -> dict[str, Any]:
        attrs: dict[str, Any] = {"enabled": version.enabled}
        if version.nbf is not None:
            attrs["nbf"] = version.nbf
        if version.exp is not None:
            attrs["exp"] = version.exp
        attrs.update(
            created=version.created,
            updated=version.updated,
            recoveryLevel=self._recovery_level(),
            recoverableDays=_RETENTION_DAYS,
        )
        return attrs

    def _item(self, base: str, secret: _Secret, version: _Version, *, with_version: bool) -> dict[str, Any]:
        path = f"{base}/secrets/{secret.name}"
        item: dict[str, Any] = {
            "id": f"{path}/{version.version}" if with_version else path,
            "attributes": self._attributes(version),
        }
        if version.tags is not None:
            item["tags"] = dict(version.tags)
        if version.content_type is not None:
            item["contentType"] = version.content_type
        return item

    def _bundle(self, base: str, secret: _Secret, version: _Version, *, with_value: bool) -> dict[str, Any]:
        bundle = self._item(base, secret, version, with_version=True)
        if with_value:
            bundle["value"] = version.value
        return bundle

    def _deleted_shape(self, base: str, deleted: _Deleted, *, item: bool) -> dict[str, Any]:
        secret = deleted.secret
        shape = self._item(base, secret, secret.latest, with_version=not item)
        shape.update(
            recoveryId=f"{base}/deletedsecrets/{secret.name}",
            deletedDate=deleted.deleted_date,
            scheduledPurgeDate=deleted.scheduled_purge_date,
        )
        return shape

    def _page(
        self, ctx: _RequestContext, route: str, kind: str, items: Sequence[tuple[str, dict[str, Any]]]
    ) -> _Response:
        """Return one page of ``items`` (sorted by key), with a ``nextLink`` if more follow."""
        size = ctx.page_size()
        token = ctx.query.get("$skiptoken")
        start = 0
        if token:
            payload = _decode_token(token)
            if payload.get("kind") != kind or not isinstance(payload.get("after"), str):
                raise _BadRequest("The continuation token is invalid.")
            after = payload["after"]
            start = next((i for i, (key, _) in enumerate(items) if key > after), len(items))
        page = items[start : start + size]
        next_link = None
        if start + size < len(items):
            token = _encode_token({"kind": kind, "after": page[-1][0]})
            api = ctx.query["api-version"]
            next_link = f"{ctx.base}{route}?api-version={api}&$skiptoken={token}&maxresults={size}"
        return _json_response(200, {"value": [shape for _, shape in page], "nextLink": next_link})

    # ---- operations (called with the lock held) ----------------------------------------------------------

    def _lookup(self, name: str) -> _Secret | None:
        secret = self._secrets.get(name.lower())
        if secret is None or secret.ready_at > time.monotonic():
            return None
        return secret

    def _set_secret(self, ctx: _RequestContext, name: str) -> _Response:
        key = name.lower()
        deleted = self._deleted.get(key)
        if deleted is not None:
            if deleted.ready_at > time.monotonic():
                return _error(
                    409, "Conflict", f"Secret {name} is currently being deleted.", "ObjectIsBeingDeleted"
                )
            return _error(
                409,
                "Conflict",
                f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be "
                "reused; in this state, the secret can only be recovered or purged.",
                "ObjectIsDeletedButRecoverable",
            )
        existing = self._secrets.get(key)
        if existing is not None and existing.ready_at > time.monotonic():
            return _error(
                409, "Conflict", f"Secret {name} is currently being recovered.", "ObjectIsBeingRecovered"
            )

        payload = ctx.json_body()
        value = payload.get("value")
        if not isinstance(value, str):
            raise _BadRequest("Property value is required and must be a string.")
        size = len(value.encode("utf-8"))
        if size > MAX_VALUE_BYTES:
            raise _BadRequest(f"The secret value is {size} bytes; the limit is {MAX_VALUE_BYTES} bytes.")
        content_type = payload.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise _BadRequest("Property contentType must be a string.")
        attrs = payload.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise _BadRequest("Property attributes must be an object.")
        enabled = attrs.get("enabled", True)
        if enabled is None:
            enabled = True
        if not isinstance(enabled, bool):
            raise _BadRequest("Property attributes.enabled must be a boolean.")
        tags = _parse_tags(payload.get("tags"))
        now = int(time.time())
        self._seq += 1
        version = _Version(
            version=uuid.uuid4().hex,
            value=value,
            content_type=content_type,
            tags=tags,
            enabled=enabled,
            nbf=_optional_int(attrs, "nbf"),
            exp=_optional_int(attrs, "exp"),
            created=now,
            updated=now,
            seq=self._seq,
        )
        if existing is None:
            existing = self._secrets[key] = _Secret(name, [])
        existing.versions.append(version)
        return _json_response(200, self._bundle(ctx.base, existing, version, with_value=True))

    def _find_version(self, name: str, version_id: str) -> tuple[_Secret, _Version] | _Response:
        secret = self._lookup(name)
        if secret is None:
            return _not_found(name)
        if not version_id:
            return secret, secret.latest
        for version in secret.versions:
            if version.version == version_id.lower():
                return secret, version
        return _not_found(f"{name}/{version_id}")

    def _get_secret(self, ctx: _RequestContext, name: str, version_id: str = "") -> _Response:
        found = self._find_version(name, version_id)
        if isinstance(found, _Response):
            return found
        secret, version = found
        if not version.enabled:
            return _error(
                403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled"
            )
        if self.enforce_expiry and version.exp is not None and version.exp <= time.time():
            return _error(
                403, "Forbidden", "Operation get is not allowed on an expired secret.", "SecretExpired"
            )
        return _json_response(200, self._bundle(ctx.base, secret, version, with_value=True))

    def _update_secret(self, ctx: _RequestContext, name: str, version_id: str = "") -> _Response:
        found = self._find_version(name, version_id)
        if isinstance(found, _Response):
            return found
        secret, version = found
        payload = ctx.json_body()
        # Validate everything before changing anything, so a bad request leaves the version untouched.
        attrs = payload.get("attributes")
        if attrs is not None and not isinstance(attrs, dict):
            raise _BadRequest("Property attributes must be an object.")
        attrs = attrs or {}
        enabled = attrs.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise _BadRequest("Property attributes.enabled must be a boolean.")
        nbf, exp = _optional_int(attrs, "nbf"), _optional_int(attrs, "exp")
        tags = _parse_tags(payload.get("tags"))
        content_type = payload.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise _BadRequest("Property contentType must be a string.")

        if enabled is not None:
            version.enabled = enabled
        # A key sent as null clears the field; an absent key leaves it alone.
        if "nbf" in attrs:
            version.nbf = nbf
        if "exp" in attrs:
            version.exp = exp
        if "tags" in payload:
            version.tags = tags
        if "contentType" in payload:
            version.content_type = content_type
        version.updated = int(time.time())
        return _json_response(200, self._bundle(ctx.base, secret, version, with_value=False))

    def _delete_secret(self, ctx: _RequestContext, name: str) -> _Response:
        secret = self._lookup(name)
        if secret is None:
            return _not_found(name)
        del self._secrets[name.lower()]
        now = int(time.time())
        deleted = _Deleted(
            secret=secret,
            deleted_date=now,
            scheduled_purge_date=now + _RETENTION_DAYS * 86400,
            ready_at=time.monotonic() + self.delete_delay,
        )
        self._deleted[name.lower()] = deleted
        return _json_response(200, self._deleted_shape(ctx.base, deleted, item=False))

    def _list_secrets(self, ctx: _RequestContext) -> _Response:
        now = time.monotonic()
        items = sorted(
            (key, self._item(ctx.base, s, s.latest, with_version=False))
            for key, s in self._secrets.items()
            if s.ready_at <= now
        )
        return self._page(ctx, "/secrets", "secrets", items)

    def _list_versions(self, ctx: _RequestContext, name: str) -> _Response:
        secret = self._lookup(name)
        if secret is None:
            return _not_found(name)
        # Ordered by version id, as the real service pages them (its continuation token names the last id):
        # not by creation time, so a client cannot rely on the order to find the oldest version.
        items = sorted(
            (v.version, self._item(ctx.base, secret, v, with_version=True)) for v in secret.versions
        )
        return self._page(ctx, f"/secrets/{secret.name}/versions", f"versions:{name.lower()}", items)

    def _list_deleted(self, ctx: _RequestContext) -> _Response:
        now = time.monotonic()
        items = sorted(
            (key, self._deleted_shape(ctx.base, d, item=True))
            for key, d in self._deleted.items()
            if d.ready_at <= now
        )
        return self._page(ctx, "/deletedsecrets", "deleted", items)

    def _ready_deleted(self, name: str) -> _Deleted | _Response:
        deleted = self._deleted.get(name.lower())
        if deleted is None:
            return _deleted_not_found(name)
        if deleted.ready_at > time.monotonic():
            return _error(
                409, "Conflict", f"Secret {name} is currently being deleted.", "ObjectIsBeingDeleted"
            )
        return deleted

    def _get_deleted(self, ctx: _RequestContext, name: str) -> _Response:
        deleted = self._deleted.get(name.lower())
        # While the deletion is in progress the deleted secret is not visible yet; the SDK's poller waits.
        if deleted is None or deleted.ready_at > time.monotonic():
            return _deleted_not_found(name)
        return _json_response(200, self._deleted_shape(ctx.base, deleted, item=False))

    def _purge_deleted(self, ctx: _RequestContext, name: str) -> _Response:
        if self.deny_purge:
            return _error(
                403,
                "Forbidden",
                "The user, group or application 'appid=emulator' does not have secrets purge permission "
                "on key vault 'emulator'.",
                "AccessDenied",
            )
        deleted = self._ready_deleted(name)
        if isinstance(deleted, _Response):
            return deleted
        if self.purge_protection:
            return _error(
                403,
                "Forbidden",
                'Operation "purge" is not allowed because purge protection is enabled for this vault. '
                "Key Vault service will automatically purge it after the retention period has passed.",
                "PurgeProtectionEnabled",
            )
        del self._deleted[name.lower()]
        return _Response(204)

    def _recover_deleted(self, ctx: _RequestContext, name: str) -> _Response:
        deleted = self._ready_deleted(name)
        if isinstance(deleted, _Response):
            return deleted
        del self._deleted[name.lower()]
        secret = deleted.secret
        secret.ready_at = time.monotonic() + self.delete_delay
        self._secrets[name.lower()] = secret
        return _json_response(200, self._bundle(ctx.base, secret, secret.latest, with_value=False))

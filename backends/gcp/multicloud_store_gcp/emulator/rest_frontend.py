"""The REST front end: the service's HTTP rules (transcoding), on a threading HTTP/1.1 server."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from google.protobuf import json_format

from multicloud_store_gcp.emulator.exceptions import RpcError, invalid
from multicloud_store_gcp.emulator.models import HTTP_STATUS, LOGGER, PARENT, RPC_TYPES, Backend

__all__ = ["RestServer"]


_SECRET = rf"{PARENT}/secrets/[^/:]+"
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
    _route("POST", PARENT, "/secrets", "CreateSecret", "secret", "parent"),
    _route("GET", PARENT, "/secrets", "ListSecrets", None, "parent"),
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
    server: RestServer

    def setup(self) -> None:
        # Without TCP_NODELAY, Nagle plus the client's delayed ACK stall every keep-alive call by ~40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines only: bodies hold secret values and never reach a log.
        LOGGER.debug("%s - " + format, self.address_string(), *args)

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
            raise invalid("Chunked request bodies are not supported by the emulator.")
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        try:
            # Read the body first, even for a request that fails, or keep-alive would desynchronise.
            body = self._read_body()
            response, integer_enums = self._dispatch(body)
            payload = json_format.MessageToJson(response, use_integers_for_enums=integer_enums).encode()
            self._send(200, payload)
        except RpcError as exc:
            self._send_error(exc.code, exc.message)
        except Exception:  # the emulator's own bug: answer like the service would, and log it
            LOGGER.exception(
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
            raise RpcError("UNIMPLEMENTED", f"{self.command} {url.path} is not served by the emulator.")
        fields, integer_enums = _query_to_dict(url.query)
        try:
            content = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            raise invalid(f"Invalid JSON payload received: {exc}.") from exc
        if route.body == "*":
            if not isinstance(content, dict):
                raise invalid("Invalid JSON payload received: expected an object.")
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
        request = RPC_TYPES[route.method][0]()
        try:
            json_format.ParseDict(fields, request)
        except json_format.ParseError as exc:
            raise invalid(f"Invalid request: {exc}") from exc
        return self.server.backend.invoke(route.method, request), integer_enums

    def _send_error(self, code: str, message: str) -> None:
        status = HTTP_STATUS.get(code, 500)
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


class RestServer(http.server.ThreadingHTTPServer):
    """A threading HTTP/1.1 server whose keep-alive connections can be closed at shutdown."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        self.backend = backend
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:  # noqa: D102
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:  # noqa: D102
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

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: D102
        # A client that hung up (say, on its own timeout) is routine, not a traceback on stderr.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            LOGGER.debug("Secret Manager emulator: client %s went away", client_address)
            return
        LOGGER.exception("Secret Manager emulator: error on a REST connection from %s", client_address)

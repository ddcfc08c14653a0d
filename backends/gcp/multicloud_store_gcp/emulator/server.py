"""`SecretManagerEmulator`: the model and both front ends on 127.0.0.1, with the knobs tests turn; and the CLI."""

from __future__ import annotations

import argparse
import collections
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Collection, Iterable
from concurrent import futures
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import grpc

from multicloud_store_gcp.emulator.grpc_frontend import grpc_service
from multicloud_store_gcp.emulator.models import HTTP_STATUS, METHODS, Backend, Fault
from multicloud_store_gcp.emulator.rest_frontend import RestServer

if TYPE_CHECKING:
    from google.cloud.secretmanager import SecretManagerServiceClient

__all__ = ["SecretManagerEmulator", "main"]


def _fault(code: str, times: int, methods: Collection[str] | None, *, after_commit: bool) -> Fault:
    if code not in HTTP_STATUS:
        raise ValueError(f"unknown or non-error gRPC status {code!r}; one of {sorted(HTTP_STATUS)}")
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
    return Fault(code=code, remaining=times, methods=selected, after_commit=after_commit)


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
        self._backend = Backend()
        self._grpc_server: Any = None
        self._grpc_executor: futures.ThreadPoolExecutor | None = None
        self._grpc_port = 0
        self._rest_server: RestServer | None = None
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
            executor, handlers=[grpc_service(self._backend)], options=[("grpc.so_reuseport", 0)]
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
            rest_server = RestServer((self._host, self._requested_rest_port), self._backend)
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
        """Drop every secret, pending fault and call count; turn latency, stale latest and checksums back."""
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
        self._backend.add_fault(_fault(code, times, methods, after_commit=False))

    def lose_answers(
        self, *, times: int = 1, methods: Collection[str] | None = None, code: str = "UNAVAILABLE"
    ) -> None:
        """Let the next ``times`` matching calls take effect, then fail them: the answer is lost.

        This is a write that commits on the service while the client hears only an error (a reset
        connection, a proxy's 503, a deadline), and retries. Each retry that matches is served and its answer
        lost too (an ``ALREADY_EXISTS`` included), so with ``times`` above the client's retries every answer
        to the write is lost while its effect persists. Faults of both kinds share one queue.

        Args:
            times: How many calls lose their answer.
            methods: RPC names (see ``METHODS``), such as ``{"CreateSecret", "AddSecretVersion"}``; None
                means any call.
            code: The status the client sees instead of the answer: ``"UNAVAILABLE"`` (HTTP 503, retried by
                the client library's default policy) or ``"DEADLINE_EXCEEDED"`` (504), for example.

        Raises:
            ValueError: An unknown status or method name, or ``times`` below 1.
        """
        self._backend.add_fault(_fault(code, times, methods, after_commit=True))

    @property
    def stale_latest(self) -> float:
        """Seconds after ``AddSecretVersion`` during which the ``latest`` alias still resolves as before.

        Secret Manager documents only access by version number as read-your-writes; ``latest`` (and aliases)
        is eventually consistent. With this set, ``AccessSecretVersion`` and ``GetSecretVersion`` of
        ``latest`` resolve to the newest version added at least this long ago (whatever its state, as the
        service does: a destroyed one fails with ``FAILED_PRECONDITION``), or to ``NOT_FOUND`` when there is
        none yet. It applies to versions added while it is set; access by number is never stale.
        """
        return self._backend.stale_latest_seconds

    @stale_latest.setter
    def stale_latest(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"stale_latest must not be negative, not {seconds}")
        self._backend.stale_latest_seconds = float(seconds)

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
    parser.add_argument(
        "--stale-latest",
        type=float,
        default=0.0,
        help="seconds after AddSecretVersion during which 'latest' still resolves as before (default: 0)",
    )
    args = parser.parse_args(None if argv is None else list(argv))

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        # SIGTERM (docker stop, CI teardown) ends the emulator as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    emulator = SecretManagerEmulator(host=args.host, grpc_port=args.grpc_port, rest_port=args.rest_port)
    emulator.latency = args.latency
    emulator.stale_latest = args.stale_latest
    for label, port in (("gRPC", args.grpc_port), ("REST", args.rest_port)):
        # Checked first: gRPC's core would log its own line about the port before our error.
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind((args.host, port))
            continue
        if port:
            parser.exit(
                1,
                f"{parser.prog}: error: cannot listen on {args.host}:{port} ({label}): the port is in use "
                "or not allowed; choose other ports (0 picks a free one)\n",
            )
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(emulator)
        except OSError as exc:  # a port in use: one line, not a traceback
            ports = f"gRPC port {args.grpc_port}, REST port {args.rest_port}"
            reason = exc.strerror or str(exc)
            parser.exit(
                1,
                f"{parser.prog}: error: cannot listen on {args.host} ({ports}): {reason}; "
                "choose other ports (0 picks a free one)\n",
            )
        print(f"Secret Manager emulator: gRPC {emulator.grpc_endpoint}, REST {emulator.rest_endpoint}")
        # The store refuses ANONYMOUS without a project id; any id works here (projects exist on first use).
        print("  MULTICLOUD_STORE_GCP_PROJECT_ID=test-project (required; any project id works)")
        print("  MULTICLOUD_STORE_GCP_ANONYMOUS=true")
        print(f"  MULTICLOUD_STORE_GCP_ENDPOINT={emulator.grpc_endpoint} MULTICLOUD_STORE_GCP_TRANSPORT=grpc")
        print(f"  MULTICLOUD_STORE_GCP_ENDPOINT={emulator.rest_endpoint} MULTICLOUD_STORE_GCP_TRANSPORT=rest")
        print("  Ctrl-C to stop", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

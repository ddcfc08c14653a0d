"""``python -m multicloud_store_azure.testing``: serve an emulator in the foreground."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence

from multicloud_store_azure.emulator.model import DEFAULT_TOKEN
from multicloud_store_azure.emulator.vault import KeyVaultEmulator

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a Key Vault emulator in the foreground until interrupted.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The process exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m multicloud_store_azure.testing",
        description="Serve an in-memory Azure Key Vault (secrets) over HTTPS for tests.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="bearer token to accept (default %(default)s)")
    parser.add_argument("--any-token", action="store_true", help="accept any non-empty bearer token")
    parser.add_argument(
        "--purge-protection", action="store_true", help="refuse purges, as with purge protection"
    )
    parser.add_argument(
        "--delete-delay", type=float, default=0.0, help="seconds a deletion stays in progress"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every request (default: 0)"
    )
    args = parser.parse_args(argv)

    emulator = KeyVaultEmulator(
        host=args.host,
        port=args.port,
        token=None if args.any_token else args.token,
        purge_protection=args.purge_protection,
        delete_delay=args.delete_delay,
    )
    emulator.latency = args.latency
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(emulator)
        except OSError as exc:  # a port in use: one line, not a traceback
            reason = exc.strerror or str(exc)
            parser.exit(
                1,
                f"{parser.prog}: error: cannot listen on {args.host}:{args.port}: {reason}; "
                "choose another --port (0 picks a free one)\n",
            )
        print(f"vault URL:    {emulator.vault_url}", flush=True)
        print(f"CA cert path: {emulator.ca_cert_path}", flush=True)
        # The SDK derives the scope from the vault host's parent domain, as on Azure (vault.azure.net for
        # myvault.vault.azure.net); for an IP address that gives an odd URL, which only a custom credential sees.
        print(
            f"token scope:  {emulator.token_scope} (what the SDK asks its credential for here; only a custom "
            "credential sees it, MULTICLOUD_STORE_AZURE_ACCESS_TOKEN does not need it)",
            flush=True,
        )
        token = (
            "emulator-token" if args.any_token else args.token if args.token == DEFAULT_TOKEN else "<--token>"
        )
        print(
            f"  MULTICLOUD_STORE_AZURE_VAULT_URL={emulator.vault_url} "
            f"MULTICLOUD_STORE_AZURE_CA_BUNDLE={emulator.ca_cert_path} MULTICLOUD_STORE_AZURE_ACCESS_TOKEN={token}",
            flush=True,
        )
        if args.any_token:
            print("bearer token: any non-empty token", flush=True)
        elif args.token == DEFAULT_TOKEN:
            print(f"bearer token: {DEFAULT_TOKEN}", flush=True)
        else:
            print("bearer token: the one given with --token", flush=True)
        print("Press Ctrl+C to stop.", flush=True)
        stopping = threading.Event()
        # SIGTERM (docker stop, Popen.terminate) must still run stop(), which deletes the key material.
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        with contextlib.suppress(KeyboardInterrupt):
            while not stopping.wait(0.5):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

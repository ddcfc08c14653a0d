"""The ``multicloud-store`` command.

Every command builds the store from ``MULTICLOUD_STORE_*`` variables (plus ``--env-file``), exactly as the library
does. Values are never printed unless ``--reveal`` is given. Exit codes tell scripts what went wrong:

==== ==================================================
code meaning
==== ==================================================
0    success
1    unexpected error
2    invalid input or usage
3    secret not found
4    secret already exists
5    configuration error, or backend not installed
6    backend unavailable (network, throttling, 5xx)
7    permission denied by the backend
8    stored data corrupted, or in a state that forbids the call
9    migration finished with failures
==== ==================================================
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from multicloud_store.store import SecretsStore

__all__ = ["EXIT_CODES", "main"]

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_INVALID = 2
EXIT_NOT_FOUND = 3
EXIT_EXISTS = 4
EXIT_CONFIGURATION = 5
EXIT_UNAVAILABLE = 6
EXIT_PERMISSION = 7
EXIT_CORRUPTED = 8
EXIT_MIGRATION_FAILED = 9

EXIT_CODES = {
    "ok": EXIT_OK,
    "unexpected": EXIT_UNEXPECTED,
    "invalid": EXIT_INVALID,
    "not_found": EXIT_NOT_FOUND,
    "exists": EXIT_EXISTS,
    "configuration": EXIT_CONFIGURATION,
    "unavailable": EXIT_UNAVAILABLE,
    "permission": EXIT_PERMISSION,
    "corrupted": EXIT_CORRUPTED,
    "migration_failed": EXIT_MIGRATION_FAILED,
}


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


def _exit_code(exc: BaseException) -> int:
    from multicloud_store import errors

    table: list[tuple[type[BaseException], int]] = [
        (errors.SecretNotFoundError, EXIT_NOT_FOUND),
        (errors.SecretExistsError, EXIT_EXISTS),
        (errors.InvalidSecretError, EXIT_INVALID),
        (errors.ConfigurationError, EXIT_CONFIGURATION),
        (errors.BackendPermissionError, EXIT_PERMISSION),
        (errors.BackendUnavailableError, EXIT_UNAVAILABLE),
        (errors.SecretCorruptedError, EXIT_CORRUPTED),
        (errors.SecretStateError, EXIT_CORRUPTED),
        (UsageError, EXIT_INVALID),
    ]
    for cls, code in table:
        if isinstance(exc, cls):
            return code
    return EXIT_UNEXPECTED


# -- input ----------------------------------------------------------------------------------------------------


def _environ(args: argparse.Namespace) -> dict[str, str]:
    environ = dict(os.environ)
    if args.env_file:
        from multicloud_store.settings import read_env_file

        environ.update(read_env_file(args.env_file))
    return environ


def _parse_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise UsageError(
            "the secret id must be a UUID (for example 8c9e1f52-2d5f-4c5e-9d0e-4b7c1d1f0a11)"
        ) from None


def _read_values(args: argparse.Namespace, stdin: TextIO) -> dict[str, str]:
    values: dict[str, str] = {}
    sources = [bool(args.pairs), bool(args.file), bool(args.stdin)]
    if sum(sources) > 1:
        raise UsageError("give values either as KEY=VALUE arguments, --file, or --stdin, not several")
    if args.file or args.stdin:
        try:
            if args.stdin:
                document = json.load(stdin)
            else:
                with open(args.file, encoding="utf-8") as handle:
                    document = json.load(handle)
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
        except ValueError as exc:
            # json's message quotes no document text beyond a position: safe to show.
            raise UsageError(
                f"the values are not valid JSON ({type(exc).__name__} at {_position(exc)})"
            ) from None
        if not isinstance(document, dict):
            raise UsageError("the JSON document must be an object of string keys to string values")
        return document  # validated by the store
    for pair in args.pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"argument #{len(values) + 1} is not KEY=VALUE")
        values[key] = value
    return values


def _position(exc: ValueError) -> str:
    line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    return f"line {line}, column {column}" if line is not None else "unknown position"


# -- output ---------------------------------------------------------------------------------------------------


def _emit(args: argparse.Namespace, out: TextIO, data: Mapping[str, Any], text: str) -> None:
    if args.json:
        out.write(json.dumps(data, ensure_ascii=False, indent=None, default=str) + "\n")
    elif text:
        out.write(text + ("" if text.endswith("\n") else "\n"))


# -- commands -------------------------------------------------------------------------------------------------


def _store(args: argparse.Namespace) -> SecretsStore:
    from multicloud_store.store import SecretsStore

    return SecretsStore.from_env(_environ(args))


def cmd_info(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Print the resolved backend and settings, credentials redacted; no network call."""
    from multicloud_store import __version__
    from multicloud_store.registry import available_backends, load_driver_class
    from multicloud_store.settings import StoreSettings, describe_settings

    environ = _environ(args)
    settings = StoreSettings.from_environ(environ)
    driver_class = load_driver_class(settings.backend)
    driver_settings = driver_class.settings_class.from_environ(environ)
    described = describe_settings(settings, driver_settings)
    data = {
        "version": __version__,
        "backend": settings.backend,
        "driver": f"{driver_class.__module__}.{driver_class.__qualname__}",
        "settings": described,
        "available_backends": available_backends(),
    }
    width = max(map(len, described), default=0)
    lines = [
        f"multicloud-store {__version__}",
        f"backend: {settings.backend} ({data['driver']})",
        "settings:",
        *(f"  {name.ljust(width)}  {value}" for name, value in described.items()),
        "available backends: " + ", ".join(available_backends()),
    ]
    _emit(args, out, data, "\n".join(lines))
    return EXIT_OK


def cmd_check(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Run a live round trip of all four interface calls on a throw-away id, with timings."""
    store = _store(args)
    sid = uuid.uuid4()
    steps: list[dict[str, Any]] = []
    stored = False

    def step(name: str, func: Callable[[], object]) -> object:
        started = time.perf_counter()
        result = func()
        steps.append({"step": name, "ms": round((time.perf_counter() - started) * 1000, 2)})
        return result

    from multicloud_store.errors import BackendError

    probe = {"probe": uuid.uuid4().hex}
    try:
        step("health_check", store.check)
        step("store_secret_values", lambda: store.store_secret_values(sid, probe))
        stored = True
        if step("get_secret_values", lambda: store.get_secret_values(sid)) != probe:
            raise BackendError("check failed: the values read back differ from the values written")
        step("update_secret_values", lambda: store.update_secret_values(sid, {"probe": "updated"}))
        if store.get_secret_values(sid) != {"probe": "updated"}:
            raise BackendError(
                "check failed: the values read back after the update differ from the values written"
            )
        step("delete_secret_values", lambda: store.delete_secret_values(sid))
        stored = False
        if store.secret_exists(sid):
            raise BackendError("check failed: the secret is still readable after delete")
    finally:
        if stored:
            # Best-effort clean-up: the original error is what the user must see.
            with contextlib.suppress(Exception):
                store.delete_secret_values(sid)
        store.close()
    text = "\n".join(
        [
            f"backend {store.backend}: ok (probe id {sid})",
            *(f"  {s['step']:<22} {s['ms']:>9.2f} ms" for s in steps),
        ]
    )
    _emit(args, out, {"backend": store.backend, "ok": True, "secret_id": str(sid), "steps": steps}, text)
    return EXIT_OK


def cmd_put(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Store a new secret."""
    sid = _parse_id(args.id) if args.id else uuid.uuid4()
    values = _read_values(args, stdin)
    with _store(args) as store:
        store.store_secret_values(sid, values)
    _emit(args, out, {"id": str(sid), "keys": sorted(values)}, f"stored {sid} ({len(values)} keys)")
    return EXIT_OK


def cmd_update(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Replace the values of a secret."""
    sid = _parse_id(args.id)
    values = _read_values(args, stdin)
    with _store(args) as store:
        store.update_secret_values(sid, values)
    _emit(args, out, {"id": str(sid), "keys": sorted(values)}, f"updated {sid} ({len(values)} keys)")
    return EXIT_OK


def cmd_get(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Print a secret's keys, or its values with --reveal."""
    sid = _parse_id(args.id)
    with _store(args) as store:
        values = store.get_secret_values(sid)
    if args.reveal:
        _emit(args, out, {"id": str(sid), "values": values}, "\n".join(f"{k}={v}" for k, v in values.items()))
    else:
        _emit(args, out, {"id": str(sid), "keys": sorted(values)}, "\n".join(sorted(values)))
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Delete a secret."""
    sid = _parse_id(args.id)
    with _store(args) as store:
        store.delete_secret_values(sid)
    _emit(args, out, {"id": str(sid), "deleted": True}, f"deleted {sid}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Print this deployment's secret ids, streaming."""
    count = 0
    with _store(args) as store:
        for sid in store.list_secret_ids():
            count += 1
            out.write((json.dumps({"id": str(sid)}) if args.json else str(sid)) + "\n")
    if not args.json:
        sys.stderr.write(f"{count} secrets\n")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Copy every secret of a deployment from one configuration to another."""
    from multicloud_store.migrate import run_migrate_command

    return run_migrate_command(args, out)


# -- parser ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser.

    Returns:
        The parser.
    """
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: the option may come before or after the command without the subparser resetting it.
    common.add_argument(
        "--env-file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="read MULTICLOUD_STORE_* variables from FILE too",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output (JSON)"
    )

    parser = argparse.ArgumentParser(
        prog="multicloud-store",
        description="One secrets store for AWS, GCP, Azure and a local file; the backend is chosen by "
        "MULTICLOUD_STORE_BACKEND.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    add("info", cmd_info, "show the resolved backend and settings (credentials redacted)")
    add("check", cmd_check, "round-trip store, get, update and delete on a throw-away secret, with timings")

    def add_values(command: argparse.ArgumentParser) -> None:
        command.add_argument("pairs", nargs="*", metavar="KEY=VALUE", help="values as arguments")
        command.add_argument("--file", metavar="FILE.json", help="values from a JSON object in a file")
        command.add_argument(
            "--stdin", action="store_true", help="values from a JSON object on standard input"
        )

    put = add("put", cmd_put, "store a new secret")
    put.add_argument("--id", help="the secret's UUID (default: a new random one, printed)")
    add_values(put)
    update = add("update", cmd_update, "replace all values of a secret")
    update.add_argument("id", help="the secret's UUID")
    add_values(update)
    get = add("get", cmd_get, "print a secret's keys (values only with --reveal)")
    get.add_argument("id", help="the secret's UUID")
    get.add_argument("--reveal", action="store_true", help="print the values too")
    delete = add("delete", cmd_delete, "delete a secret")
    delete.add_argument("id", help="the secret's UUID")
    add("list", cmd_list, "list this deployment's secret ids")

    migrate = add("migrate", cmd_migrate, "copy every secret of this deployment to another backend")
    source = migrate.add_mutually_exclusive_group(required=True)
    source.add_argument("--source-env-file", metavar="FILE", help="source configuration as an env file")
    source.add_argument(
        "--source-prefix",
        metavar="PREFIX",
        help="source configuration from variables PREFIX<NAME>, e.g. SRC_",
    )
    migrate.add_argument(
        "--source-layout",
        choices=["multicloud-store", "zenml"],
        default="multicloud-store",
        help="'zenml' reads the layout of ZenML's built-in AWS, GCP or Azure secrets store (the source's "
        "MULTICLOUD_STORE_BACKEND picks the cloud)",
    )
    target = migrate.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-env-file", metavar="FILE", help="target configuration as an env file")
    target.add_argument(
        "--target-prefix", metavar="PREFIX", help="target configuration from variables PREFIX<NAME>"
    )
    migrate.add_argument("--dry-run", action="store_true", help="report what would be copied; write nothing")
    migrate.add_argument(
        "--delete-source",
        action="store_true",
        help="after a full, verified, failure-free run, delete the sources",
    )
    migrate.add_argument("--workers", type=int, default=8, help="concurrent copies (default 8)")
    migrate.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stdin: TextIO | None = None
) -> int:
    """Run the command line.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
        stdout: Where results go (default: standard output).
        stdin: Where ``--stdin`` reads (default: standard input).

    Returns:
        The exit code.
    """
    out = stdout or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    args.json = getattr(args, "json", False)
    args.env_file = getattr(args, "env_file", None)
    try:
        return int(args.handler(args, out, stdin or sys.stdin))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as exc:
        from multicloud_store.errors import MultiCloudStoreError

        code = _exit_code(exc)
        if code == EXIT_UNEXPECTED and not isinstance(exc, MultiCloudStoreError):
            # Unexpected: name the type only; a foreign exception's text could carry anything.
            sys.stderr.write(f"error: unexpected {type(exc).__name__}; rerun with MULTICLOUD_STORE_DEBUG=1\n")
            if os.environ.get("MULTICLOUD_STORE_DEBUG"):
                raise
        else:
            sys.stderr.write(f"error: {exc}\n")
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

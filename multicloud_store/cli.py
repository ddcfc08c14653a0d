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
9    migration finished with failures, or source secrets remain after ``--delete-source``
130  interrupted (Ctrl-C)
141  standard output closed early (a pipe into ``head``): the command stops quietly
==== ==================================================

With ``--json``, results are JSON on standard output and errors are one JSON object on standard error.
``MULTICLOUD_STORE_DEBUG=1`` shows the traceback of an unexpected error and the library's debug log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

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
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe

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
    "interrupted": EXIT_INTERRUPTED,
    "broken_pipe": EXIT_BROKEN_PIPE,
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
    """Return the process variables overlaid with ``--env-file``.

    A variable in the file wins over the same one in the process environment: the file is the explicit choice
    on this command line.
    """
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


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object hook that refuses a key given twice (json keeps the last one silently)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise UsageError(f"key {key!r} is given twice in the JSON document")
        seen[key] = value
    return seen


def _prompt_values(stdin: TextIO) -> dict[str, str]:
    """Ask for keys and hidden values on the terminal, until an empty key."""
    import getpass

    values: dict[str, str] = {}
    sys.stderr.write("enter the values; an empty key ends (values are not echoed)\n")
    while True:
        sys.stderr.write(f"key #{len(values) + 1}: ")
        sys.stderr.flush()
        key = stdin.readline()
        if not key or not key.rstrip("\r\n"):
            return values
        key = key.rstrip("\r\n")
        if key in values:
            raise UsageError(f"key {key!r} is given twice")
        values[key] = getpass.getpass(f"value of {key!r}: ", stream=sys.stderr)


def _read_values(args: argparse.Namespace, stdin: TextIO) -> dict[str, str]:
    sources = [bool(args.pairs), bool(args.file), bool(args.stdin)]
    if sum(sources) > 1:
        raise UsageError("give values either as KEY=VALUE arguments, --file, or --stdin, not several")
    if args.stdin and stdin.isatty():
        values = _prompt_values(stdin)
    elif args.file or args.stdin:
        try:
            if args.stdin:
                document = json.load(stdin, object_pairs_hook=_no_duplicates)
            else:
                with open(args.file, encoding="utf-8") as handle:
                    document = json.load(handle, object_pairs_hook=_no_duplicates)
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
        except ValueError as exc:
            # json's message quotes no document text beyond a position: safe to show.
            raise UsageError(
                f"the values are not valid JSON ({type(exc).__name__} at {_position(exc)})"
            ) from None
        if not isinstance(document, dict):
            raise UsageError("the JSON document must be an object of string keys to string values")
        values = document  # types validated by the store
    else:
        values = {}
        for number, pair in enumerate(args.pairs or [], start=1):
            key, sep, value = pair.partition("=")
            if not sep:
                raise UsageError(f"argument #{number} is not KEY=VALUE")
            if not key:
                raise UsageError(f"argument #{number} has an empty key")
            if key in values:
                raise UsageError(f"argument #{number} repeats key {key!r}: give each key once")
            values[key] = value
    if not values and not args.allow_empty:
        raise UsageError(
            "no values given: add KEY=VALUE arguments, --file or --stdin (--allow-empty stores an empty secret)"
        )
    return values


def _position(exc: ValueError) -> str:
    line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    return f"line {line}, column {column}" if line is not None else "unknown position"


def _confirm(question: str, args: argparse.Namespace, stdin: TextIO) -> None:
    """Ask on the terminal, or require ``--yes`` when there is none to ask on."""
    if args.yes:
        return
    if not stdin.isatty():
        raise UsageError(f"{question} Standard input is not a terminal: add --yes to confirm")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    if stdin.readline().strip().lower() not in ("y", "yes"):
        raise UsageError("not confirmed; nothing was deleted")


# -- output ---------------------------------------------------------------------------------------------------


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _emit(args: argparse.Namespace, out: TextIO, data: Mapping[str, Any], text: str) -> None:
    if args.json:
        out.write(json.dumps(data, ensure_ascii=False, indent=None, default=str) + "\n")
    elif text:
        out.write(text + ("" if text.endswith("\n") else "\n"))


def _needs_quoting(text: str) -> bool:
    return any(c in text for c in '=\n\r"\\') or text != text.strip() or not text.isprintable()


def _reveal_line(key: str, value: str) -> tuple[str, bool]:
    """``key=value``, with each side that could be misread (a newline, ``=``, a quote) as a JSON string."""
    quoted = False
    if _needs_quoting(key):
        key, quoted = json.dumps(key, ensure_ascii=False), True
    if value and _needs_quoting(value):
        value, quoted = json.dumps(value, ensure_ascii=False), True
    return f"{key}={value}", quoted


def _warn(args: argparse.Namespace, text: str) -> None:
    if args.json:
        sys.stderr.write(json.dumps({"warning": text}, ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"warning: {text}\n")


# -- commands -------------------------------------------------------------------------------------------------


def _store(args: argparse.Namespace) -> SecretsStore:
    from multicloud_store.store import SecretsStore

    store = SecretsStore.from_env(_environ(args))
    if store.backend == "memory":
        _warn(args, "the memory backend keeps secrets in this process only: nothing outlives this command")
    return store


def cmd_info(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Print the resolved backend and settings, credentials redacted; no network call."""
    from multicloud_store import __version__
    from multicloud_store.drivers.local import default_path
    from multicloud_store.registry import (
        KNOWN_DISTRIBUTIONS,
        install_command,
        installed_backends,
        load_driver_class,
    )
    from multicloud_store.settings import StoreSettings, describe_settings, unknown_variables

    environ = _environ(args)
    settings = StoreSettings.from_environ(environ)
    driver_class = load_driver_class(settings.backend)
    driver_settings = driver_class.settings_class.from_environ(environ)
    described = describe_settings(settings, driver_settings)
    installed = installed_backends()
    installable = {
        name: install_command(name) or "" for name in sorted(KNOWN_DISTRIBUTIONS) if name not in installed
    }
    unknown = unknown_variables(environ)
    data = {
        "version": __version__,
        "backend": settings.backend,
        "driver": f"{driver_class.__module__}.{driver_class.__qualname__}",
        "settings": described,
        "installed_backends": installed,
        "installable_backends": installable,
        "default_local_path": str(default_path()),
        "unknown_variables": unknown,
    }
    width = max(map(len, described), default=0)
    lines = [
        f"multicloud-store {__version__}",
        f"backend: {settings.backend} ({data['driver']})",
        "settings:",
        *(f"  {name.ljust(width)}  {value}" for name, value in described.items()),
        f"default local store path: {data['default_local_path']} (MULTICLOUD_STORE_LOCAL_PATH overrides it)",
        "installed backends: " + ", ".join(installed),
    ]
    if installable:
        lines.append("installable backends:")
        lines.extend(f"  {name}: {command}" for name, command in installable.items())
    if unknown:
        from multicloud_store.settings import unknown_variable_message

        lines.append("unknown variables (ignored):")
        lines.extend(f"  {unknown_variable_message(name, hint)}" for name, hint in unknown.items())
    if settings.backend == "memory":
        _warn(args, "the memory backend keeps secrets in this process only: nothing outlives this command")
    _emit(args, out, data, "\n".join(lines))
    return EXIT_OK


def _eventually(read: Callable[[], object], wanted: object, wait_seconds: float) -> float | None:
    """Re-read until ``read()`` returns ``wanted`` or the wait is over.

    Returns:
        Seconds it took (0.0 when the first read was right), or None when it never was.
    """
    started = time.monotonic()
    delay = 0.1
    first = True
    while True:
        if read() == wanted:
            return 0.0 if first else time.monotonic() - started
        first = False
        left = wait_seconds - (time.monotonic() - started)
        if left <= 0:
            return None
        time.sleep(min(delay, left))  # the service documents eventual consistency: back off, bounded
        delay = min(delay * 2, 2.0)


def _probe(args: argparse.Namespace, out: TextIO) -> int:
    """One cheap authenticated call (the driver's health check), bounded by --timeout; one JSON line.

    The call runs in a daemon thread: a backend that never answers cannot hold the probe past its timeout, and
    the process exits without waiting for it.
    """
    from multicloud_store.errors import MultiCloudStoreError
    from multicloud_store.observability import outcome_of

    found: dict[str, Any] = {}

    def run() -> None:
        try:
            store = _store(args)
            found["backend"] = store.backend
            called = time.perf_counter()
            try:
                store.check()
            finally:
                # The latency is the call's: building the store (imports, settings) is not the backend's.
                found["seconds"] = time.perf_counter() - called
                store.close()
        except BaseException as exc:  # reported below; a daemon thread has nobody else to tell
            found["error"] = exc

    thread = threading.Thread(target=run, name="multicloud-store-probe", daemon=True)
    thread.start()
    thread.join(args.timeout)
    line: dict[str, Any] = {
        "outcome": "ok",
        "backend": found.get("backend"),
        "latency_ms": None,
        "error": None,
    }
    if thread.is_alive():
        line.update(outcome="timeout", error="timeout")
        line["message"] = f"no answer within {args.timeout:g} s (--timeout)"
        code = EXIT_UNAVAILABLE
    else:
        seconds = found.get("seconds")
        line["latency_ms"] = round(seconds * 1000, 1) if seconds is not None else None
        error = found.get("error")
        code = EXIT_OK
        if error is not None:
            code = _exit_code(error)
            line.update(outcome=outcome_of(error), error=type(error).__name__)
            # A foreign exception's text could carry anything: its type only, as for every error.
            line["message"] = _error_text(error) if isinstance(error, MultiCloudStoreError) else None
    out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return code


def cmd_check(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Run a live round trip of all four interface calls on a throw-away id, with timings."""
    from multicloud_store.errors import BackendError, SecretNotFoundError

    if args.probe:
        return _probe(args, out)
    store = _store(args)
    sid = uuid.uuid4()
    steps: list[dict[str, Any]] = []
    guarantees: dict[str, str] = {}
    stored = False

    def step(name: str, func: Callable[[], object]) -> object:
        started = time.perf_counter()
        result = func()
        steps.append({"step": name, "ms": round((time.perf_counter() - started) * 1000, 2)})
        return result

    def observed(what: str, lag: float | None) -> None:
        if lag is None:
            raise BackendError(
                f"check failed: {what} not seen within {args.wait:g} s (--wait); the backend does not give "
                "the guarantee the store documents"
            )
        guarantees[what] = "immediate" if lag == 0 else f"eventual (seen after {lag:.1f} s)"

    def current() -> object:
        try:
            return store.get_secret_values(sid)
        except SecretNotFoundError:
            return None

    probe = {"probe": uuid.uuid4().hex}
    try:
        step("health_check", store.check)
        step("store_secret_values", lambda: store.store_secret_values(sid, probe))
        stored = True
        # Read-after-create is strict on every backend: a created secret is never "not found".
        if step("get_secret_values", lambda: store.get_secret_values(sid)) != probe:
            raise BackendError("check failed: the values read back differ from the values written")
        guarantees["read-after-create"] = "immediate"
        updated = {"probe": "updated"}
        step("update_secret_values", lambda: store.update_secret_values(sid, updated))
        # Read-after-update may lag where the service documents it (GCP's `latest` alias): wait, bounded.
        observed("read-after-update", _eventually(current, updated, args.wait))
        step("delete_secret_values", lambda: store.delete_secret_values(sid))
        stored = False
        observed("read-after-delete", _eventually(current, None, args.wait))
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
            "guarantees tested:",
            *(f"  {name:<22} {result}" for name, result in guarantees.items()),
        ]
    )
    data = {
        "backend": store.backend,
        "ok": True,
        "secret_id": str(sid),
        "steps": steps,
        "guarantees": guarantees,
        "wait_seconds": args.wait,
    }
    _emit(args, out, data, text)
    return EXIT_OK


def cmd_put(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Store a new secret."""
    sid = _parse_id(args.id) if args.id else uuid.uuid4()
    values = _read_values(args, stdin)
    with _store(args) as store:
        _check_size(store, sid, values, generated=not args.id)
        store.store_secret_values(sid, values)
    _emit(
        args, out, {"id": str(sid), "keys": sorted(values)}, f"stored {sid} ({_plural(len(values), 'key')})"
    )
    return EXIT_OK


def _check_size(store: SecretsStore, sid: uuid.UUID, values: dict[str, str], *, generated: bool) -> None:
    """Refuse values too large for the backend in the user's terms, before any call."""
    from multicloud_store.errors import InvalidSecretError

    size, limit = store.payload_size(sid, values), store.driver.limits.max_payload_bytes
    if size > limit:
        who = "no secret was stored and no id was created" if generated else f"secret {sid} was not written"
        raise InvalidSecretError(
            f"the values are too large for backend {store.backend!r}: the stored payload would be {size} bytes, "
            f"the limit is {limit} bytes; {who}",
            backend=store.backend,
        )


def cmd_update(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Replace the values of a secret (or, with --merge, only the keys given)."""
    sid = _parse_id(args.id)
    given = _read_values(args, stdin)
    with _store(args) as store:
        # One more read than the library call: it proves ownership (as the update does) and names what goes.
        before = store.get_secret_values(sid)
        values = {**before, **given} if args.merge else given
        _check_size(store, sid, values, generated=False)
        store.update_secret_values(sid, values)
    removed = sorted(set(before) - set(values))
    text = f"updated {sid} ({_plural(len(values), 'key')})"
    if removed:
        text += f"; removed {_plural(len(removed), 'key')}: " + ", ".join(removed)
    _emit(args, out, {"id": str(sid), "keys": sorted(values), "removed": removed}, text)
    return EXIT_OK


def cmd_get(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Print a secret's keys, or its values with --reveal."""
    sid = _parse_id(args.id)
    with _store(args) as store:
        values = store.refresh(sid) if args.refresh else store.get_secret_values(sid)
    if args.reveal:
        lines = [_reveal_line(k, v) for k, v in values.items()]
        if any(quoted for _, quoted in lines) and not args.json:
            _warn(
                args,
                "some keys or values hold '=', a newline or a quote: those are printed as JSON strings; "
                "use --json for output a program reads",
            )
        _emit(args, out, {"id": str(sid), "values": values}, "\n".join(line for line, _ in lines))
    else:
        _emit(args, out, {"id": str(sid), "keys": sorted(values)}, "\n".join(sorted(values)))
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Delete a secret; with --force, also one that fails its integrity check."""
    sid = _parse_id(args.id)
    with _store(args) as store:
        if args.force:
            _confirm(
                f"delete secret {sid} from backend {store.backend!r} even if its payload cannot be read?",
                args,
                stdin,
            )
            corrupted = store.delete_corrupted(sid)
        else:
            store.delete_secret_values(sid)
            corrupted = False
    text = f"deleted {sid}" + (" (it failed its integrity check)" if corrupted else "")
    _emit(args, out, {"id": str(sid), "deleted": True, "corrupted": corrupted}, text)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Print this deployment's secret ids, streaming."""
    count = 0
    with _store(args) as store:
        for sid in store.list_secret_ids():
            count += 1
            out.write((json.dumps({"id": str(sid)}) if args.json else str(sid)) + "\n")
    if not args.json:
        sys.stderr.write(f"{_plural(count, 'secret')}\n")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Copy every secret of a deployment from one configuration to another."""
    if args.dry_run and args.delete_source:
        raise UsageError("--dry-run and --delete-source cannot be combined: a dry run deletes nothing")
    from multicloud_store.migrate import run_migrate_command

    return run_migrate_command(args, out)


def cmd_rotate_key(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Re-encrypt every secret under the newest key (``--new``: make that key first); backends that seal rows."""
    from multicloud_store.errors import ConfigurationError

    store = _store(args)
    try:
        driver: Any = store.driver
        if not hasattr(driver, "rotate_keys"):
            raise ConfigurationError(
                f"backend {store.backend!r} has no keys of its own to rotate (rotate-key works with backends "
                "that encrypt their rows, such as local); rotate keys with the cloud's own key management",
                variable="MULTICLOUD_STORE_BACKEND",
            )
        added = driver.add_new_key(args.key_id) if args.new else None
        show = not (args.no_progress or args.json)

        def progress(done: int, total: int) -> None:
            if show:
                sys.stderr.write(f"\rre-encrypting: {done}/{total} rows")
                sys.stderr.flush()

        report = driver.rotate_keys(progress)
        if show:
            sys.stderr.write("\n")
    finally:
        store.close()
    lines = []
    if added:
        lines.append(f"new key {added} added in front of the keys; every write now uses it")
    lines.append(
        f"re-encrypted {report.rewritten} rows under key {report.newest_id}"
        + (f" ({report.skipped} were rewritten by other writers meanwhile)" if report.skipped else "")
    )
    if report.failed:
        lines.append(
            f"{report.failed} rows could not be opened (damaged, or sealed with a key not configured)"
        )
    if report.remaining:
        counts = ", ".join(f"{key}: {n}" for key, n in sorted(report.remaining.items()))
        lines.append(
            f"still under older keys ({counts}): processes still running with the old keys wrote them; "
            "restart them with the new keys and run rotate-key again"
        )
    else:
        lines.append(f"every row is under key {report.newest_id}")
    if report.removable:
        lines.append(
            "no row uses key(s) "
            + ", ".join(report.removable)
            + " any more: remove them from the key file (or "
            "the key variable) once every process runs with the new key"
        )
    data = {
        "added_key": added,
        "newest_key": report.newest_id,
        "rewritten": report.rewritten,
        "skipped": report.skipped,
        "failed": report.failed,
        "remaining": report.remaining,
        "removable_keys": list(report.removable),
        "complete": report.complete,
    }
    _emit(args, out, data, "\n".join(lines))
    return EXIT_CORRUPTED if report.failed else EXIT_OK


# -- parser ---------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors go through `main`'s error path (exit 2, JSON with --json)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds, got {value:g}")
    return value


def _probe_timeout(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser.

    Returns:
        The parser.
    """
    from multicloud_store import __version__

    common = _Parser(add_help=False)
    # SUPPRESS: the option may come before or after the command without the subparser resetting it.
    common.add_argument(
        "--env-file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="read MULTICLOUD_STORE_* variables from FILE too; a variable in FILE wins over the same variable "
        "in the process environment",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable output (JSON); errors become one JSON object on standard error",
    )

    parser = _Parser(
        prog="multicloud-store",
        description="One secrets store for AWS, GCP, Azure and a local file; the backend is chosen by "
        "MULTICLOUD_STORE_BACKEND.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"multicloud-store {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def add(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    add("info", cmd_info, "show the resolved backend and settings (credentials redacted)")
    check = add(
        "check", cmd_check, "round-trip store, get, update and delete on a throw-away secret, with timings"
    )
    check.add_argument(
        "--wait",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long a read after an update or delete may lag, where the service documents eventual "
        "consistency, before the check fails (default 30)",
    )
    check.add_argument(
        "--probe",
        action="store_true",
        help="only one cheap authenticated call (for a liveness or readiness probe): prints one JSON line "
        "with the outcome, latency and error class; exit 0 when healthy",
    )
    check.add_argument(
        "--timeout",
        type=_probe_timeout,
        default=5.0,
        metavar="SECONDS",
        help="with --probe: give up after this long with outcome 'timeout' and exit code 6 (default 5)",
    )

    def add_values(command: argparse.ArgumentParser) -> None:
        command.add_argument("pairs", nargs="*", metavar="KEY=VALUE", help="values as arguments")
        command.add_argument("--file", metavar="FILE.json", help="values from a JSON object in a file")
        command.add_argument(
            "--stdin",
            action="store_true",
            help="values from a JSON object on standard input; on a terminal, asks for each key and its value "
            "(not echoed)",
        )
        command.add_argument(
            "--allow-empty", action="store_true", help="accept no values at all (an empty secret)"
        )

    put = add("put", cmd_put, "store a new secret")
    put.add_argument("--id", help="the secret's UUID (default: a new random one, printed)")
    add_values(put)
    update = add(
        "update", cmd_update, "replace all values of a secret (or, with --merge, only the keys given)"
    )
    update.add_argument("id", help="the secret's UUID")
    add_values(update)
    update.add_argument(
        "--merge", action="store_true", help="change only the keys given; keep every other key"
    )
    get = add("get", cmd_get, "print a secret's keys (values only with --reveal)")
    get.add_argument("id", help="the secret's UUID")
    get.add_argument("--reveal", action="store_true", help="print the values too")
    get.add_argument(
        "--refresh",
        action="store_true",
        help="read from the backend now, bypassing the read cache (SecretsStore.refresh)",
    )
    delete = add("delete", cmd_delete, "delete a secret")
    delete.add_argument("id", help="the secret's UUID")
    delete.add_argument(
        "--force",
        action="store_true",
        help="also delete a secret of this deployment that fails its integrity check (its labels prove "
        "ownership); asks first",
    )
    delete.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    add("list", cmd_list, "list this deployment's secret ids")
    rotate = add(
        "rotate-key", cmd_rotate_key, "re-encrypt every secret under the newest key (local and sql backends)"
    )
    rotate.add_argument(
        "--new", action="store_true", help="first generate a new key and put it in front of the key file"
    )
    rotate.add_argument(
        "--key-id", metavar="ID", help="the new key's id (with --new; default k<date>-<random>)"
    )
    rotate.add_argument("--no-progress", action="store_true", help="no progress on standard error")

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
        help="after a full, verified, failure-free run, delete the copied secrets from the source",
    )
    migrate.add_argument(
        "--workers", type=_positive_int, default=8, metavar="N", help="concurrent copies (default 8)"
    )
    migrate.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


class _StderrHandler(logging.Handler):
    """The library's warnings (an unknown variable, a stale cache served) on standard error, one line each."""

    def __init__(self, as_json: bool) -> None:
        super().__init__(logging.DEBUG)
        self.as_json = as_json

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            level = record.levelname.lower()
            line = json.dumps({level: text}, ensure_ascii=False) if self.as_json else f"{level}: {text}"
            sys.stderr.write(line + "\n")
        except Exception:  # logging must never break the command
            self.handleError(record)


@contextlib.contextmanager
def _log_to_stderr(as_json: bool, debug: bool) -> Iterator[None]:
    """Show the library's warnings (and, with debug, its debug log) on stderr for the length of one command.

    The handler and level are put back afterwards, so calling `main` in a process changes nothing for it.
    """
    library = logging.getLogger("multicloud_store")
    handler, level = _StderrHandler(as_json), library.level
    library.addHandler(handler)
    library.setLevel(logging.DEBUG if debug else logging.WARNING)
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.setLevel(level)


def _error_text(exc: BaseException) -> str:
    """The message in the user's terms: the id they typed, never a backend name for a missing secret."""
    from multicloud_store.errors import SecretNotFoundError

    if isinstance(exc, SecretNotFoundError) and exc.secret_id is not None:
        return f"secret {exc.secret_id} not found"
    return str(exc)


def _report_error(exc: BaseException, code: int, as_json: bool) -> None:
    from multicloud_store.errors import MultiCloudStoreError

    expected = code != EXIT_UNEXPECTED or isinstance(exc, MultiCloudStoreError)
    # Unexpected: name the type only; a foreign exception's text could carry anything.
    text = (
        _error_text(exc)
        if expected
        else f"unexpected {type(exc).__name__}; rerun with MULTICLOUD_STORE_DEBUG=1"
    )
    if as_json:
        error: dict[str, Any] = {"type": type(exc).__name__, "message": text, "exit_code": code}
        for attribute in ("secret_id", "backend", "variable"):
            value = getattr(exc, attribute, None)
            if value is not None:
                error[attribute] = str(value)
        sys.stderr.write(json.dumps({"error": error}, ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"error: {text}\n")


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


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
    arguments = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in arguments
    debug = bool(os.environ.get("MULTICLOUD_STORE_DEBUG"))
    with _log_to_stderr(as_json, debug):
        return _run(arguments, out, stdin, as_json=as_json, debug=debug)


def _run(arguments: list[str], out: TextIO, stdin: TextIO | None, *, as_json: bool, debug: bool) -> int:
    try:
        parser = build_parser()
        args, extras = parser.parse_known_args(arguments)
        # argparse fills KEY=VALUE positionals before an option (`update ID --merge k=v`): take the rest too.
        if hasattr(args, "pairs") and extras and not any(e.startswith("-") for e in extras):
            args.pairs = [*(args.pairs or []), *extras]
        elif extras:
            # Name each extra by its key only: a stray KEY=VALUE (or --opt=VALUE) must not echo its value.
            shown = [e.partition("=")[0] + ("=..." if "=" in e else "") for e in extras]
            parser.error("unrecognized arguments: " + " ".join(shown))
        args.json = getattr(args, "json", False)
        args.env_file = getattr(args, "env_file", None)
        code = int(args.handler(args, out, stdin or sys.stdin))
        out.flush()
        return code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other Unix tools do.
        if out is sys.stdout:
            _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        code = _exit_code(exc)
        _report_error(exc, code, as_json)
        if code == EXIT_UNEXPECTED and debug:
            raise
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Copy every secret of a deployment from one backend configuration to another, keeping the ids.

The copy streams ids from the source and keeps at most ``2 x workers`` secrets in flight, so memory stays flat
however many secrets there are. Each secret is read from the source, compared with the target (identical copies
are skipped, which makes a rerun resume where the last one stopped), written, and read back to verify. The source
is deleted only with ``delete_source`` and only after a run in which every secret verified: the deletion pass
works through the ids this run copied (never a listing that changes while it deletes), re-checks each against
the target before deleting it, then lists the source once more and reports every id still there.

A source secret that fails its integrity check is reported apart from other failures (it cannot be copied, and
it blocks the deletion of the source until it is removed with ``multicloud-store delete --force``). Copying a
store onto itself (same backend, location, deployment and prefix) is refused before any call.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO
from uuid import UUID

from multicloud_store.errors import (
    MultiCloudStoreError,
    SecretCorruptedError,
    SecretIncompleteError,
    SecretNotFoundError,
)
from multicloud_store.observability import SWITCH, traced_migration

if TYPE_CHECKING:
    import argparse

    from multicloud_store.store import SecretsStore

__all__ = ["MigrationReport", "MigrationSource", "SameStoreError", "environ_from_prefix", "migrate"]

logger = logging.getLogger("multicloud_store.migrate")

Action = Literal["created", "updated", "skipped", "failed", "corrupted", "empty"]


class SameStoreError(ValueError):
    """Source and target are the same store: copying it onto itself and deleting the source would empty it."""


class MigrationSource(Protocol):
    """Where a migration reads from. `SecretsStore` is one; `ZenmlLayoutSource` reads ZenML's built-in layout."""

    def list_secret_ids(self) -> Iterator[UUID]:
        """Yield every id to copy, lazily."""
        ...

    def get_secret_values(self, secret_id: UUID) -> dict[str, str]:
        """Read one secret's values."""
        ...

    def delete_secret_values(self, secret_id: UUID) -> None:
        """Delete one secret (only after a fully verified run, with ``delete_source``)."""
        ...


@dataclass
class MigrationReport:
    """What a migration did.

    Attributes:
        created: Secrets written to the target for the first time.
        updated: Secrets whose target copy differed and was replaced.
        skipped: Secrets already identical in the target.
        failed: Ids that could not be copied or verified, with the error's type and message (no values).
        corrupted: Source ids whose secret fails its integrity check (not copied), with the message.
        empty: Source ids that are listed but hold no value: the leftover of a store interrupted between its
            steps (GCP). Nothing to copy; ``delete_source`` deletes them with the rest.
        deleted: Source secrets deleted after the run (``delete_source``).
        remaining: With ``delete_source``: ids the source still lists after the deletion pass.
        deletion_skipped: With ``delete_source``: why the source was not deleted, or None.
        copied: Ids whose target copy is verified identical (created, updated or skipped), in completion order.
        dry_run: Nothing was written.
        seconds: Wall time.
    """

    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: dict[UUID, str] = field(default_factory=dict)
    corrupted: dict[UUID, str] = field(default_factory=dict)
    empty: list[UUID] = field(default_factory=list)
    deleted: int = 0
    remaining: list[UUID] = field(default_factory=list)
    deletion_skipped: str | None = None
    copied: list[UUID] = field(default_factory=list, repr=False)
    dry_run: bool = False
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Ids seen."""
        return (
            self.created
            + self.updated
            + self.skipped
            + len(self.failed)
            + len(self.corrupted)
            + len(self.empty)
        )

    @property
    def ok(self) -> bool:
        """True when every secret was copied and, with ``delete_source``, the source is empty of them."""
        return not self.failed and not self.corrupted and not self.remaining


class _SourceEmpty(Exception):
    """The source lists the id but holds no value for it (an interrupted store)."""


class _SourceCorrupted(Exception):
    """The source's copy of a secret fails its integrity check."""

    def __init__(self, error: SecretCorruptedError) -> None:
        super().__init__(str(error))
        self.error = error


def _copy_one(source: MigrationSource, target: SecretsStore, sid: UUID, dry_run: bool) -> Action:
    try:
        values = source.get_secret_values(sid)
    except SecretCorruptedError as exc:
        raise _SourceCorrupted(exc) from exc
    except SecretIncompleteError:
        raise _SourceEmpty from None
    try:
        current: dict[str, str] | None = target.get_secret_values(sid)
    except SecretNotFoundError:
        current = None
    if current == values:
        return "skipped"
    if dry_run:
        return "created" if current is None else "updated"
    if current is None:
        target.store_secret_values(sid, values)
    else:
        target.update_secret_values(sid, values)
    if target.get_secret_values(sid) != values:
        raise MultiCloudStoreError(
            f"secret {sid}: the copy read back from the target differs from the source"
        )
    return "created" if current is None else "updated"


@traced_migration
def migrate(
    source: MigrationSource,
    target: SecretsStore,
    *,
    workers: int = 8,
    dry_run: bool = False,
    delete_source: bool = False,
    on_progress: Callable[[UUID, Action], None] | None = None,
) -> MigrationReport:
    """Copy every secret from ``source`` to ``target``, preserving ids.

    Args:
        source: Where to read.
        target: Where to write.
        workers: Secrets copied concurrently.
        dry_run: Read and compare only; write nothing.
        delete_source: After a run with no failure, delete each source secret whose target copy is identical.
        on_progress: Called after each id with what was done.

    Returns:
        The report. Failures are in it, not raised: one bad secret does not stop the others.

    Raises:
        ValueError: ``workers`` is less than 1, or ``dry_run`` and ``delete_source`` are both set.
        SameStoreError: ``source`` and ``target`` are the same store (checked before any call).
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if dry_run and delete_source:
        raise ValueError("--dry-run and --delete-source cannot be combined")
    check_distinct(source, target)
    report = MigrationReport(dry_run=dry_run)
    started = time.perf_counter()
    lock = threading.Lock()

    def record(sid: UUID, action: Action, error: BaseException | None = None) -> None:
        with lock:
            if action == "failed":
                # A foreign error's text could carry anything (a value included): its type only.
                detail = (
                    error if isinstance(error, MultiCloudStoreError) else f"unexpected {type(error).__name__}"
                )
                report.failed[sid] = f"{type(error).__name__}: {detail}"
            elif action == "corrupted":
                report.corrupted[sid] = str(error)
            elif action == "empty":
                report.empty.append(sid)
            else:
                setattr(report, action, getattr(report, action) + 1)
                report.copied.append(sid)
        if on_progress is not None:
            on_progress(sid, action)

    def task(sid: UUID) -> None:
        try:
            record(sid, _copy_one(source, target, sid, dry_run))
        except _SourceCorrupted as exc:
            record(sid, "corrupted", exc.error)
        except _SourceEmpty:
            record(sid, "empty")
        except MultiCloudStoreError as exc:
            record(sid, "failed", exc)
        except Exception as exc:  # a foreign error: keep going, report its type only
            record(sid, "failed", exc)

    _bounded_map(task, source.list_secret_ids(), workers)

    if delete_source:
        if report.corrupted:
            report.deletion_skipped = (
                f"{len(report.corrupted)} source secret(s) fail their integrity check; remove them with "
                "'multicloud-store delete --force ID' on the source (or repair them) and run again"
            )
        elif report.failed:
            report.deletion_skipped = f"{len(report.failed)} secret(s) failed to copy; fix them and run again"
        else:
            # The recorded ids, not a fresh listing: a listing that changes while we delete skips entries.
            _bounded_map(
                lambda sid: _delete_if_copied(source, target, sid, report, lock), iter(report.copied), workers
            )
            # Leftovers hold nothing to compare: the source's own delete removes them (it checks their labels).
            _bounded_map(lambda sid: _delete_leftover(source, sid, report, lock), iter(report.empty), workers)
            # Whatever the source still lists now was not deleted (a failure above, or written meanwhile).
            report.remaining = list(source.list_secret_ids())
    report.seconds = time.perf_counter() - started
    return report


def check_distinct(source: object, target: SecretsStore) -> None:
    """Refuse to migrate a store onto itself, before any call.

    Args:
        source: The migration source (a `SecretsStore`, or another reader, which never counts as the same).
        target: The target store.

    Raises:
        SameStoreError: Same backend, same location, same deployment id and name prefix.
    """
    identity = getattr(source, "store_identity", None)
    if callable(identity) and identity() == target.store_identity():
        raise SameStoreError(
            f"the source and the target are the same store (backend {target.backend!r}, deployment "
            f"{target.settings.deployment_id!r}, name prefix {target.settings.name_prefix!r}, same location): "
            "nothing to copy, and --delete-source would delete every secret. Nothing was read or written"
        )


def _delete_if_copied(
    source: MigrationSource, target: SecretsStore, sid: UUID, report: MigrationReport, lock: threading.Lock
) -> None:
    try:
        if source.get_secret_values(sid) != target.get_secret_values(sid):
            raise MultiCloudStoreError(f"secret {sid} changed after it was copied; source kept")
        source.delete_secret_values(sid)
    except MultiCloudStoreError as exc:
        with lock:
            report.failed[sid] = f"{type(exc).__name__}: {exc}"
        return
    with lock:
        report.deleted += 1


def _delete_leftover(
    source: MigrationSource, sid: UUID, report: MigrationReport, lock: threading.Lock
) -> None:
    try:
        source.delete_secret_values(sid)
    except MultiCloudStoreError as exc:
        with lock:
            report.failed[sid] = f"{type(exc).__name__}: {exc}"
        return
    with lock:
        report.deleted += 1


def _bounded_map(func: Callable[[UUID], None], ids: Iterator[UUID], workers: int) -> None:
    """Run ``func`` over a stream of ids with at most ``2 x workers`` in flight, never collecting the stream."""
    telemetry = SWITCH.telemetry
    if telemetry is not None:  # the workers' store calls become children of the migrate span
        func = telemetry.propagating(func)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="migrate") as pool:
        in_flight: set[Future[None]] = set()
        for sid in ids:
            if len(in_flight) >= 2 * workers:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
            in_flight.add(pool.submit(func, sid))
        for future in in_flight:
            future.result()


# -- the CLI command ------------------------------------------------------------------------------------------


def environ_from_prefix(prefix: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Select ``PREFIX``-prefixed variables and strip the prefix: ``SRC_MULTICLOUD_STORE_BACKEND`` -> ``...``.

    Args:
        prefix: For example ``SRC_``.
        environ: Where to look (default: the process environment).

    Returns:
        The stripped variables.
    """
    environ = os.environ if environ is None else environ
    return {key[len(prefix) :]: value for key, value in environ.items() if key.startswith(prefix)}


def _side(env_file: str | None, prefix: str | None) -> dict[str, str]:
    from multicloud_store.settings import read_env_file

    if env_file:
        return read_env_file(env_file)
    assert prefix is not None
    return environ_from_prefix(prefix)


def build_source(args: argparse.Namespace) -> MigrationSource:
    """Build the migration source the command line describes.

    Args:
        args: Parsed ``migrate`` arguments.

    Returns:
        A store, or a reader of ZenML's built-in layout.
    """
    from multicloud_store.store import SecretsStore

    environ = _side(args.source_env_file, args.source_prefix)
    if args.source_layout == "zenml":
        from multicloud_store.integrations.zenml_layout import ZenmlLayoutSource

        return ZenmlLayoutSource.from_env(environ)
    return SecretsStore.from_env(environ)


def run_migrate_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``multicloud-store migrate``: progress bar, summary table, exit code 9 on any failure.

    Args:
        args: Parsed arguments.
        out: Where the summary goes.

    Returns:
        The exit code.
    """
    import json

    from multicloud_store.cli import UsageError
    from multicloud_store.store import SecretsStore

    source = build_source(args)
    target = SecretsStore.from_env(_side(args.target_env_file, args.target_prefix))
    try:
        check_distinct(source, target)
    except SameStoreError as exc:
        _close(source, target)
        raise UsageError(str(exc)) from None
    progress_cm, on_progress = _progress(args, out)
    try:
        with progress_cm:
            report = migrate(
                source,
                target,
                workers=args.workers,
                dry_run=args.dry_run,
                delete_source=args.delete_source,
                on_progress=on_progress,
            )
    finally:
        _close(source, target)
    if args.json:
        out.write(
            json.dumps(
                {
                    "dry_run": report.dry_run,
                    "created": report.created,
                    "updated": report.updated,
                    "skipped": report.skipped,
                    "deleted": report.deleted,
                    "failed": {str(k): v for k, v in report.failed.items()},
                    "corrupted": {str(k): v for k, v in report.corrupted.items()},
                    "empty": [str(k) for k in report.empty],
                    "remaining": [str(k) for k in report.remaining],
                    "deletion_skipped": report.deletion_skipped,
                    "seconds": round(report.seconds, 3),
                }
            )
            + "\n"
        )
    else:
        _summary(report, out)
    return 0 if report.ok else 9


def _close(source: MigrationSource, target: SecretsStore) -> None:
    target.close()
    close = getattr(source, "close", None)
    if callable(close):
        close()


def _progress(args: argparse.Namespace, out: TextIO) -> tuple[Any, Callable[[UUID, Action], None] | None]:
    import contextlib

    if args.no_progress or args.json:
        return contextlib.nullcontext(), None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    # The total is unknown while ids stream in; the bar pulses and the counters move.
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]migrating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=False,
    )
    task = progress.add_task("migrate", total=None, failed=0)
    failed = 0

    def on_progress(sid: UUID, action: Action) -> None:
        nonlocal failed
        failed += action in ("failed", "corrupted")
        progress.update(task, advance=1, failed=failed)

    return progress, on_progress


def _summary(report: MigrationReport, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    title = "migration (dry run: nothing written)" if report.dry_run else "migration"
    table = Table(title=title)
    table.add_column("result")
    table.add_column("secrets", justify="right")
    verb = "would be " if report.dry_run else ""
    table.add_row(f"{verb}created", str(report.created))
    table.add_row(f"{verb}updated", str(report.updated))
    table.add_row("already identical (skipped)", str(report.skipped))
    table.add_row("failed", str(len(report.failed)))
    if report.corrupted:
        table.add_row("corrupted in the source (not copied)", str(len(report.corrupted)))
    if report.empty:
        table.add_row("empty leftovers in the source (nothing to copy)", str(len(report.empty)))
    if report.deleted:
        table.add_row("deleted from source", str(report.deleted))
    if report.remaining:
        table.add_row("still in the source after deletion", str(len(report.remaining)))
    rate = report.total / report.seconds if report.seconds else 0.0
    noun = "secret" if report.total == 1 else "secrets"
    table.caption = f"{report.total} {noun} in {report.seconds:.1f} s ({rate:.0f}/s)"
    console = Console(file=out, width=100)
    console.print(table)

    def line(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    for sid, error in report.failed.items():
        line(f"failed {sid}: {error}")
    for sid, error in report.corrupted.items():
        line(f"corrupted {sid}: {error}")
    if report.deletion_skipped:
        line(f"source deletion skipped: {report.deletion_skipped}")
    for sid in report.remaining:
        line(f"still in the source {sid}")

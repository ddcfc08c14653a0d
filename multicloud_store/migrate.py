"""Copy every secret of a deployment from one backend configuration to another, keeping the ids.

The copy streams ids from the source and keeps at most ``2 x workers`` secrets in flight, so memory stays flat
however many secrets there are. Each secret is read from the source, compared with the target (identical copies
are skipped, which makes a rerun resume where the last one stopped), written, and read back to verify. The source
is deleted only with ``delete_source`` and only after a run in which every secret verified; the deletion pass
lists the source again and re-checks each id against the target before deleting it.
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

from multicloud_store.errors import MultiCloudStoreError, SecretNotFoundError

if TYPE_CHECKING:
    import argparse

    from multicloud_store.store import SecretsStore

__all__ = ["MigrationReport", "MigrationSource", "environ_from_prefix", "migrate"]

logger = logging.getLogger("multicloud_store.migrate")

Action = Literal["created", "updated", "skipped", "failed"]


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
        deleted: Source secrets deleted after the run (``delete_source``).
        dry_run: Nothing was written.
        seconds: Wall time.
    """

    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: dict[UUID, str] = field(default_factory=dict)
    deleted: int = 0
    dry_run: bool = False
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Ids seen."""
        return self.created + self.updated + self.skipped + len(self.failed)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed


def _copy_one(source: MigrationSource, target: SecretsStore, sid: UUID, dry_run: bool) -> Action:
    values = source.get_secret_values(sid)
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
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if dry_run and delete_source:
        raise ValueError("--dry-run and --delete-source cannot be combined")
    report = MigrationReport(dry_run=dry_run)
    started = time.perf_counter()
    lock = threading.Lock()

    def record(sid: UUID, action: Action, error: BaseException | None = None) -> None:
        with lock:
            if action == "failed":
                report.failed[sid] = f"{type(error).__name__}: {error}"
            else:
                setattr(report, action, getattr(report, action) + 1)
        if on_progress is not None:
            on_progress(sid, action)

    def task(sid: UUID) -> None:
        try:
            record(sid, _copy_one(source, target, sid, dry_run))
        except MultiCloudStoreError as exc:
            record(sid, "failed", exc)
        except Exception as exc:  # a foreign error: keep going, report its type only
            record(sid, "failed", type(exc)(f"unexpected {type(exc).__name__}"))

    _bounded_map(task, source.list_secret_ids(), workers)

    if delete_source and report.ok:
        _bounded_map(
            lambda sid: _delete_if_copied(source, target, sid, report, lock),
            source.list_secret_ids(),
            workers,
        )
    report.seconds = time.perf_counter() - started
    return report


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


def _bounded_map(func: Callable[[UUID], None], ids: Iterator[UUID], workers: int) -> None:
    """Run ``func`` over a stream of ids with at most ``2 x workers`` in flight, never collecting the stream."""
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

    from multicloud_store.store import SecretsStore

    source = build_source(args)
    target = SecretsStore.from_env(_side(args.target_env_file, args.target_prefix))
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
        target.close()
        close = getattr(source, "close", None)
        if callable(close):
            close()
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
                    "seconds": round(report.seconds, 3),
                }
            )
            + "\n"
        )
    else:
        _summary(report, out)
    return 0 if report.ok else 9


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
        failed += action == "failed"
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
    if report.deleted:
        table.add_row("deleted from source", str(report.deleted))
    rate = report.total / report.seconds if report.seconds else 0.0
    table.caption = f"{report.total} secrets in {report.seconds:.1f} s ({rate:.0f}/s)"
    console = Console(file=out, width=100)
    console.print(table)
    for sid, error in report.failed.items():
        console.print(f"failed {sid}: {error}", markup=False, highlight=False)

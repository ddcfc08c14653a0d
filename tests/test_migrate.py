"""`multicloud-store migrate`: copy, verify, skip, resume, dry run, failures, delete-source, streaming."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from uuid import UUID

import pytest

from multicloud_store.drivers.memory import MemoryDriver
from multicloud_store.errors import BackendUnavailableError
from multicloud_store.migrate import environ_from_prefix, migrate
from multicloud_store.settings import StoreSettings
from multicloud_store.store import SecretsStore


def local(path: Path, deployment: str = "default") -> SecretsStore:
    return SecretsStore.from_env(
        {"MULTICLOUD_STORE_LOCAL_PATH": str(path), "MULTICLOUD_STORE_DEPLOYMENT_ID": deployment}
    )


@pytest.fixture
def source(tmp_path: Path) -> SecretsStore:
    store = local(tmp_path / "source.db")
    for i in range(30):
        store.store_secret_values(uuid.UUID(int=i + 1), {"i": str(i), "unicode": "秘密"})
    return store


@pytest.fixture
def target(tmp_path: Path) -> SecretsStore:
    return local(tmp_path / "target.db")


def test_copies_everything_preserving_ids(source: SecretsStore, target: SecretsStore) -> None:
    report = migrate(source, target, workers=4)
    assert (report.created, report.updated, report.skipped, report.failed) == (30, 0, 0, {})
    for sid in source.list_secret_ids():
        assert target.get_secret_values(sid) == source.get_secret_values(sid)


def test_rerun_skips_identical_and_resumes(source: SecretsStore, target: SecretsStore) -> None:
    first = [uuid.UUID(int=i + 1) for i in range(10)]
    for sid in first:  # a previous run that stopped after ten secrets
        target.store_secret_values(sid, source.get_secret_values(sid))
    target.update_secret_values(first[0], {"stale": "copy"})
    report = migrate(source, target)
    assert (report.created, report.updated, report.skipped) == (20, 1, 9)
    assert target.get_secret_values(first[0]) == source.get_secret_values(first[0])
    again = migrate(source, target)
    assert (again.created, again.updated, again.skipped) == (0, 0, 30)


def test_dry_run_writes_nothing(source: SecretsStore, target: SecretsStore) -> None:
    report = migrate(source, target, dry_run=True)
    assert report.dry_run and report.created == 30
    assert list(target.list_secret_ids()) == []
    with pytest.raises(ValueError, match="cannot be combined"):
        migrate(source, target, dry_run=True, delete_source=True)


def test_failures_are_reported_per_id_and_the_rest_is_copied(
    source: SecretsStore, target: SecretsStore
) -> None:
    bad = uuid.UUID(int=5)
    connection = sqlite3.connect(source.driver.path)  # type: ignore[attr-defined]
    connection.execute(
        "UPDATE secrets SET ciphertext = zeroblob(10) WHERE name = ?", (source.secret_name(bad),)
    )
    connection.commit()
    connection.close()
    report = migrate(source, target, delete_source=True)
    assert report.failed == {} and list(report.corrupted) == [bad]  # reported apart from copy failures
    assert "integrity check" in report.corrupted[bad]
    assert report.created == 29 and not report.ok
    assert report.deleted == 0  # not a full verified run: the source is kept
    assert report.deletion_skipped is not None and "delete --force" in report.deletion_skipped
    assert len(list(source.list_secret_ids())) == 30


def test_delete_source_after_a_full_verified_run(source: SecretsStore, target: SecretsStore) -> None:
    report = migrate(source, target, delete_source=True)
    assert report.ok and report.deleted == 30
    assert list(source.list_secret_ids()) == []
    assert len(list(target.list_secret_ids())) == 30


def test_write_failures_do_not_stop_the_run(source: SecretsStore) -> None:
    driver = MemoryDriver()
    target = SecretsStore(StoreSettings(backend="memory"), driver=driver)
    driver.fail_next(lambda: BackendUnavailableError("injected"), times=3, operations={"create"})
    report = migrate(source, target, workers=1)
    assert len(report.failed) == 3 and report.created == 27
    assert all("BackendUnavailableError" in e for e in report.failed.values())
    rerun = migrate(source, target)
    assert (rerun.created, rerun.skipped, rerun.failed) == (3, 27, {})


class StreamingSource:
    """A source of many ids that records how far listing ran ahead of copying."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.listed = 0
        self.max_ahead = 0
        self.read = 0

    def list_secret_ids(self) -> Iterator[UUID]:
        for i in range(self.count):
            self.listed += 1
            self.max_ahead = max(self.max_ahead, self.listed - self.read)
            yield uuid.UUID(int=i + 1)

    def get_secret_values(self, secret_id: UUID) -> dict[str, str]:
        self.read += 1
        return {"id": str(secret_id)}

    def delete_secret_values(self, secret_id: UUID) -> None:
        raise AssertionError("not asked to delete")


def test_ids_are_streamed_not_collected() -> None:
    source = StreamingSource(2_000)
    target = SecretsStore(StoreSettings(backend="memory"))
    report = migrate(source, target, workers=4)
    assert report.created == 2_000
    assert source.max_ahead <= 2 * 4 + 1  # never more than the in-flight window listed ahead


def test_environ_from_prefix() -> None:
    assert environ_from_prefix("SRC_", {"SRC_MULTICLOUD_STORE_BACKEND": "aws", "OTHER": "x"}) == {
        "MULTICLOUD_STORE_BACKEND": "aws"
    }


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["multicloud-store", *args], env=env, capture_output=True, text=True, timeout=300)


def test_cli_with_env_files_and_prefixes(source: SecretsStore, tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MULTICLOUD_STORE_")}
    src = tmp_path / "src.env"
    src.write_text(f"MULTICLOUD_STORE_LOCAL_PATH={tmp_path / 'source.db'}\n")
    dst = tmp_path / "dst.env"
    dst.write_text(f"MULTICLOUD_STORE_LOCAL_PATH={tmp_path / 'cli-target.db'}\n")

    dry = _cli(["migrate", "--source-env-file", str(src), "--target-env-file", str(dst), "--dry-run"], base)
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and "would be created" in dry.stdout

    env = {**base, "DST_MULTICLOUD_STORE_LOCAL_PATH": str(tmp_path / "cli-target.db")}
    run = _cli(["migrate", "--source-env-file", str(src), "--target-prefix", "DST_", "--json"], env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["created"] == 30
    assert "秘密" not in run.stdout + run.stderr

    human = _cli(
        ["migrate", "--source-env-file", str(src), "--target-env-file", str(dst), "--no-progress"], base
    )
    assert "already identical (skipped)" in human.stdout and "30" in human.stdout


def test_cli_exit_code_9_lists_failed_ids(source: SecretsStore, tmp_path: Path) -> None:
    bad = uuid.UUID(int=7)
    connection = sqlite3.connect(tmp_path / "source.db")
    connection.execute(
        "UPDATE secrets SET ciphertext = zeroblob(10) WHERE name = ?", (source.secret_name(bad),)
    )
    connection.commit()
    connection.close()
    base = {k: v for k, v in os.environ.items() if not k.startswith("MULTICLOUD_STORE_")}
    env = {
        **base,
        "SRC_MULTICLOUD_STORE_LOCAL_PATH": str(tmp_path / "source.db"),
        "DST_MULTICLOUD_STORE_LOCAL_PATH": str(tmp_path / "t.db"),
    }
    result = _cli(["migrate", "--source-prefix", "SRC_", "--target-prefix", "DST_", "--no-progress"], env)
    assert result.returncode == 9
    assert f"corrupted {bad}" in result.stdout


def test_a_copy_that_does_not_read_back_identical_is_a_failure(source: SecretsStore) -> None:
    class TruncatingDriver(MemoryDriver):
        """A backend that silently stores something else than it was given."""

        def create(self, name: str, payload: str, labels: Mapping[str, str]) -> None:
            super().create(name, payload.replace('"i":"1"', '"i":"x"'), labels)

    target = SecretsStore(StoreSettings(backend="memory"), driver=TruncatingDriver())
    report = migrate(source, target)
    assert list(report.failed) == [uuid.UUID(int=2)]  # the secret whose values were {"i": "1", ...}
    assert "differs from the source" in report.failed[uuid.UUID(int=2)]
    assert report.created == 29


# -- issue 13.1: a store is never migrated onto itself ---------------------------------------------------------


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MULTICLOUD_STORE_")}


@pytest.mark.parametrize("spelling", ["same", "dot", "dotdot", "symlink"])
def test_cli_refuses_the_same_store_as_source_and_target(
    source: SecretsStore, tmp_path: Path, spelling: str
) -> None:
    database = tmp_path / "source.db"
    other = {
        "same": database,
        "dot": Path(f"{tmp_path}/./source.db"),
        "dotdot": tmp_path / "sub" / ".." / "source.db",
        "symlink": tmp_path / "link.db",
    }[spelling]
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.db").symlink_to(database)
    src, dst = tmp_path / "src.env", tmp_path / "dst.env"
    src.write_text(f"MULTICLOUD_STORE_LOCAL_PATH={database}\n")
    dst.write_text(f"MULTICLOUD_STORE_LOCAL_PATH={other}\n")
    before = database.stat().st_mtime_ns
    result = _cli(
        ["migrate", "--source-env-file", str(src), "--target-env-file", str(dst), "--delete-source"],
        _base_env(),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "same store" in result.stderr and "Nothing was read or written" in result.stderr
    assert len(list(source.list_secret_ids())) == 30
    assert database.stat().st_mtime_ns == before


def test_same_file_with_another_deployment_or_prefix_is_another_store(
    source: SecretsStore, tmp_path: Path
) -> None:
    from multicloud_store.migrate import check_distinct

    path = str(tmp_path / "source.db")
    staging = SecretsStore.from_env(
        {"MULTICLOUD_STORE_LOCAL_PATH": path, "MULTICLOUD_STORE_DEPLOYMENT_ID": "staging"}
    )
    check_distinct(source, staging)  # another owner: not the same store (its names would collide, though)
    staging.close()
    target = SecretsStore.from_env(
        {"MULTICLOUD_STORE_LOCAL_PATH": path, "MULTICLOUD_STORE_NAME_PREFIX": "app"}
    )
    report = migrate(source, target)
    assert report.ok and report.created == 30
    target.close()


def test_library_refuses_the_same_store_before_any_call() -> None:
    from multicloud_store.migrate import SameStoreError

    data: dict[str, object] = {}
    one = MemoryDriver(data=data)  # type: ignore[arg-type]
    two = MemoryDriver(data=data)  # type: ignore[arg-type]
    source = SecretsStore(StoreSettings(backend="memory"), driver=one)
    target = SecretsStore(StoreSettings(backend="memory"), driver=two)
    with pytest.raises(SameStoreError):
        migrate(source, target, delete_source=True)
    assert sum(one.calls.values()) + sum(two.calls.values()) == 0
    separate = SecretsStore(StoreSettings(backend="memory"), driver=MemoryDriver())
    assert migrate(source, separate).ok


# -- issue 13.3: a dry run writes nothing, anywhere --------------------------------------------------------------


def test_dry_run_creates_no_database_key_file_or_directory(source: SecretsStore, tmp_path: Path) -> None:
    target_dir = tmp_path / "new-target"
    env = {
        **_base_env(),
        "SRC_MULTICLOUD_STORE_LOCAL_PATH": str(tmp_path / "source.db"),
        "DST_MULTICLOUD_STORE_LOCAL_PATH": str(target_dir / "store.db"),
    }
    result = _cli(
        ["migrate", "--source-prefix", "SRC_", "--target-prefix", "DST_", "--dry-run", "--json"], env
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["created"] == 30
    assert not target_dir.exists()

    empty_source = {
        **env,
        "SRC_MULTICLOUD_STORE_LOCAL_PATH": str(tmp_path / "no-source" / "s.db"),
    }
    result = _cli(
        ["migrate", "--source-prefix", "SRC_", "--target-prefix", "DST_", "--dry-run"], empty_source
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "no-source").exists() and not target_dir.exists()


# -- issue 13.4: corrupted source secrets are listed apart, and block the deletion -------------------------------


def test_cli_lists_corrupted_ids_and_says_the_deletion_was_skipped(
    source: SecretsStore, tmp_path: Path
) -> None:
    bad = uuid.UUID(int=3)
    connection = sqlite3.connect(tmp_path / "source.db")
    connection.execute(
        "UPDATE secrets SET ciphertext = zeroblob(10) WHERE name = ?", (source.secret_name(bad),)
    )
    connection.commit()
    connection.close()
    env = {
        **_base_env(),
        "SRC_MULTICLOUD_STORE_LOCAL_PATH": str(tmp_path / "source.db"),
        "DST_MULTICLOUD_STORE_LOCAL_PATH": str(tmp_path / "t.db"),
    }
    args = [
        "migrate",
        "--source-prefix",
        "SRC_",
        "--target-prefix",
        "DST_",
        "--delete-source",
        "--no-progress",
    ]
    result = _cli(args, env)
    assert result.returncode == 9
    assert f"corrupted {bad}" in result.stdout and f"failed {bad}" not in result.stdout
    assert "source deletion skipped" in result.stdout and "delete --force" in result.stdout
    assert len(list(source.list_secret_ids())) == 30

    as_json = json.loads(_cli([*args, "--json"], env).stdout)
    assert list(as_json["corrupted"]) == [str(bad)] and as_json["failed"] == {}

    # Removing it as the message says lets the next run delete the source.
    removed = subprocess.run(
        ["multicloud-store", "delete", "--force", "--yes", str(bad)],
        env={**_base_env(), "MULTICLOUD_STORE_LOCAL_PATH": str(tmp_path / "source.db")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert removed.returncode == 0, removed.stderr
    final = _cli(args, env)
    assert final.returncode == 0, final.stdout
    assert list(source.list_secret_ids()) == []


# -- issue 10.6: --delete-source deletes what was copied, then proves the source is empty ------------------------


class OffsetPagingDriver(MemoryDriver):
    """Lists like services with offset-style page tokens (AWS NextToken): deleting while listing skips entries."""

    def list_names(self, labels: Mapping[str, str]) -> Iterator[str]:
        offset, size = 0, 10
        while True:
            self._enter("list")
            with self._lock:
                names = sorted(
                    n for n, s in self._data.items() if all(s.labels.get(k) == v for k, v in labels.items())
                )
            page = names[offset : offset + size]
            yield from page
            if len(page) < size:
                return
            offset += size


def test_delete_source_deletes_every_copied_id_even_when_the_listing_shifts() -> None:
    source = SecretsStore(StoreSettings(backend="memory"), driver=OffsetPagingDriver())
    for i in range(100):
        source.store_secret_values(uuid.UUID(int=i + 1), {"i": str(i)})
    target = SecretsStore(StoreSettings(backend="memory"), driver=MemoryDriver())
    report = migrate(source, target, delete_source=True, workers=1)
    assert report.ok, report
    assert report.deleted == 100 and report.remaining == []
    assert list(source.list_secret_ids()) == []


class StickyDriver(MemoryDriver):
    """A backend that answers a delete of one name with success but keeps the secret."""

    sticky = "multicloud-store-" + str(uuid.UUID(int=4))

    def delete(self, name: str) -> None:
        if name != self.sticky:
            super().delete(name)


def test_delete_source_names_every_id_still_present_and_fails() -> None:
    source = SecretsStore(StoreSettings(backend="memory"), driver=StickyDriver())
    for i in range(10):
        source.store_secret_values(uuid.UUID(int=i + 1), {"i": str(i)})
    target = SecretsStore(StoreSettings(backend="memory"), driver=MemoryDriver())
    report = migrate(source, target, delete_source=True)
    assert report.remaining == [uuid.UUID(int=4)]
    assert not report.ok  # the CLI exits 9
    assert report.deleted == 10  # every delete answered success; the listing afterwards tells the truth

    from io import StringIO

    from multicloud_store.migrate import _summary

    out = StringIO()
    _summary(report, out)
    assert f"still in the source {uuid.UUID(int=4)}" in out.getvalue()


class ForeignErrorSource(StreamingSource):
    """A source whose reads raise a foreign error that needs several arguments and quotes the value."""

    def get_secret_values(self, secret_id: UUID) -> dict[str, str]:
        raise UnicodeDecodeError("utf-8", b"s3cr3t-value", 0, 1, "bad byte")


def test_a_foreign_error_is_reported_by_type_only() -> None:
    target = SecretsStore(StoreSettings(backend="memory"), driver=MemoryDriver())
    report = migrate(ForeignErrorSource(3), target, workers=1)
    assert report.failed == dict.fromkeys(
        (uuid.UUID(int=i + 1) for i in range(3)), "UnicodeDecodeError: unexpected UnicodeDecodeError"
    )

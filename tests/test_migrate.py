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

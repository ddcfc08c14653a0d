"""The test command runs the tests or fails: never every session skipped and exit 0.

``nox`` picks a supported interpreter that is present (3.10 to 3.13) and errors, never skips, when the one it
needs is missing; ``.ci/run`` fails when any session of its report did not succeed (a skip included).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]

nox = pytest.importorskip("nox", reason="nox -s install installs nox")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def noxfile() -> ModuleType:
    # Loaded once: loading registers the sessions with nox.
    return _load(ROOT / "noxfile.py", "noxfile_under_test")


def test_missing_interpreters_are_errors_and_nothing_is_downloaded(noxfile: ModuleType) -> None:
    assert nox.options.error_on_missing_interpreters is True
    assert nox.options.download_python == "never"


def test_every_supported_python_is_accepted(noxfile: ModuleType) -> None:
    assert set(noxfile.SUPPORTED_PYTHONS) == {"3.10", "3.11", "3.12", "3.13"}


@pytest.mark.parametrize("running", [(3, 10), (3, 12), (3, 13)])
def test_the_running_supported_python_is_used(
    noxfile: ModuleType, monkeypatch: pytest.MonkeyPatch, running: tuple[int, int]
) -> None:
    monkeypatch.setattr(noxfile.sys, "version_info", SimpleNamespace(major=running[0], minor=running[1]))
    assert noxfile._present_python() == f"{running[0]}.{running[1]}"


def test_under_an_unsupported_python_the_newest_present_one_is_used(
    noxfile: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(noxfile.sys, "version_info", SimpleNamespace(major=3, minor=9))
    monkeypatch.setattr(
        noxfile.shutil, "which", lambda name: "/x/python3.12" if name == "python3.12" else None
    )
    assert noxfile._present_python() == "3.12"


def test_with_no_supported_python_nox_fails_instead_of_skipping(tmp_path: Path) -> None:
    """A session whose interpreter is missing is a failure with a non-zero exit, in nox's own report too."""
    shutil.copy(ROOT / "noxfile.py", tmp_path / "noxfile.py")
    report = tmp_path / "report.json"
    run = subprocess.run(
        [
            sys.executable, "-m", "nox", "--noxfile", str(tmp_path / "noxfile.py"), "--envdir", str(tmp_path / ".nox"),
            "--sessions", "lint", "--force-python", "3.99", "--report", str(report),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode != 0, run.stderr
    sessions = json.loads(report.read_text())["sessions"]
    assert [s["result"] for s in sessions] == ["failed"]
    assert "not found" in sessions[0]["reason"]


@pytest.fixture
def check_report() -> ModuleType:
    return _load(ROOT / ".ci" / "check_nox_report.py", "check_nox_report")


def _report(tmp_path: Path, *results: str) -> Path:
    path = tmp_path / "report.json"
    sessions = [{"name": f"s{i}", "result": r, "reason": None} for i, r in enumerate(results)]
    path.write_text(json.dumps({"result": 1, "sessions": sessions}))
    return path


def test_ci_accepts_a_report_where_every_session_succeeded(check_report: ModuleType, tmp_path: Path) -> None:
    assert check_report.check(_report(tmp_path, "success", "success")) == []


@pytest.mark.parametrize("bad", ["skipped", "failed", "aborted"])
def test_ci_fails_when_a_session_did_not_succeed(check_report: ModuleType, tmp_path: Path, bad: str) -> None:
    problems = check_report.check(_report(tmp_path, "success", bad))
    assert len(problems) == 1
    assert bad in problems[0]


def test_ci_fails_on_an_empty_or_missing_report(check_report: ModuleType, tmp_path: Path) -> None:
    assert check_report.check(_report(tmp_path)) != []
    assert check_report.check(tmp_path / "absent.json") != []


def test_ci_run_checks_the_report() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "--report" in script
    assert "check_nox_report.py" in script

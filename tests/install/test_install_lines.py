"""Every install line of the README and the docs works exactly as written, on a fresh checkout and virtualenv.

A ``pip install`` that names our distributions on the index (``multicloud-store``, ``'multicloud-store[aws]'``)
cannot work until they are published, so such a line must say so (the word "published" on the same line).
Every other ``pip install`` line is run as written, with ``bash``, in a fresh virtual environment whose working
directory is a fresh copy of the checkout; then each backend it installed must load, and a line that goes on to
``multicloud-store check`` runs that too. ``nox`` parts of a line are not run here (this runs inside nox), nor
is a Dockerfile's ``RUN pip install`` (it is held to the "published" rule only).

Slow (a fresh install per distinct line): ``nox -s install`` runs it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# A command that installs one of our distributions by name from the index.
PUBLISHED_NAME = re.compile(r"^multicloud-store(-\w+)?(\[[\w,]+\])?$")
SHELL_FENCES = ("console", "bash", "sh", "shell", "dockerfile", "Dockerfile")
CODE_SPAN = re.compile(r"`([^`\n]+)`")  # left to right, so backticks pair up as markdown pairs them

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@dataclass(frozen=True)
class InstallLine:
    page: str
    lineno: int
    text: str  # the source line (and a table row's column header), for the "published" marker
    command: str  # the command as written, comment stripped
    runnable: bool = True  # False in a Dockerfile: it runs in an image, not on this machine


def _commands(line: str, in_code_block: bool) -> list[str]:
    if in_code_block:
        code = line.split(" #", 1)[0].strip().rstrip("\\").strip()
        if code.startswith("RUN "):  # a Dockerfile
            code = code[4:]
        return [code] if re.search(r"\bpip install\b", code) else []
    return [m.strip() for m in CODE_SPAN.findall(line) if re.search(r"\bpip install ", m)]


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def install_lines() -> list[InstallLine]:
    found = []
    for page in PAGES:
        fence = None
        header: list[str] = []  # the current table's header cells: a column may say "once published"
        previous = ""
        for lineno, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("```"):
                fence = None if fence is not None else stripped[3:]
                continue
            if fence is not None and fence not in SHELL_FENCES:
                continue  # python, text, yaml: not a shell command
            if fence is None and stripped.startswith("|") and not previous.startswith("|"):
                header = _cells(stripped)
            previous = stripped
            for command in _commands(line, fence is not None):
                context = line
                if fence is None and stripped.startswith("|"):
                    column = next((i for i, cell in enumerate(_cells(stripped)) if command in cell), -1)
                    context += " " + (header[column] if 0 <= column < len(header) else "")
                runnable = (fence or "").lower() != "dockerfile"
                found.append(InstallLine(str(page.relative_to(ROOT)), lineno, context, command, runnable))
    return found


def _segments(command: str) -> list[str]:
    return [part.strip() for part in command.split("&&")]


def _pip_targets(segment: str) -> list[str]:
    words = shlex.split(segment)
    start = words.index("install") + 1
    targets, skip = [], False
    for word in words[start:]:
        if skip:
            skip = False
        elif word in ("-c", "--constraint", "-r", "--requirement"):
            skip = True
        elif not word.startswith("-"):
            targets.append(word)
    return targets


def _is_published_form(command: str) -> bool:
    return any(
        PUBLISHED_NAME.match(target)
        for segment in _segments(command)
        if re.search(r"\bpip install\b", segment)
        for target in _pip_targets(segment)
    )


LINES = install_lines()
TO_RUN = sorted({line.command for line in LINES if line.runnable and not _is_published_form(line.command)})


def test_the_pages_have_install_lines() -> None:
    assert len(TO_RUN) >= 4, TO_RUN


@pytest.mark.parametrize(
    "line", [ln for ln in LINES if _is_published_form(ln.command)], ids=lambda ln: f"{ln.page}:{ln.lineno}"
)
def test_an_index_install_is_named_as_the_published_form(line: InstallLine) -> None:
    assert "published" in line.text.lower(), (
        f"{line.page}:{line.lineno}: {line.command!r} installs from PyPI, where nothing is published yet; "
        "give the checkout command and name this one as the published form"
    )


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the checkout: the files git knows, as a fresh clone has them (no venvs, no builds)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    target = tmp_path_factory.mktemp("checkout")
    for name in filter(None, (f.decode() for f in files)):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _runnable(command: str) -> str:
    """The parts of a line to run here: everything but ``nox`` (this test runs inside nox)."""
    return " && ".join(s for s in _segments(command) if not re.search(r"\bnox\b", s.split("pip install")[0]))


@pytest.mark.parametrize("command", TO_RUN)
def test_install_line_works_as_written(command: str, checkout: Path, tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv, "uv is needed to create the fresh virtual environments (nox -s install installs it)"
    venv = tmp_path / "venv"
    # --seed: a venv made by `python3 -m venv` has pip; the line runs the venv's own pip.
    subprocess.run([uv, "venv", "--seed", "--quiet", "--python", sys.executable, str(venv)], check=True)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin",
        "VIRTUAL_ENV": str(venv),
        "HOME": str(home),  # `check` writes the local store under the user's data directory
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        # Not compiling every installed module to bytecode halves the time of a line; what is installed is the same.
        "PIP_NO_COMPILE": "1",
        **{k: v for k, v in os.environ.items() if k in ("PIP_INDEX_URL", "PIP_CACHE_DIR", "XDG_CACHE_HOME")},
    }
    if "XDG_CACHE_HOME" not in env:  # reuse the machine's pip cache: same packages, much faster
        env["PIP_CACHE_DIR"] = env.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _runnable(command)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"{command!r} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    backends = [
        Path(t).name.partition("[")[0]  # ./backends/sql[postgresql]: backend "sql"
        for s in _segments(command)
        if "pip install" in s
        for t in _pip_targets(s)
        if Path(t).parent.name == "backends"
    ]
    for name in backends:
        probe = subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                f"from multicloud_store.registry import load_driver_class as l; print(l({name!r}).__name__)",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert probe.returncode == 0, f"{command!r} did not install backend {name}:\n{probe.stderr}"
    if "multicloud-store check" in command:
        assert "delete" in run.stdout.lower(), run.stdout


def test_not_installed_error_prints_a_command_that_works(checkout: Path, tmp_path: Path) -> None:
    """Core installed from a checkout, backend missing: the CLI's error names a command, and that command works."""
    uv = shutil.which("uv")
    assert uv, "uv is needed to create the fresh virtual environments (nox -s install installs it)"
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--seed", "--quiet", "--python", sys.executable, str(venv)], check=True)
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin",
        "VIRTUAL_ENV": str(venv),
        "HOME": str(tmp_path),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_COMPILE": "1",
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip"),
    }

    def sh(command: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command],
            cwd=checkout,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=600,
        )

    assert sh("pip install .").returncode == 0
    failed = sh("multicloud-store check", MULTICLOUD_STORE_BACKEND="aws")
    assert failed.returncode != 0
    found = re.search(r"(pip install [^(\n]*?)\s*(\(|$)", failed.stderr, re.M)
    assert found, failed.stderr
    command = found.group(1)
    assert "multicloud-store[aws]" not in command  # the extra cannot install from a checkout
    assert str(checkout / "backends" / "aws") in command
    assert sh(command).returncode == 0, command
    probe = sh("python -c 'from multicloud_store.registry import load_driver_class as l; l(\"aws\")'")
    assert probe.returncode == 0, probe.stderr

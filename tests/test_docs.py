"""Every ```python block of the README and the docs runs as pasted.

Each block runs on its own, in a fresh interpreter, in an empty temporary directory, with the embedded ``local``
backend's file (and ``HOME``) inside that directory. A block that defines pytest tests (``import pytest`` and a
``def test_``) is run with pytest instead. A block that cannot run here says so just above its fence with
``<!-- no-run: why -->``; those are counted, and kept few. A block marked ``<!-- continues: the block above -->``
runs after the page's previous python block, as a reader pastes them one after the other.

``nox -s docs`` runs this with every backend package installed (a block about a cloud backend imports it).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NO_RUN = re.compile(r"<!--\s*no-run:\s*(?P<why>.+?)\s*-->")
# A block that goes on from the previous python block of its page: run after it, as a reader pastes them.
CONTINUES = re.compile(r"<!--\s*continues\b[^>]*-->")
MAX_NO_RUN = 3

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Block:
    page: str
    lineno: int  # the line of the opening fence
    code: str
    no_run: str | None  # the reason, when marked
    setup: str = ""  # the previous blocks this one continues

    def __str__(self) -> str:
        return f"{self.page}:{self.lineno}"


def python_blocks() -> list[Block]:
    blocks = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        page_blocks: list[Block] = []
        index = 0
        while index < len(lines):
            opening = lines[index].strip()
            if not opening.startswith("```"):
                index += 1
                continue
            fence = opening[: len(opening) - len(opening.lstrip("`"))]
            end = index + 1
            while end < len(lines) and lines[end].strip() != fence:
                end += 1
            if opening[len(fence) :].strip().split(" ")[0] == "python":
                marker, setup = None, ""
                before = index - 1
                while before >= 0 and not lines[before].strip():
                    before -= 1
                if before >= 0 and (found := NO_RUN.search(lines[before])):
                    marker = found["why"]
                if before >= 0 and CONTINUES.search(lines[before]) and page_blocks:
                    setup = page_blocks[-1].setup + page_blocks[-1].code
                code = textwrap.dedent("\n".join(lines[index + 1 : end]))
                page_blocks.append(Block(str(page.relative_to(ROOT)), index + 1, code + "\n", marker, setup))
            index = end + 1
        blocks += page_blocks
    return blocks


BLOCKS = python_blocks()


def test_the_docs_have_python_blocks() -> None:
    assert len(BLOCKS) >= 8


def test_few_blocks_are_exempt_and_each_says_why() -> None:
    exempt = [b for b in BLOCKS if b.no_run is not None]
    assert len(exempt) <= MAX_NO_RUN, [str(b) for b in exempt]
    assert all(len(b.no_run or "") >= 5 for b in exempt)


def _is_test_module(code: str) -> bool:
    return bool(re.search(r"^import pytest$", code, re.M) and re.search(r"^def test_", code, re.M))


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.no_run is None], ids=str)
def test_block_runs_as_pasted(block: Block, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MULTICLOUD_STORE_", "ZENML_"))}
    env.update(
        HOME=str(tmp_path),
        XDG_DATA_HOME=str(tmp_path / "data"),
        MULTICLOUD_STORE_BACKEND="local",
        MULTICLOUD_STORE_LOCAL_PATH=str(tmp_path / "secrets.db"),
    )
    env.pop("PYTHONPATH", None)  # the block sees what is installed, as a reader's interpreter would
    if _is_test_module(block.code):
        script = work / "test_snippet.py"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
    else:
        script = work / "snippet.py"
        command = [sys.executable, str(script)]
    script.write_text(block.setup + block.code, encoding="utf-8")
    run = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, (
        f"{block} does not run as pasted:\n{block.code}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    )


# The emulators' start-up banners are documentation too: what they print must be enough to connect.
ASSIGNMENT = re.compile(r"\b(MULTICLOUD_STORE_\w+)=([^\s;,)]+)")


@contextlib.contextmanager
def _banner(module: str, *args: str, last: str) -> Iterator[str]:
    """Run ``python -m module``; yield its output up to the line containing ``last`` while it serves."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 120  # generous: start-up on a loaded machine
    try:
        while not any(last in line for line in seen):
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{module} printed no {last!r} within 120 s:\n{''.join(seen)}")
            if line is None:
                pytest.fail(f"{module} exited with {process.wait()}:\n{''.join(seen)}")
            seen.append(line)
        yield "".join(seen)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _first_assignments(banner: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in ASSIGNMENT.findall(banner):
        found.setdefault(name, value)
    return found


def _round_trip(env: dict[str, str]) -> None:
    from uuid import uuid4

    from multicloud_store import SecretsStore

    store = SecretsStore.from_env(env)
    try:
        sid = uuid4()
        store.store_secret_values(sid, {"k": "v"})
        assert store.get_secret_values(sid) == {"k": "v"}
        store.delete_secret_values(sid)
    finally:
        store.close()


def test_gcp_emulator_banner_says_the_project_id_must_be_set() -> None:
    pytest.importorskip("multicloud_store_gcp", reason="nox -s docs installs every backend")
    with _banner(
        "multicloud_store_gcp.testing", "--grpc-port", "0", "--rest-port", "0", last="to stop"
    ) as banner:
        assert "MULTICLOUD_STORE_GCP_PROJECT_ID" in banner, banner
        env = _first_assignments(banner)
        assert {"MULTICLOUD_STORE_GCP_PROJECT_ID", "MULTICLOUD_STORE_GCP_ENDPOINT"} <= env.keys(), banner
        # What the banner prints is enough: a store built from it alone works.
        _round_trip({"MULTICLOUD_STORE_BACKEND": "gcp", **env})


def test_azure_emulator_banner_explains_the_token_scope() -> None:
    pytest.importorskip("multicloud_store_azure", reason="nox -s docs installs every backend")
    with _banner("multicloud_store_azure.testing", "--port", "0", "--any-token", last="to stop") as banner:
        _check_azure_banner(banner)


def _check_azure_banner(banner: str) -> None:
    scope_lines = [line for line in banner.splitlines() if "scope" in line.lower()]
    assert scope_lines, banner
    # The scope of an IP-address vault (https://0.0.1:PORT/.default) looks like a typo unless explained.
    assert all("credential" in line.lower() for line in scope_lines), banner
    env = _first_assignments(banner)
    wanted = {
        "MULTICLOUD_STORE_AZURE_VAULT_URL",
        "MULTICLOUD_STORE_AZURE_CA_BUNDLE",
        "MULTICLOUD_STORE_AZURE_ACCESS_TOKEN",
    }
    assert wanted <= env.keys(), banner
    _round_trip({"MULTICLOUD_STORE_BACKEND": "azure", **env})

"""Every ```python block of the README and the docs runs as pasted.

Each block runs on its own, in a fresh interpreter, in an empty temporary directory, with the embedded ``local``
backend's file (and ``HOME``) inside that directory. A block that defines pytest tests (``import pytest`` and a
``def test_``) is run with pytest instead. A block that cannot run here says so just above its fence with
``<!-- no-run: why -->``; those are counted, and kept few.

``nox -s docs`` runs this with every backend package installed (a block about a cloud backend imports it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NO_RUN = re.compile(r"<!--\s*no-run:\s*(?P<why>.+?)\s*-->")
MAX_NO_RUN = 3

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Block:
    page: str
    lineno: int  # the line of the opening fence
    code: str
    no_run: str | None  # the reason, when marked

    def __str__(self) -> str:
        return f"{self.page}:{self.lineno}"


def python_blocks() -> list[Block]:
    blocks = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
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
                marker = None
                before = index - 1
                while before >= 0 and not lines[before].strip():
                    before -= 1
                if before >= 0 and (found := NO_RUN.search(lines[before])):
                    marker = found["why"]
                code = textwrap.dedent("\n".join(lines[index + 1 : end]))
                blocks.append(Block(str(page.relative_to(ROOT)), index + 1, code + "\n", marker))
            index = end + 1
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
    script.write_text(block.code, encoding="utf-8")
    run = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, (
        f"{block} does not run as pasted:\n{block.code}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    )

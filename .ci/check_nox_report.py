"""Fail unless every session in a ``nox --report`` JSON file succeeded (skipped counts as failed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def check(report_path: Path) -> list[str]:
    """Return one line per session that did not succeed (empty when all did).

    Args:
        report_path: The file written by ``nox --report``.

    Returns:
        The problems found; a report with no session at all is one.
    """
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"no usable nox report at {report_path}: {exc}"]
    sessions = report.get("sessions") or []
    if not sessions:
        return ["nox ran no session"]
    return [
        f"session {entry.get('name')!r} {entry.get('result')}: {entry.get('reason') or 'no reason given'}"
        for entry in sessions
        if entry.get("result") != "success"
    ]


def main() -> int:
    """Check the report named on the command line and print what did not run or pass."""
    problems = check(Path(sys.argv[1]))
    for line in problems:
        print(f"ci: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

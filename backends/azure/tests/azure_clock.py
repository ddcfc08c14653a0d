"""The virtual clock of the Azure backend's tests (a module of its own: ``conftest`` is not importable by name)."""

from __future__ import annotations

import email.utils
import threading
import time
from datetime import datetime, tzinfo


class VirtualClock:
    """One clock for the driver and the in-process emulator, whose waits pass at once.

    A create waits until the service's clock has left the second of its version (docs/backends/azure.md,
    "Concurrent creates"): up to a second per create, minutes over the contract suite. Here the driver's
    ``time.sleep`` moves this clock on instead of sleeping, and the emulator stamps versions, writes ``Date``
    headers and times soft deletes by it; the driver still lists versions and reads the service's clock exactly
    as it does on the real service. The clock only moves forward. Injected latency still sleeps for real.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        return time.time() + self._offset

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._offset += max(0.0, seconds)
        time.sleep(0)  # let other threads run, as a real sleep would

    def formatdate(self, timeval: float | None = None, localtime: bool = False, usegmt: bool = False) -> str:
        return email.utils.formatdate(self.time() if timeval is None else timeval, localtime, usegmt)


def virtual_datetime(clock: VirtualClock) -> type[datetime]:
    """A ``datetime`` whose ``now`` reads ``clock`` (the driver checks expiry and activation dates by it)."""

    class VirtualDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:
            return datetime.fromtimestamp(clock.time(), tz)

    return VirtualDatetime
